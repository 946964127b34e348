"""People in Slack: GitLab email → Slack user, names, and who is in an approvers group.

Email lookups go through ``users.lookupByEmail``, cached in Redis.

Misses are cached too (for an hour), so a commit author who is not in Slack does not cost a
Slack call per failed pipeline. A lookup that fails for another reason (Slack down, a missing
scope) returns ``None``: the notification then names the GitLab user instead of waiting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs, metrics
from bot.domain.errors import PitcrewError

log = logs.get(__name__)

GROUP_TTL = 60.0
"""Seconds a group's members are trusted before asking Slack again: someone removed from
@sre-oncall can approve for at most this long."""
HIT_TTL = 7 * 24 * 3600
MISS_TTL = 3600
_MISS = "-"


_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,}")


class SlackUnreachable(PitcrewError):
    """Slack could not tell who is who; an approval must then wait, not guess."""


class SlackPeople:
    def __init__(self, redis: Any, client: AsyncWebClient) -> None:
        self._redis = redis
        self._client = client
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._handles: dict[str, str] = {}

    async def members(self, named: Sequence[str]) -> frozenset[str]:
        """User ids of the people named: user ids as they are, group handles (``@sre-oncall``)
        and group ids through ``usergroups.users.list``, cached for ``GROUP_TTL`` seconds."""
        found: set[str] = set()
        for name in named:
            if _USER_ID.fullmatch(name):
                found.add(name)
            elif _GROUP_ID.fullmatch(name):
                found |= await self._group(name)
            elif name.startswith("@"):
                group = await self._group_id(name.removeprefix("@"))
                if group is not None:
                    found |= await self._group(group)
        return frozenset(found)

    async def _group_id(self, handle: str) -> str | None:
        if handle in self._handles:
            return self._handles[handle]
        answer = await self._ask("usergroups.list", self._client.usergroups_list)
        for group in answer.get("usergroups") or []:
            self._handles[str(group.get("handle"))] = str(group.get("id"))
        if handle not in self._handles:
            log.warning("approvers group not found in Slack", handle=handle)
        return self._handles.get(handle)

    async def _group(self, group_id: str) -> frozenset[str]:
        cached = self._groups.get(group_id)
        if cached is not None and time.monotonic() - cached[0] < GROUP_TTL:
            return cached[1]
        answer = await self._ask(
            "usergroups.users.list", self._client.usergroups_users_list, usergroup=group_id
        )
        users = frozenset(str(u) for u in answer.get("users") or [])
        self._groups[group_id] = (time.monotonic(), users)
        return users

    async def _ask(self, method: str, call: Any, **params: Any) -> Any:
        try:
            answer = await call(**params)
        except SlackApiError as exc:
            metrics.SLACK_CALLS.labels(method, "error").inc()
            raise SlackUnreachable(f"Slack refused {method}: {exc.response.get('error')}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels(method, "unreachable").inc()
            raise SlackUnreachable(f"Slack is unreachable ({type(exc).__name__})") from exc
        metrics.SLACK_CALLS.labels(method, "ok").inc()
        return answer

    async def display_name(self, user: str) -> str:
        """The person's real name for GitLab, where Slack mentions mean nothing."""
        key = f"slack:name:{user}"
        cached = await self._redis.get(key)
        if cached is not None:
            return str(cached.decode())
        try:
            answer = await self._client.users_info(user=user)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("slack user lookup failed", user=user, error=repr(exc))
            return user
        person = answer.get("user") or {}
        profile = person.get("profile") or {}
        name = str(
            person.get("real_name") or profile.get("real_name") or person.get("name") or user
        )
        shown = (
            f"{name} (@{person['name']})" if person.get("name") and name != person["name"] else name
        )
        await self._redis.set(key, shown, ex=24 * 3600)
        return shown

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
