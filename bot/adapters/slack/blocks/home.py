"""The App Home tab, as Block Kit: one screen that says what needs the person who opened it.

Four sections, always in this order and always present (an empty one says so, so that "nothing
here" never has to be guessed): releases waiting for your approval, with Approve and Reject;
your releases that have not ended, each with its status line as the release message has it;
the locks in force; your teams' failures of the last 24 hours, linked to where they can be
looked at. A footer says when it was drawn and that it is redrawn on opening and after a click.

Buttons carry the release id only, like those of the release message; a click on a view has no
``response_url``, so its answer comes as a direct message, and the tab is redrawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    clip,
    link,
    mention,
    plain,
    section,
    slack_date,
)
from bot.adapters.slack.blocks.locks import EMOJI_UNLOCKED, format_lock
from bot.adapters.slack.blocks.releases import APPROVE, REJECT, stage
from bot.domain.home import Home, RecentFailure
from bot.domain.locks import format_age
from bot.domain.releases import Release

__all__ = ["HomeBlocks", "render_home"]

_KIND_EMOJI: Final = {"pipeline": ":x:", "rollout": ":x:", "release": ":red_circle:"}
_MAX_REASON: Final = 200
_DIVIDER: Final = {"type": "divider"}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]}


def _heading(text: str) -> dict[str, Any]:
    return section(clip(text, MAX_SECTION))


def _release_title(release: Release) -> str:
    title = plain(release.title, MAX_TITLE)
    mr = f" · {link(release.mr_url, f'!{release.mr_iid}')}" if release.mr_iid else ""
    return f"*{title}*{mr}"


def _versions(release: Release) -> str:
    before = f"`{plain(release.from_version, MAX_TITLE)}`" if release.from_version else "nothing"
    if release.kind == "undeploy":
        return f"{before} → removed"
    return f"{before} → `{plain(release.to_version, MAX_TITLE)}`"


def _waiting(release: Release, *, approvers: str) -> list[dict[str, Any]]:
    text = (
        f"{_release_title(release)}\n{_versions(release)} · requested by"
        f" {mention(release.requester)} {slack_date(release.created_at)}"
        f" · {len(release.approvals)}/{release.approvals_needed} approvals from {approvers}"
    )
    return [
        section(clip(text, MAX_SECTION)),
        {
            "type": "actions",
            "block_id": f"home-approve-{release.id}",
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
        },
    ]


def _ago(then: datetime, now: datetime) -> str:
    age = format_age(max(now - then, timedelta(0)))
    return age if age == "just now" else f"{age} ago"


def _failure(failure: RecentFailure, *, now: datetime) -> str:
    emoji = _KIND_EMOJI.get(failure.kind, ":x:")
    what = link(failure.url, failure.title, limit=MAX_TITLE)
    reason = plain(" ".join(failure.reason.split()), _MAX_REASON)
    return f"{emoji} {what} — {reason} · {_ago(failure.at, now)}"


def render_home(home: Home, *, approvers: Mapping[str, str]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Pitcrew"}},
        section(
            f":wave: {mention(home.user)}: what waits for you, your releases, the locks, and your"
            " teams' failures of the last 24 h. `/pitcrew help` lists every command."
        ),
        _DIVIDER,
        _heading(f"*:hourglass_flowing_sand: Waiting for your approval* ({len(home.waiting)})"),
    ]
    if home.waiting:
        for release in home.waiting:
            blocks += _waiting(release, approvers=approvers.get(release.id, "nobody"))
    else:
        blocks.append(_context("Nothing waits for your approval."))

    blocks += [_DIVIDER, _heading(f"*:rocket: Your releases in progress* ({len(home.mine)})")]
    if home.mine:
        for release in home.mine:
            status = stage(release, approvers=approvers.get(release.id, "nobody"))
            blocks.append(section(clip(f"{_release_title(release)}\n{status}", MAX_SECTION)))
    else:
        blocks.append(_context("None: `/deploy` or `/rollback` starts one."))

    blocks += [_DIVIDER, _heading(f"*:lock: Locks* ({len(home.locks)})")]
    if home.locks:
        lines = [format_lock(lock, now=home.now) for lock in home.locks]
        blocks.append(section(clip("\n".join(lines), MAX_SECTION)))
    else:
        blocks.append(_context(f"{EMOJI_UNLOCKED} No environment is locked."))

    teams = ", ".join(plain(team, MAX_NAME) for team in home.teams) or "no team"
    blocks += [
        _DIVIDER,
        _heading(f"*:warning: Your teams' failures, last 24 h* · {teams}"),
    ]
    if home.failures:
        lines = [_failure(failure, now=home.now) for failure in home.failures]
        blocks.append(section(clip("\n".join(lines), MAX_SECTION)))
    else:
        blocks.append(_context("None: :large_green_circle: all quiet."))
    if not home.named:
        blocks.append(
            _context(
                "The catalog names you in no team (a team's `oncall`, or an environment's"
                " `approvers`), so every team's failures are shown."
            )
        )
    blocks += [
        _DIVIDER,
        _context(
            f"Drawn {slack_date(home.now)} · redrawn each time you open this tab, and after"
            " every click in it"
        ),
    ]
    return {"type": "home", "blocks": blocks}


class HomeBlocks:
    """The ``HomeViews`` port."""

    def home(self, home: Home, *, approvers: Mapping[str, str]) -> dict[str, Any]:
        return render_home(home, approvers=approvers)
