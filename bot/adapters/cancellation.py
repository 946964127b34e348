"""Keeping cancellation intact around redis-py.

redis-py can turn a cancellation that lands in the middle of a command into a connection
error. A loop that catches connection errors to retry would then swallow the cancellation and
never stop. Every such ``except`` calls ``reraise_if_cancelling()`` first.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
