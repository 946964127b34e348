"""Delivery insights: the four DORA metrics from the deployments Pitcrew saw end.

Pitcrew follows every release from the request to a healthy rollout, and watches the clusters for
rollouts no release explains, so it measures where delivery ends — the deploy into the cluster —
rather than at a merge or a CI job. What is recorded is a ``Deployment`` per app and env:

- a release that ended ``healthy`` or ``deployed`` (kind ``deploy``, ``promotion``, ``rollback``,
  or ``autopilot`` for what the autopilot opened);
- a release that reached the env's git (merged) and then ended ``failed`` or ``not_seen``, or was
  superseded by a rollback: a change that failed;
- a rollout of a new version of an app in a watched env that no release explains (``outside``):
  applied by hand or by another tool, succeeded or failed.

Each record says when it was asked for, when it deployed and/or when it failed, the version it
brought and the one it replaced, and the commit times of its changelog. A release that failed
and recovered later is one record with both times. The store folds the events of one id with
``merge``.

The figures, per env and period (``report``):

- **deployments**: records that deployed in the period, rollbacks and outside rollouts included;
- **lead time for changes**: for each commit of a deployed change's changelog, commit time →
  deployment; median and p90 over all those commits;
- **change failure rate**: changes (records that are not rollbacks) that failed, or were undone
  — a later rollback moved the env off their version (``undone_at``) — ÷ changes;
- **time to restore**: from a failure (a change's failure, or the request of the rollback that
  undid it) to the next deployment of that app and env; median over failures that began in the
  period and are restored.

Each figure gets its band from the thresholds of the 2023 Accelerate State of DevOps report
(``BANDS``, docs/insights.md says where each comes from). Times are Unix seconds (``float``):
a report over hundreds of apps and a quarter reads tens of thousands of records, and seconds
are what the arithmetic needs.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Literal, NamedTuple

from bot.domain.catalog import Catalog
from bot.domain.errors import CommandError
from bot.domain.releases import Release

__all__ = [
    "BANDS",
    "DORA_USAGE",
    "KINDS",
    "PERIODS",
    "Band",
    "Day",
    "Deployment",
    "DoraQuery",
    "DoraQueryError",
    "Figures",
    "Kind",
    "Report",
    "Weighing",
    "band_of",
    "daily",
    "deployment_kind",
    "failure_starts",
    "from_release",
    "from_rollout",
    "median",
    "merge",
    "parse_dora",
    "percentile",
    "report",
    "restores_by",
    "undone_by",
    "unrecorded",
]

DAY: Final = 86400.0
WEEK: Final = 7 * DAY
KEEP: Final = timedelta(days=400)
"""How long records are kept: a year and a quarter, so a year can be compared with the last."""

Kind = Literal["deploy", "promotion", "rollback", "autopilot", "outside"]
KINDS: Final[tuple[Kind, ...]] = ("deploy", "promotion", "rollback", "autopilot", "outside")
Band = Literal["elite", "high", "medium", "low"]
Metric = Literal["deployments", "lead_time", "failure_rate", "restore"]


class Deployment(NamedTuple):
    """One change of what an app runs in an env, as Pitcrew saw it end.

    A ``NamedTuple`` rather than a dataclass: immutable all the same, and a quarter's report
    builds tens of thousands of them from the store, where each microsecond shows.
    """

    id: str
    """The release's id, or a short hash of the rollout's (``outside``), or of the GitOps
    commit (``pitcrew dora backfill``)."""
    app: str
    env: str
    kind: Kind
    version: str
    previous: str | None
    """The version it replaced (a rollback's: the one it moved the env off)."""
    requested: float
    """When it was asked for (a rollout's start, for ``outside``)."""
    deployed: float | None
    """When it became healthy (or deployed, where the cluster is not watched)."""
    failed: float | None
    """When it failed (``failed``, ``not_seen``), or was superseded by a rollback."""
    commits: tuple[float, ...] = ()
    """Commit times of its changelog (none for rollbacks: their commits leave)."""

    @property
    def change(self) -> bool:
        """A rollback is a deployment, not a change."""
        return self.kind != "rollback"

    @property
    def landed(self) -> float:
        """When it first ended: deployed, or failed (a failure later recovered lands then)."""
        if self.failed is None:
            return self.deployed if self.deployed is not None else self.requested
        if self.deployed is None:
            return self.failed
        return min(self.deployed, self.failed)


def merge(old: Deployment, new: Deployment) -> Deployment:
    """Two events of one record (a failure, then a recovery): the earliest failure, the latest
    deployment, the facts of the newer event where it knows them."""
    failed = old.failed if new.failed is None else new.failed
    if old.failed is not None and new.failed is not None:
        failed = min(old.failed, new.failed)
    return new._replace(
        deployed=new.deployed if new.deployed is not None else old.deployed,
        failed=failed,
        previous=new.previous if new.previous is not None else old.previous,
        commits=new.commits or old.commits,
        requested=min(old.requested, new.requested),
    )


# --------------------------------------------------------------------------------------------
# What is recorded


def deployment_kind(release: Release) -> Kind:
    if release.kind == "rollback":
        return "rollback"
    if release.autopilot is not None:
        return "autopilot"
    if release.promoted_from is not None:
        return "promotion"
    return "deploy"


def from_release(
    release: Release, *, at: datetime, superseded_by_rollback: bool = False
) -> Deployment | None:
    """What a release that reached an end records (``at``: when it did, for a release stored
    before every end carried its time, ``finished_at``); ``None`` for an end that changed
    nothing in the env. The same release gives the same record, whenever it is worked out:
    the end listener's and a later reconcile's are one event of one record to the store.

    - ``healthy``, ``deployed``: a deployment;
    - ``failed``, ``not_seen`` once merged: a failed change (before its merge, nothing reached
      the env: a failed MR pipeline or a refused merge is no change);
    - ``superseded`` by a rollback once merged: a failed change (what the rollback undid);
    - the rest (rejected, expired, refused, superseded by a deploy): nothing.
    """
    ended = (release.finished_at or at).timestamp()
    deployed: float | None = None
    failed: float | None = None
    merged = release.merged_at is not None
    if release.state in ("healthy", "deployed"):
        deployed = ended
    elif (release.state in ("failed", "not_seen") and merged) or (
        release.state == "superseded" and superseded_by_rollback and merged
    ):
        failed = ended
    else:
        return None
    kind = deployment_kind(release)
    commits = () if kind == "rollback" else release.changelog.commit_times
    return Deployment(
        id=release.id,
        app=release.app,
        env=release.env,
        kind=kind,
        version=release.to_version,
        previous=release.from_version,
        requested=release.created_at.timestamp(),
        deployed=deployed,
        failed=failed,
        commits=tuple(c.timestamp() for c in commits),
    )


def unrecorded(
    wanted: Iterable[Deployment], recorded: Mapping[str, Deployment]
) -> list[Deployment]:
    """The events of ``wanted`` (worked out from ended releases) that the store does not hold
    (``recorded``: its records by id, as read): a deployment whose record has no deployment, a
    failure whose record has no failure. What an end listener that crashed, or that met Redis
    gone, left unwritten; a record that failed, then recovered, may miss either event."""
    missing = []
    for d in wanted:
        known = recorded.get(d.id)
        if (
            known is None
            or (d.deployed is not None and known.deployed is None)
            or (d.deployed is None and d.failed is not None and known.failed is None)
        ):
            missing.append(d)
    return missing


def from_rollout(
    *,
    rollout_id: str,
    app: str,
    env: str,
    version: str,
    previous: str | None,
    started: datetime | None,
    ended: datetime,
    succeeded: bool,
) -> Deployment:
    """A rollout of a new version that no release explains (``outside``): applied by hand,
    or by a tool other than Pitcrew. Succeeded (or recovered): a deployment; failed: a failed
    change."""
    at = ended.timestamp()
    return Deployment(
        id=outside_id(rollout_id),
        app=app,
        env=env,
        kind="outside",
        version=version,
        previous=previous,
        requested=(started or ended).timestamp(),
        deployed=at if succeeded else None,
        failed=None if succeeded else at,
    )


def outside_id(rollout_id: str) -> str:
    """A short, stable id for a rollout (``prod/Deployment/orders/orders/7`` is long)."""
    return "o" + hashlib.sha256(rollout_id.encode()).hexdigest()[:11]


# --------------------------------------------------------------------------------------------
# Failures and restores, per app and env


def undone_by(history: Sequence[Deployment]) -> dict[str, float]:
    """Changes a later rollback undid: id → when the rollback was asked for.

    A rollback undoes the deployment it moved the env off: the latest one deployed before the
    rollback was asked for whose version is the rollback's ``previous``. Only a rollback that
    deployed moved the env; undoing a rollback is no change failing.
    """
    rollbacks = [
        d for d in history if d.kind == "rollback" and d.deployed is not None and d.previous
    ]
    if not rollbacks:
        return {}
    left = {r.previous for r in rollbacks}
    by_version: dict[str, list[Deployment]] = {}
    for d in history:
        if d.version in left and d.deployed is not None:
            by_version.setdefault(d.version, []).append(d)
    for found in by_version.values():
        found.sort(key=_deployed_at)
    undone: dict[str, float] = {}
    for rollback in rollbacks:
        candidates = by_version.get(rollback.previous or "", [])
        at = bisect.bisect_right([_deployed_at(c) for c in candidates], rollback.requested)
        target = next((c for c in reversed(candidates[:at]) if c.id != rollback.id), None)
        if target is not None and target.change:
            undone[target.id] = min(undone.get(target.id, math.inf), rollback.requested)
    return undone


def _deployed_at(d: Deployment) -> float:
    return d.deployed if d.deployed is not None else math.inf


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A change that failed (or was undone), and when the app and env were good again."""

    change: Deployment
    start: float
    restored: float | None
    """The next deployment at or after ``start``; ``None``: not yet."""

    @property
    def duration(self) -> float | None:
        return None if self.restored is None else max(0.0, self.restored - self.start)


def failure_starts(
    history: Sequence[Deployment], *, undone: Mapping[str, float] | None = None
) -> list[Failure]:
    """Every failed change of one app and env, with its restore (the next deployment, of any
    kind, at or after its failure began). ``undone``: ``undone_by(history)``, when known."""
    undone = undone_by(history) if undone is None else undone
    failing = [d for d in history if d.change and (d.failed is not None or d.id in undone)]
    if not failing:
        return []
    good = sorted(d.deployed for d in history if d.deployed is not None)
    failures = []
    for d in failing:
        starts = [t for t in (d.failed, undone.get(d.id)) if t is not None]
        if not starts:
            continue
        start = min(starts)
        at = bisect.bisect_left(good, start)
        failures.append(
            Failure(change=d, start=start, restored=good[at] if at < len(good) else None)
        )
    return failures


def restores_by(history: Sequence[Deployment], deployment: Deployment) -> list[float]:
    """The restore times (seconds) that ``deployment`` ends, among the failures of
    ``history`` (which includes it): for the ``pitcrew_dora_restore_seconds`` histogram, once,
    when the deployment is recorded."""
    if deployment.deployed is None:
        return []
    return [
        f.duration
        for f in failure_starts(history)
        if f.restored == deployment.deployed and f.duration is not None
    ]


# --------------------------------------------------------------------------------------------
# Bands


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The upper limits of elite, high and medium (a figure beyond medium's is low)."""

    elite: float
    high: float
    medium: float
    higher_is_better: bool = False


BANDS: Final[Mapping[Metric, Thresholds]] = {
    # deployments per app per week: on demand (daily or more), weekly, monthly
    "deployments": Thresholds(elite=7.0, high=1.0, medium=7 / 30, higher_is_better=True),
    # median lead time, seconds: under a day, a week, a month
    "lead_time": Thresholds(elite=DAY, high=WEEK, medium=30 * DAY),
    # change failure rate: 5 %, 10 %, 15 %
    "failure_rate": Thresholds(elite=0.05, high=0.10, medium=0.15),
    # median time to restore, seconds: under an hour, a day, a week
    "restore": Thresholds(elite=3600.0, high=DAY, medium=WEEK),
}
"""The 2023 Accelerate State of DevOps report's performance levels, as a ladder without gaps."""


def band_of(metric: Metric, value: float | None) -> Band | None:
    """The band of a figure (``None``: no figure, no band)."""
    if value is None:
        return None
    t = BANDS[metric]
    if t.higher_is_better:
        if value >= t.elite:
            return "elite"
        if value >= t.high:
            return "high"
        return "medium" if value >= t.medium else "low"
    if metric == "failure_rate":  # a rate of exactly 5 % is still elite
        if value <= t.elite:
            return "elite"
        if value <= t.high:
            return "high"
        return "medium" if value <= t.medium else "low"
    if value < t.elite:
        return "elite"
    if value < t.high:
        return "high"
    return "medium" if value < t.medium else "low"


# --------------------------------------------------------------------------------------------
# Statistics


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between the nearest ranks (as numpy's default); ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True, kw_only=True)
class AppFigures:
    """One app's share of a period: what ``Weighing`` ranks."""

    app: str
    deployments: int = 0
    lead_times: tuple[float, ...] = ()
    changes: int = 0
    failed_changes: int = 0
    restores: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Figures:
    """The four figures of one period."""

    start: float
    end: float
    deployments: int
    active_apps: int
    """Apps that deployed or changed in this period or the one before: deployments per app
    are counted over these (an app nobody deploys any more is not a slow one)."""
    lead_median: float | None
    lead_p90: float | None
    commits: int
    changes: int
    failed_changes: int
    restore_median: float | None
    restored: int
    unrestored: int
    """Failures of the period not restored yet."""
    by_app: Mapping[str, AppFigures] = field(default_factory=dict)

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY

    @property
    def per_day(self) -> float:
        return self.deployments / self.days if self.days > 0 else 0.0

    @property
    def per_app_week(self) -> float | None:
        if not self.active_apps or self.days <= 0:
            return None
        return self.deployments / self.active_apps / (self.days / 7)

    @property
    def failure_rate(self) -> float | None:
        return self.failed_changes / self.changes if self.changes else None

    def band(self, metric: Metric) -> Band | None:
        value = {
            "deployments": self.per_app_week,
            "lead_time": self.lead_median,
            "failure_rate": self.failure_rate,
            "restore": self.restore_median,
        }[metric]
        return band_of(metric, value)


@dataclass(frozen=True, kw_only=True)
class Weighing:
    """The apps that weigh most on each figure, most first: the most deployments, the
    slowest median lead time, the most failed changes, the longest median restore."""

    deployments: tuple[tuple[str, int], ...] = ()
    lead_time: tuple[tuple[str, float], ...] = ()
    failure_rate: tuple[tuple[str, int, int], ...] = ()
    """(app, failed changes, changes)."""
    restore: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Report:
    current: Figures
    previous: Figures
    weighing: Weighing


WEIGHING: Final = 3
"""Apps named per figure."""


def report(
    histories: Mapping[tuple[str, str], Sequence[Deployment]],
    *,
    start: float,
    end: float,
    now: float | None = None,
) -> Report:
    """The figures of ``[start, end)`` and of the period of the same length before it.

    ``histories``: every record of each (app, env) in scope, from the start of the previous
    period to ``now`` (later rollbacks undo earlier changes; later deployments restore earlier
    failures).
    """
    now = end if now is None else now
    length = end - start
    before = start - length
    active: set[str] = set()
    per_app_current: dict[str, _Tally] = {}
    per_app_previous: dict[str, _Tally] = {}
    for (app, _), history in histories.items():
        if not history:
            continue
        # One pass over every record: this runs over tens of thousands of them, so the
        # properties (``change``, ``landed``) are spelled out inline.
        undone = undone_by(history)
        current, previous = _Tally(), _Tally()
        for d in history:
            deployed, failed_at = d.deployed, d.failed
            change = d.kind != "rollback"
            if deployed is not None:
                if start <= deployed < end:
                    current.deployments += 1
                    if change and d.commits:
                        current.leads.extend(
                            deployed - c if deployed > c else 0.0 for c in d.commits
                        )
                elif before <= deployed < start:
                    previous.deployments += 1
                    if change and d.commits:
                        previous.leads.extend(
                            deployed - c if deployed > c else 0.0 for c in d.commits
                        )
            if failed_at is None:
                landed = deployed if deployed is not None else d.requested
            elif deployed is None or failed_at < deployed:
                landed = failed_at
            else:
                landed = deployed
            if before <= landed < end:
                active.add(app)
            if change:
                failed = failed_at is not None or d.id in undone
                if start <= landed < end:
                    current.changes += 1
                    current.failed += failed
                elif before <= landed < start:
                    previous.changes += 1
                    previous.failed += failed
        if undone or any(d.failed is not None for d in history):
            for failure in failure_starts(history, undone=undone):
                restored = failure.restored if failure.restored is not None else math.inf
                duration = failure.duration if restored <= now else None
                if start <= failure.start < end:
                    current.failure(duration)
                elif before <= failure.start < start:
                    previous.failure(duration)
        if current.touched:
            _add(per_app_current, app, current)
        if previous.touched:
            _add(per_app_previous, app, previous)
    current_figures = _figures(per_app_current, start=start, end=end, active=len(active))
    previous_figures = _figures(per_app_previous, start=before, end=start, active=len(active))
    return Report(
        current=current_figures, previous=previous_figures, weighing=_weigh(current_figures)
    )


def _add(tallies: dict[str, _Tally], app: str, tally: _Tally) -> None:
    """One app's tally (an app may be in several histories: never, with one env asked)."""
    known = tallies.get(app)
    if known is None:
        tallies[app] = tally
        return
    known.deployments += tally.deployments
    known.leads += tally.leads
    known.changes += tally.changes
    known.failed += tally.failed
    known.restores += tally.restores
    known.unrestored += tally.unrestored


class _Tally:
    __slots__ = ("changes", "deployments", "failed", "leads", "restores", "unrestored")

    def __init__(self) -> None:
        self.deployments = 0
        self.leads: list[float] = []
        self.changes = 0
        self.failed = 0
        self.restores: list[float] = []
        self.unrestored = 0

    @property
    def touched(self) -> bool:
        return bool(self.deployments or self.changes or self.restores or self.unrestored)

    def failure(self, duration: float | None) -> None:
        if duration is None:
            self.unrestored += 1
        else:
            self.restores.append(duration)


def _figures(tallies: Mapping[str, _Tally], *, start: float, end: float, active: int) -> Figures:
    leads = [lead for t in tallies.values() for lead in t.leads]
    restores = [r for t in tallies.values() for r in t.restores]
    return Figures(
        start=start,
        end=end,
        deployments=sum(t.deployments for t in tallies.values()),
        active_apps=active,
        lead_median=median(leads),
        lead_p90=percentile(leads, 90),
        commits=len(leads),
        changes=sum(t.changes for t in tallies.values()),
        failed_changes=sum(t.failed for t in tallies.values()),
        restore_median=median(restores),
        restored=len(restores),
        unrestored=sum(t.unrestored for t in tallies.values()),
        by_app={
            app: AppFigures(
                app=app,
                deployments=t.deployments,
                lead_times=tuple(t.leads),
                changes=t.changes,
                failed_changes=t.failed,
                restores=tuple(t.restores),
            )
            for app, t in tallies.items()
        },
    )


def _weigh(figures: Figures) -> Weighing:
    apps = list(figures.by_app.values())
    most = sorted(
        ((a.app, a.deployments) for a in apps if a.deployments), key=lambda x: (-x[1], x[0])
    )
    slow = sorted(
        ((a.app, m) for a in apps if (m := median(a.lead_times)) is not None),
        key=lambda x: (-x[1], x[0]),
    )
    failing = sorted(
        ((a.app, a.failed_changes, a.changes) for a in apps if a.failed_changes),
        key=lambda x: (-x[1], -x[1] / x[2], x[0]),
    )
    restoring = sorted(
        ((a.app, m) for a in apps if (m := median(a.restores)) is not None),
        key=lambda x: (-x[1], x[0]),
    )
    return Weighing(
        deployments=tuple(most[:WEIGHING]),
        lead_time=tuple(slow[:WEIGHING]),
        failure_rate=tuple(failing[:WEIGHING]),
        restore=tuple(restoring[:WEIGHING]),
    )


# --------------------------------------------------------------------------------------------
# The digest's chart: day by day


@dataclass(frozen=True, kw_only=True)
class Day:
    day: datetime
    """Midnight, in the digest's time zone."""
    deployments: int
    lead_median: float | None
    """Median lead time of the commits deployed that day (seconds)."""


def daily(
    histories: Iterable[Sequence[Deployment]], *, start: datetime, end: datetime, zone: tzinfo
) -> list[Day]:
    """Deployments and the median lead time per calendar day in ``zone`` of ``[start, end)``:
    what the digest's chart draws. A window that does not begin and end at midnight (a digest
    at 09:00) has a partial first and last day, so that the chart counts what the digest's
    figures count, no more and no less."""
    first = start.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    edges = [first]
    while edges[-1] < end:
        edges.append(edges[-1] + timedelta(days=1))  # wall-clock arithmetic: local midnights
    days = len(edges) - 1
    bounds = [e.timestamp() for e in edges]
    since, until = start.timestamp(), end.timestamp()
    counts = [0] * days
    leads: list[list[float]] = [[] for _ in range(days)]
    for history in histories:
        for d in history:
            if d.deployed is None or not since <= d.deployed < until:
                continue
            index = bisect.bisect_right(bounds, d.deployed) - 1
            counts[index] += 1
            if d.change:
                leads[index].extend(max(d.deployed - c, 0.0) for c in d.commits)
    return [
        Day(day=edges[i], deployments=counts[i], lead_median=median(leads[i])) for i in range(days)
    ]


# --------------------------------------------------------------------------------------------
# The command: /dora [app|team|all] [7d|30d|90d] [env]

DORA_USAGE: Final = (
    "Usage: `/dora [app|team|all] [7d|30d|90d] [env]` — e.g. `/dora`, `/dora payments 30d`,"
    " `/dora orders 90d staging`"
)
PERIODS: Final = {"7d": 7, "30d": 30, "90d": 90}
DEFAULT_PERIOD: Final = "30d"
_HELP_WORDS: Final = frozenset({"help", "-h", "--help", "?"})
_QUOTED: Final = 40

QueryKind = Literal["app", "team", "all"]


@dataclass(frozen=True, kw_only=True)
class DoraQuery:
    kind: QueryKind
    subject: str
    """The app or team name; ``"all"``."""
    apps: tuple[str, ...]
    env: str
    days: int

    @property
    def title(self) -> str:
        """``payments in production, last 30 days`` (plain text)."""
        subject = "all apps" if self.kind == "all" else self.subject
        return f"{subject} in {self.env}, last {self.days} days"

    def window(self, now: datetime) -> tuple[float, float]:
        """The period: the ``days`` days up to ``now``."""
        end = now.timestamp()
        return end - self.days * DAY, end


class DoraQueryError(CommandError):
    """``/dora`` typed wrong: the problem, then the usage (``None``: the usage was asked for)."""

    def __init__(self, problem: str | None) -> None:
        super().__init__(problem, usage=DORA_USAGE)


def parse_dora(text: str, *, catalog: Catalog) -> DoraQuery:
    """Read ``/dora``'s words in any order: at most one app, team or ``all``, one period and
    one environment. A name that is both an app and a team means the app (as
    ``/whatsinprod``); the default is every app, 30 days, the last env in promotion order."""
    words = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text).lower().split()
    if words and words[0] in _HELP_WORDS:
        raise DoraQueryError(None)
    subject: str | None = None
    period: str | None = None
    env: str | None = None
    for word in words:
        if word in PERIODS:
            if period is not None:
                raise DoraQueryError(f"one period at a time, not {period} and {word}")
            period = word
        elif word[:-1].isdigit() and word.endswith(("d", "w", "h")):
            raise DoraQueryError(f"“{_quote(word)}” is not a period: 7d, 30d or 90d")
        elif subject is None and (
            word in catalog.app_names or word in catalog.team_names or word == "all"
        ):
            subject = word
        elif word in catalog.env_names:
            if env is not None:
                raise DoraQueryError(f"one environment at a time, not {env} and {word}")
            env = word
        elif subject is not None and (word in catalog.app_names or word in catalog.team_names):
            raise DoraQueryError(f"one app or team at a time, not {subject} and {word}")
        else:
            close = catalog.suggest(word)
            hint = f" — did you mean {close[0]}?" if close else ""
            raise DoraQueryError(f"no app, team or environment named “{_quote(word)}”{hint}")
    days = PERIODS[period or DEFAULT_PERIOD]
    env = env or catalog.env_names[-1]
    name = subject or "all"
    if name in catalog.app_names:
        return DoraQuery(kind="app", subject=name, apps=(name,), env=env, days=days)
    if name in catalog.team_names:
        apps = tuple(a.name for a in catalog.apps_of_team(name))
        return DoraQuery(kind="team", subject=name, apps=apps, env=env, days=days)
    return DoraQuery(kind="all", subject="all", apps=catalog.app_names, env=env, days=days)


def _quote(word: str) -> str:
    return word if len(word) <= _QUOTED else word[: _QUOTED - 1] + "…"


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
