"""``/dora`` answers and the weekly digest: four figures a person reads in ten seconds.

One line per figure — the figure, its DORA band, and how it moved since the period before —
then the apps that weigh most on each, so that the next question ("why is our lead time
low?") has its first answer in the same message::

    :bar_chart: *payments* in *production* · last 30 days
    *Deployments* 42 · 1.4 a day · :large_green_circle: elite · ↑ from 30
    *Lead time* median 2.1 h · p90 1.2 d · :large_green_circle: elite · ↓ from 3.1 h
    *Change failure rate* 9.5 % · 4 of 42 changes · :large_blue_circle: high · ↑ from 5 %
    *Time to restore* median 35 min · 4 restored · :large_green_circle: elite · none before

Versions come from git and clusters, names from the catalog: everything goes through
``plain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    Rendered,
    clip,
    mention,
    plain,
    render_command_error,
    section,
    slack_date,
)
from bot.domain.catalog import Team
from bot.domain.dora import (
    Band,
    Day,
    Deployment,
    DoraQuery,
    Figures,
    Report,
    Weighing,
    median,
    utc,
)
from bot.domain.errors import CommandError

__all__ = ["BAND_EMOJI", "SHARE", "DoraBlocks", "duration"]

SHARE: Final = "dora_share"
"""The "Share in channel" button of a ``/dora`` answer; its value is the id of the question."""
EMOJI: Final = ":bar_chart:"
BAND_EMOJI: Final[dict[Band, str]] = {
    "elite": ":large_green_circle:",
    "high": ":large_blue_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":red_circle:",
}
KIND_EMOJI: Final = {
    "deploy": ":rocket:",
    "promotion": ":arrow_double_up:",
    "rollback": ":rewind:",
    "autopilot": ":robot_face:",
    "outside": ":wrench:",
}
MAX_WEEK_LINES: Final = 15
_MAX_VERSION: Final = 40
_SEP: Final = " · "


def duration(seconds: float) -> str:
    """``45 s``, ``35 min``, ``5.2 h``, ``3.4 d``: as precise as a person needs."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _percent(rate: float) -> str:
    shown = f"{rate * 100:.1f}".removesuffix(".0")
    return f"{shown} %"


def _band(band: Band | None) -> str:
    return f"{BAND_EMOJI[band]} {band}" if band is not None else "no band yet"


def _moved(now: float | None, before: float | None, shown: str | None) -> str:
    if now is None:
        return ""
    if before is None or shown is None:
        return "none before"
    if abs(now - before) < 1e-9:
        return "same as before"
    return f"{'↑' if now > before else '↓'} from {shown}"


def _line(title: str, parts: Sequence[str]) -> str:
    return f"*{title}* " + _SEP.join(p for p in parts if p)


def figure_lines(report: Report) -> list[str]:
    now, before = report.current, report.previous
    lines = [
        _line(
            "Deployments",
            [
                str(now.deployments),
                f"{now.per_day:.1f} a day",
                _band(now.band("deployments")),
                _moved(float(now.deployments), float(before.deployments), str(before.deployments)),
            ],
        )
    ]
    if now.lead_median is None or now.lead_p90 is None:
        lead = ["no commit deployed"]
    else:
        lead = [
            f"median {duration(now.lead_median)}",
            f"p90 {duration(now.lead_p90)}",
            _band(now.band("lead_time")),
            _moved(
                now.lead_median,
                before.lead_median,
                duration(before.lead_median) if before.lead_median is not None else None,
            ),
        ]
    lines.append(_line("Lead time", lead))
    rate = now.failure_rate
    if rate is None:
        failures = ["no change"]
    else:
        failures = [
            _percent(rate),
            f"{now.failed_changes} of {now.changes} change{'s' if now.changes != 1 else ''}",
            _band(now.band("failure_rate")),
            _moved(
                rate,
                before.failure_rate,
                _percent(before.failure_rate) if before.failure_rate is not None else None,
            ),
        ]
    lines.append(_line("Change failure rate", failures))
    if now.restore_median is None:
        restore = ["nothing to restore" if not now.unrestored else "none restored yet"]
    else:
        restore = [
            f"median {duration(now.restore_median)}",
            f"{now.restored} restored",
            _band(now.band("restore")),
            _moved(
                now.restore_median,
                before.restore_median,
                duration(before.restore_median) if before.restore_median is not None else None,
            ),
        ]
    if now.unrestored:
        restore.append(f":warning: {now.unrestored} still failing")
    lines.append(_line("Time to restore", restore))
    return lines


def weighing_lines(weighing: Weighing) -> list[str]:
    lines = []
    if weighing.deployments:
        lines.append(
            "• most deployments: " + ", ".join(f"{_app(a)} {n}" for a, n in weighing.deployments)
        )
    if weighing.lead_time:
        lines.append(
            "• slowest lead time: "
            + ", ".join(f"{_app(a)} {duration(s)}" for a, s in weighing.lead_time)
        )
    if weighing.failure_rate:
        lines.append(
            "• most failed changes: "
            + ", ".join(f"{_app(a)} {f} of {c}" for a, f, c in weighing.failure_rate)
        )
    if weighing.restore:
        lines.append(
            "• longest to restore: "
            + ", ".join(f"{_app(a)} {duration(s)}" for a, s in weighing.restore)
        )
    return lines


def _app(name: str) -> str:
    return f"*{plain(name, MAX_NAME)}*"


def _version(text: str | None) -> str:
    return "`" + plain(text or "?", _MAX_VERSION).replace("`", "'") + "`"


def _period(figures: Figures) -> str:
    return f"{slack_date(utc(figures.start))} → {slack_date(utc(figures.end))}"


class DoraBlocks:
    """The ``DoraViews`` port."""

    def report(
        self,
        query: DoraQuery,
        report: Report,
        *,
        share: str | None = None,
        shared_by: str | None = None,
        asked: str = "",
    ) -> Rendered:
        subject = "all apps" if query.kind == "all" else query.subject
        header = (
            f"{EMOJI} *{plain(subject, MAX_NAME)}* in *{plain(query.env, MAX_NAME)}*"
            f"{_SEP}last {query.days} days"
        )
        body = "\n".join([header, *figure_lines(report)])
        blocks: list[dict[str, Any]] = [section(clip(body, MAX_SECTION))]
        weighing = weighing_lines(report.weighing)
        if weighing and query.kind != "app":
            blocks.append(section(clip("*Weighing most*\n" + "\n".join(weighing), MAX_SECTION)))
        blocks.append(_context(_period(report.current) + _SEP + "bands: DORA 2023"))
        if shared_by is not None:
            command = plain(f"/dora {' '.join(asked.split())}".strip(), 200).replace("`", "'")
            blocks.append(_context(f"Shared by {mention(shared_by)}{_SEP}`{command}`"))
        elif share is not None:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": "dora",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": SHARE,
                            "text": {"type": "plain_text", "text": "Share in channel"},
                            "value": share,
                        }
                    ],
                }
            )
        text = f"DORA: {subject} in {query.env}, last {query.days} days"
        return Rendered(text=plain(text, 300), blocks=blocks)

    def error(self, error: CommandError) -> Rendered:
        return render_command_error(error)

    def digest(
        self,
        team: Team,
        report: Report,
        *,
        env: str,
        week: Sequence[Deployment],
        start: datetime,
        end: datetime,
    ) -> Rendered:
        name = plain(team.name, MAX_NAME)
        header = (
            f"{EMOJI} *Weekly delivery digest of {name}* in *{plain(env, MAX_NAME)}*"
            f"{_SEP}{slack_date(start)} → {slack_date(end)}"
        )
        blocks: list[dict[str, Any]] = [
            section(clip("\n".join([header, *figure_lines(report)]), MAX_SECTION))
        ]
        weighing = weighing_lines(report.weighing)
        if weighing:
            blocks.append(section(clip("*Weighing most*\n" + "\n".join(weighing), MAX_SECTION)))
        blocks.append(section(clip(_week(week), MAX_SECTION)))
        blocks.append(
            _context(
                f"The chart is in the thread{_SEP}`/dora {name} 30d` for the month{_SEP}"
                "bands: DORA 2023"
            )
        )
        text = f"Weekly delivery digest of {team.name}: {report.current.deployments} deployments"
        return Rendered(text=plain(text, 300), blocks=blocks)

    def chart_in_text(self, days: Sequence[Day], *, reason: str) -> Rendered:
        rows = []
        for day in days:
            lead = (
                f"{_SEP}lead time {duration(day.lead_median)}"
                if day.lead_median is not None
                else ""
            )
            rows.append(f"`{day.day:%a %d %b}` {day.deployments}{lead}")
        leads = [d.lead_median for d in days if d.lead_median is not None]
        week_lead = median(leads)
        text = (
            f":warning: The chart could not be uploaded ({plain(reason, 200)}): here are its"
            " figures.\n*Deployments per day*\n"
            + "\n".join(rows)
            + (f"\nMedian of the days' lead times: {duration(week_lead)}" if week_lead else "")
        )
        return Rendered(text="The digest's chart, as text", blocks=[section(clip(text, 3000))])

    def chart_title(self, team: Team, *, env: str, start: datetime, end: datetime) -> str:
        return f"{team.name} in {env}, {start:%d %b} to {end:%d %b %Y}"


def _week(week: Sequence[Deployment]) -> str:
    if not week:
        return "*This week*: nothing deployed."
    deployed = sum(d.deployed is not None for d in week)
    lines = [f"*This week*: {deployed} deployed, {len(week) - deployed} failed without recovery"]
    for d in week[:MAX_WEEK_LINES]:
        moved = (
            f"{_version(d.previous)} → {_version(d.version)}" if d.previous else _version(d.version)
        )
        if d.deployed is None:
            outcome = ":x: failed"
        elif d.failed is not None:
            outcome = ":warning: failed, then recovered"
        else:
            outcome = ":white_check_mark:"
        lines.append(
            f"{KIND_EMOJI[d.kind]} {_app(d.app)} {moved}{_SEP}{d.kind}{_SEP}{outcome}"
            f"{_SEP}{slack_date(utc(d.landed))}"
        )
    if len(week) > MAX_WEEK_LINES:
        lines.append(f"… and {len(week) - MAX_WEEK_LINES} more")
    return "\n".join(lines)


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
