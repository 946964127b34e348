"""Run the real bot in its own process, for tests that kill it (``kill -9``) and restart it.

Reads its settings from the environment like ``pitcrew serve``; ``PITCREW_TEST_PACING`` sets the
outbox's per-channel pacing so that a burst drains within a test's time, and
``PITCREW_TEST_CLAIM_IDLE`` how long a dead replica's stream entries wait before another takes
them (30 s in production).
"""

from __future__ import annotations

import asyncio
import os

from bot import logs
from bot.app import Pitcrew
from bot.settings import load_settings


async def main() -> None:
    settings = load_settings()
    logs.configure(level=settings.log_level, fmt="json", secrets=settings.secrets)
    pacing = float(os.environ.get("PITCREW_TEST_PACING", "1.0"))
    claim_idle = float(os.environ.get("PITCREW_TEST_CLAIM_IDLE", "30"))
    await Pitcrew(
        settings, host="127.0.0.1", outbox_pacing=pacing, lease_ttl=1.5, claim_idle=claim_idle
    ).serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
