"""The weekly digest's chart: deployments per day as bars, the median lead time as a line.

Drawn with matplotlib's object-oriented API on an Agg canvas (``Figure``, never ``pyplot``:
no global state, no display, safe in a worker thread), off the event loop: a chart takes tens
of milliseconds, which the loop must not wait for. Any failure to draw is a ``ChartFailed``,
so the digest goes on with its figures as text.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from datetime import tzinfo
from typing import Final

from bot.domain.dora import Day
from bot.domain.errors import PitcrewError

WIDTH: Final = 8.0
HEIGHT: Final = 4.0
DPI: Final = 100
BARS: Final = "#2563eb"
LINE: Final = "#ea580c"


class ChartFailed(PitcrewError):
    """The chart could not be drawn."""


class DoraCharts:
    async def weekly(self, *, title: str, days: Sequence[Day], zone: tzinfo) -> bytes:
        try:
            return await asyncio.to_thread(draw_weekly, title=title, days=days)
        except PitcrewError:
            raise
        except Exception as exc:  # matplotlib raises many kinds; the digest needs one
            raise ChartFailed(f"the chart could not be drawn: {type(exc).__name__}") from exc


def draw_weekly(*, title: str, days: Sequence[Day]) -> bytes:
    """The PNG bytes of the chart of ``days``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    bars = figure.add_subplot()
    labels = [f"{d.day:%a %d}" for d in days]
    positions = list(range(len(days)))
    counts = [d.deployments for d in days]
    bars.bar(positions, counts, color=BARS, label="deployments")
    bars.set_xticks(positions, labels)
    bars.set_ylabel("deployments", color=BARS)
    bars.set_ylim(0, max([*counts, 1]) * 1.25)
    bars.yaxis.set_major_locator(MaxNLocator(integer=True))
    for position, count in zip(positions, counts, strict=True):
        if count:
            bars.annotate(str(count), (position, count), ha="center", va="bottom", fontsize=9)
    lead = bars.twinx()
    seconds = [d.lead_median for d in days]
    longest = max((s for s in seconds if s is not None), default=0.0)
    unit, per = ("days", 86400.0) if longest > 2 * 86400 else ("hours", 3600.0)
    shown = [(p, s / per) for p, s in zip(positions, seconds, strict=True) if s is not None]
    if shown:
        xs, ys = zip(*shown, strict=True)
        lead.plot(xs, ys, color=LINE, marker="o")
        lead.set_ylim(0, max(ys) * 1.25 or 1)
    else:
        lead.set_ylim(0, 1)
    lead.set_ylabel(f"median lead time ({unit})", color=LINE)
    bars.set_title(title, fontsize=11)
    for side in ("top",):
        bars.spines[side].set_visible(False)
        lead.spines[side].set_visible(False)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
