"""Text anyone can put in front of the renderers (a commit title, a pod name, a lock reason), and
the check that none of it comes out as something other than text."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from bot.adapters.slack.blocks.common import MAX_BLOCKS, MAX_FIELD, MAX_SECTION, Rendered

HOSTILE: dict[str, str] = {
    "nul": "before\x00after",
    "esc": "\x1b[2J\x1b[31mred alert\x1b[0m",
    "rlo": "invoice\u202efdp.exe",
    "channel": "<!channel> wake up",
    "user": "<@U123> look",
    "link": "<https://evil.example/login|GitLab>",
    "invisible": "a\u200bb \u2066isolated\u2069 \u200e\u061c c1:\x85\x9b bom:\ufeff tag:\U000e0041",
    "10kb": "\u202e<!here>" + "x" * 10_000,
}
"""One of each: control characters, a bidi override, Slack markup, invisible format characters,
and a 10 KB string."""

_TOKEN = re.compile(r"<([^<>]*)>")
_DATE = re.compile(
    r"!date\^\d{1,12}\^\{date_short_pretty\} \{time\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC"
)
"""A renderer's own time (``slack_date``): nothing in it comes from outside."""


def strings(value: Any) -> Iterator[str]:
    """Every string in a rendered message: the fallback text and everything in the blocks."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def assert_inert(
    rendered: Rendered, *, links: Sequence[str] = (), mentions: Sequence[str] = ()
) -> None:
    """Nothing came out as a control or invisible character, a mention or a link: every
    ``<…>`` is one of the renderer's own links (to a URL starting with one of ``links``),
    mentions (``mentions``: ``@U…``, ``#C…``) or times, and Block Kit's limits hold."""
    for text in strings(rendered):
        hidden = [
            f"U+{ord(char):04X}"
            for char in text
            if unicodedata.category(char) in ("Cc", "Cf", "Cs") and char != "\n"
        ]
        assert not hidden, f"{hidden} in {text[:200]!r}"
        for token in _TOKEN.findall(text):
            if _DATE.fullmatch(token):
                continue
            target = token.split("|", 1)[0]
            assert target.startswith(tuple(links)) or target in mentions, f"<{token[:200]}>"
    assert rendered.text
    assert len(rendered.blocks) <= MAX_BLOCKS
    for block in rendered.blocks:
        if "text" in block:
            assert 0 < len(block["text"]["text"]) <= MAX_SECTION
        for field in block.get("fields", ()):
            assert 0 < len(field["text"]) <= MAX_FIELD
        for element in block.get("elements", ()):
            if element.get("type") == "mrkdwn":
                assert 0 < len(element["text"]) <= MAX_SECTION
