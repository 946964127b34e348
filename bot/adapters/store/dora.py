"""Deployment records in Redis, compact: one line per event, one string per app, env and month.

- ``dora:{<app>:<env>}:<yyyymm>``: the month's events, appended, one line each (``encode``);
- ``dora:{<app>:<env>}:<yyyymm>:seen``: a hash of the events written (``<id>:y`` deployed,
  ``<id>:n`` failed), so that a record is written once whatever the retries and replicas:
  the line is appended only by the caller whose ``HSETNX`` set the field, in one script.

Both keys of a month carry the hash tag ``{<app>:<env>}``: on Redis Cluster they share a slot,
as one script's keys must, and a report reads an app's months with one ``MGET``. Both expire
400 days after the month's end. An event is a ``Deployment`` that deployed or failed; a record
that failed, then recovered, is two events folded into one when read (``merge``).

A line: ``<id> <kind><y|n> <at> <version> <previous|-> <at-requested> <at-commit,…|->``, times
in whole Unix seconds, commit times as seconds before ``at``: about 60 bytes for a deployment
of three commits, so 500 apps in 4 envs deploying daily fit a year in a few tens of MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bot.adapters.redis_keys import run_scripts, script
from bot.adapters.store.connection import Redis
from bot.domain.dora import KEEP, KINDS, Deployment, Kind, merge

_KIND_CODE: Final[dict[Kind, str]] = {
    "deploy": "d",
    "promotion": "p",
    "rollback": "r",
    "autopilot": "a",
    "outside": "o",
}
_CODE_KIND: Final[dict[str, Kind]] = {code: kind for kind, code in _KIND_CODE.items()}
assert set(_KIND_CODE) == set(KINDS)

_LENGTHS = """
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('STRLEN', key)
end
return found
"""
_MONTHS = """
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('GET', key)
end
return found
"""
_RECORD = """
if redis.call('HSETNX', KEYS[2], ARGV[1], '1') == 0 then
  return 0
end
redis.call('APPEND', KEYS[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('EXPIREAT', KEYS[2], ARGV[3])
return 1
"""


def month_key(app: str, env: str, month: str) -> str:
    return f"dora:{{{app}:{env}}}:{month}"


def _month(at: float) -> tuple[int, int]:
    when = datetime.fromtimestamp(at, tz=UTC)
    return when.year, when.month


def _name(year: int, month: int) -> str:
    return f"{year:04d}{month:02d}"


def months(since: float, until: float) -> list[str]:
    """The months (``yyyymm``) that ``[since, until]`` touches, oldest first."""
    year, month = _month(since)
    last = _month(until)
    found = []
    while (year, month) <= last:
        found.append(_name(year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def _expiry(year: int, month: int) -> int:
    following = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else None
    end = following or datetime(year, month + 1, 1, tzinfo=UTC)
    return int((end + KEEP).timestamp())


def encode(d: Deployment) -> tuple[str, str, float]:
    """``(event, line, at)``: the event's name in the ``seen`` hash, its line, and its time."""
    outcome = "y" if d.deployed is not None else "n"
    at_exact = d.deployed if d.deployed is not None else d.failed
    if at_exact is None:
        raise ValueError(f"deployment {d.id} neither deployed nor failed: nothing to record")
    at = round(at_exact)
    commits = ",".join(str(at - round(c)) for c in d.commits) or "-"
    line = (
        f"{d.id} {_KIND_CODE[d.kind]}{outcome} {at} {d.version} {d.previous or '-'}"
        f" {at - round(d.requested)} {commits}\n"
    )
    return f"{d.id}:{outcome}", line, at_exact


def decode(app: str, env: str, text: str, into: dict[str, Deployment]) -> None:
    """Fold the lines of ``text`` into ``into`` (id → record), in the order they were written.
    A line that does not parse (written by a later version, cut short) is skipped."""
    for line in text.split("\n"):
        parts = line.split(" ")
        if len(parts) != 7:
            continue
        ident, code, at_text, version, previous, requested, commits = parts
        kind = _CODE_KIND.get(code[:1])
        if kind is None:
            continue
        try:
            at = float(int(at_text))
            times = () if commits == "-" else tuple(at - int(c) for c in commits.split(","))
            record = Deployment(
                ident,
                app,
                env,
                kind,
                version,
                None if previous == "-" else previous,
                at - int(requested),
                at if code[1:] == "y" else None,
                at if code[1:] == "n" else None,
                times,
            )
        except ValueError:
            continue
        known = into.get(ident)
        into[ident] = record if known is None else merge(known, record)


CACHED_MONTHS: Final = 20_000
"""Months of an app and env kept decoded in memory (a few MB): a month's string only grows
(``APPEND``), so its length says whether the decoded copy is still whole."""


class RedisDeploymentStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._record = script(redis, _RECORD)
        self._lengths = script(redis, _LENGTHS)
        self._months = script(redis, _MONTHS)  # an MGET, in a batch a cluster accepts
        self._cache: dict[str, tuple[int, dict[str, Deployment]]] = {}

    async def record(self, deployment: Deployment) -> bool:
        """Write it once: ``True`` for the one caller that did (replicas and retries get
        ``False``)."""
        event, line, at = encode(deployment)
        year, month = _month(at)
        key = month_key(deployment.app, deployment.env, _name(year, month))
        written = await self._record(
            keys=[key, f"{key}:seen"], args=[event, line, _expiry(year, month)]
        )
        return bool(written)

    async def history(self, app: str, env: str, *, since: float, until: float) -> list[Deployment]:
        """Every record of ``app`` in ``env`` of the months ``[since, until]`` touches, in the
        order they landed (a little before ``since``: what came before matters to what
        came after, a rollback to the change it undid)."""
        found = await self.histories([(app, env)], since=since, until=until)
        return sorted(found.get((app, env), []), key=_landed)

    async def histories(
        self, pairs: Iterable[tuple[str, str]], *, since: float, until: float
    ) -> dict[tuple[str, str], list[Deployment]]:
        """The records of many apps and envs at once, in no particular order.

        Two round trips: the length of every month (one script per app and env: its months
        share a slot), then the months that changed since they were last decoded (one
        ``MGET`` per app and env). A quarter's report over hundreds of apps thus decodes
        little more than the current month."""
        wanted = list(dict.fromkeys(pairs))
        names = months(since, until)
        keys = [[month_key(app, env, m) for m in names] for app, env in wanted]
        lengths: Sequence[Any] = await run_scripts(
            self._redis, [(self._lengths, each, ()) for each in keys]
        )
        stale = [
            [key for key, length in zip(each, sizes, strict=True) if self._stale(key, length)]
            for each, sizes in zip(keys, lengths, strict=True)
        ]
        if any(stale):
            blobs: list[Any] = list(
                await run_scripts(self._redis, [(self._months, each, ()) for each in stale if each])
            )
            for (app, env), each in zip(wanted, stale, strict=True):
                if each:
                    for key, blob in zip(each, blobs.pop(0), strict=True):
                        self._keep(key, app, env, blob)
        found: dict[tuple[str, str], list[Deployment]] = {}
        for (app, env), each in zip(wanted, keys, strict=True):
            records: dict[str, Deployment] = {}
            for key in each:
                cached = self._cache.get(key)
                if cached is None or not cached[1]:
                    continue
                if not records:
                    records.update(cached[1])
                    continue
                for ident, record in cached[1].items():
                    known = records.get(ident)
                    records[ident] = record if known is None else merge(known, record)
            if records:
                found[(app, env)] = list(records.values())
        return found

    def _stale(self, key: str, length: int) -> bool:
        cached = self._cache.get(key)
        if length == 0:
            self._cache.pop(key, None)
            return False
        return cached is None or cached[0] != length

    def _keep(self, key: str, app: str, env: str, blob: bytes | None) -> None:
        if not blob:
            self._cache.pop(key, None)
            return
        records: dict[str, Deployment] = {}
        decode(app, env, blob.decode(), records)
        if len(self._cache) >= CACHED_MONTHS:
            self._cache.pop(next(iter(self._cache)))  # the oldest decoded
        self._cache[key] = (len(blob), records)

    async def size(self, pairs: Iterable[tuple[str, str]], *, since: float, until: float) -> int:
        """Bytes the records take in Redis (``MEMORY USAGE``), for the benchmark."""
        total = 0
        for app, env in pairs:
            for name in months(since, until):
                key = month_key(app, env, name)
                for each in (key, f"{key}:seen"):
                    used = await self._redis.memory_usage(each, samples=0)
                    total += int(used or 0)
        return total


def _landed(d: Deployment) -> float:
    return d.landed
