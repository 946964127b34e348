"""One loop for every periodic job (sweeps, refreshes, ticks), like kopf's ``guard()``.

A job that fails is logged and tried again at the next turn: a failing turn never ends the loop,
and a cancellation always does (``reraise_if_cancelling``, even when redis-py turned it into a
connection error). A ``PitcrewError`` is a known condition (GitLab down, Redis gone) and gets a
warning line; anything else is a bug and gets its trace. Turns are spaced by ``seconds`` with a
little jitter, so replicas that started together do not keep calling GitLab in step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from bot import logs
from bot.domain.errors import PitcrewError
from bot.services.cancellation import reraise_if_cancelling

log = logs.get(__name__)

JITTER = 0.1


async def every(
    seconds: float,
    job: Callable[[], Awaitable[None]],
    *,
    what: str,
    wait_first: bool = False,
) -> None:
    """Run ``job`` every ``seconds`` until cancelled (after a first wait with ``wait_first``)."""
    if wait_first:
        await asyncio.sleep(_spaced(seconds))
    while True:
        reraise_if_cancelling()
        try:
            await job()
        except PitcrewError as exc:
            reraise_if_cancelling()
            log.warning(f"{what} failed; trying again later", error=str(exc))
        except Exception:
            reraise_if_cancelling()
            log.exception(f"{what} failed; trying again later")
        await asyncio.sleep(_spaced(seconds))


def _spaced(seconds: float) -> float:
    return seconds * random.uniform(1.0 - JITTER, 1.0 + JITTER)
