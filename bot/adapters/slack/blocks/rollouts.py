"""The rollout message, its pod-problems reply and its recovery reply, as Block Kit.

The emoji are the pipelines' (``STATUS_DISPLAY``), so a glance reads the same everywhere:
:arrows_counterclockwise: rolling out, :white_check_mark: rolled out, :x: failed, and
:fast_forward: for a rollout that a newer one overtook. The headline says what changed (image
tags of the changed containers) and where, in the words of the SPEC: "orders 1.4.1 → 1.4.2
rolling out in production", then "rolled out in 48 s" or "failed: ProgressDeadlineExceeded".
Durations are written with spaces ("3 min 12 s") because they sit inside a sentence. Progress
says what a person on call asks, "new pods 0/1 ready · old pods 3/3 serving", not the
workload's counters.

A workload deleted from the cluster, when no undeploy explains it, gets a message of its own:
":wastebasket: *orders* removed from *production*: Deployment orders/orders was deleted (it ran
1.4.1)".

A failure gets one reply: the new pods' problems, and a ``Roll back to <version>`` button when
the version the rollout replaced is known (its value is a server-side record's id).

Everything from the cluster (names, reasons, container messages) goes through ``plain``
(control and bidi characters out, escaped, clipped): a container's last message can be a whole
stack trace, and anyone who can name a pod chooses its characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    Rendered,
    clip,
    plain,
    roll_back_button,
    section,
)
from bot.adapters.slack.blocks.pipelines import STATUS_DISPLAY
from bot.domain.releases import RollbackOffer
from bot.domain.rollouts import (
    ImageChange,
    PodProblem,
    Progress,
    Rollout,
    RolloutPhase,
    WorkloadSnapshot,
    summarize_problems,
)

__all__ = [
    "MAX_PROBLEMS",
    "PHASE_EMOJI",
    "PROBLEMS_EMOJI",
    "ROLL_BACK",
    "RolloutBlocks",
    "format_pods",
    "format_problems",
    "format_rollout_duration",
    "render_failure",
    "render_problems",
    "render_recovered",
    "render_removed",
    "render_rollout",
]

ROLL_BACK: Final = "rollout_roll_back"
"""The Roll back button of a rollout's failure reply; its value is a ``RollbackOffer`` id."""

PHASE_EMOJI: Final[Mapping[RolloutPhase, str]] = {
    "progressing": STATUS_DISPLAY["running"][0],
    "succeeded": STATUS_DISPLAY["success"][0],
    "failed": STATUS_DISPLAY["failed"][0],
    "superseded": STATUS_DISPLAY["skipped"][0],
}
PROBLEMS_EMOJI: Final = ":mag:"
MAX_PROBLEMS: Final = 5
"""Problems listed in a reply; the rest are counted. Five reasons are already a bad day."""
MAX_MESSAGE: Final = 300
"""Characters of a container's last message: enough for the error, not the stack trace."""
_MAX_VERSIONS: Final = 500
_WHITESPACE = re.compile(r"\s+")
_TIMES: Final = "\N{MULTIPLICATION SIGN}"


def format_rollout_duration(seconds: float) -> str:
    """``48 s``, ``3 min 12 s``, ``1 h 4 min``: seconds stop mattering after an hour."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


# --------------------------------------------------------------------------------------------
# Pieces


def _pair(change: ImageChange) -> str:
    old, new = change.old_version, change.new_version
    return new if old is None or old == new else f"{old} → {new}"


def _versions(rollout: Rollout) -> str:
    """Old → new, for the changed containers; one pair when they all moved alike."""
    changes = rollout.changes
    if not changes:
        return f"{_target(rollout)} (no image change)".lstrip()
    if len({(c.old_version, c.new_version) for c in changes}) == 1:
        text = _pair(changes[0])
    else:
        text = ", ".join(f"{c.container} {_pair(c)}" for c in changes)
    return plain(text, _MAX_VERSIONS)


def _target(rollout: Rollout) -> str:
    """The version(s) rolled out: those of the changed containers, else of all of them."""
    shown = rollout.changes or rollout.images
    if len({c.new_version for c in shown}) == 1:
        text = shown[0].new_version
    else:
        text = ", ".join(f"{c.container} {c.new_version}" for c in shown)
    return plain(text, _MAX_VERSIONS)


def _subject(app: str, versions: str) -> str:
    name = f"*{plain(app, MAX_NAME)}*"
    return f"{name} {versions}" if versions else name


def _env(env: str) -> str:
    return f"*{plain(env, MAX_NAME)}*"


def format_pods(progress: Progress) -> str:
    """``new pods 0/1 ready · old pods 3/3 serving``: how far the new version got, and whether
    the old one still carries the traffic."""
    pods = progress.pods()
    new = (
        f"new pods {pods.new_ready}/{pods.new} ready"
        if pods.new
        else f"no new pods yet (of {pods.desired})"
    )
    if pods.old == 0:
        return new
    return f"{new} · old pods {pods.old_serving}/{pods.old} serving"


def _pods(rollout: Rollout) -> str:
    return format_pods(rollout.progress)


def _reason(reason: str | None) -> str:
    return plain(reason, MAX_TITLE) if reason else "no reason given"


def _where(rollout: Rollout) -> dict[str, Any]:
    text = (
        f"{rollout.kind} {plain(rollout.namespace, MAX_NAME)}/"
        f"{plain(rollout.name, 2 * MAX_NAME)} · generation {rollout.generation}"
        f" · context {plain(rollout.context, MAX_NAME)}"
    )
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _code(text: str) -> str:
    # Slack has no escape for a backtick inside inline code; pod names never hold one anyway.
    return "`" + plain(text.replace("`", "'"), 2 * MAX_NAME) + "`"


def _problem_line(problem: PodProblem) -> str:
    line = _code(problem.pod)
    others = problem.pods - 1
    if others > 0:
        line += f" (and {others} other pod{'s' if others > 1 else ''})"
    if problem.container:
        line += f" {plain(problem.container, MAX_NAME)}"
    line += f" — {plain(problem.reason, MAX_TITLE)}"
    if problem.restarts > 0:
        line += f" (restarted {problem.restarts}{_TIMES})"
    message = _WHITESPACE.sub(" ", problem.message).strip()
    if message:
        line += f": {plain(message, MAX_MESSAGE)}"
    return line


# --------------------------------------------------------------------------------------------
# Messages


def render_rollout(rollout: Rollout, *, app: str, env: str) -> Rendered:
    """The rollout's own message, posted when it starts and updated in place."""
    emoji = PHASE_EMOJI[rollout.phase]
    match rollout.phase:
        case "progressing":
            headline = (
                f"{emoji} {_subject(app, _versions(rollout))} rolling out in {_env(env)}"
                f" · {_pods(rollout)}"
            )
        case "succeeded":
            headline = f"{emoji} {_subject(app, _target(rollout))} rolled out in {_env(env)}"
            if rollout.duration is not None:
                headline += f" in {format_rollout_duration(rollout.duration)}"
            if rollout.recovered:
                headline += f", after failing: {_reason(rollout.reason)}"
        case "failed":
            headline = (
                f"{emoji} {_subject(app, _target(rollout))} failed in {_env(env)}: "
                f"{_reason(rollout.reason)} · {_pods(rollout)}"
            )
        case "superseded":
            headline = (
                f"{emoji} {_subject(app, _versions(rollout))} superseded in {_env(env)}"
                " by a newer rollout"
            )
    headline = clip(headline, MAX_SECTION)
    return Rendered(text=headline, blocks=[section(headline), _where(rollout)])


def format_problems(problems: Sequence[PodProblem]) -> str:
    """``:mag: New pods: `orders-5c9-x` orders — CrashLoopBackOff (restarted 6 times): …``:
    why the new pods are not becoming ready, most severe first."""
    summary = summarize_problems(problems)
    if not summary:
        return f"{PROBLEMS_EMOJI} New pods: none reports a problem."
    lines = [_problem_line(p) for p in summary[:MAX_PROBLEMS]]
    more = len(summary) - len(lines)
    if len(summary) == 1:
        return f"{PROBLEMS_EMOJI} New pods: {lines[0]}"
    text = f"{PROBLEMS_EMOJI} New pods:\n" + "\n".join(f"• {line}" for line in lines)
    if more > 0:
        text += f"\n… and {more} more"
    return text


def render_problems(problems: Sequence[PodProblem]) -> Rendered:
    """The thread reply that says why the new pods are not becoming ready."""
    text = clip(format_problems(problems), MAX_SECTION)
    return Rendered(text=text, blocks=[section(text)])


def render_failure(
    rollout: Rollout, *, app: str, env: str, offer: RollbackOffer | None
) -> Rendered:
    """The failure reply of a rollout: its new pods' problems and, when the version it replaced
    is known, the button that rolls back to it (as the person who clicks, with every check)."""
    text, blocks = render_problems(rollout.problems)
    if offer is None:
        return Rendered(text=text, blocks=blocks)
    button = roll_back_button(
        action_id=ROLL_BACK, value=offer.id, app=app, env=env, version=offer.version
    )
    return Rendered(text=text, blocks=[*blocks, button])


def render_recovered(rollout: Rollout, *, app: str, env: str) -> Rendered:
    """The thread reply for a failed rollout that completed after all."""
    text = f"{PHASE_EMOJI['succeeded']} {_subject(app, _target(rollout))} recovered in {_env(env)}"
    if rollout.reason:
        text += f" after {_reason(rollout.reason)}"
    text += ": rolled out"
    if rollout.duration is not None:
        text += f" in {format_rollout_duration(rollout.duration)}"
    text = clip(text, MAX_SECTION)
    return Rendered(text=text, blocks=[section(text)])


REMOVED_EMOJI: Final = ":wastebasket:"


def render_removed(snapshot: WorkloadSnapshot, *, app: str, env: str) -> Rendered:
    """A workload deleted from the cluster that no undeploy explains: by hand, by another tool,
    or a GitOps controller pruning what git no longer has."""
    images = ", ".join(
        dict.fromkeys(c.image.rsplit("/", 1)[-1] for c in snapshot.containers if c.image)
    )
    ran = f" (it ran {plain(images, MAX_TITLE)})" if images else ""
    text = clip(
        f"{REMOVED_EMOJI} *{plain(app, MAX_NAME)}* removed from {_env(env)}:"
        f" {snapshot.kind} {plain(snapshot.namespace, MAX_NAME)}/"
        f"{plain(snapshot.name, 2 * MAX_NAME)} was deleted{ran}",
        MAX_SECTION,
    )
    context = f"context {plain(snapshot.context, MAX_NAME)}"
    return Rendered(
        text=text,
        blocks=[
            section(text),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    )


class RolloutBlocks:
    """The renderers, for a rollout service's views port."""

    def rollout(self, rollout: Rollout, *, app: str, env: str) -> Rendered:
        return render_rollout(rollout, app=app, env=env)

    def failure(
        self, rollout: Rollout, *, app: str, env: str, offer: RollbackOffer | None
    ) -> Rendered:
        return render_failure(rollout, app=app, env=env, offer=offer)

    def recovered(self, rollout: Rollout, *, app: str, env: str) -> Rendered:
        return render_recovered(rollout, app=app, env=env)

    def removed(self, snapshot: WorkloadSnapshot, *, app: str, env: str) -> Rendered:
        return render_removed(snapshot, app=app, env=env)
