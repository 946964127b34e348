"""``/dora`` answers, the weekly digest and its chart: exact output, hostile text, a real PNG;
and the records' compact lines, encoded and decoded."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from matplotlib.image import imread

from bot.adapters.charts.dora import draw_weekly
from bot.adapters.slack.blocks.dora import DoraBlocks, duration
from bot.adapters.store.dora import decode, encode, months
from bot.domain.catalog import Team
from bot.domain.dora import DAY, Day, Deployment, DoraQuery, DoraQueryError, report
from tests.unit.adapters.hostile import HOSTILE, assert_inert

NOW = datetime(2026, 3, 26, 10, 0, tzinfo=UTC)
END = NOW.timestamp()
HOUR = 3600.0


def record(ident: str, *, app: str = "orders", version: str = "2", **changes: object) -> Deployment:
    base = Deployment(
        ident,
        app,
        "production",
        "deploy",
        version,
        "1",
        END - 2 * DAY,
        END - DAY,
        None,
        (END - DAY - 5 * HOUR,),
    )
    return base._replace(**changes)


def histories(*records: Deployment) -> dict[tuple[str, str], list[Deployment]]:
    found: dict[tuple[str, str], list[Deployment]] = {}
    for r in records:
        found.setdefault((r.app, r.env), []).append(r)
    return found


QUERY = DoraQuery(
    kind="team", subject="payments", apps=("orders", "invoices"), env="production", days=7
)


def texts(rendered: object) -> list[str]:
    return [
        b["text"]["text"] if "text" in b else b["elements"][0].get("text", "")
        for b in rendered[1]  # type: ignore[index]
    ]


def test_a_report_reads_as_four_lines_with_bands_and_the_move_since_before() -> None:
    week = report(
        histories(
            record("a", deployed=END - DAY),
            record("b", version="3", deployed=None, failed=END - 10 * HOUR),
            record("c", version="4", deployed=END - 8 * HOUR),
            record("p", deployed=END - 8 * DAY, commits=(END - 9 * DAY,)),
        ),
        start=END - 7 * DAY,
        end=END,
    )
    text, blocks = DoraBlocks().report(QUERY, week, share="0123456789ab")
    assert text == "DORA: payments in production, last 7 days"
    assert blocks[0]["text"]["text"] == (
        ":bar_chart: *payments* in *production* · last 7 days\n"
        "*Deployments* 2 · 0.3 a day · :large_blue_circle: high · ↑ from 1\n"
        "*Lead time* median 13.0 h · p90 19.4 h · :large_green_circle: elite · ↓ from 24.0 h\n"
        "*Change failure rate* 33.3 % · 1 of 3 changes · :red_circle: low · ↑ from 0 %\n"
        "*Time to restore* median 2.0 h · 1 restored · :large_blue_circle: high · none before"
    )
    assert blocks[1]["text"]["text"] == (
        "*Weighing most*\n"
        "• most deployments: *orders* 2\n"
        "• slowest lead time: *orders* 13.0 h\n"
        "• most failed changes: *orders* 1 of 3\n"
        "• longest to restore: *orders* 2.0 h"
    )
    assert blocks[2]["elements"][0]["text"].endswith(" · bands: DORA 2023")
    assert blocks[3]["elements"][0] == {
        "type": "button",
        "action_id": "dora_share",
        "text": {"type": "plain_text", "text": "Share in channel"},
        "value": "0123456789ab",
    }


def test_nothing_recorded_says_so_without_bands() -> None:
    empty = report({}, start=END - 7 * DAY, end=END)
    _, blocks = DoraBlocks().report(QUERY, empty, shared_by="U0BOB", asked="payments  7d")
    assert blocks[0]["text"]["text"].splitlines()[1:] == [
        "*Deployments* 0 · 0.0 a day · no band yet · same as before",
        "*Lead time* no commit deployed",
        "*Change failure rate* no change",
        "*Time to restore* nothing to restore",
    ]
    assert blocks[-1]["elements"][0]["text"] == "Shared by <@U0BOB> · `/dora payments 7d`"


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_versions_and_names_come_out_as_text(evil: str) -> None:
    hostile = record("h", app=evil, version=evil, previous=evil, deployed=END - HOUR)
    week = report(histories(hostile), start=END - 7 * DAY, end=END)
    query = DoraQuery(kind="app", subject=evil, apps=(evil,), env=evil, days=7)
    views = DoraBlocks()
    assert_inert(views.report(query, week, share="0123456789ab"))
    assert_inert(views.report(query, week, shared_by="U0BOB", asked=evil), mentions=("@U0BOB",))
    team = Team(name="payments", channel="#payments")
    start = NOW - timedelta(days=7)
    assert_inert(views.digest(team, week, env=evil, week=[hostile], start=start, end=NOW))
    days = [Day(day=start + timedelta(days=i), deployments=i, lead_median=None) for i in range(7)]
    assert_inert(views.chart_in_text(days, reason=evil))


def test_the_digest_lists_the_week_and_points_to_its_chart() -> None:
    week_records = [
        record("a", deployed=END - DAY),
        record("b", version="3", previous="2", deployed=None, failed=END - 10 * HOUR),
        record(
            "c", kind="rollback", version="2", previous="3", deployed=END - 9 * HOUR, commits=()
        ),
    ]
    week = report(histories(*week_records), start=END - 7 * DAY, end=END)
    team = Team(name="payments", channel="#payments")
    text, blocks = DoraBlocks().digest(
        team, week, env="production", week=week_records, start=NOW - timedelta(days=7), end=NOW
    )
    assert text == "Weekly delivery digest of payments: 2 deployments"
    listed = blocks[2]["text"]["text"].splitlines()
    assert listed[0] == "*This week*: 2 deployed, 1 failed without recovery"
    assert listed[1].startswith(
        ":rocket: *orders* `1` → `2` · deploy · :white_check_mark: · <!date^"
    )
    assert listed[2].startswith(":rocket: *orders* `2` → `3` · deploy · :x: failed · <!date^")
    assert listed[3].startswith(":rewind: *orders* `3` → `2` · rollback · :white_check_mark:")
    assert blocks[-1]["elements"][0]["text"] == (
        "The chart is in the thread · `/dora payments 30d` for the month · bands: DORA 2023"
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (4.4, "4 s"),
        (59, "59 s"),
        (60, "1 min"),
        (2099, "35 min"),
        (3600, "1.0 h"),
        (47 * HOUR, "47.0 h"),
        (48 * HOUR, "2.0 d"),
        (90 * DAY, "90.0 d"),
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_the_chart_is_a_png_of_eight_by_four_inches_at_100_dpi() -> None:
    start = NOW - timedelta(days=7)
    days = [
        Day(day=start + timedelta(days=i), deployments=i % 3, lead_median=i * 3 * DAY or None)
        for i in range(7)
    ]
    png = draw_weekly(title="payments in production", days=days)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert imread(io.BytesIO(png), format="png").shape[:2] == (400, 800)
    quiet = draw_weekly(
        title="nothing",
        days=[d.__class__(day=d.day, deployments=0, lead_median=None) for d in days],
    )
    assert imread(io.BytesIO(quiet), format="png").shape[:2] == (400, 800)


# --------------------------------------------------------------------------------------------
# The records' lines


def test_a_record_survives_its_line_to_the_second() -> None:
    original = record("abc", requested=END - 600.4, deployed=END + 0.4)
    event, line, at = encode(original)
    assert event == "abc:y"
    assert line == f"abc dy {round(END)} 2 1 600 {round(END) - round(END - DAY - 5 * HOUR)}\n"
    assert at == END + 0.4
    found: dict[str, Deployment] = {}
    decode("orders", "production", line, found)
    assert found["abc"] == original._replace(
        requested=END - 600, deployed=END, commits=(END - DAY - 5 * HOUR,)
    )


def test_events_of_one_record_fold_and_bad_lines_are_skipped() -> None:
    failed = record("r", deployed=None, failed=END - HOUR)
    recovered = record("r", deployed=END)
    text = encode(failed)[1] + "garbage line\n" + "x zz 1 2 3 4 5\n" + encode(recovered)[1]
    found: dict[str, Deployment] = {}
    decode("orders", "production", text, found)
    assert list(found) == ["r"]
    assert (found["r"].failed, found["r"].deployed) == (END - HOUR, END)


def test_a_record_that_neither_deployed_nor_failed_is_not_written() -> None:
    with pytest.raises(ValueError, match="nothing to record"):
        encode(record("n", deployed=None))


def test_the_months_a_period_touches() -> None:
    assert months(datetime(2025, 11, 30, tzinfo=UTC).timestamp(), END) == [
        "202511",
        "202512",
        "202601",
        "202602",
        "202603",
    ]


def test_a_query_typed_wrong_is_answered_with_the_usage() -> None:
    text, _ = DoraBlocks().error(DoraQueryError("one period at a time, not 7d and 30d"))
    assert text.startswith(":warning: one period at a time, not 7d and 30d\nUsage: `/dora ")
