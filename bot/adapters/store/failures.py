"""Recent failures per team, for the App Home: one sorted set per team, scored by time.

``failures:<team>`` holds each failure as JSON, scored by when it happened. Every record trims
what is older than a day and keeps at most ``KEEP`` entries, so a team whose pipelines fail all
day costs a few kilobytes; a failure recorded twice (a retry, another replica) is two entries
of one key, and the reader keeps the newest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bot import logs
from bot.adapters.store.connection import Redis
from bot.domain.home import FAILURE_WINDOW, RecentFailure

log = logs.get(__name__)

KEEP = 200
_failure = TypeAdapter(RecentFailure)


def _key(team: str) -> str:
    return f"failures:{team}"


class RedisFailureLog:
    def __init__(self, redis: Redis, *, window: timedelta = FAILURE_WINDOW) -> None:
        self._redis = redis
        self._window = window

    async def record(self, failure: RecentFailure) -> None:
        key = _key(failure.team)
        at = failure.at.timestamp()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(key, {_failure.dump_json(failure): at})
        pipe.zremrangebyscore(key, "-inf", at - self._window.total_seconds())
        pipe.zremrangebyrank(key, 0, -KEEP - 1)
        pipe.expire(key, int(self._window.total_seconds()) * 2)
        await pipe.execute()

    async def recent(self, teams: Sequence[str], *, since: datetime) -> list[RecentFailure]:
        found: list[RecentFailure] = []
        for team in teams:
            raw: Any = await self._redis.zrangebyscore(_key(team), since.timestamp(), "+inf")
            for item in raw:
                try:
                    found.append(_failure.validate_json(item))
                except ValidationError:  # written by another version; not worth a crash
                    log.warning("unreadable failure record skipped", team=team)
        return found
