"""Catalog files: any text is a catalog or a ``CatalogError`` naming file and line, never another
exception, and hostile YAML (alias bombs, deep nesting, control characters) is refused quickly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.domain.catalog import Catalog, CatalogError, parse_catalog

from .strategies import HUGE, odd_text

# A failing example may hold 100 kB strings: show it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

EXAMPLE = (Path(__file__).parents[2] / "bot" / "sandbox" / "example_catalog.yaml").read_text()
SOURCE = "catalog.yaml"
LINE_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML counts as a line break, so line numbers can be checked against the text."""
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_says_where(text: str) -> Catalog | CatalogError:
    try:
        return parse_catalog(text, source=SOURCE)
    except CatalogError as exc:
        error = exc
    assert error.problems, "an error names at least one problem"
    lines = len(LINE_BREAKS.split(text))
    for problem in error.problems:
        assert problem.source == SOURCE
        assert 1 <= problem.line <= lines + 1, (problem.line, lines)
        assert problem.message.strip()
        assert str(problem).startswith(f"{SOURCE}:{problem.line}: ")
    assert str(error) == "\n".join(str(p) for p in error.problems)
    return error


# --------------------------------------------------------------------------------------------
# Text that looks like YAML, or like the catalog

YAML_PIECES = (
    "teams",
    "environments",
    "apps",
    "x-defaults",
    "payments",
    "orders",
    "name",
    "policy",
    "auto",
    "manual",
    "approvals",
    "approvers",
    "self_approval",
    "channel",
    "oncall",
    "notify",
    "refs",
    "statuses",
    "sources",
    "team",
    "source",
    "image",
    "manifests",
    "namespace",
    "version_key",
    ":",
    ": ",
    "- ",
    "-",
    "? ",
    "#",
    " # comment",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: *a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!custom ",
    "|",
    "|-",
    ">",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    ",",
    "%YAML 1.1",
    "%TAG ! tag:x,2000:",
    "---",
    "...",
    "null",
    "~",
    "yes",
    "no",
    "0x1F",
    "1e3",
    "2001-12-14",
    "12:30:00",
    ".inf",
    "@payments-oncall",
    '"#payments-deploys"',
    "#payments-deploys",
    "shop/orders",
    "registry.example.com/shop/orders",
    '"apps/orders/{env}/deployment.yaml"',
    "\t",
    "\x00",
    "\x07",
    "\ufeff",
    "\u2028",
    "\x85",
    "\r",
    "😀",
)


@st.composite
def yaml_soup(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 4, 6, 1, 3]))
        pieces = draw(st.lists(st.sampled_from(YAML_PIECES), min_size=1, max_size=5))
        lines.append(indent + "".join(pieces))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


# Values worth putting where the example has a value: every YAML type, and the edge cases of
# the catalog's own fields.
VALUES = (
    "",
    "null",
    "~",
    "[]",
    "{}",
    "[a, b]",
    "{a: 1}",
    "yes",
    "true",
    "0",
    "-1",
    "1.5",
    "1e400",
    "0o17",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!str 12",
    "!!int x",
    "!!float 1",
    "!!timestamp 2001-12-14",
    "!custom x",
    "*nowhere",
    "&x 1",
    "|\n  block\n",
    ">-\n  folded\n",
    '"unterminated',
    "'it''s'",
    '"\\u0000"',
    '"\\x85"',
    '"#c"',
    "#c",
    "@sre",
    '"@sre"',
    "U0123ABCD",
    "S0123ABCD",
    "C0123ABCD",
    "orders",
    "Orders",
    "payments",
    "shop/orders",
    "https://gitlab.example.com/shop/orders.git",
    "registry.example.com/shop/orders:1.0",
    "registry.example.com/shop/orders@sha256:abc",
    '"apps/{env}/../x.yaml"',
    '"/abs/{env}.yaml"',
    '"apps/{env}/{app}.yaml"',
    '"apps/x.json"',
    "image.tag",
    "image..tag",
    "auto",
    "manual",
    "maual",
    "a" * 64,
    "x" * HUGE,
    '"' + "\u202e😀" * 50 + '"',
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """The example catalog, a few lines changed: removed, repeated, moved, re-indented, given
    another value, or with odd characters inserted."""
    lines = EXAMPLE.splitlines(keepends=True)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = draw(
            st.sampled_from(["drop", "repeat", "move", "indent", "value", "value", "odd"])
        )
        line = lines[at]
        if action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, line)
        elif action == "move":
            lines.insert(draw(st.integers(min_value=0, max_value=len(lines))), lines.pop(at))
        elif action == "indent":
            lines[at] = " " * draw(st.integers(min_value=0, max_value=8)) + line.lstrip(" ")
        elif action == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[at] = f"{key}: {draw(st.sampled_from(VALUES))}\n"
        else:
            column = draw(st.integers(min_value=0, max_value=len(line)))
            lines[at] = line[:column] + draw(odd_text) + line[column:]
        if not lines:
            break
    text = "".join(lines)
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


# Catalog-shaped data with random values, written by a real YAML emitter (PyYAML writes an
# anchor and aliases for a value used twice, so aliasing comes for free).
leaf = st.one_of(
    st.sampled_from(
        ["#payments-deploys", "@payments-oncall", "auto", "manual", "payments", "shop/orders"]
    ),
    st.sampled_from(["registry.example.com/shop/orders", "apps/orders/{env}/deployment.yaml"]),
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False),
    odd_text,
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
TEAM_KEYS = ("channel", "oncall", "notify", "name", "chanel")
ENV_KEYS = ("name", "policy", "approvals", "approvers", "self_approval", "channel", "polcy")
APP_KEYS = ("team", "source", "image", "manifests", "namespace", "version_key", "name", "tem")


def _entries(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


names = st.one_of(st.sampled_from(["payments", "search", "orders", "Orders", ""]), odd_text)


@st.composite
def shaped(draw: st.DrawFn) -> str:
    document: dict[str, Any] = {
        "teams": draw(st.one_of(st.dictionaries(names, _entries(TEAM_KEYS), max_size=3), values)),
        "environments": draw(st.one_of(st.lists(_entries(ENV_KEYS), max_size=3), values)),
        "apps": draw(st.one_of(st.dictionaries(names, _entries(APP_KEYS), max_size=3), values)),
    }
    for key in draw(st.sets(st.sampled_from([*document, "x-extra", "extra"]))):
        if key in document:
            del document[key]
        else:
            document[key] = draw(values)
    if draw(st.booleans()) and document:  # the same value under two keys: an anchor and alias
        shared = draw(values)
        for key in draw(st.lists(st.sampled_from(sorted(document)), min_size=2, max_size=2)):
            document[key] = shared
    flow = draw(st.sampled_from([False, None, True]))
    return yaml.safe_dump(document, default_flow_style=flow, allow_unicode=draw(st.booleans()))


@example("!!set ")
@SETTINGS
@given(st.one_of(yaml_soup(), st.text(max_size=200)))
def test_any_text(text: str) -> None:
    parses_or_says_where(text)


# Found by these tests, all raised from ruamel.yaml through parse_catalog: ReaderError,
# ReusedAnchorWarning (an error under pytest), ValueError (twice), KeyError, AttributeError.
@example("teams:\n  payments:\n    channel: \x01\n")
@example("x-a: &a 1\nx-b: &a 2\n" + EXAMPLE)
@example(EXAMPLE.replace('channel: "#search-deploys"', "channel: !!int x"))
@example(EXAMPLE.replace("team: search", "team: 2025-02-30"))
@example(EXAMPLE.replace("self_approval: false", "self_approval: !!bool nope"))
@SETTINGS
@given(mutated_examples())
def test_the_example_catalog_mutated(text: str) -> None:
    parses_or_says_where(text)


@SETTINGS
@given(shaped())
def test_catalog_shaped_data(text: str) -> None:
    parses_or_says_where(text)


# --------------------------------------------------------------------------------------------
# Hostile YAML, refused by design rather than by luck


def _bomb(levels: int, *, under: str) -> str:
    """A billion laughs: ``levels`` anchors, each ten aliases of the one before (10**levels
    values once expanded), used at ``under`` in the example catalog."""
    lines = ["x-l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return (
        "\n".join(lines) + "\n" + EXAMPLE.replace(under, f"{under.split(':')[0]}: *l{levels - 1}")
    )


@pytest.mark.parametrize(
    "under",
    [
        'oncall: "@payments-oncall"',
        'approvers: "@sre-oncall"',
        "version_key: image.tag",
        "policy: auto",
    ],
)
def test_a_billion_laughs_is_refused_without_being_expanded(under: str) -> None:
    """10**9 values if expanded: finishing at all shows they were not."""
    text = _bomb(9, under=under)
    assert under in EXAMPLE
    error = parses_or_says_where(text)
    assert isinstance(error, CatalogError)


def test_aliases_that_expand_a_little_are_still_read() -> None:
    """The bound is for bombs: a catalog sharing its settings through anchors is fine."""
    text = EXAMPLE.replace('oncall: "@payments-oncall"', 'oncall: &oncall "@payments-oncall"')
    text = text.replace('approvers: "@sre-oncall"', "approvers: *oncall")
    catalog = parse_catalog(text, source=SOURCE)
    assert catalog.environment("production").approvers == ("@payments-oncall",)


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 600 + "]" * 600,
        "{a: " * 400 + "1" + "}" * 400,
        "".join("  " * i + "-\n" for i in range(600)),
        "".join("  " * i + "a:\n" for i in range(600)),
    ],
    ids=["flow-sequence", "flow-mapping", "block-sequence", "block-mapping"],
)
@pytest.mark.parametrize("where", ["document", "teams"])
def test_deep_nesting_is_an_error_not_a_crash(nested: str, where: str) -> None:
    if where == "teams":
        indented = "\n".join("      " + line for line in nested.splitlines())
        text = EXAMPLE.replace('    oncall: "@payments-oncall"', "    oncall:\n" + indented)
    else:
        text = nested
    error = parses_or_says_where(text)
    assert isinstance(error, CatalogError)


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x1b", "\x7f", "\ufffe"])
def test_characters_yaml_forbids_are_named_with_their_line(character: str) -> None:
    text = EXAMPLE.replace("team: search", f"team: sea{character}rch")
    error = parses_or_says_where(text)
    assert isinstance(error, CatalogError)
    line = next(i for i, written in enumerate(EXAMPLE.splitlines(), 1) if "team: search" in written)
    assert [p.line for p in error.problems] == [line]
