"""A sample release for tests: orders 1.4.1 → 1.4.2 to production (manual, one approval),
waiting for it. Each test changes what it is about."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.domain.releases import Release

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def sample_release(**changes: Any) -> Release:
    base = Release(
        id="r-1",
        kind="deploy",
        app="orders",
        team="payments",
        env="production",
        policy="manual",
        approvals_needed=1,
        from_version="1.4.1",
        to_version="1.4.2",
        requester="UREQ",
        created_at=T0,
        state="awaiting_approval",
    )
    return replace(base, **changes)
