"""Keeping cancellation intact around redis-py.

redis-py can turn a cancellation that lands in the middle of a command into a connection
error, or swallow it altogether (a blocking read returns as if it had timed out). A loop that
catches connection errors to retry, or simply loops, would then never stop. Every worker loop
calls ``reraise_if_cancelling()`` at the top of each turn and in its ``except`` clauses.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
