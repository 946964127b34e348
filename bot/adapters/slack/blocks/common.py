"""What every Block Kit renderer shares: the message shape, the text sanitiser and Slack's limits.

Every piece of text that comes from outside (GitLab, Kubernetes, people, the catalog) goes
through ``plain`` before it joins a message, and ``link`` and ``mention`` use it too: it
removes what would make the message read differently from what it says (``scrub``: control,
bidi and invisible characters), clips to a length, and escapes Slack's ``&``, ``<``, ``>`` so
that no text becomes a mention or a link. ``escape`` alone is for our own wording.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from bot.domain.errors import CommandError
from bot.domain.text import scrub

__all__ = [
    "MAX_BLOCKS",
    "MAX_FIELD",
    "MAX_NAME",
    "MAX_SECTION",
    "MAX_TITLE",
    "MAX_URL",
    "Rendered",
    "clip",
    "escape",
    "link",
    "mention",
    "plain",
    "roll_back_button",
    "section",
    "slack_date",
]

MAX_BLOCKS: Final = 50
MAX_SECTION: Final = 3000
MAX_FIELD: Final = 2000
MAX_TITLE: Final = 150
MAX_NAME: Final = 100
MAX_URL: Final = 1000
"""Longer URLs are not linked (their label is shown): no GitLab page needs one, and a
message must keep within Slack's limits whatever a branch is called."""
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_WHITESPACE = re.compile(r"\s")
"""What ``str.isspace`` calls a space (the same table), found without a Python loop."""


class Rendered(NamedTuple):
    text: str
    """Fallback for notifications and clients without Block Kit; mrkdwn like the blocks."""
    blocks: list[dict[str, Any]]


def escape(text: str) -> str:
    """Slack's three control characters: user text must never become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain(text: str, limit: int, *, newlines: bool = False) -> str:
    """``text`` from outside as mrkdwn that shows it as typed, in at most ``limit`` characters
    (before escaping): no control, bidi or invisible characters, no mention, no link.

    ``newlines``: keep line breaks (else they read as spaces), for renderers that lay out
    several lines of it."""
    return escape(clip(scrub(text, newlines=newlines), limit))


def link(url: str | None, label: str, *, limit: int = MAX_NAME) -> str:
    """``label`` (text, sanitised here) linked to ``url``: only to a web page, and a URL can
    never break out of Slack's ``<url|text>``; a URL with characters ``scrub`` removes, with
    spaces, or longer than ``MAX_URL`` is not linked at all."""
    text = plain(label, limit)
    if not url or not url.startswith(("https://", "http://")) or _unsafe_url(url):
        return text
    return f"<{escape(url).replace('|', '%7C')}|{text}>"


def _unsafe_url(url: str) -> bool:
    return len(url) > MAX_URL or scrub(url) != url or _WHITESPACE.search(url) is not None


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def mention(user: str) -> str:
    """``<@U…>`` for a Slack user id; anything else is written out, so it can never ping."""
    if _SLACK_USER.fullmatch(user):
        return f"<@{user}>"
    return plain(user, MAX_NAME)


EMOJI_ERROR: Final = ":warning:"
_MAX_COMMAND_ERROR: Final = 1000


def render_command_error(error: CommandError) -> Rendered:
    """Any command typed wrong: the one-line reason and the usage, all escaped (it quotes the
    user). Only the usage when the person asked for it."""
    text = plain(error.usage, _MAX_COMMAND_ERROR)
    if error.problem is not None:
        text = f"{EMOJI_ERROR} {plain(error.problem, _MAX_COMMAND_ERROR)}\n{text}"
    return Rendered(text=text, blocks=[section(text)])


def slack_date(when: datetime) -> str:
    """An absolute time as Slack's date formatting: each reader sees it in their own time zone
    and words ("today 6:00 PM", "Nov 25 9:00 AM"); clients that cannot format it, and
    notifications, show the fallback in UTC, said so. Never a bare clock time without a zone.
    """
    utc = when.astimezone(UTC)
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} {{time}}|{utc:%Y-%m-%d %H:%M} UTC>"


MAX_BUTTON: Final = 75
"""Characters of a button's label."""


def roll_back_button(
    *, action_id: str, value: str, app: str, env: str, version: str
) -> dict[str, Any]:
    """``Roll back to <version>``: the click runs ``/rollback <app> <env> to <version>`` as the
    person who clicked. ``value`` is the id of a server-side record, never the version itself."""
    command = f"/rollback {app} {env} to {version}"
    return {
        "type": "actions",
        "block_id": "roll_back",
        "elements": [
            {
                "type": "button",
                "action_id": action_id,
                "text": {"type": "plain_text", "text": clip(f"Roll back to {version}", MAX_BUTTON)},
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Roll back?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": f"Runs `{plain(command, MAX_TITLE)}` as you: a merge request"
                        f" that follows {plain(env, MAX_NAME)}'s policy, approvals included.",
                    },
                    "confirm": {"type": "plain_text", "text": "Roll back"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            }
        ],
    }
