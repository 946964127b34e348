"""The ``/whatsinprod`` answer: the first thing people read in an incident, so it is scannable.

One section of context (what was asked, how many apps, how fresh the answer is, the locks of the
environments shown), then one line per app — or, for a single app, one line per environment in
promotion order::

    :mag: *payments* in *production* · 12 apps · 1 drifting · as of 2 min ago
    :lock: *production* locked by <@U…> for 2 h — black friday freeze
    *orders* `1.4.2` · changed 3 h ago by alice (!12) · 3/3 ready · :warning: drift: cluster …

The owner team is shown where the answer spans teams (``all``, a single app); in a team's answer
the header already says it. Problems (drift, unreadable manifests) are counted in the header, so
they are seen even when the list is long, and the lines past ``MAX_LINES`` are summarised with
the problems among them named: a list longer than that is not read, it is searched, and a
narrower command does that better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_BLOCKS,
    MAX_NAME,
    MAX_SECTION,
    Rendered,
    clip,
    link,
    mention,
    plain,
    section,
)
from bot.domain.catalog import Catalog
from bot.domain.inventory import Deployed, Inventory, Live, Query, drift
from bot.domain.locks import MAX_REASON, Lock, format_age, in_force

__all__ = [
    "EMOJI_DRIFT",
    "EMOJI_QUERY",
    "EMOJI_UNREADABLE",
    "MAX_LINES",
    "SHARE",
    "render_whatsinprod",
]

SHARE: Final = "whatsinprod_share"
"""The "Share in channel" button; its value is the id of the question kept server-side."""

EMOJI_QUERY: Final = ":mag:"
EMOJI_LOCKED: Final = ":lock:"
EMOJI_DRIFT: Final = ":warning:"
EMOJI_UNREADABLE: Final = ":x:"
EMOJI_STALE: Final = ":warning:"

MAX_LINES: Final = 50
"""App lines shown before summarising; a team of 30 fits whole."""
_MAX_VERSION: Final = 60
_MAX_PROBLEM: Final = 200
_NAMED_PROBLEMS: Final = 5
_SEP: Final = " · "


def _ago(then: datetime, now: datetime) -> str:
    age = format_age(max(now - then, timedelta(0)))
    return age if age == "just now" else f"{age} ago"


def _name(text: str) -> str:
    return plain(text, MAX_NAME)


def _code(text: str) -> str:
    return "`" + plain(text, _MAX_VERSION).replace("`", "'") + "`"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True, kw_only=True)
class _Line:
    """One app in one environment, with what the header counts about it."""

    label: str
    text: str
    drift: str | None
    unreadable: bool


def _line(
    *,
    label: str,
    deployed: Deployed | None,
    live: Live | None,
    image: str,
    owner: str | None,
    now: datetime,
) -> _Line:
    drifting = drift(deployed, live, image=image) if deployed is not None else None
    parts = [f"*{_name(label)}* {_state(deployed)}"]
    if owner is not None:
        parts.append(_name(owner))
    if deployed is not None and deployed.changed_at is not None:
        parts.append(_change(deployed, now))
    if live is not None:
        parts.append("scaled to 0" if live.desired == 0 else f"{live.ready}/{live.desired} ready")
    if drifting is not None:
        parts.append(f"{EMOJI_DRIFT} drift: {plain(drifting, _MAX_PROBLEM)}")
    return _Line(
        label=label,
        text=clip(_SEP.join(parts), MAX_SECTION),
        drift=drifting,
        unreadable=deployed is not None and deployed.unreadable is not None,
    )


def _state(deployed: Deployed | None) -> str:
    if deployed is None:
        return "not known yet"
    if deployed.unreadable is not None:
        reason = " ".join(deployed.unreadable.split())
        return f"{EMOJI_UNREADABLE} unreadable: {plain(reason, _MAX_PROBLEM)}"
    if deployed.version is None:
        return "not deployed"
    return _code(deployed.version)


def _change(deployed: Deployed, now: datetime) -> str:
    assert deployed.changed_at is not None
    text = link(deployed.commit_url, f"changed {_ago(deployed.changed_at, now)}")
    if deployed.changed_by:
        text += f" by {_name(deployed.changed_by)}"
    if deployed.mr_iid is not None:
        text += f" ({link(deployed.mr_url, f'!{deployed.mr_iid}')})"
    return text


def _lines(query: Query, *, inventory: Inventory, catalog: Catalog, now: datetime) -> list[_Line]:
    per_env = query.kind == "app"
    lines: list[_Line] = []
    for app_name in query.apps:
        app = catalog.app(app_name)
        owner = None if query.kind == "team" or per_env else app.team
        for env in query.envs:
            lines.append(
                _line(
                    label=env if per_env else app_name,
                    deployed=inventory.deployed(app_name, env),
                    live=inventory.live_state(app_name, env),
                    image=app.image,
                    owner=owner,
                    now=now,
                )
            )
    return lines


def _header(
    query: Query, lines: Sequence[_Line], *, inventory: Inventory, catalog: Catalog, now: datetime
) -> str:
    subject = "*all apps*" if query.kind == "all" else f"*{_name(query.subject)}*"
    if query.kind != "app" or len(query.envs) == 1:
        subject += f" in *{_name(query.envs[0])}*"
    parts = [f"{EMOJI_QUERY} {subject}"]
    if query.kind == "app":
        parts.append(_name(catalog.app(query.subject).team))
    else:
        parts.append(_plural(len(query.apps), "app"))
    drifting = sum(1 for line in lines if line.drift is not None)
    unreadable = sum(1 for line in lines if line.unreadable)
    if drifting:
        parts.append(f"{drifting} drifting")
    if unreadable:
        parts.append(f"{unreadable} unreadable")
    if inventory.refreshed_at is None:
        parts.append("still reading the GitOps repo")
    elif not inventory.stale(now):
        parts.append(f"as of {_ago(inventory.refreshed_at, now)}")
    return _SEP.join(parts)


def _context(
    query: Query, *, inventory: Inventory, locks: Mapping[str, Lock], now: datetime
) -> list[str]:
    notes: list[str] = []
    if inventory.refreshed_at is not None and inventory.stale(now):
        notes.append(
            f"{EMOJI_STALE} GitLab unreachable? answer from {_ago(inventory.refreshed_at, now)}"
        )
    for env in query.envs:
        lock = in_force(locks.get(env), now)
        if lock is None:
            continue
        why = " ".join(lock.reason.split())
        reason = f" — {plain(why, MAX_REASON)}" if why else ""
        notes.append(
            f"{EMOJI_LOCKED} *{_name(env)}* locked by {mention(lock.holder)}"
            f" {_held_for(lock, now)}{reason}"
        )
    return notes


def _more(query: Query, hidden: Sequence[_Line]) -> str:
    noun = "environment" if query.kind == "app" else "app"
    text = f"… and {len(hidden)} more {noun}{'' if len(hidden) == 1 else 's'}"
    problems = [line.label for line in hidden if line.drift is not None or line.unreadable]
    if problems:
        named = ", ".join(_name(p) for p in problems[:_NAMED_PROBLEMS])
        rest = len(problems) - _NAMED_PROBLEMS
        named += f" and {rest} more" if rest > 0 else ""
        text += f" ({_plural(len(problems), 'problem')} among them: {named})"
    if query.kind == "all":
        return text + ": narrow with `/whatsinprod <team>`"
    if query.kind == "team":
        return text + ": narrow with `/whatsinprod <app>`"
    return text


def _pack(lines: Sequence[str], *, budget: int) -> tuple[list[dict[str, Any]], int]:
    """Lines into at most ``budget`` sections; returns them and how many lines fit."""
    blocks: list[dict[str, Any]] = []
    current: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if current and size + 1 + len(line) > MAX_SECTION:
            if len(blocks) + 1 == budget:
                blocks.append(section("\n".join(current)))
                return blocks, index
            blocks.append(section("\n".join(current)))
            current, size = [], 0
        size += len(line) + (1 if current else 0)
        current.append(line)
    if current:
        blocks.append(section("\n".join(current)))
    return blocks, len(lines)


def _held_for(lock: Lock, now: datetime) -> str:
    age = format_age(lock.age(now))
    return age if age == "just now" else f"for {age}"


def render_whatsinprod(
    query: Query,
    *,
    inventory: Inventory,
    catalog: Catalog,
    locks: Mapping[str, Lock],
    now: datetime,
    share: str | None = None,
    shared_by: str | None = None,
    asked: str = "",
) -> Rendered:
    """``locks`` maps environment names to their lock; expired ones are ignored.

    ``share``: the id behind a "Share in channel" button (the answer only its asker sees);
    ``shared_by``: the answer as posted in the channel, saying who shared it and what they
    asked (``asked``: the command's text)."""
    lines = _lines(query, inventory=inventory, catalog=catalog, now=now)
    header = _header(query, lines, inventory=inventory, catalog=catalog, now=now)
    top = "\n".join([header, *_context(query, inventory=inventory, locks=locks, now=now)])
    blocks = [section(clip(top, MAX_SECTION))]
    # One block for the header, one kept for the summary, two for the share button or note.
    budget = MAX_BLOCKS - 2 - (1 if share or shared_by else 0)
    if not lines:
        blocks.append(section("No apps."))
    else:
        shown = lines[:MAX_LINES]
        packed, fitted = _pack([line.text for line in shown], budget=budget)
        blocks.extend(packed)
        hidden = lines[fitted:]
        if hidden:
            blocks.append(section(clip(_more(query, hidden), MAX_SECTION)))
    if shared_by is not None:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Shared by {mention(shared_by)} · "
                        + _code(f"/whatsinprod {' '.join(asked.split())}".strip()),
                    }
                ],
            }
        )
    elif share is not None:
        blocks.append(
            {
                "type": "actions",
                "block_id": "whatsinprod",
                "elements": [
                    {
                        "type": "button",
                        "action_id": SHARE,
                        "text": {"type": "plain_text", "text": "Share in channel"},
                        "value": share,
                    }
                ],
            }
        )
    return Rendered(text=header, blocks=blocks)
