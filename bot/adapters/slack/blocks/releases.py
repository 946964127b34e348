"""Release messages: the one message per release, its thread, and the answers to the requester.

The message is read at a glance by someone paged at 3 a.m., so its first line says what and
where, and its second line says where the release stands right now, with one vocabulary:

    :hourglass_flowing_sand: waiting   :white_check_mark: approved/passed   :lock: held by a lock
    :twisted_rightwards_arrows: merging/merged   :gear: GitOps pipeline
    :arrows_counterclockwise: rolling out   :large_green_circle: healthy   :red_circle: failed
    :heavy_check_mark: deployed, not verified in a cluster   :grey_question: never seen running
    :rotating_light: merged with changes nobody approved   :fast_forward: superseded
    :no_entry_sign: rejected   :zzz: expired   :no_entry: refused
    :wastebasket: undeploy: removed from the environment

An undeploy's message says what leaves (the version git has there) instead of a changelog, and
ends when the watcher sees the workload gone (or, unwatched, when it is out of git).

Buttons carry the release id and nothing else; Approve and Reject are only shown while an
approval is useful, and ``Roll back to <version>`` on the failure reply of a release that
reached git and failed (or was never seen running), when the version it replaced is known.

While the rollout runs, the message says how many new pods are ready and how many old ones still
serve; the failure reply names the new pods' problems. Times are Slack date tokens.

A changelog line links the issue references of a commit title where they stand, and appends only
the issues the title does not show (a "Fixes #12" in the commit's body):

    • a1b2c3d4 Fix checkout rounding (#131) #12 — Alice Martin
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    Rendered,
    clip,
    link,
    mention,
    plain,
    render_command_error,
    roll_back_button,
    section,
    slack_date,
)
from bot.adapters.slack.blocks.rollouts import format_pods, format_problems, format_rollout_duration
from bot.domain.errors import CommandError
from bot.domain.locks import Lock, format_age
from bot.domain.release_flow import NoteKind
from bot.domain.releases import (
    AUTOPILOT,
    ChangelogEntry,
    Release,
    ReleaseRef,
    split_issue_references,
)
from bot.domain.text import scrub

__all__ = ["APPROVE", "DEPLOY_ANYWAY", "REJECT", "ROLL_BACK", "ReleaseBlocks"]

APPROVE: Final = "release_approve"
REJECT: Final = "release_reject"
DEPLOY_ANYWAY: Final = "release_deploy_anyway"
ROLL_BACK: Final = "release_roll_back"
_CHANGELOG_LINES: Final = 5
_CHANNEL_ID: Final = re.compile(r"[CG][A-Z0-9]{2,}")
_COMMIT_TITLE: Final = 120
_MAX_FAILURE: Final = 500
_MAX_REASON: Final = 200
_WAITING: Final = {
    "awaiting_approval": "waiting for approval",
    "waiting_pipeline": "waiting for its MR pipeline",
    "approved": "held by a lock",
    "merging": "merging",
}


def _one(text: str) -> Rendered:
    return Rendered(text=text, blocks=[section(clip(text, MAX_SECTION))])


def _mr(release: Release) -> str:
    return link(release.mr_url, f"!{release.mr_iid}") if release.mr_iid else "no MR"


def _env(release: Release) -> str:
    return f"*{plain(release.env, MAX_NAME)}*"


def _title(release: Release) -> str:
    return plain(release.title, MAX_SECTION)


def _failure(release: Release) -> str:
    return plain(release.failure or "unknown reason", _MAX_FAILURE)


def _version(version: str) -> str:
    return f"`{plain(version, MAX_TITLE)}`"


def _versions(release: Release) -> str:
    before = _version(release.from_version) if release.from_version else "nothing"
    if release.kind == "undeploy":
        return f"{before} → removed"
    return f"{before} → {_version(release.to_version)}"


def _took(release: Release) -> str:
    if release.rollout_started_at is None or release.finished_at is None:
        return ""
    seconds = (release.finished_at - release.rollout_started_at).total_seconds()
    return f" after {format_rollout_duration(max(seconds, 0.0))}"


def _rollback_hint(release: Release) -> str:
    return f"`/rollback {plain(release.app, MAX_NAME)} {plain(release.env, MAX_NAME)}`"


def _pods(release: Release) -> str:
    """`` · new pods 1/3 ready · old pods 2/3 serving``, once the rollout was seen."""
    if release.rollout_progress is None:
        return ""
    return f" · {format_pods(release.rollout_progress)}"


def _roll_back(release: Release) -> dict[str, Any] | None:
    version = release.rollback_to
    if version is None:
        return None
    return roll_back_button(
        action_id=ROLL_BACK, value=release.id, app=release.app, env=release.env, version=version
    )


def _failure_reply(text: str, release: Release) -> Rendered:
    """A failure reply: what failed, the new pods' problems when its rollout failed, and the
    Roll back button (else how to roll back by hand)."""
    lines = [text]
    if release.failed_step == "rollout" and release.state == "failed":
        lines.append(format_problems(release.problems))
    button = _roll_back(release)
    if release.kind == "undeploy":
        if release.merged_at or release.merge_sha:
            lines.append(f"To bring it back, revert {_mr(release)}.")
    elif button is None and (release.merged_at or release.merge_sha):
        if release.kind == "rollback":
            lines.append(
                "Go to a version you name with"
                f" `/rollback {plain(release.app, MAX_NAME)} {plain(release.env, MAX_NAME)}"
                " to <version>`."
            )
        else:
            lines.append(f"Roll back with {_rollback_hint(release)}.")
    body = clip("\n".join(lines), MAX_SECTION)
    return Rendered(text=body, blocks=[section(body), *([button] if button else [])])


def stage(release: Release, *, approvers: str) -> str:
    """Where the release stands, in one line."""
    env = _env(release)
    state = release.state
    if state == "requested":
        return ":hourglass_flowing_sand: Opening the merge request…"
    if state == "awaiting_approval":
        return (
            f":hourglass_flowing_sand: Waiting for approval — {len(release.approvals)}/"
            f"{release.approvals_needed} from {approvers}"
        )
    if state == "waiting_pipeline":
        return ":hourglass_flowing_sand: Waiting for the MR pipeline, then merges by itself"
    if state == "approved" and release.held_by:
        return (
            f":lock: Held: {env} is locked by {mention(release.held_by)} — merges when it is"
            " unlocked"
        )
    if state in ("approved", "merging"):
        return ":twisted_rightwards_arrows: Merging when the MR pipeline passes"
    if state == "merged":
        if release.watched and release.kind == "undeploy":
            return ":twisted_rightwards_arrows: Merged — waiting for the workload to leave"
        if release.watched:
            return ":twisted_rightwards_arrows: Merged — waiting for the rollout"
        return ":twisted_rightwards_arrows: Merged — waiting for the GitOps pipeline"
    if state == "removed":
        return f":wastebasket: Removed from {env}{_took(release)} — its workload is gone"
    if state == "deployed" and release.kind == "undeploy":
        return f":heavy_check_mark: Out of {env}'s git — its cluster is not watched"
    if state == "deployed":
        pipeline = release.deploy_pipeline
        if pipeline is not None:
            label = link(pipeline.url, f"GitOps pipeline #{pipeline.id}")
            return f":heavy_check_mark: Deployed by {label} — {env}'s cluster is not watched"
        return f":heavy_check_mark: Merged, no GitOps pipeline ran — {env}'s cluster is not watched"
    if state == "deploying":
        pipeline = release.deploy_pipeline
        status = pipeline.status if pipeline else "running"
        word = "passed" if status == "success" else plain(status, MAX_NAME)
        label = f"GitOps pipeline #{pipeline.id}" if pipeline else "GitOps pipeline"
        doing = "Removing" if release.kind == "undeploy" else "Deploying"
        return f":gear: {doing} — {link(pipeline.url if pipeline else None, label)} {word}"
    if state == "rolling_out":
        return f":arrows_counterclockwise: Rolling out in {env}{_pods(release)}"
    if state == "healthy":
        return f":large_green_circle: Healthy in {env}{_took(release)}"
    if state == "failed":
        merged = release.merged_at or release.merge_sha
        hint = f" — {_rollback_hint(release)}" if merged and release.kind != "undeploy" else ""
        if release.failed_step == "unreviewed_merge":
            return f":rotating_light: Merged unreviewed: {_failure(release)}{hint}"
        pods = _pods(release) if release.failed_step == "rollout" else ""
        return f":red_circle: Failed: {_failure(release)}{pods}{hint}"
    if state == "not_seen" and release.kind == "undeploy":
        return f":grey_question: Not seen: {_failure(release)}"
    if state == "not_seen":
        return f":grey_question: Not seen: {_failure(release)} — {_rollback_hint(release)}"
    if state == "superseded":
        before = ""
        if release.failure:
            before = (
                f" — it had failed: {_failure(release)}"
                if release.failed_step
                else (f" — {_failure(release)}")
            )
        return (
            f":fast_forward: Superseded by {_ref(release.superseded_by)}{_closed(release)}{before}"
        )
    if state == "rejected":
        who = f" by {mention(release.ended_by)}" if release.ended_by else ""
        return f":no_entry_sign: Rejected{who} — {_mr(release)} closed"
    if state == "expired":
        return f":zzz: Expired: {_failure(release)} — {_mr(release)} closed"
    return f":no_entry: Refused: {_failure(release)}"


def _requester(release: Release) -> str:
    """A person's mention, or the autopilot and why it asked."""
    if release.autopilot == "new_version":
        return "the autopilot (new version)"
    if release.autopilot == "promotion":
        return "the autopilot (scheduled promotion)"
    return mention(release.requester)


def _ref(other: ReleaseRef | None) -> str:
    """Another release, linked to its MR, with who asked for it."""
    if other is None:
        return "a newer release"
    what = (
        link(other.mr_url, other.title, limit=MAX_TITLE)
        if other.mr_url
        else plain(other.title, MAX_TITLE)
    )
    who = "the autopilot" if other.requester == AUTOPILOT else mention(other.requester)
    return f"*{what}* (requested by {who})"


def _closed(release: Release) -> str:
    """ ", !7 closed" for a release whose MR was closed before its merge."""
    if release.mr_iid is None or release.merged_at is not None or release.merge_sha:
        return ""
    return f" — {_mr(release)} closed"


def _changelog(release: Release) -> str:
    log = release.changelog
    heading = "Commits leaving" if release.kind == "rollback" else "Changelog"
    if log.unavailable:
        return f"*{heading}:* not available ({plain(log.unavailable, _MAX_REASON)})"
    if not log.entries:
        return f"*{heading}:* no commits between the two versions"
    where = f" · {link(log.compare_url, 'compare')}" if log.compare_url else ""
    lines = [f"*{heading}* ({log.total} commit{'s' if log.total != 1 else ''}{where})"]
    for entry in log.entries[:_CHANGELOG_LINES]:
        lines.append(
            f"• {link(entry.url, entry.sha[:8])} {_commit_title(entry, log.issues_url)}"
            f" — {plain(entry.author, 60)}"
        )
    more = log.total - min(len(log.entries), _CHANGELOG_LINES)
    if more > 0:
        lines.append(f"… and {more} more")
    return "\n".join(lines)


def _commit_title(entry: ChangelogEntry, issues_url: str | None) -> str:
    """The title, its issue references linked where they stand, clipped as ``clip`` would (a
    reference the clip would cut is left out whole); then the issues it does not show."""
    pieces, clipped = _clip_pieces(split_issue_references(scrub(entry.title)), _COMMIT_TITLE)
    shown = {number for _, number in pieces if number is not None}
    title = "".join(
        plain(piece, _COMMIT_TITLE) if number is None else _issue(number, issues_url)
        for piece, number in pieces
    )
    title += "…" if clipped else ""
    return title + "".join(
        f" {_issue(number, issues_url)}" for number in entry.issues if number not in shown
    )


def _clip_pieces(
    pieces: Sequence[tuple[str, str | None]], limit: int
) -> tuple[list[tuple[str, str | None]], bool]:
    """The pieces that fit in ``limit`` characters with room for "…"; whether any was cut."""
    if sum(len(piece) for piece, _ in pieces) <= limit:
        return list(pieces), False
    room = limit - 1
    kept: list[tuple[str, str | None]] = []
    for piece, number in pieces:
        if len(piece) > room:
            if number is None:
                kept.append((piece[:room], None))
            break
        kept.append((piece, number))
        room -= len(piece)
    if kept and kept[-1][1] is None:
        kept[-1] = (kept[-1][0].rstrip(), None)
    return kept, True


def _issue(number: str, issues_url: str | None) -> str:
    return link(f"{issues_url}/{number}" if issues_url else None, f"#{number}")


def _policy(release: Release, *, approvers: str) -> str:
    if release.policy == "auto":
        return "auto: merges when the MR pipeline passes"
    count = release.approvals_needed
    needs = f"{count} approval{'s' if count != 1 else ''} from {approvers}"
    if release.kind == "undeploy":
        return f"{needs} (an undeploy always needs approval)"
    return f"manual: {needs}"


def render_release(release: Release, *, approvers: str) -> Rendered:
    verb = {"rollback": ":rewind:", "undeploy": ":wastebasket:"}.get(release.kind, ":rocket:")
    title = f"{verb} *{_title(release)}* · {_mr(release)}"
    status = stage(release, approvers=approvers)
    details = [
        f"{_versions(release)} · requested by {_requester(release)}",
        f"Policy: {_policy(release, approvers=approvers)}",
    ]
    if release.approvals:
        details.append("Approved by " + ", ".join(mention(u) for u in release.approvals))
    if release.supersedes is not None:
        details.append(f":fast_forward: Supersedes {_ref(release.supersedes)}")
    if release.override is not None:
        lock = release.override
        why = f" ({plain(lock.reason, 100)})" if lock.reason else ""
        details.append(
            f":unlock: Deployed through the lock of {mention(lock.holder)}{why},"
            f" on {mention(lock.by)}'s say-so"
        )
    blocks: list[dict[str, Any]] = [
        section(clip(f"{title}\n{status}", MAX_SECTION)),
        section(clip("\n".join(details), MAX_SECTION)),
    ]
    if release.kind != "undeploy":
        blocks.append(section(clip(_changelog(release), MAX_SECTION)))
    if release.state == "awaiting_approval":
        blocks.append(
            {
                "type": "actions",
                "block_id": "release",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": release.id,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": release.id,
                    },
                ],
            }
        )
    context = (
        f"release `{plain(release.id, MAX_NAME)}` · team {plain(release.team, MAX_NAME)}"
        f" · requested {slack_date(release.created_at)}"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return Rendered(text=f"{_title(release)} — {status}", blocks=blocks)


def render_note(release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered:
    env = _env(release)
    who = mention(by) if by else "someone"
    if kind == "override":
        lock = release.override
        holder = mention(lock.holder) if lock else "someone"
        why = f": “{plain(lock.reason, _MAX_REASON)}”" if lock and lock.reason else ""
        return _one(f":unlock: {who} chose *Deploy anyway* through {holder}'s lock on {env}{why}")
    if kind == "approved":
        return _one(
            f":white_check_mark: Approved by {who}"
            f" ({len(release.approvals)}/{release.approvals_needed})"
        )
    if kind == "mr_pipeline":
        p = release.mr_pipeline
        if p is None:
            return _one(":hourglass_flowing_sand: MR pipeline pending")
        label = link(p.url, f"#{p.id}")
        if p.status == "success":
            return _one(f":white_check_mark: MR pipeline {label} passed")
        if p.status in ("failed", "canceled"):
            return _one(f":x: MR pipeline {label} {p.status}")
        return _one(f":hourglass_flowing_sand: MR pipeline {label} {plain(p.status, MAX_NAME)}")
    if kind == "held":
        if release.policy == "manual" and len(release.approvals) >= release.approvals_needed:
            return _one(
                f":lock: Approved, but {env} is now locked by {who}: the merge is held, and goes"
                " ahead as soon as it is unlocked."
            )
        return _one(
            f":lock: The MR pipeline passed, but {env} is locked by {who}: this release merges"
            " as soon as it is unlocked."
        )
    if kind == "merging":
        return _one(f":twisted_rightwards_arrows: Merging {_mr(release)} when its pipeline passes")
    if kind == "merged":
        outside = f" in GitLab by {plain(by, MAX_NAME)}, outside Pitcrew" if by else ""
        if release.watched and release.kind == "undeploy":
            follow = f" Waiting for the workload to leave {env}."
        elif release.watched:
            follow = " Waiting for the rollout."
        else:
            follow = f" Waiting for the GitOps pipeline ({env}'s cluster is not watched)."
        return _one(f":twisted_rightwards_arrows: Merged {_mr(release)}{outside}.{follow}")
    if kind == "deploy_pipeline":
        p = release.deploy_pipeline
        if p is None:
            return _one(":gear: GitOps pipeline started")
        label = link(p.url, f"#{p.id}")
        word = {"success": "passed", "failed": "failed", "canceled": "canceled"}.get(
            p.status, plain(p.status, MAX_NAME)
        )
        emoji = {"success": ":white_check_mark:", "failed": ":x:", "canceled": ":x:"}.get(
            p.status, ":gear:"
        )
        return _one(f"{emoji} GitOps pipeline {label} {word}")
    if kind == "rollout":
        return _one(
            f":arrows_counterclockwise: Rolling out {_version(release.to_version)} in {env}…"
        )
    if kind == "healthy":
        return _one(
            f":large_green_circle: *{plain(release.app, MAX_NAME)}"
            f" {plain(release.to_version, MAX_TITLE)} is healthy in"
            f" {plain(release.env, MAX_NAME)}*{_took(release)}"
        )
    if kind == "failed":
        return _failure_reply(
            f":red_circle: *{_title(release)} failed*: {_failure(release)}{_pods(release)}.",
            release,
        )
    if kind == "no_mr_pipeline":
        return _one(
            f":fast_forward: No MR pipeline started for {_mr(release)}: merging it as in a"
            " GitOps repo without CI."
        )
    if kind == "unreviewed_merge":
        approvers = ", ".join(mention(u) for u in release.approvals) or "nobody approved it"
        outside = f" (merged in GitLab by {plain(by, MAX_NAME)})" if by else ""
        return _failure_reply(
            f":rotating_light: *{_title(release)}: what was merged is not what was approved*"
            f"{outside}. {_failure(release)}. Approvers: {approvers}. Check {_mr(release)}, and"
            " roll back if in doubt.",
            release,
        )
    if kind == "removed":
        return _one(
            f":wastebasket: *{plain(release.app, MAX_NAME)} is gone from"
            f" {plain(release.env, MAX_NAME)}*: its workload was deleted from the cluster."
        )
    if kind == "deployed" and release.kind == "undeploy":
        return _one(
            f":heavy_check_mark: {plain(release.app, MAX_NAME)} is out of {env}'s git. Its"
            " cluster is not watched, so Pitcrew cannot verify that the workload is gone."
        )
    if kind == "deployed":
        return _one(
            f":heavy_check_mark: No GitOps pipeline ran for the merge: {env} counts as deployed."
            " Its cluster is not watched, so Pitcrew cannot verify it."
        )
    if kind == "not_seen" and release.kind == "undeploy":
        return _one(f":grey_question: {mention(release.requester)} {_failure(release)}")
    if kind == "not_seen":
        return _failure_reply(
            f":grey_question: {mention(release.requester)} {_failure(release)}"
            " A late rollout will still be followed here.",
            release,
        )
    if kind == "superseded":
        closed = f" {_mr(release)} is closed." if _closed(release) else ""
        return _one(f":fast_forward: Superseded by {_ref(release.superseded_by)}.{closed}")
    if kind == "rejected":
        if by and mention(by).startswith("<@"):
            return _one(f":no_entry_sign: Rejected by {who}: {_mr(release)} is closed.")
        where = f" in GitLab by {plain(by, MAX_NAME)}" if by else " in GitLab"
        return _one(f":no_entry_sign: {_mr(release)} was closed{where}: the release stops here.")
    return _one(f":zzz: Expired ({_failure(release)}): {_mr(release)} is closed.")


class ReleaseBlocks:
    """The ``ReleaseViews`` port."""

    def message(self, release: Release, *, approvers: str) -> Rendered:
        return render_release(release, approvers=approvers)

    def note(self, release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered:
        return render_note(release, kind, by=by)

    def working(self, what: str) -> Rendered:
        return _one(
            f":hourglass_flowing_sand: Working on it: checking how to {plain(what, MAX_TITLE)}…"
        )

    def opened(self, release: Release, *, channel: str, approvers: str) -> Rendered:
        count = release.approvals_needed
        next_step = (
            f"It needs {count} approval{'s' if count != 1 else ''} from {approvers}."
            if release.policy == "manual"
            else "It merges when its pipeline passes."
        )
        where = f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else plain(channel, MAX_NAME)
        return _one(
            f":white_check_mark: Opened {_mr(release)} *{_title(release)}*"
            f" ({_versions(release)}). {next_step} Follow it in {where}."
        )

    def refused(self, problem: str) -> Rendered:
        # Plain text (GitLab's own words among it): nothing in it becomes a link or a mention.
        problem = plain(problem, _MAX_FAILURE * 2, newlines=True)
        return _one(f":no_entry: {problem[:1].upper()}{problem[1:]}")

    def only_requester(self, requester: str) -> Rendered:
        return _one(f":no_entry: Only {mention(requester)}, who asked, can confirm this.")

    def blocked(self, current: Release, *, can_reject: bool) -> Rendered:
        where = f"{plain(current.app, MAX_NAME)} to {_env(current)}"
        if current.state == "requested":
            return _one(
                f":hourglass_flowing_sand: A release of {where} is being opened right now"
                f" (requested by {mention(current.requester)}): try again in a moment."
            )
        text = (
            f":no_entry: {_ref(current.ref)} is {_WAITING.get(current.state, 'in progress')}:"
            f" it must merge, or be rejected, before another deploy of {where}."
        )
        if not can_reject:
            return _one(text)
        return Rendered(
            text=text,
            blocks=[
                section(clip(text, MAX_SECTION)),
                {
                    "type": "actions",
                    "block_id": "blocked",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": REJECT,
                            "text": {"type": "plain_text", "text": "Reject it"},
                            "style": "danger",
                            "value": current.id,
                            "confirm": {
                                "title": {"type": "plain_text", "text": "Reject this release?"},
                                "text": {
                                    "type": "mrkdwn",
                                    "text": f"{_title(current)}: its MR is closed.",
                                },
                                "confirm": {"type": "plain_text", "text": "Reject"},
                                "deny": {"type": "plain_text", "text": "Cancel"},
                            },
                        }
                    ],
                },
            ],
        )

    def lock_prompt(self, lock: Lock, *, request_id: str, what: str, now: datetime) -> Rendered:
        why = f": “{plain(lock.reason, _MAX_REASON)}”" if lock.reason else ""
        age = format_age(lock.age(now))
        ago = age if age == "just now" else f"{age} ago"
        text = (
            f":lock: *{plain(lock.env, MAX_NAME)}* is locked by {mention(lock.holder)}"
            f" ({ago}){why}.\nDeploy anyway? The override is recorded and shown in the"
            " release's thread."
        )
        return Rendered(
            text=text,
            blocks=[
                section(text),
                {
                    "type": "actions",
                    "block_id": "lock",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": DEPLOY_ANYWAY,
                            "text": {"type": "plain_text", "text": "Deploy anyway"},
                            "style": "danger",
                            "value": request_id,
                            "confirm": {
                                "title": {"type": "plain_text", "text": "Deploy through a lock?"},
                                "text": {
                                    "type": "mrkdwn",
                                    "text": f"{plain(what, MAX_TITLE)} while"
                                    f" {plain(lock.env, MAX_NAME)} is locked.",
                                },
                                "confirm": {"type": "plain_text", "text": "Deploy anyway"},
                                "deny": {"type": "plain_text", "text": "Cancel"},
                            },
                        }
                    ],
                },
            ],
        )

    def help(self, usage: str) -> Rendered:
        return _one(plain(usage, MAX_SECTION))

    def error(self, error: CommandError) -> Rendered:
        return render_command_error(error)

    def click_answer(self, text: str) -> Rendered:
        # The service's own mrkdwn, like ``refused``.
        return _one(scrub(text, newlines=True))
