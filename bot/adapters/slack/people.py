"""GitLab email → Slack user, through ``users.lookupByEmail``, cached in Redis.

Misses are cached too (for an hour), so a commit author who is not in Slack does not cost a
Slack call per failed pipeline. A lookup that fails for another reason (Slack down, a missing
scope) returns ``None``: the notification then names the GitLab user instead of waiting.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs, metrics

log = logs.get(__name__)

HIT_TTL = 7 * 24 * 3600
MISS_TTL = 3600
_MISS = "-"


class SlackPeople:
    def __init__(self, redis: Any, client: AsyncWebClient) -> None:
        self._redis = redis
        self._client = client

    async def slack_user_for_email(self, email: str) -> str | None:
        key = f"slack:people:{email.lower()}"
        cached = await self._redis.get(key)
        if cached is not None:
            value = cached.decode()
            return None if value == _MISS else value
        try:
            answer = await self._client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            error = exc.response.get("error")
            metrics.SLACK_CALLS.labels("users.lookupByEmail", "error").inc()
            if error == "users_not_found":
                await self._redis.set(key, _MISS, ex=MISS_TTL)
            else:
                log.warning("slack user lookup failed", error=error)
            return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels("users.lookupByEmail", "unreachable").inc()
            log.warning("slack user lookup failed", error=repr(exc))
            return None
        metrics.SLACK_CALLS.labels("users.lookupByEmail", "ok").inc()
        user_id = str((answer.get("user") or {}).get("id") or "")
        if not user_id:
            return None
        await self._redis.set(key, user_id, ex=HIT_TTL)
        return user_id

    async def timezone(self, user_id: str) -> str | None:
        """The user's Slack time zone (``Europe/Paris``), for times they type and read."""
        key = f"slack:tz:{user_id}"
        cached = await self._redis.get(key)
        if cached is not None:
            return cached.decode() or None
        try:
            answer = await self._client.users_info(user=user_id)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels("users.info", "error").inc()
            log.warning("slack user lookup failed", user=user_id, error=repr(exc))
            return None
        metrics.SLACK_CALLS.labels("users.info", "ok").inc()
        tz = str((answer.get("user") or {}).get("tz") or "")
        await self._redis.set(key, tz, ex=24 * 3600)
        return tz or None
