"""Run the real bot in its own process, for tests that kill it (``kill -9``) and restart it.

Reads its settings from the environment like ``pitcrew serve``; ``PITCREW_TEST_PACING`` sets the
outbox's per-channel pacing so that a burst drains within a test's time.
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
    await Pitcrew(settings, host="127.0.0.1", outbox_pacing=pacing, lease_ttl=1.5).serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
