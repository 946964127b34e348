"""Strategies shared by the fuzz tests: the strings and JSON values people and machines send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

HUGE = 100_000

# Characters that break naive code: NUL and other controls, line and paragraph separators,
# right-to-left marks and overrides, zero-width joiners, a BOM, a non-character, combining marks,
# characters whose case mapping changes their length, and emoji (astral, with modifiers).
ODD_PIECES = (
    "\x00",
    "\x01",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\t",
    "\r",
    "\n",
    "\u00a0",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\uffff",
    "\u0301",
    "İ",
    "ß",
    "ﬁ",
    "<",
    ">",
    "&",
    "`",
    "*",
    "_",
    "~",
    "|",
    "\\",
    '"',
    "'",
    "“",
    "…",
    "😀",
    "👩🏽‍🚀",
    "🏳️‍🌈",
    "\U0001d518",  # MATHEMATICAL FRAKTUR CAPITAL U
)

# Strings people paste into Slack or that GitLab could send (surrogates excluded: neither
# Slack nor JSON in UTF-8 can carry a lone surrogate).
odd_text = st.lists(
    st.one_of(st.sampled_from(ODD_PIECES), st.characters(codec="utf-8")), max_size=40
).map("".join)
huge_text = st.builds(
    lambda piece, size: (piece * (size // len(piece) + 1))[:size],
    st.lists(st.sampled_from((*ODD_PIECES, "a", " ")), min_size=1, max_size=3).map("".join),
    st.sampled_from([HUGE, 4097, 3001, 501]),
)
any_text = st.one_of(odd_text, odd_text, odd_text, huge_text)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)

# Values GitLab fields could hold in a broken or hostile payload: timestamps at the edges of
# what datetime can hold, URLs that the standard library refuses, numbers past int64.
NASTY_VALUES: tuple[Any, ...] = (
    None,
    "",
    " ",
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    -0.0,
    True,
    [],
    {},
    [None],
    {"": None},
    "null",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01 00:00:00 +1400",
    "9999-12-31 23:59:59 -1200",
    "2016-08-12 15:23:28 UTC",
    "2021-02-23T02:41:37.886Z",
    "2021-02-30 10:00:00 UTC",
    "24:00",
    "1e999",
    "http://[abc",
    "http://[::1",
    "https://[v1.x]/path",
    "//[",
    "ftp://a@b@c:99999999/",
    "\x00",
    "\u202egnp.exe",
    "<!channel>",
    "<@U123|x>",
    "&amp;",
    "a" * HUGE,
    "😀" * 1000,
    "success",
    "failed",
    "running",
    "manual",
    "refs/heads/main",
    "refs/tags/v1",
    "platform/deployments",
    "shop/orders",
)
nasty_values = st.one_of(st.sampled_from(NASTY_VALUES), json_values, any_text)

EDGE_TIMESTAMPS = (
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01 00:00:00 +1400",
    "9999-12-31 23:59:59 -1200",
    "0001-01-01 00:00:00 UTC",
    "9999-12-31 23:59:59 UTC",
    "2021-02-30 10:00:00 UTC",
    "2016-08-12 15:23:28 UTC",
    "2016-08-12T15:23:28",
    "2016-08-12",
    "1e10",
    "",
    0,
    -1,
    1e20,
)
EDGE_URLS = ("http://[abc", "http://[::1", "//[", "https://[v1.x]/p", "http://", "", "/")
"""Mostly URLs that ``urllib.parse.urlsplit`` refuses with ``ValueError``."""


def _edge_values(key: str | int) -> st.SearchStrategy[Any]:
    """Values worst for the field named ``key``: what its type's parser finds hardest."""
    name = str(key)
    if name.endswith(("_at", "_at_iso")) or name in ("timestamp", "created", "finished"):
        return st.sampled_from(EDGE_TIMESTAMPS)
    if name in ("url", "web_url", "homepage"):  # the URLs the payload models read
        return st.sampled_from(EDGE_URLS)
    return nasty_values


def paths_of(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path into a JSON value, the value itself (``()``) included."""
    found: list[tuple[str | int, ...]] = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


def _mutate_at(document: Any, path: tuple[str | int, ...], change: Callable[[Any], Any]) -> Any:
    if not path:
        return change(document)
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        copy = dict(document)
        copy[head] = _mutate_at(copy[head], rest, change)
        return copy
    copy_list = list(document)
    copy_list[head] = _mutate_at(copy_list[head], rest, change)  # type: ignore[index]
    return copy_list


def _always(value: Any) -> Callable[[Any], Any]:
    return lambda _: value


_DROP = object()


def _dropped(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if v is not _DROP}
    if isinstance(document, list):
        return [v for v in document if v is not _DROP]
    return document


@st.composite
def mutated(draw: st.DrawFn, document: Any, *, max_changes: int = 4) -> Any:
    """``document`` with a few changes: keys dropped, values nulled, of the wrong type, huge,
    odd unicode, or GitLab's own edge cases."""
    for _ in range(draw(st.integers(min_value=1, max_value=max_changes))):
        path = draw(st.sampled_from(paths_of(document)))
        action = draw(st.sampled_from(["drop", "null", "nasty", "edge", "edge", "wrap", "empty"]))
        if action == "drop" and path:
            parent = path[:-1]
            document = _mutate_at(document, path, lambda _: _DROP)
            document = _mutate_at(document, parent, _dropped)
        elif action == "null":
            document = _mutate_at(document, path, lambda _: None)
        elif action == "wrap":
            document = _mutate_at(document, path, lambda value: [value])
        elif action == "empty":
            document = _mutate_at(document, path, lambda value: type(value)())
        elif action == "edge" and path:
            replacement = draw(_edge_values(path[-1]))
            document = _mutate_at(document, path, _always(replacement))
        else:
            replacement = draw(nasty_values)
            document = _mutate_at(document, path, _always(replacement))
    return document


@st.composite
def edge_mutated(draw: st.DrawFn, document: Any, *, drop: tuple[str, ...] = ()) -> Any:
    """``document`` with a few of its typed fields (timestamps, URLs) at their worst values,
    and maybe some of the keys in ``drop`` gone: the fallbacks are where the edge cases hide."""
    typed = [
        path for path in paths_of(document) if path and _edge_values(path[-1]) is not nasty_values
    ]
    for path in draw(st.lists(st.sampled_from(typed), min_size=1, max_size=3, unique=True)):
        replacement = draw(_edge_values(path[-1]))
        document = _mutate_at(document, path, _always(replacement))
    gone = {key for key in drop if draw(st.booleans())}
    return {k: v for k, v in document.items() if k not in gone}


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()
