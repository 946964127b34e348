"""``pitcrew check`` shows the next slot of every schedule, in the schedule's own zone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bot.cli import format_checks, schedule_checks
from bot.domain.catalog import parse_catalog

CATALOG = (Path(__file__).parents[1] / "fixtures" / "catalog_autopilot.yaml").read_text()


def test_each_schedule_with_its_next_slot() -> None:
    catalog = parse_catalog(CATALOG, source="catalog.yaml")
    table = format_checks(schedule_checks(catalog, now=datetime(2026, 3, 27, 12, tzinfo=UTC)))
    assert table.splitlines() == [
        "ok    promote production  from staging, next Mon 30 Mar 2026 09:00 CEST (Europe/Rome)",
        "ok    freeze production   weekend freeze for 63h, next Fri 27 Mar 2026 18:00 CET"
        " (Europe/Rome)",
        "ok    digest              team payments, next Mon 30 Mar 2026 09:00 UTC (UTC)",
        "all checks passed",
    ]
