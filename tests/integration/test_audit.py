"""The audit log: written by the bot, read by ``pitcrew audit`` with filters."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.adapters.store.audit import RedisAuditLog
from bot.cli import parse_since
from bot.domain.errors import PitcrewError
from bot.services.ports import AuditEntry

from .test_cli import _pitcrew


async def _seed(redis: aioredis.Redis) -> None:
    log = RedisAuditLog(redis)
    now = time.time()
    for at, actor, action, env in [
        (now - 3 * 86400, "U0ALICE", "lock", "staging"),
        (now - 3600, "U0ALICE", "lock", "production"),
        (now - 60, "U0BOB", "unlock", "production"),
    ]:
        await log.record(
            AuditEntry(
                at=at,
                actor=actor,
                action=action,
                env=env,
                detail="freeze",
                origin="slack #payments-deploys",
            )
        )


async def test_pitcrew_audit_filters_by_env_user_and_time(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await _seed(redis)
    env = {"REDIS_URL": redis_url}
    code, out, err = await _pitcrew("audit", "--env", "production", env=env, cwd=tmp_path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["when", "(UTC)", "who", "action", "env", "target", "detail", "from"]
    assert [line.split()[2:5] for line in lines[1:]] == [
        ["U0ALICE", "lock", "production"],
        ["U0BOB", "unlock", "production"],
    ]
    assert lines[1].endswith("freeze  slack #payments-deploys")

    _, out, _ = await _pitcrew("audit", "--user", "U0ALICE", "--since", "1d", env=env, cwd=tmp_path)
    assert [line.split()[2:5] for line in out.splitlines()[1:]] == [
        ["U0ALICE", "lock", "production"]
    ]

    _, out, _ = await _pitcrew("audit", "--env", "nowhere", env=env, cwd=tmp_path)
    assert out == "no audit entries match\n"


async def test_a_bad_since_is_one_line(redis_url: str, tmp_path: Path) -> None:
    code, _, err = await _pitcrew(
        "audit", "--since", "last tuesday", env={"REDIS_URL": redis_url}, cwd=tmp_path
    )
    assert code == 2
    assert err == (
        "pitcrew: --since 'last tuesday': expected 7d, 12h, 30m or a date like 2026-11-01\n"
    )


def test_since_accepts_ages_and_dates() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp()
    assert parse_since("7d", now=now) == now - 7 * 86400
    assert parse_since("30m", now=now) == now - 1800
    assert parse_since("2026-11-01", now=now) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    with pytest.raises(PitcrewError):
        parse_since("soon", now=now)
