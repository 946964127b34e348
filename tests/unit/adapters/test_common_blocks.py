"""The one text sanitiser every renderer uses: ``plain``, and ``link`` and ``mention`` on it."""

from __future__ import annotations

import pytest

from bot.adapters.slack.blocks.common import (
    MAX_URL,
    link,
    mention,
    plain,
    render_command_error,
)
from bot.domain.errors import CommandError

GITLAB = "https://gitlab.example.com/shop/orders"


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("Fix rounding", 100, "Fix rounding"),
        ("R&D <!channel> <@U123> <https://evil.example|docs>", 100,
         "R&amp;D &lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt;"),
        ("nul\x00 esc\x1b[0m rlo\u202eexe", 100, "nul esc[0m rloexe"),
        ("two\nlines\tand a tab", 100, "two lines and a tab"),
        # the limit counts what is shown, before escaping, after removing
        ("\u202e" * 50 + "x" * 20, 10, "xxxxxxxxx…"),
        ("<" * 20, 10, "&lt;" * 9 + "…"),
    ],
)  # fmt: skip
def test_plain(text: str, limit: int, shown: str) -> None:
    assert plain(text, limit) == shown


def test_plain_keeps_line_breaks_where_asked() -> None:
    assert plain("one\r\ntwo\x00", 100, newlines=True) == "one\ntwo"


@pytest.mark.parametrize(
    ("url", "label", "shown"),
    [
        (f"{GITLAB}/-/issues/1", "#1", f"<{GITLAB}/-/issues/1|#1>"),
        (f"{GITLAB}/-/tree/a|b>c", "a|b>c", f"<{GITLAB}/-/tree/a%7Cb&gt;c|a|b&gt;c>"),
        (f"{GITLAB}/-/jobs/1", "\u202eb <!here>\x00", f"<{GITLAB}/-/jobs/1|b &lt;!here&gt;>"),
        # not linked: not a web page, hidden characters, spaces, too long
        ("javascript:alert(1)", "click", "click"),
        (f"{GITLAB}\u202e/-/jobs/1", "job", "job"),
        (f"{GITLAB}/-/jobs/1\x00", "job", "job"),
        (f"{GITLAB}/-/jobs/1 <!here>", "job", "job"),
        (f"{GITLAB}/" + "x" * MAX_URL, "job", "job"),
        (None, "<b>", "&lt;b&gt;"),
    ],
)  # fmt: skip
def test_link(url: str | None, label: str, shown: str) -> None:
    assert link(url, label) == shown


@pytest.mark.parametrize(
    ("user", "shown"),
    [
        ("U0ALICE", "<@U0ALICE>"),
        ("W0BOB", "<@W0BOB>"),
        ("alice", "alice"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("U0ALICE\x00", "U0ALICE"),  # not an id: written out, and what is hidden removed
        ("\u202eU0ALICE", "U0ALICE"),
    ],
)
def test_mention(user: str, shown: str) -> None:
    assert mention(user) == shown


def test_command_errors_quote_the_person_clean() -> None:
    error = CommandError("No environment “prod\u202e<!here>\x1b”.", usage="Usage: `/lock <env>`")
    assert render_command_error(error).text == (
        ":warning: No environment “prod&lt;!here&gt;”.\nUsage: `/lock &lt;env&gt;`"
    )
