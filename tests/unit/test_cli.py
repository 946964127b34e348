"""The ``pitcrew check`` table reads at a glance."""

from __future__ import annotations

from bot.cli import CheckResult, format_checks


def test_the_check_table_aligns_and_sums_up() -> None:
    table = format_checks(
        [
            CheckResult("settings", True, "all required settings present"),
            CheckResult("kubernetes production", False, "context prod: API server unreachable"),
        ]
    )
    assert table == (
        "ok    settings               all required settings present\n"
        "FAIL  kubernetes production  context prod: API server unreachable\n"
        "1 check(s) failed"
    )
