"""People in Slack: GitLab email → Slack user, names, and who is in an approvers group.

Email lookups go through ``users.lookupByEmail``, cached in Redis.

Misses are cached too (for an hour), so a commit author who is not in Slack does not cost a
Slack call per failed pipeline. A lookup that fails for another reason (Slack down, a missing
scope) returns ``None``: the notification then names the GitLab user instead of waiting.

**Rate limits.** A 429 is not a failure but "ask again in ``Retry-After`` seconds", and a
failure reply that names "Alice Martin" instead of mentioning ``@alice`` is never corrected, so a
throttled lookup waits and asks again. We wait rather than post the name and edit the reply once
the lookup succeeds: a found author is cached for a week, so waits are rare and short, whereas an
edit would need the pipeline service to remember which replies to fix and retry lookups later.
Two rules keep the wait polite and bounded:

* One pause per Slack method, shared by every lookup of this process: after a 429, no lookup
  calls Slack again before its ``Retry-After`` has passed, however many are waiting.
* A lookup waits at most ``LOOKUP_PATIENCE`` seconds in all. If Slack asks for longer, the lookup
  gives up at once (no call) and the reply names the GitLab user as before. Lookups that come
  while a pause someone gave up on lasts give up at once too: a Slack that stays throttled costs
  the GitLab worker (which handles events one at a time) one bounded wait per pause, not one per
  failed pipeline or per email tried.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs, metrics
from bot.adapters.slack.outbox import retry_after
from bot.domain.errors import PitcrewError

log = logs.get(__name__)

GROUP_TTL = 60.0
"""Seconds a group's members are trusted before asking Slack again: someone removed from
@sre-oncall can approve for at most this long."""
HIT_TTL = 7 * 24 * 3600
MISS_TTL = 3600
LOOKUP_PATIENCE = 10.0
"""Seconds a rate-limited email lookup may wait for Slack in all. The GitLab worker handles events
one at a time, so this is also how long a throttled lookup may hold up the pipeline messages
behind it; it stays well under the 30 s after which another replica takes an event over."""
_MISS = "-"
_LOOKUP = "users.lookupByEmail"


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
        self._paused_until: dict[str, float] = {}
        self._given_up_on: dict[str, float] = {}

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

    async def email(self, user: str) -> str | None:
        """The person's email from their Slack profile (``users.info``; Slack leaves it out
        without the ``users:read.email`` scope), cached for an hour: it names them to
        Kubernetes for break-glass access, so a change in Slack is seen soon."""
        key = f"slack:email:{user}"
        cached = await self._redis.get(key)
        if cached is not None:
            return cached.decode() or None
        try:
            answer = await self._client.users_info(user=user)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels("users.info", "error").inc()
            log.warning("slack user lookup failed", user=user, error=repr(exc))
            return None
        metrics.SLACK_CALLS.labels("users.info", "ok").inc()
        person = answer.get("user") or {}
        email = str((person.get("profile") or {}).get("email") or "")
        if person.get("deleted") or person.get("is_bot"):
            email = ""
        await self._redis.set(key, email, ex=MISS_TTL)
        return email or None

    async def slack_user_for_email(self, email: str) -> str | None:
        key = f"slack:people:{email.lower()}"
        cached = await self._redis.get(key)
        if cached is not None:
            value = cached.decode()
            return None if value == _MISS else value
        deadline = time.monotonic() + LOOKUP_PATIENCE
        while await self._turn(_LOOKUP, deadline=deadline):
            try:
                answer = await self._client.users_lookupByEmail(email=email)
            except SlackApiError as exc:
                if exc.response.status_code == 429:
                    self._pause(_LOOKUP, retry_after(exc.response.headers, default=1.0))
                    continue
                error = exc.response.get("error")
                metrics.SLACK_CALLS.labels(_LOOKUP, "error").inc()
                if error == "users_not_found":
                    await self._redis.set(key, _MISS, ex=MISS_TTL)
                else:
                    log.warning("slack user lookup failed", error=error)
                return None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                metrics.SLACK_CALLS.labels(_LOOKUP, "unreachable").inc()
                log.warning("slack user lookup failed", error=repr(exc))
                return None
            metrics.SLACK_CALLS.labels(_LOOKUP, "ok").inc()
            user_id = str((answer.get("user") or {}).get("id") or "")
            if not user_id:
                return None
            await self._redis.set(key, user_id, ex=HIT_TTL)
            return user_id
        return None

    def _pause(self, method: str, delay: float) -> None:
        """Slack answered 429: no call of ``method`` from this process for ``delay`` seconds
        (at least one: a ``Retry-After: 0`` must not turn the wait into a loop of calls)."""
        metrics.SLACK_CALLS.labels(method, "ratelimited").inc()
        delay = max(delay, 1.0)
        until = time.monotonic() + delay
        self._paused_until[method] = max(self._paused_until.get(method, 0.0), until)
        log.info("slack rate limit; waiting", method=method, retry_after=delay)

    async def _turn(self, method: str, *, deadline: float) -> bool:
        """Wait until ``method`` may be called again. False, at once, when the pause ends after
        ``deadline`` or is one another caller already gave up on: the caller does without."""
        while True:
            until = self._paused_until.get(method, 0.0)
            now = time.monotonic()
            if until <= now:
                return True
            if until > deadline or until <= self._given_up_on.get(method, 0.0):
                if self._given_up_on.get(method) != until:
                    log.warning(
                        "slack is rate-limiting lookups for longer than we wait; "
                        "naming people by their GitLab name meanwhile",
                        method=method,
                        retry_in=round(until - now, 1),
                    )
                self._given_up_on[method] = until
                return False
            await asyncio.sleep(until - now)

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
