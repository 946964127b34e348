"""Taking a slash command or a click: recorded first, acknowledged second, answered safely.

Slack waits 3 seconds for the acknowledgement (the HTTP answer Bolt sends on ``ack()``). Before
it, the command is de-duplicated (``trigger_id``), written to the audit log, and, with
``REDIS_MIN_REPLICAS``, confirmed on that many replicas of Redis, so that a failover of the
store cannot lose a command Pitcrew acknowledged. When the store cannot do that in time, the
acknowledgement itself tells the person to try again, and nothing runs.

Answers that say something was done go through ``safe_answer``: it confirms the work's writes
the same way first, and otherwise says that the outcome could not be confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot import logs
from bot.domain.errors import Unavailable
from bot.services.ports import AuditEntry, AuditLog, Durability, Rendered, Throttle

log = logs.get(__name__)

RECORD_WITHIN = 2.0
"""Seconds the recording may take before Slack's 3 s run out: then "try again"."""


class _Immediate:
    """No replicas to wait for (``REDIS_MIN_REPLICAS=0``, or a listener built in a test)."""

    def mark(self) -> int:
        return 0

    async def confirm(self, near: str | None = None, *, since: int | None = None) -> None:
        return None


IMMEDIATE: Durability = _Immediate()


async def take(
    ack: AsyncAck,
    *,
    what: str,
    dedup: str,
    entry: AuditEntry,
    once: Throttle,
    audit: AuditLog,
    durability: Durability,
) -> bool:
    """Record the command (or click) and acknowledge it. True: go on and handle it. False: it
    was a redelivery (acknowledged, nothing to do) or it could not be recorded (acknowledged
    with "try again")."""
    since = durability.mark()
    try:
        async with asyncio.timeout(RECORD_WITHIN):
            if not await once.first_in(dedup, seconds=3600):
                await ack()
                return False
            await audit.record(entry)
            await durability.confirm(since=since)
    except (Unavailable, TimeoutError) as exc:
        log.warning("slack request not taken: the store cannot record it", what=what,
                    error=str(exc))  # fmt: skip
        await ack(
            text=f":warning: Pitcrew could not record {what} just now (its store did not answer "
            "in time), so nothing was done. Try again in a few seconds."
        )
        return False
    await ack()
    return True


def safe_answer(
    answer: Callable[..., Awaitable[None]], *, what: str, durability: Durability
) -> Callable[..., Awaitable[None]]:
    """``answer``, after the work's writes are confirmed (``REDIS_MIN_REPLICAS``); when they
    cannot be, the person is told so instead of "done". Made before the work starts, so that a
    failover of the store during the work is noticed."""
    since = durability.mark()

    async def confirmed(rendered: Rendered, **options: Any) -> None:
        try:
            await durability.confirm(since=since)
        except Unavailable as exc:
            log.warning("answer withheld: the store did not confirm the writes", what=what,
                        error=str(exc))  # fmt: skip
            rendered = (
                f":warning: Pitcrew cannot confirm that {what} was saved: its store did not "
                "confirm the write in time. Check in a minute, and try again if it is missing.",
                (),
            )
            options = {}  # only to the person, whatever was asked
        await answer(rendered, **options)

    return confirmed
