"""The Slack outbox: every write to Slack goes through here.

Guarantees (docs/architecture.md explains them at length):

* **One message per key.** A message is named by a key (``pipeline:shop/orders:1234``). The first
  delivery posts it; later ones update it in place (``chat.update``) using the channel and ``ts``
  stored in Redis under ``outbox:sent:<key>``. Thread replies are keyed too.
* **Durable and coalesced.** ``send`` writes the newest wanted state to Redis
  (``outbox:want:{<channel>}:<key>``) and queues the key once per channel
  (``outbox:q:{<channel>}``, a sorted set ordered by first enqueue). Several updates to a key
  before it is delivered collapse into the newest one; a pending update survives a crash of the
  bot. Every key of a channel carries the channel as its hash tag, so each script keeps to one
  Redis Cluster slot and the channels spread over the cluster (``bot.adapters.redis_keys``).
  The set of channels with work (``outbox:channels``) is written after the script, and rebuilt
  from the queues when delivery starts and every few minutes, in case a crash came in between.
* **Only what survives a failover reaches Slack.** With ``REDIS_MIN_REPLICAS``, every Slack
  write waits until the replicas have the state it shows and the attempt it records, so a
  promoted replica never shows an older state than Slack does, nor forgets a post.
* **No second post after a crash.** Before ``chat.postMessage`` the outbox records an *attempt*
  (id and time) under the key (``outbox:sent:{<channel>}:<key>``), and the message carries
  Slack message metadata naming the key.
  The attempt is kept only while the post's outcome is unknown (``outcome_unknown``): the
  process died after recording it, or the answer was lost to a timeout, a cut connection or a
  5xx. The next delivery then finds the attempt, looks the message up with
  ``conversations.history``/``conversations.replies`` and adopts its ``ts`` instead of posting
  again. An answer that says nothing was posted (a 429, an ``ok: false`` error, a connection
  that never opened) clears the attempt at once, so throttled posts cost no history reads.
  Reading history needs the ``channels:history``/``groups:history`` scopes, which an app may
  leave out (least privilege, docs/security.md): the outbox reads the token's scopes from
  Slack's answers (``X-OAuth-Scopes``) and, without them, neither joins channels nor reads
  history; a post whose outcome is unknown is then posted again, and may show twice.
* **Polite under rate limits.** Writes to one channel are paced (about one per second); a 429
  pauses that Slack method for its ``Retry-After``; 5xx answers and connection errors are
  retried with exponential back-off, without limit, because the state is safe in Redis.
  Errors that retrying cannot fix (unknown channel, invalid blocks) drop the message with an
  error log line, so one bad message never blocks a channel.

Only one replica delivers at a time: ``run`` is meant to be started under a lease.

Upgrading from versions whose keys had no channel tag (``outbox:want:<key>``,
``outbox:q:<channel>``, ``outbox:sent:<key>``): ``run`` re-queues the old queues' pending states
under the new names when it starts, and a message's old ``sent`` record is read (and copied)
when the new one is missing, so messages posted before the upgrade are still updated in place.
Ephemeral answers (``respond``, ``ephemeral``) are for a person waiting right now: they are
sent at once, retried a few times, and not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import aiohttp
from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import logs, metrics
from bot.adapters.redis_keys import Script, ScriptCall, beside, run_scripts, script
from bot.domain.errors import Unavailable
from bot.errors import SlackUnavailable
from bot.services.cancellation import reraise_if_cancelling
from bot.services.ports import JsonBlock, OutgoingMessage

log = logs.get(__name__)

PREFIX = "outbox"
KEY_TTL_MS = 30 * 24 * 3600 * 1000
METADATA_TYPE = "pitcrew_message"
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{4,}$")
_AUTH_ERRORS = {"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"}
_GONE_ERRORS = {"message_not_found", "cant_update_message", "edit_window_closed"}
HISTORY_SCOPES = frozenset({"channels:history", "groups:history"})
"""Either lets the outbox look a lost post up (public and private channels respectively)."""

_ENQUEUE = """
if ARGV[8] ~= '' then
  local known = tonumber(redis.call('HGET', KEYS[4], 'version') or '-1')
  if tonumber(ARGV[8]) < known then
    return 0
  end
  redis.call('HSET', KEYS[4], 'version', ARGV[8])
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'text', ARGV[2], 'blocks', ARGV[3],
           'thread_key', ARGV[4], 'broadcast', ARGV[5], 'seq', seq)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], 'NX', seq, ARGV[6])
return seq
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'seq') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_ATTEMPT = """
redis.call('HSET', KEYS[1], 'attempt', ARGV[1], 'attempt_at', ARGV[2], 'channel_id', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
_DEFER = """
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], 'XX', seq, ARGV[1])
return seq
"""
REPAIR_EVERY = 300.0
"""Seconds between two rebuilds of the list of channels with work from the queues themselves."""


def _queue(channel: str) -> str:
    return f"{PREFIX}:q:{{{channel}}}"


def _want(channel: str, key: str) -> str:
    return beside(_queue(channel), f"{PREFIX}:want", key)


def _sent(channel: str, key: str) -> str:
    return beside(_queue(channel), f"{PREFIX}:sent", key)


def _version(channel: str, key: str) -> str:
    return beside(_queue(channel), f"{PREFIX}:version", key)


def _seq(channel: str) -> str:
    return beside(_queue(channel), f"{PREFIX}:seq")


_CHANNELS = f"{PREFIX}:channels"
_QUEUES = f"{PREFIX}:q:{{*"


def _legacy_queue(channel: str) -> str:
    return f"{PREFIX}:q:{channel}"


def _legacy_want(key: str) -> str:
    return f"{PREFIX}:want:{key}"


def _legacy_sent(key: str) -> str:
    return f"{PREFIX}:sent:{key}"


class _Failed(Exception):
    """A call that did not succeed. ``maybe_applied``: Slack may have done it all the same (see
    ``outcome_unknown``); otherwise it certainly did nothing."""

    def __init__(self, *args: object, maybe_applied: bool = False) -> None:
        super().__init__(*args)
        self.maybe_applied = maybe_applied


class _Retry(_Failed):
    """Try this key again after ``delay`` seconds."""

    def __init__(self, delay: float, *, maybe_applied: bool = False) -> None:
        super().__init__(delay, maybe_applied=maybe_applied)
        self.delay = delay


class _Drop(_Failed):
    """This message cannot be delivered; retrying will not help."""


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode()


class Replicas(Protocol):
    """``bot.adapters.store.replication.Replication``, as the outbox uses it."""

    def mark(self) -> int: ...

    async def confirm(self, near: str | None = None, *, since: int | None = None) -> None: ...

    async def run(
        self, script: Script, *, keys: Sequence[str], args: Iterable[Any] = ()
    ) -> Any: ...


class _NoReplicas:
    def mark(self) -> int:
        return 0

    async def confirm(self, near: str | None = None, *, since: int | None = None) -> None:
        return None

    async def run(self, script: Script, *, keys: Sequence[str], args: Iterable[Any] = ()) -> Any:
        return await script(keys=keys, args=args)


class SlackOutbox:
    def __init__(
        self,
        redis: Any,
        client: AsyncWebClient,
        *,
        pacing: float = 1.0,
        max_backoff: float = 60.0,
        durability: Replicas | None = None,
    ) -> None:
        self._redis = redis
        self._client = client
        self._durability: Replicas = durability or _NoReplicas()
        self._pacing = pacing
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._not_before: dict[str, float] = {}
        self._last_write: dict[str, float] = {}
        self._channel_ids: dict[str, str] = {}
        self._scopes: frozenset[str] | None = None  # the token's, once Slack has told them
        self._history_refused = False
        self._enqueue = script(redis, _ENQUEUE)
        self._complete = script(redis, _COMPLETE)
        self._defer = script(redis, _DEFER)
        self._attempt = script(redis, _ATTEMPT)

    # ------------------------------------------------------------------ the port

    async def send(self, message: OutgoingMessage, *, version: int | None = None) -> None:
        """Queue the newest state of ``message.key``. With a ``version``, a state older than one
        already taken for the key is ignored: a slow replica never overwrites a newer state."""
        await self.send_many([(message, version)])

    async def send_many(self, messages: Sequence[tuple[OutgoingMessage, int | None]]) -> None:
        """``send`` for many messages in one round trip (each message's script on its channel's
        anchor), in order: a thread reply given after its parent is queued after it."""
        if not messages:
            return
        calls: list[ScriptCall] = []
        for message, version in messages:
            channel = message.channel
            keys = [
                _want(channel, message.key),
                _queue(channel),
                _seq(channel),
                _version(channel, message.key),
            ]
            args = [
                message.channel,
                message.text,
                json.dumps(list(message.blocks), separators=(",", ":")),
                message.thread_key or "",
                "1" if message.broadcast else "",
                message.key,
                KEY_TTL_MS,
                "" if version is None else str(version),
            ]
            calls.append((self._enqueue, keys, args))
        await run_scripts(self._redis, calls)
        # After the scripts (a second round trip: on a cluster, one pipeline's commands to
        # different nodes have no order): a deliverer that just found a queue empty and retired
        # its channel sees it listed again (see _retire).
        await self._redis.sadd(_CHANNELS, *dict.fromkeys(m.channel for m, _ in messages))
        self._wake.set()

    async def respond(
        self,
        response_url: str,
        *,
        text: str,
        blocks: Sequence[JsonBlock] = (),
        in_channel: bool = False,
        replace_original: bool = False,
    ) -> None:
        """Answer a slash command or a click through its ``response_url``."""
        hook = AsyncWebhookClient(response_url, timeout=10)
        for attempt in range(3):
            try:
                response = await hook.send(
                    text=text,
                    blocks=[dict(b) for b in blocks] or None,
                    response_type="in_channel" if in_channel else "ephemeral",
                    replace_original=replace_original,
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                metrics.SLACK_CALLS.labels("response_url", "error").inc()
                log.warning("response_url unreachable", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            if response.status_code < 300:
                metrics.SLACK_CALLS.labels("response_url", "ok").inc()
                return
            metrics.SLACK_CALLS.labels("response_url", "error").inc()
            if response.status_code != 429 and response.status_code < 500:
                break
            await asyncio.sleep(retry_after(response.headers, default=0.5 * 2**attempt))
        raise SlackUnavailable("could not answer through Slack's response_url")

    async def ephemeral(
        self, *, channel: str, user: str, text: str, blocks: Sequence[JsonBlock] = ()
    ) -> None:
        """A message only ``user`` sees, for example "you are not an approver"."""
        await self._at_once(
            "chat.postEphemeral",
            "answer privately",
            channel=lambda: self.channel_id(channel),
            user=user,
            text=text,
            blocks=list(blocks) or None,
        )

    async def direct(self, *, user: str, text: str, blocks: Sequence[JsonBlock] = ()) -> None:
        """A direct message to ``user``, now: the answer to a click on a view (the App Home, a
        modal), which comes with neither a channel nor a ``response_url``."""
        await self._at_once(
            "chat.postMessage",
            "answer in a direct message",
            channel=lambda: self.channel_id(user),
            text=text,
            blocks=list(blocks) or None,
            unfurl_links=False,
            unfurl_media=False,
        )

    async def _at_once(
        self,
        method: str,
        doing: str,
        *,
        channel: Callable[[], Awaitable[str]],
        **params: Any,
    ) -> None:
        """One write for a person waiting right now: a few quick tries, nothing kept."""
        for attempt in range(3):
            try:
                await self._call(method, channel=await channel(), **params)
                return
            except _Retry as retry:
                await asyncio.sleep(min(retry.delay, 5.0) * (attempt + 1))
            except _Drop as exc:
                raise SlackUnavailable(f"could not {doing} in Slack: {exc}") from exc
        raise SlackUnavailable(f"could not {doing} in Slack: still failing after retries")

    async def posted(self, channel: str, key: str) -> tuple[str, str] | None:
        """``(channel_id, ts)`` of the message ``key`` sent to ``channel`` (as it was given)
        once Slack has it; ``None`` before."""
        sent = await self._sent_record(channel, key)
        ts, channel_id = _text(sent, "ts"), _text(sent, "channel_id")
        return (channel_id, ts) if ts and channel_id else None

    @property
    def reads_history(self) -> bool:
        """Whether a lost post is looked up in the channel: the token has a history scope (or
        its scopes are not known yet) and Slack has not refused a look-up for want of one."""
        if self._history_refused:
            return False
        return self._scopes is None or bool(self._scopes & HISTORY_SCOPES)

    def _note_scopes(self, headers: Any) -> None:
        if self._scopes is not None:
            return
        self._scopes = granted_scopes(headers)
        if self._scopes is not None and not self._scopes & HISTORY_SCOPES:
            log.info(
                "no history scopes: a post whose answer is lost will be posted again",
                scopes=sorted(self._scopes),
            )

    # ------------------------------------------------------------------ delivery

    async def pending(self) -> int:
        total = 0
        for channel in await self._redis.smembers(_CHANNELS):
            total += int(await self._redis.zcard(_queue(channel.decode())))
        return total

    async def run(self) -> None:
        """Deliver until cancelled: one task per channel with work, each paced on its own."""
        tasks: dict[str, asyncio.Task[None]] = {}
        measured = 0.0
        repaired = -REPAIR_EVERY
        try:
            while True:
                reraise_if_cancelling()
                self._wake.clear()
                try:
                    if time.monotonic() - repaired > REPAIR_EVERY:
                        await self._repair()
                        repaired = time.monotonic()
                    channels = [c.decode() for c in await self._redis.smembers(_CHANNELS)]
                    if time.monotonic() - measured > 1.0:
                        metrics.OUTBOX_PENDING.set(await self.pending())
                        measured = time.monotonic()
                except Exception as exc:  # redis-py may raise more than RedisError (streams.py)
                    reraise_if_cancelling()
                    log.warning("outbox cannot read its queue; retrying", error=repr(exc))
                    channels = []
                    await asyncio.sleep(1.0)
                for channel in channels:
                    task = tasks.get(channel)
                    if task is None or task.done():
                        tasks[channel] = asyncio.create_task(
                            self._drain(channel), name=f"outbox:{channel}"
                        )
                for channel in [c for c, t in tasks.items() if t.done()]:
                    del tasks[channel]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _repair(self) -> None:
        """List every channel whose queue has work (a sender that died between its script and
        listing the channel left it out), and bring over the queues of earlier versions."""
        async for raw in self._redis.scan_iter(match=_QUEUES, count=1000, _type="zset"):
            name = raw.decode()
            channel = name[len(f"{PREFIX}:q:{{") : -1]
            if name == _queue(channel):
                await self._redis.sadd(_CHANNELS, channel)
        for raw in await self._redis.smembers(_CHANNELS):
            await self._adopt_legacy(raw.decode())

    async def _adopt_legacy(self, channel: str) -> None:
        """Re-queue what an earlier version left in ``outbox:q:<channel>`` under the new names."""
        old = _legacy_queue(channel)
        for raw_key in await self._redis.zrange(old, 0, -1):
            key = raw_key.decode()
            want = await self._redis.hgetall(_legacy_want(key))
            if want and _text(want, "channel") == channel:
                await self.send(
                    OutgoingMessage(
                        key=key,
                        channel=channel,
                        text=_text(want, "text"),
                        blocks=json.loads(_text(want, "blocks") or "[]"),
                        thread_key=_text(want, "thread_key") or None,
                        broadcast=bool(_text(want, "broadcast")),
                    )
                )
                log.info("outbox: re-queued a message of an earlier version", key=key)
            await self._redis.delete(_legacy_want(key))
            await self._redis.zrem(old, key)

    async def _drain(self, channel: str) -> None:
        backoff = 1.0
        while True:
            reraise_if_cancelling()
            try:
                head = await self._redis.zrange(_queue(channel), 0, 0)
                if not head:
                    if await self._retire(channel):
                        return
                    continue
                wait = self._last_write.get(channel, 0.0) + self._pacing - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if await self._deliver(channel, head[0].decode()):
                    self._last_write[channel] = time.monotonic()
                backoff = 1.0
            except _Retry as retry:
                delay = retry.delay if retry.delay > 0 else backoff
                backoff = min(backoff * 2, self._max_backoff)
                await asyncio.sleep(delay * random.uniform(1.0, 1.2))
            except (RedisError, OSError, Unavailable) as exc:
                reraise_if_cancelling()
                log.warning("outbox store error; retrying", channel=channel, error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception:  # redis-py may raise more than RedisError (streams.py)
                reraise_if_cancelling()
                log.exception("outbox error; retrying", channel=channel)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _retire(self, channel: str) -> bool:
        """Stop listing ``channel`` if its queue is empty. Unlisted first, then checked: a send
        in between is either seen by the check (listed again) or lists the channel itself."""
        await self._redis.srem(_CHANNELS, channel)
        if await self._redis.zcard(_queue(channel)):
            await self._redis.sadd(_CHANNELS, channel)
            return False
        return True

    async def _sent_record(self, channel: str, key: str) -> dict[bytes, bytes]:
        """The message's ``ts`` (or its attempt); an earlier version's record is copied over."""
        sent: dict[bytes, bytes] = await self._redis.hgetall(_sent(channel, key))
        if not sent:
            sent = await self._redis.hgetall(_legacy_sent(key))
            if sent:
                await self._redis.hset(_sent(channel, key), mapping=sent)
                await self._redis.pexpire(_sent(channel, key), KEY_TTL_MS)
        return sent

    async def _deliver(self, channel: str, key: str) -> bool:
        """Bring one key's Slack message to its newest wanted state. True when Slack was written."""
        since = self._durability.mark()
        want = await self._redis.hgetall(_want(channel, key))
        if not want:
            await self._redis.zrem(_queue(channel), key)
            return False
        seq = _text(want, "seq")
        text = _text(want, "text")
        blocks = json.loads(_text(want, "blocks") or "[]")
        thread_key = _text(want, "thread_key")
        try:
            if thread_key:
                parent = await self._sent_record(channel, thread_key)
                if not _text(parent, "ts"):
                    if await self._redis.exists(_want(channel, thread_key)):
                        await self._defer(keys=[_queue(channel), _seq(channel)], args=[key])
                        return False
                    raise _Drop(f"its thread parent {thread_key} was never posted")
                channel_id, thread_ts = _text(parent, "channel_id"), _text(parent, "ts")
            else:
                channel_id, thread_ts = await self.channel_id(channel), ""
            await self._write(
                since=since,
                channel=channel,
                key=key,
                channel_id=channel_id,
                thread_ts=thread_ts,
                broadcast=bool(_text(want, "broadcast")),
                text=text,
                blocks=blocks,
            )
        except _Drop as exc:
            log.error("slack message dropped", key=key, channel=channel, reason=str(exc))
        await self._complete(keys=[_want(channel, key), _queue(channel)], args=[seq, key])
        return True

    async def _write(
        self,
        *,
        since: int,
        channel: str,
        key: str,
        channel_id: str,
        thread_ts: str,
        broadcast: bool,
        text: str,
        blocks: list[Any],
    ) -> None:
        sent_key = _sent(channel, key)
        sent = await self._sent_record(channel, key)
        ts: str | None = _text(sent, "ts")
        if not ts and _text(sent, "attempt") and not self.reads_history:
            log.warning(
                "an earlier post's outcome is unknown and history cannot be read (no"
                " channels:history scope); posting it again: it may show twice",
                key=key,
            )
        elif not ts and _text(sent, "attempt"):
            try:
                ts = await self._find_posted(
                    key=key,
                    channel_id=_text(sent, "channel_id") or channel_id,
                    thread_ts=thread_ts,
                    since=float(_text(sent, "attempt_at") or 0),
                )
            except _Drop as exc:
                if str(exc) == "missing_scope":
                    self._history_refused = True
                log.warning(
                    "cannot check whether an interrupted post went through; posting it",
                    key=key,
                    error=str(exc),
                )
            if ts:
                log.info("adopted a message posted before a crash", key=key, ts=ts)
                await self._redis.hset(sent_key, mapping={"ts": ts, "channel_id": channel_id})
                await self._redis.hdel(sent_key, "attempt", "attempt_at")
        if ts:
            # What Slack is about to show must survive a failover of Redis (REDIS_MIN_REPLICAS).
            await self._durability.confirm(_queue(channel), since=since)
            try:
                await self._call(
                    "chat.update",
                    channel=_text(sent, "channel_id") or channel_id,
                    ts=ts,
                    text=text,
                    blocks=blocks or None,
                )
                return
            except _Drop as exc:
                if str(exc) not in _GONE_ERRORS:
                    raise
                log.warning("message gone from Slack; posting it again", key=key, error=str(exc))
                await self._redis.delete(sent_key)
        # The attempt must survive a failover before the post goes out, or a promoted replica
        # would post it a second time: recorded and waited for on one connection.
        await self._durability.run(
            self._attempt,
            keys=[sent_key],
            args=[uuid.uuid4().hex, repr(time.time()), channel_id, KEY_TTL_MS],
        )
        try:
            answer = await self._call(
                "chat.postMessage",
                channel=channel_id,
                text=text,
                blocks=blocks or None,
                thread_ts=thread_ts or None,
                reply_broadcast=broadcast if thread_ts else None,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key}},
            )
        except _Failed as failed:
            if not failed.maybe_applied:
                # Slack said no (a 429, an error) or was never reached: nothing was posted, so
                # the next delivery simply posts, without reading the channel's history first.
                await self._redis.hdel(sent_key, "attempt", "attempt_at")
            raise
        await self._redis.hset(
            sent_key, mapping={"ts": str(answer["ts"]), "channel_id": str(answer["channel"])}
        )
        await self._redis.hdel(sent_key, "attempt", "attempt_at")

    async def _find_posted(
        self, *, key: str, channel_id: str, thread_ts: str, since: float
    ) -> str | None:
        """Find the message an earlier, interrupted attempt may have posted for ``key``."""
        # From the attempt (less a minute of clock skew), however long the bot was down since.
        oldest = f"{max(since - 60.0, 0):.6f}"
        cursor: str | None = None
        for _ in range(10):
            if thread_ts:
                answer = await self._call(
                    "conversations.replies",
                    channel=channel_id,
                    ts=thread_ts,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            else:
                answer = await self._call(
                    "conversations.history",
                    channel=channel_id,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            for message in answer.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == METADATA_TYPE and payload.get("key") == key:
                    return str(message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def channel_id(self, channel: str) -> str:
        """Resolve ``#name``, ``name``, a channel ID or a user ID (their DM) to a channel ID
        (chat.update needs IDs).

        The first time a public channel is used, the bot joins it when it may read history:
        posting needs no membership (``chat:write.public``) but reading history, which crash
        recovery relies on, does. Without the history scopes it stays out.
        """
        name = channel.removeprefix("#")
        if name in self._channel_ids:
            return self._channel_ids[name]
        cached = await self._redis.hget(f"{PREFIX}:channel_ids", name)
        if cached:
            self._channel_ids[name] = cached.decode()
            return self._channel_ids[name]
        if _USER_ID.match(name):
            # A direct message to a person (a reminder to a lock's holder): its DM channel.
            opened = await self._call("conversations.open", users=name)
            info = {**(opened.get("channel") or {}), "is_im": True}
        elif _CHANNEL_ID.match(name):
            info = (await self._call("conversations.info", channel=name)).get("channel") or {}
        else:
            info = await self._find_channel(name)
        channel_id = str(info["id"])
        joins = self.reads_history and (self._scopes is None or "channels:join" in self._scopes)
        public = not info.get("is_private") and not info.get("is_im")
        if joins and public and not info.get("is_member"):
            try:
                await self._call("conversations.join", channel=channel_id)
            except _Drop as exc:
                log.warning(
                    "cannot join the channel; crash recovery there may post twice",
                    channel=name,
                    error=str(exc),
                )
        await self._redis.hset(f"{PREFIX}:channel_ids", name, channel_id)
        self._channel_ids[name] = channel_id
        return channel_id

    async def _find_channel(self, name: str) -> dict[str, Any]:
        cursor = None
        while True:
            answer = await self._call(
                "conversations.list",
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for item in answer.get("channels") or []:
                if item.get("name") == name:
                    return dict(item)
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                raise _Drop(f"channel #{name} not found: create it, or invite the bot if private")

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """One Web API call, translated into: a result, ``_Retry`` or ``_Drop`` (each saying
        whether Slack may have done it all the same)."""
        wait = self._not_before.get(method, 0.0) - time.monotonic()
        if wait > 0:
            raise _Retry(wait)  # not even sent
        args = {k: v for k, v in params.items() if v is not None}
        try:
            # The SDK's named methods know each method's verb and encoding (JSON for writes,
            # form/query for reads), which raw api_call would leave to us.
            call = getattr(self._client, method.replace(".", "_"))
            response = await call(**args)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or f"http_{status}")
            unknown = outcome_unknown(exc)
            if status == 429:
                delay = retry_after(exc.response.headers, default=1.0)
                self._not_before[method] = time.monotonic() + delay
                metrics.SLACK_CALLS.labels(method, "ratelimited").inc()
                log.info("slack rate limit; waiting", method=method, retry_after=delay)
                raise _Retry(delay, maybe_applied=unknown) from exc
            if status >= 500:
                metrics.SLACK_CALLS.labels(method, "server_error").inc()
                log.warning("slack server error; will retry", method=method, status=status)
                raise _Retry(0, maybe_applied=unknown) from exc
            if error in _AUTH_ERRORS:
                metrics.SLACK_CALLS.labels(method, "auth_error").inc()
                log.error("slack rejected the bot token; pausing", method=method, error=error)
                raise _Retry(60.0, maybe_applied=unknown) from exc
            metrics.SLACK_CALLS.labels(method, "error").inc()
            raise _Drop(error, maybe_applied=unknown) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels(method, "unreachable").inc()
            log.warning("slack unreachable; will retry", method=method, error=repr(exc))
            raise _Retry(0, maybe_applied=outcome_unknown(exc)) from exc
        metrics.SLACK_CALLS.labels(method, "ok").inc()
        self._note_scopes(getattr(response, "headers", None))
        data: dict[str, Any] = dict(response.data) if isinstance(response.data, dict) else {}
        return data


def granted_scopes(headers: Any) -> frozenset[str] | None:
    """The token's scopes, from the ``X-OAuth-Scopes`` header Slack puts on its answers."""
    found = {str(k).lower(): v for k, v in dict(headers or {}).items()}.get("x-oauth-scopes")
    if isinstance(found, list):
        found = found[0] if found else None
    if not isinstance(found, str):
        return None
    return frozenset(s.strip() for s in found.split(",") if s.strip())


def outcome_unknown(exc: Exception) -> bool:
    """Whether Slack may have done what a failed call asked: the outbox's one notion of an
    *unknown outcome*, after which a post is looked up in the channel instead of made again.

    Known undone: Slack answered with a verdict (a 429, or an ``ok: false`` error such as a refused
    token or an unknown channel), or the connection never opened, so nothing was sent. Unknown:
    a timeout, a connection lost once the request may have gone out, a 5xx (Slack's or a gateway's
    in front of it, which may have timed out after Slack acted), an answer that cannot be read.
    """
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0)
        if status == 429:
            return False
        data = getattr(exc.response, "data", None)
        said_no = isinstance(data, dict) and data.get("ok") is False
        return not (said_no and status < 500)
    return not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def retry_after(headers: Any, *, default: float) -> float:
    """The seconds a 429 (or a 503) asks to wait, from its ``Retry-After``; ``default`` without."""
    value = None
    if headers:
        value = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(value, list):
            value = value[0] if value else None
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default
