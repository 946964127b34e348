"""What every Block Kit renderer shares: the message shape, mrkdwn escaping and Slack's limits."""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from bot.domain.errors import CommandError

__all__ = [
    "MAX_BLOCKS",
    "MAX_FIELD",
    "MAX_NAME",
    "MAX_SECTION",
    "MAX_TITLE",
    "Rendered",
    "clip",
    "escape",
    "link",
    "mention",
    "section",
]

MAX_BLOCKS: Final = 50
MAX_SECTION: Final = 3000
MAX_FIELD: Final = 2000
MAX_TITLE: Final = 150
MAX_NAME: Final = 100
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


class Rendered(NamedTuple):
    text: str
    """Fallback for notifications and clients without Block Kit; mrkdwn like the blocks."""
    blocks: list[dict[str, Any]]


def escape(text: str) -> str:
    """Slack's three control characters: user text must never become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def link(url: str | None, text: str) -> str:
    """``text`` (mrkdwn, already escaped) linked to ``url``: only to a web page, and a URL can
    never break out of Slack's ``<url|text>``."""
    if not url or not url.startswith(("https://", "http://")):
        return text
    return f"<{escape(url).replace('|', '%7C')}|{text}>"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def mention(user: str) -> str:
    """``<@U…>`` for a Slack user id; anything else is written out, so it can never ping."""
    if _SLACK_USER.fullmatch(user):
        return f"<@{user}>"
    return escape(clip(user, MAX_NAME))


EMOJI_ERROR: Final = ":warning:"


def render_command_error(error: CommandError) -> Rendered:
    """Any command typed wrong: the one-line reason and the usage, all escaped (it quotes the
    user). Only the usage when the person asked for it."""
    text = escape(error.usage)
    if error.problem is not None:
        text = f"{EMOJI_ERROR} {escape(error.problem)}\n{text}"
    return Rendered(text=text, blocks=[section(text)])
