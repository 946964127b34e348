"""Slash-command text: any text is a request or a ``CommandError`` whose problem and usage are
short single lines quoting the user clipped, and whose rendering can never ping anyone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.adapters.slack.blocks.common import render_command_error
from bot.domain.catalog import parse_catalog
from bot.domain.errors import CommandError
from bot.domain.images import is_tag
from bot.domain.inventory import Query, QueryError, parse_whatsinprod
from bot.domain.locks import (
    MAX_LOCK,
    MAX_REASON,
    ListLocks,
    LockHelp,
    SetLock,
    parse_lock,
    parse_unlock,
)
from bot.domain.releases import (
    DeployRequest,
    PromoteRequest,
    ReleaseCommandError,
    ReleaseHelp,
    RollbackRequest,
    parse_deploy,
    parse_rollback,
)

from .strategies import HUGE, any_text, odd_text

# A failing example may hold 100 kB strings: show it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

EXAMPLE_CATALOG = Path(__file__).parents[2] / "bot" / "sandbox" / "example_catalog.yaml"
CATALOG = parse_catalog(EXAMPLE_CATALOG.read_text(), source="example_catalog.yaml")
MAX_MESSAGE = 500
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The words of every grammar, and the words around them that trip parsers up.
WORDS = (
    *CATALOG.app_names,
    *CATALOG.env_names,
    *CATALOG.team_names,
    "ORDERS",
    "Production",
    "prod",
    "ordrs",
    "all",
    "in",
    "to",
    "TO",
    "from",
    "for",
    "until",
    "further",
    "notice",
    "help",
    "--help",
    "-h",
    "?",
    "list",
    "ls",
    "today",
    "tomorrow",
    "mon",
    "Sunday",
    "thurs",
    "noon",
    "midnight",
    "am",
    "pm",
    "18:00",
    "6pm",
    "6:30",
    "18h30",
    "0h",
    "24:00",
    "23:60",
    "13pm",
    "0am",
    "99:99",
    "2025-11-24",
    "2025-02-30",
    "0001-01-01",
    "9999-12-31",
    "0000-00-00",
    "30m",
    "2h",
    "1h30m",
    "30m1h",
    "1.5h",
    "0.4m",
    "1d",
    "1w",
    "31d",
    "5w",
    "99999999999999999999w",
    "9" * 400 + "m",
    "90",
    "minutes",
    "hours",
    "weeks",
    "3",
    "0",
    "1.2.3",
    "v1.4.2",
    "1.10",
    "_x",
    ".hidden",
    "-rc1",
    "a" * 128,
    "a" * 129,
    "1.2.3/../x",
    "$(reboot)",
    "<!channel>",
    "<!here|here>",
    "<@U0123ABCD>",
    "<#C0123|general>",
    "<https://evil.example|click>",
    "&lt;",
    "&",
    "*bold*",
    "`code`",
    "“quoted”",
    "x" * HUGE,
)
SPACES = ("\t", "\n", "\r\n", "\x00", "\x1f", "\x85", "\u00a0", "\u2028", "\u3000", "  ")


@st.composite
def command_texts(draw: st.DrawFn) -> str:
    """Words of the grammars in any order, joined by any whitespace or control character,
    sometimes with odd text around; or just any text."""
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        return draw(any_text)
    words = draw(st.lists(st.one_of(st.sampled_from(WORDS), odd_text), max_size=7))
    text = ""
    for word in words:
        text += draw(st.sampled_from((" ", " ", *SPACES))) + word
    return text


def _phrase(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map(lambda words: " ".join(w for w in words if w))


apps = st.one_of(st.sampled_from(CATALOG.app_names), st.sampled_from(WORDS))
envs = st.one_of(st.sampled_from(CATALOG.env_names), st.sampled_from(WORDS))
versions = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True), st.sampled_from(WORDS)
)
# Commands that follow the grammar closely, so that the deep paths (a promotion, a rollback to
# a version, an expiry at a date) get reached as often as the early refusals.
deploy_texts = st.one_of(
    _phrase(apps, versions, st.just("to"), envs),
    _phrase(apps, st.just("from"), envs, st.just("to"), envs, st.sampled_from(["", "now"])),
    _phrase(apps, envs, st.sampled_from(["", "to", "TO", "at"]), versions, odd_text),
    command_texts(),
)
durations = st.one_of(
    st.sampled_from(["30m", "2h", "1h30m", "1.5h", "90 minutes", "2 h 30 m", "1 week", "0.4m"]),
    st.sampled_from(["31d", "30d", "4w 2d", "99999999999999999999w", "1m", "2fa", "3"]),
    st.tuples(st.floats(min_value=0, max_value=1e6), st.sampled_from(["m", "h", "d", "w"])).map(
        lambda p: f"{p[0]:.3f}".rstrip("0").rstrip(".") + p[1]
    ),
)
days = st.one_of(
    st.sampled_from(["", "today", "tomorrow", "mon", "Sunday", "thurs", "2025-02-30"]),
    st.sampled_from(["9999-12-31", "0001-01-01"]),  # the calendar's edges, in any time zone
    st.dates().map(lambda d: d.isoformat()),
)
clocks = st.one_of(
    st.sampled_from(["23:00", "6pm", "6:30 pm", "18h30", "noon", "midnight", "24:00", "13pm"]),
    st.sampled_from(["00:00", "0am", "12am", "12 pm", "2:30", "02:30", "1:30", "xx", ""]),
    st.times().map(lambda t: f"{t.hour}:{t.minute:02d}"),
)
expiries = st.one_of(
    _phrase(st.just("until"), days, clocks),
    _phrase(st.just("for"), durations),
    durations,
    st.sampled_from(["", "until further notice"]),
)
reasons = st.lists(st.one_of(st.sampled_from(WORDS), odd_text), max_size=4).map(" ".join)
lock_texts = st.one_of(
    _phrase(envs, expiries, reasons),
    _phrase(envs, reasons, expiries),
    command_texts(),
)


def check_error(error: CommandError) -> None:
    """Short, one line each, and harmless once rendered for Slack."""
    assert isinstance(error.usage, str)
    assert error.usage.startswith("Usage: ")
    for part in (error.problem, error.usage):
        if part is None:
            continue
        assert part.strip()
        assert len(part) < MAX_MESSAGE, f"{len(part)} characters: {part[:80]}…"
        assert not any(ch in part for ch in "\n\r\x00\x85\u2028\u2029"), part
    rendered = render_command_error(error)
    assert rendered.blocks[0]["text"]["text"] == rendered.text
    # No "<" or ">" at all: neither <!channel> nor <@U…> nor a link can be formed.
    assert "<" not in rendered.text
    assert ">" not in rendered.text
    assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", rendered.text)


@SETTINGS
@given(deploy_texts)
def test_deploy(text: str) -> None:
    try:
        request = parse_deploy(text, catalog=CATALOG)
    except ReleaseCommandError as exc:
        error = exc
    else:
        if isinstance(request, DeployRequest):
            assert request.app in CATALOG.app_names
            assert request.env in CATALOG.env_names
            assert is_tag(request.version)
        elif isinstance(request, PromoteRequest):
            order = CATALOG.env_names
            assert order.index(request.source_env) < order.index(request.env)
        else:
            assert isinstance(request, ReleaseHelp)
        return
    check_error(error)


@SETTINGS
@given(deploy_texts)
def test_rollback(text: str) -> None:
    try:
        request = parse_rollback(text, catalog=CATALOG)
    except ReleaseCommandError as exc:
        error = exc
    else:
        if isinstance(request, RollbackRequest):
            assert request.app in CATALOG.app_names
            assert request.env in CATALOG.env_names
            assert request.version is None or is_tag(request.version)
        else:
            assert isinstance(request, ReleaseHelp)
        return
    check_error(error)


@SETTINGS
@given(command_texts())
def test_whatsinprod(text: str) -> None:
    try:
        query = parse_whatsinprod(text, catalog=CATALOG)
    except QueryError as exc:
        error = exc
    else:
        assert isinstance(query, Query)
        assert set(query.apps) <= set(CATALOG.app_names)
        assert set(query.envs) <= set(CATALOG.env_names)
        assert query.envs
        return
    check_error(error)
    assert len(error.suggestions) <= 3


ZONES = (
    "America/New_York",
    "Asia/Tokyo",
    "Europe/Paris",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "UTC",
)
NOT_ZONES = (None, "", "Not/AZone", "../../etc/passwd", "Europe/Paris\x00", "x" * 300)
# Mostly real zones, ahead of and behind UTC, where the arithmetic is.
time_zones = st.integers(min_value=0, max_value=4).flatmap(
    lambda n: st.sampled_from(ZONES) if n else st.one_of(st.sampled_from(NOT_ZONES), st.text())
)
# Around DST changes in Paris and New York, a year's edges, and any moment this century.
nows = st.one_of(
    st.sampled_from(
        [
            datetime(2025, 3, 30, 0, 30, tzinfo=UTC),
            datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
            datetime(2025, 3, 9, 6, 30, tzinfo=UTC),
            datetime(2025, 11, 2, 5, 30, tzinfo=UTC),
            datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2028, 2, 29, 12, tzinfo=UTC),
        ]
    ),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ),
)


# Found by this test: a date at the edge of the calendar in a zone behind or ahead of UTC used
# to escape as OverflowError (now read as passed, or too far, like any other date).
@example(text="production until 9999-12-31 23:00", now=datetime(2025, 1, 1, tzinfo=UTC),
         tz="America/New_York")  # fmt: skip
@example(text="production until 0001-01-01 00:00", now=datetime(2025, 1, 1, tzinfo=UTC),
         tz="Asia/Tokyo")  # fmt: skip
@SETTINGS
@given(
    text=lock_texts,
    now=nows,
    tz=time_zones,
)
def test_lock(text: str, now: datetime, tz: str | None) -> None:
    try:
        request = parse_lock(text, now=now, tz=tz)
    except CommandError as exc:
        error = exc
    else:
        if isinstance(request, SetLock):
            assert request.env
            assert request.env == request.env.lower()
            assert not any(ch.isspace() for ch in request.env)
            assert len(request.reason) <= MAX_REASON
            assert request.expires_at is None or now < request.expires_at <= now + MAX_LOCK
        else:
            assert isinstance(request, ListLocks | LockHelp)
        return
    check_error(error)


@SETTINGS
@given(command_texts())
def test_unlock(text: str) -> None:
    try:
        env = parse_unlock(text)
    except CommandError as exc:
        error = exc
    else:
        assert env
        assert env == env.lower()
        assert not any(ch.isspace() for ch in env)
        return
    check_error(error)


def test_a_lock_of_the_longest_duration_is_allowed() -> None:
    """The bound used above is the one the grammar uses (not an off-by-one of this test)."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    request = parse_lock("production for 30d", now=now, tz=None)
    assert isinstance(request, SetLock)
    assert request.expires_at == now + timedelta(days=30)
