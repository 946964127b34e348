"""Releases in the real (embedded) Redis: compare-and-set, the latest release of an app and env,
the indexes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from bot.adapters.store.releases import INDEX_TTL, RedisReleaseStore
from bot.domain.releases import (
    Changelog,
    ChangelogEntry,
    LockOverride,
    PipelineLink,
    Release,
    ReleaseRef,
    ReleaseState,
)
from bot.services.releases import PendingRequest
from tests.release_records import sample_release

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LATEST = "release:latest:orders:production"


def release(release_id: str = "r-1", **changes: Any) -> Release:
    return sample_release(id=release_id, **changes)


@pytest.fixture
def store(redis: aioredis.Redis) -> RedisReleaseStore:
    return RedisReleaseStore(redis)


# --------------------------------------------------------------------------------------------
# create and the latest release of an app and env


async def test_create_stores_version_one_as_the_latest_of_its_app_and_env(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    first = release()
    assert await store.create(first, replacing=None) is None
    assert await store.load("r-1") == (first, 1)
    assert await store.latest("orders", "production") == "r-1"
    assert 0 < await redis.ttl(LATEST) <= INDEX_TTL
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
        merged_at=T0 + timedelta(minutes=4),
        mr_pipeline=PipelineLink(id=12, status="success", url="https://gitlab/p/12"),
        deploy_pipeline=PipelineLink(id=77, status="running"),
        rollout_started_at=T0 + timedelta(minutes=5),
        supersedes=ReleaseRef(id="r-0", title="Deploy orders 1.4.3 to production", requester="U1"),
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
    await store.create(full, replacing=None)
    assert await store.load("r-1") == (full, 1)


async def test_a_record_of_an_earlier_version_still_loads(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    """Records written before merged_at, failed_step and the superseding links existed."""
    old = release(state="merged", merge_sha="f00d")
    data = json.loads(TypeAdapter(Release).dump_json(old))
    for field in ("merged_at", "failed_step", "superseded_by", "supersedes"):
        del data[field]
    await redis.hset("release:r-1", mapping={"v": 3, "data": json.dumps(data)})
    assert await store.load("r-1") == (old, 3)


async def test_load_of_an_unknown_release(store: RedisReleaseStore) -> None:
    assert await store.load("nope") == (None, 0)


async def test_a_create_judged_against_another_latest_stores_nothing(
    store: RedisReleaseStore,
) -> None:
    first = release("r-1")
    await store.create(first, replacing=None)
    assert await store.create(release("r-2", to_version="1.4.3"), replacing=None) == "r-1"
    assert await store.create(release("r-2", to_version="1.4.3"), replacing="r-0") == "r-1"
    assert await store.load("r-2") == (None, 0)
    assert await store.latest("orders", "production") == "r-1"
    assert await store.open_ids() == ["r-1"]


async def test_a_create_replacing_the_latest_takes_its_place(store: RedisReleaseStore) -> None:
    await store.create(release("r-1"), replacing=None)
    assert await store.create(release("r-2", kind="rollback"), replacing="r-1") is None
    assert await store.latest("orders", "production") == "r-2"
    assert await store.open_ids() == ["r-1", "r-2"]  # r-1 is superseded by the service


async def test_other_apps_and_envs_have_their_own_latest(store: RedisReleaseStore) -> None:
    await store.create(release("r-1"), replacing=None)
    assert await store.create(release("r-2", env="staging"), replacing=None) is None
    assert await store.create(release("r-3", app="billing"), replacing=None) is None
    assert await store.latest("orders", "staging") == "r-2"
    assert await store.latest("billing", "production") == "r-3"
    assert await store.open_ids() == ["r-1", "r-2", "r-3"]


async def test_creates_racing_for_one_app_and_env_store_one_release(
    store: RedisReleaseStore,
) -> None:
    """Ten /deploy of the same app and env at once, on any replicas: one release, and the
    nine others are told which one is the latest now, to be judged against it again."""
    results = await asyncio.gather(
        *(store.create(release(f"r-{i}"), replacing=None) for i in range(10))
    )
    winners = [f"r-{i}" for i, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert [r for r in results if r is not None] == winners * 9
    assert await store.open_ids() == winners


async def test_a_release_that_never_opened_gives_the_latest_back(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    await store.create(release("r-1", state="merged"), replacing=None)
    rollback = release("r-2", kind="rollback", supersedes=ReleaseRef(id="r-1", title="t",
                       requester="U"))  # fmt: skip
    await store.create(rollback, replacing="r-1")
    await store.restore_latest(rollback)
    assert await store.latest("orders", "production") == "r-1"
    # a release that replaced nothing leaves no latest behind
    alone = release("r-3", env="staging")
    await store.create(alone, replacing=None)
    await store.restore_latest(alone)
    assert await store.latest("orders", "staging") is None
    # and only the release the pointer names gives it back
    await store.create(release("r-4", env="staging"), replacing=None)
    await store.restore_latest(alone)
    assert await store.latest("orders", "staging") == "r-4"


@pytest.mark.parametrize("legacy", ["release:active:orders:production",
                                    "release:follow:orders:production"])  # fmt: skip
async def test_the_claims_of_an_earlier_version_count_as_the_latest(
    store: RedisReleaseStore, redis: aioredis.Redis, legacy: str
) -> None:
    await store.save(release("r-old", state="awaiting_approval"), expected=0)
    await redis.set(legacy, "r-old")
    assert await store.latest("orders", "production") == "r-old"
    assert await store.create(release("r-2"), replacing=None) == "r-old"
    assert await store.create(release("r-2"), replacing="r-old") is None
    assert await store.latest("orders", "production") == "r-2"


async def test_creating_an_id_that_exists_already_fails(store: RedisReleaseStore) -> None:
    await store.save(release("r-1", env="staging"), expected=0)
    with pytest.raises(RuntimeError, match="release r-1 exists already"):
        await store.create(release("r-1"), replacing=None)
    assert await store.latest("orders", "production") is None


# --------------------------------------------------------------------------------------------
# save: compare-and-set


async def test_save_is_compare_and_set(store: RedisReleaseStore) -> None:
    first = release()
    await store.create(first, replacing=None)
    approved = replace(first, state="approved", approvals=("UALICE",))
    assert await store.save(approved, expected=1)
    assert await store.load("r-1") == (approved, 2)

    stale = replace(first, state="rejected", ended_by="UBOB")
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
    await store.create(first, replacing=None)
    updates = [replace(first, approvals=(f"U{n:04d}",)) for n in range(20)]
    results = await asyncio.gather(*(store.save(u, expected=1) for u in updates))
    assert results.count(True) == 1
    stored, version = await store.load("r-1")
    assert version == 2
    assert stored == updates[results.index(True)]


# --------------------------------------------------------------------------------------------
# Indexes: which release a webhook is about


async def test_indexes_by_mr_branch_and_merge_sha(
    store: RedisReleaseStore, redis: aioredis.Redis
) -> None:
    first = release()
    await store.create(first, replacing=None)
    assert await store.by_mr(42) is None
    assert await store.by_branch("pitcrew/orders-production-1.4.2") is None

    opened = replace(first, mr_iid=42, branch="pitcrew/orders-production-1.4.2")
    assert await store.save(opened, expected=1)
    assert await store.by_mr(42) == "r-1"
    assert await store.by_mr(43) is None
    assert await store.by_branch("pitcrew/orders-production-1.4.2") == "r-1"
    assert await store.by_merge_sha("f00dfeed") is None

    merged = replace(opened, state="merged", merge_sha="f00dfeed")
    assert await store.save(merged, expected=2)
    assert await store.by_merge_sha("f00dfeed") == "r-1"
    assert await store.by_merge_sha("deadbeef") is None
    for key in ("release:mr:42", "release:branch:pitcrew/orders-production-1.4.2"):
        assert 0 < await redis.ttl(key) <= INDEX_TTL
    assert 0 < await redis.ttl("release:sha:f00dfeed") <= INDEX_TTL


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
        "not_seen",
        "rejected",
        "expired",
        "refused",
        "superseded",
    ]
    for n, state in enumerate(states):
        assert await store.save(release(f"r-{n:02d}", env=f"env{n}", state=state), expected=0)
    assert await store.open_ids() == [f"r-{n:02d}" for n in range(8)]

    merging, _ = await store.load("r-04")
    assert merging is not None
    assert await store.save(replace(merging, state="failed", failure="merge conflict"), expected=1)
    assert "r-04" not in await store.open_ids()


async def test_ended_ids_are_the_ends_of_the_last_week_in_the_order_they_came(
    store: RedisReleaseStore,
) -> None:
    """What the deployment records' reconcile looks through: each end once, by its time,
    trimmed to a week as later ends come."""
    day = timedelta(days=1)
    ends = [  # id, state, when it ended
        ("r-old", "healthy", T0 - 9 * day),  # trimmed by the later ends
        ("r-b", "failed", T0 - 2 * day),
        ("r-a", "deployed", T0 - day),
        ("r-c", "superseded", T0),
    ]
    for release_id, state, at in ends:
        assert await store.save(
            release(release_id, env=release_id, state=state, finished_at=at), expected=0
        )
    assert await store.save(release("r-open", env="open", state="merged"), expected=0)
    assert await store.ended_ids(since=(T0 - 3 * day).timestamp()) == ["r-b", "r-a", "r-c"]
    assert await store.ended_ids(since=(T0 - 30 * day).timestamp()) == ["r-b", "r-a", "r-c"]
    assert await store.ended_ids(since=T0.timestamp()) == ["r-c"]
    # a failed release that recovers: one entry, at its new end
    failed, version = await store.load("r-b")
    assert failed is not None
    healthy = replace(failed, state="healthy", finished_at=T0 + day)
    assert await store.save(healthy, expected=version)
    assert await store.ended_ids(since=(T0 - 3 * day).timestamp()) == ["r-a", "r-c", "r-b"]


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
