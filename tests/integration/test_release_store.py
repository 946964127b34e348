"""Releases in the real (embedded) Redis: compare-and-set, the app/env claim, the indexes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.adapters.store.releases import INDEX_TTL, RedisReleaseStore
from bot.domain.releases import (
    Changelog,
    ChangelogEntry,
    LockOverride,
    PipelineLink,
    Release,
    ReleaseState,
)
from bot.services.releases import PendingRequest
from tests.release_records import sample_release

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CLAIM_TTL = 3 * 86400.0
ACTIVE = "release:active:orders:production"


def release(release_id: str = "r-1", **changes: Any) -> Release:
    return sample_release(id=release_id, **changes)


@pytest.fixture
def store(redis: aioredis.Redis) -> RedisReleaseStore:
    return RedisReleaseStore(redis)


# --------------------------------------------------------------------------------------------
# create and the app/env claim


async def test_create_stores_version_one_and_claims_app_and_env(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    first = release()
    assert await store.create(first, claim_ttl=CLAIM_TTL) is None
    assert await store.load("r-1") == (first, 1)
    assert await redis.get(ACTIVE) == b"r-1"
    # claimed for as long as the release may wait (the store keeps the claim alive while the
    # release moves, up to a week without moving)
    assert 0 < await redis.ttl(ACTIVE) <= 7 * 86400
    assert 0 < await redis.ttl("release:r-1") <= INDEX_TTL
    assert await store.open_ids() == ["r-1"]


async def test_a_full_release_survives_the_round_trip(store: RedisReleaseStore) -> None:
    full = release(
        kind="rollback",
        state="deploying",
        watched=True,
        mr_iid=42,
        mr_url="https://gitlab.example.com/platform/deployments/-/merge_requests/42",
        branch="pitcrew/orders-production-1.4.2",
        head_sha="abc123",
        approvals=("UALICE", "UBOB"),
        override=LockOverride(holder="ULOCKER", reason="freeze", since=T0, by="UREQ"),
        merge_sha="f00dfeed",
        mr_pipeline=PipelineLink(id=12, status="success", url="https://gitlab/p/12"),
        deploy_pipeline=PipelineLink(id=77, status="running"),
        rollout_started_at=T0 + timedelta(minutes=5),
        changelog=Changelog(
            entries=(
                ChangelogEntry(
                    sha="0123456789abcdef",
                    title="Fix #12 <&>",
                    author="Alice",
                    url="https://gitlab/c/0123",
                    issues=("12",),
                ),
            ),
            total=3,
            compare_url="https://gitlab/compare",
            issues_url="https://gitlab/issues",
        ),
    )
    await store.create(full, claim_ttl=CLAIM_TTL)
    assert await store.load("r-1") == (full, 1)


async def test_load_of_an_unknown_release(store: RedisReleaseStore) -> None:
    assert await store.load("nope") == (None, 0)


async def test_a_second_create_for_the_same_app_and_env_gets_the_first_id(
    store: RedisReleaseStore,
) -> None:
    first = release("r-1")
    await store.create(first, claim_ttl=CLAIM_TTL)
    assert await store.create(release("r-2", to_version="1.4.3"), claim_ttl=CLAIM_TTL) == "r-1"
    assert await store.load("r-2") == (None, 0)
    assert await store.load("r-1") == (first, 1)
    assert await store.open_ids() == ["r-1"]


async def test_other_apps_and_envs_are_not_blocked(store: RedisReleaseStore) -> None:
    await store.create(release("r-1"), claim_ttl=CLAIM_TTL)
    assert await store.create(release("r-2", env="staging"), claim_ttl=CLAIM_TTL) is None
    assert await store.create(release("r-3", app="billing"), claim_ttl=CLAIM_TTL) is None
    assert await store.open_ids() == ["r-1", "r-2", "r-3"]


@pytest.mark.parametrize("end", ["healthy", "failed", "rejected", "expired", "refused"])
async def test_the_claim_is_freed_when_the_release_ends(
    store: RedisReleaseStore, redis: aioredis.Redis, end: ReleaseState
) -> None:
    first = release("r-1")
    await store.create(first, claim_ttl=CLAIM_TTL)
    assert await store.save(replace(first, state=end), expected=1)
    assert await redis.get(ACTIVE) is None
    assert await store.open_ids() == []
    assert await store.create(release("r-2"), claim_ttl=CLAIM_TTL) is None
    assert await redis.get(ACTIVE) == b"r-2"
    assert await store.open_ids() == ["r-2"]


async def test_a_claim_left_by_a_release_already_ended_is_taken_over(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    ended = release("r-1", state="healthy")
    await store.save(ended, expected=0)
    await redis.set(ACTIVE, "r-1")  # as if a crash had kept the claim after the save
    assert await store.create(release("r-2"), claim_ttl=CLAIM_TTL) is None
    assert await redis.get(ACTIVE) == b"r-2"
    assert await store.load("r-2") == (release("r-2"), 1)


async def test_a_claim_left_by_a_release_never_stored_is_taken_over(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    # the claim was made, then the process died before saving (but see the race below)
    await redis.set(ACTIVE, "r-lost")
    assert await store.create(release("r-2"), claim_ttl=CLAIM_TTL) is None
    assert await redis.get(ACTIVE) == b"r-2"


async def test_creates_racing_for_one_app_and_env_open_one_release(
    store: RedisReleaseStore,
) -> None:
    """Ten /deploy of the same app and env at once, on any replicas: one release, and the
    nine others are told which one is in flight. (The claim and the record are written in one
    step; a create that took over a claim whose record was not saved yet opened two.)"""
    results = await asyncio.gather(
        *(store.create(release(f"r-{i}"), claim_ttl=CLAIM_TTL) for i in range(10))
    )
    winners = [f"r-{i}" for i, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert [r for r in results if r is not None] == winners * 9
    assert await store.open_ids() == winners


async def test_ending_a_release_does_not_free_someone_elses_claim(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    await store.create(release("r-1"), claim_ttl=CLAIM_TTL)
    stray = release("r-0", state="expired")
    assert await store.save(stray, expected=0)
    assert await redis.get(ACTIVE) == b"r-1"


async def test_creating_an_id_that_exists_already_fails_and_frees_the_claim(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    await store.save(release("r-1", env="staging"), expected=0)
    with pytest.raises(RuntimeError, match="release r-1 exists already"):
        await store.create(release("r-1"), claim_ttl=CLAIM_TTL)
    assert await redis.get(ACTIVE) is None


# --------------------------------------------------------------------------------------------
# save: compare-and-set


async def test_save_is_compare_and_set(store: RedisReleaseStore) -> None:
    first = release()
    await store.create(first, claim_ttl=CLAIM_TTL)
    approved = first.moved("approved", approvals=("UALICE",))
    assert await store.save(approved, expected=1)
    assert await store.load("r-1") == (approved, 2)

    stale = first.moved("rejected", ended_by="UBOB")
    assert not await store.save(stale, expected=1)
    assert not await store.save(stale, expected=0)
    assert not await store.save(stale, expected=3)
    assert await store.load("r-1") == (approved, 2)
    assert await store.open_ids() == ["r-1"]


async def test_a_new_record_needs_expected_zero(store: RedisReleaseStore) -> None:
    assert not await store.save(release(), expected=1)
    assert await store.load("r-1") == (None, 0)
    assert await store.open_ids() == []


async def test_exactly_one_of_concurrent_saves_wins(store: RedisReleaseStore) -> None:
    first = release()
    await store.create(first, claim_ttl=CLAIM_TTL)
    updates = [replace(first, approvals=(f"U{n:04d}",)) for n in range(20)]
    results = await asyncio.gather(*(store.save(u, expected=1) for u in updates))
    assert results.count(True) == 1
    stored, version = await store.load("r-1")
    assert version == 2
    assert stored == updates[results.index(True)]


# --------------------------------------------------------------------------------------------
# Indexes: which release a webhook or a rollout is about


async def test_indexes_by_mr_branch_and_merge_sha(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    first = release()
    await store.create(first, claim_ttl=CLAIM_TTL)
    assert await store.by_mr(42) is None
    assert await store.by_branch("pitcrew/orders-production-1.4.2") is None

    opened = replace(first, mr_iid=42, branch="pitcrew/orders-production-1.4.2")
    assert await store.save(opened, expected=1)
    assert await store.by_mr(42) == "r-1"
    assert await store.by_mr(43) is None
    assert await store.by_branch("pitcrew/orders-production-1.4.2") == "r-1"
    assert await store.by_merge_sha("f00dfeed") is None

    merged = opened.moved("merged", merge_sha="f00dfeed")
    assert await store.save(merged, expected=2)
    assert await store.by_merge_sha("f00dfeed") == "r-1"
    assert await store.by_merge_sha("deadbeef") is None
    for key in ("release:mr:42", "release:branch:pitcrew/orders-production-1.4.2"):
        assert 0 < await redis.ttl(key) <= INDEX_TTL
    assert 0 < await redis.ttl("release:sha:f00dfeed") <= INDEX_TTL


@pytest.mark.parametrize("state", ["merged", "deploying", "rolling_out"])
async def test_following_names_the_last_merged_release(
    store: RedisReleaseStore, redis: aioredis.Redis, state: ReleaseState
) -> None:
    await store.save(release(state=state), expected=0)
    assert await store.following("orders", "production") == "r-1"
    assert await store.following("orders", "staging") is None
    assert await store.following("billing", "production") is None
    assert 0 < await redis.ttl("release:follow:orders:production") <= INDEX_TTL


@pytest.mark.parametrize(
    "state", ["requested", "awaiting_approval", "waiting_pipeline", "approved", "merging"]
)
async def test_nothing_is_followed_before_the_merge(
    store: RedisReleaseStore, state: ReleaseState
) -> None:
    await store.save(release(state=state), expected=0)
    assert await store.following("orders", "production") is None


async def test_following_moves_to_the_next_merged_release(store: RedisReleaseStore) -> None:
    await store.save(release("r-1", state="merged"), expected=0)
    await store.save(release("r-2", state="merged"), expected=0)
    assert await store.following("orders", "production") == "r-2"


async def test_open_ids_holds_only_releases_not_yet_ended(store: RedisReleaseStore) -> None:
    states: list[ReleaseState] = [
        "requested",
        "awaiting_approval",
        "waiting_pipeline",
        "approved",
        "merging",
        "merged",
        "deploying",
        "rolling_out",
        "healthy",
        "failed",
        "rejected",
        "expired",
        "refused",
    ]
    for n, state in enumerate(states):
        assert await store.save(release(f"r-{n:02d}", env=f"env{n}", state=state), expected=0)
    assert await store.open_ids() == [f"r-{n:02d}" for n in range(8)]

    merging, _ = await store.load("r-04")
    assert merging is not None
    assert await store.save(merging.moved("failed", failure="merge conflict"), expected=1)
    assert "r-04" not in await store.open_ids()


# --------------------------------------------------------------------------------------------
# Requests waiting for "Deploy anyway"

REQUEST = PendingRequest(
    id="req-9c1",
    kind="deploy",
    app="orders",
    env="production",
    version="1.4.2",
    source_env=None,
    requester="UREQ",
)


async def test_a_pending_request_is_kept_for_its_ttl(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    await store.put_request(REQUEST, ttl=900)
    assert 0 < await redis.ttl("release-request:req-9c1") <= 900
    assert await store.get_request("req-9c1") == REQUEST
    assert await store.get_request("req-9c1") == REQUEST  # reading does not consume it


async def test_a_pending_request_is_taken_once(store: RedisReleaseStore) -> None:
    promotion = replace(REQUEST, version=None, source_env="staging")
    await store.put_request(promotion, ttl=900)
    assert await store.take_request("req-9c1") == promotion
    assert await store.take_request("req-9c1") is None
    assert await store.get_request("req-9c1") is None


async def test_concurrent_takes_give_the_request_to_one_click(store: RedisReleaseStore) -> None:
    await store.put_request(REQUEST, ttl=900)
    taken = await asyncio.gather(*(store.take_request("req-9c1") for _ in range(10)))
    assert taken.count(REQUEST) == 1
    assert taken.count(None) == 9


async def test_unknown_requests(store: RedisReleaseStore) -> None:
    assert await store.get_request("nope") is None
    assert await store.take_request("nope") is None
