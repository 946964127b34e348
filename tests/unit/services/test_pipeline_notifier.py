"""The pipeline service's guarantees, one observation at a time, with in-memory ports."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.adapters.gitlab.payloads import observed, parse_event
from bot.adapters.slack.blocks.pipelines import PipelineBlocks
from bot.domain.catalog import parse_catalog
from bot.domain.pipelines import PipelineObserved, RefHistory
from bot.services.catalog import CatalogHolder
from bot.services.pipelines import (
    Commit,
    PipelineKey,
    PipelineNotifier,
    PipelineRecord,
    RefUpdate,
)
from bot.services.ports import OutgoingMessage

CATALOG = Path(__file__).parents[2] / "fixtures" / "catalog.yaml"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Source:
    async def read(self) -> tuple[str, str]:
        return "catalog.yaml", CATALOG.read_text()


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[tuple[str, int], PipelineRecord] = {}
        self.refs: dict[str, tuple[RefHistory, int]] = {}

    async def load(self, pipelines: Sequence[PipelineKey]) -> list[PipelineRecord | None]:
        return [self.records.get(key) for key in pipelines]

    async def load_refs(
        self, scopes: Sequence[tuple[str, str]]
    ) -> list[tuple[RefHistory | None, int]]:
        return [self.refs.get(scope, (None, 0)) for _, scope in scopes]

    async def commit(self, commits: Sequence[Commit]) -> list[bool]:
        return [self._commit(c.record, expected=c.expected, ref=c.ref) for c in commits]

    def _commit(self, record: PipelineRecord, *, expected: int, ref: RefUpdate | None) -> bool:
        key = (record.state.project, record.state.id)
        current = self.records.get(key)
        if (current.version if current else 0) != expected:
            return False
        if ref is not None:
            if self.refs.get(ref.scope, (None, 0))[1] != ref.expected:
                return False
            self.refs[ref.scope] = (ref.history, ref.expected + 1)
        announced = current.announced if current else 0
        self.records[key] = replace(record, announced=announced)
        return True

    async def mark_announced(self, announced: Sequence[tuple[PipelineKey, int]]) -> None:
        for key, version in announced:
            record = self.records[key]
            self.records[key] = replace(record, announced=max(record.announced, version))


class MemoryOutbox:
    def __init__(self) -> None:
        self.sent: dict[str, tuple[OutgoingMessage, int | None]] = {}
        self.fail_next = 0

    async def send(self, message: OutgoingMessage, *, version: int | None = None) -> None:
        await self.send_many([(message, version)])

    async def send_many(self, messages: Sequence[tuple[OutgoingMessage, int | None]]) -> None:
        if not messages:
            return
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the process died here")
        for message, version in messages:
            self.sent[message.key] = (message, version)


class People:
    async def slack_user_for_email(self, email: str) -> str | None:
        return {"alice@example.com": "U0ALICE"}.get(email)


class Throttle:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def first_in(self, key: str, *, seconds: float) -> bool:
        first = key not in self.keys
        self.keys.append(key)
        return first


def _observation(pipeline_id: int, status: str, *, minutes: int = 0) -> PipelineObserved:
    at = T0 + timedelta(minutes=minutes)
    return PipelineObserved(
        project="shop/orders",
        default_branch="main",
        pipeline_id=pipeline_id,
        status=status,  # type: ignore[arg-type]
        ref="main",
        sha="a1b2c3d4e5f6",
        commit_title="Add retries",
        author_name="Alice",
        author_email="alice@example.com",
        source="push",
        created_at=at,
        finished_at=at + timedelta(minutes=3) if status in ("success", "failed") else None,
        timestamp=at + timedelta(minutes=3 if status in ("success", "failed") else 0),
    )


@pytest.fixture
async def parts() -> tuple[PipelineNotifier, MemoryStore, MemoryOutbox, Throttle]:
    return await parts_of_a_world()


async def parts_of_a_world() -> tuple[PipelineNotifier, MemoryStore, MemoryOutbox, Throttle]:
    holder = CatalogHolder(Source())
    await holder.reload()
    store, outbox, throttle = MemoryStore(), MemoryOutbox(), Throttle()
    notifier = PipelineNotifier(
        catalog=holder,
        store=store,
        outbox=outbox,
        people=People(),
        throttle=throttle,
        views=PipelineBlocks(),
        gitops_project="platform/deployments",
    )
    return notifier, store, outbox, throttle


async def test_a_crash_between_commit_and_announce_is_repaired_by_the_next_event(parts) -> None:
    notifier, store, outbox, _ = parts
    outbox.fail_next = 1
    with pytest.raises(ConnectionError):
        await notifier.observe(_observation(1, "failed"))
    assert outbox.sent == {}
    assert store.records[("shop/orders", 1)].announced == 0

    await notifier.observe(_observation(1, "failed"))  # GitLab's retry: a duplicate
    assert set(outbox.sent) == {"pipeline:shop/orders:1", "pipeline:shop/orders:1:failure:1"}
    message, version = outbox.sent["pipeline:shop/orders:1:failure:1"]
    assert "<@U0ALICE>" in message.text or any("U0ALICE" in str(b) for b in message.blocks)
    assert version == 1
    assert store.records[("shop/orders", 1)].announced == 1


async def test_a_due_reply_survives_a_newer_event_before_it_was_announced(parts) -> None:
    notifier, _store, outbox, _ = parts
    await notifier.observe(_observation(1, "failed"))
    outbox.fail_next = 1
    with pytest.raises(ConnectionError):
        await notifier.observe(_observation(2, "failed", minutes=5))
    outbox.sent.clear()
    await notifier.observe(_observation(2, "running", minutes=5))  # stale, but repairs
    assert "pipeline:shop/orders:2:failure:1" in outbox.sent


async def test_duplicates_announce_nothing_again(parts) -> None:
    notifier, _, outbox, _ = parts
    await notifier.observe(_observation(1, "success"))
    outbox.sent.clear()
    await notifier.observe(_observation(1, "success"))
    await notifier.observe(_observation(1, "running"))
    assert outbox.sent == {}


async def test_fixed_is_announced_once_in_the_passing_pipelines_thread(parts) -> None:
    notifier, _, outbox, _ = parts
    await notifier.observe(_observation(1, "failed"))
    await notifier.observe(_observation(2, "failed", minutes=5))
    await notifier.observe(_observation(3, "success", minutes=10))
    fixed, _ = outbox.sent["pipeline:shop/orders:3:fixed"]
    assert fixed.thread_key == "pipeline:shop/orders:3"
    assert fixed.broadcast
    assert "2 failures" in fixed.text
    outbox.sent.clear()
    await notifier.observe(_observation(3, "success", minutes=10))
    assert outbox.sent == {}


async def test_unknown_projects_are_logged_once_and_the_gitops_repo_not_at_all(parts) -> None:
    notifier, _, outbox, throttle = parts
    stranger = replace(_observation(1, "failed"), project="elsewhere/app")
    await notifier.observe(stranger)
    await notifier.observe(stranger)
    await notifier.observe(replace(_observation(1, "failed"), project="platform/deployments"))
    assert outbox.sent == {}
    assert throttle.keys == ["unknown-project:elsewhere/app"] * 2


def test_the_documented_pipeline_hook_translates() -> None:
    body = (Path(__file__).parents[2] / "fixtures" / "gitlab" / "pipeline_hook.json").read_bytes()
    observation = observed(parse_event("Pipeline Hook", body))
    assert isinstance(observation, PipelineObserved)
    assert parse_catalog(CATALOG.read_text(), source="catalog.yaml").app_for_source(
        observation.project
    )


def _story(seed: int) -> list[PipelineObserved]:
    """Six pipelines of one ref, each running then passing or failing, interleaved as GitLab
    delivers them, with a few retries and stale hooks."""
    rng = random.Random(seed)
    events: list[PipelineObserved] = []
    for pipeline_id in range(1, 7):
        final = rng.choice(("success", "failed"))
        minutes = pipeline_id * 5
        events += [
            _observation(pipeline_id, "running", minutes=minutes),
            _observation(pipeline_id, final, minutes=minutes),
        ]
    rng.shuffle(events)
    events.sort(key=lambda e: e.pipeline_id + rng.uniform(0, 3))  # pipelines overlap
    events += rng.sample(events, k=3)  # retries, late
    return events


@pytest.mark.parametrize("seed", range(12))
async def test_a_batch_shows_what_one_event_at_a_time_shows(seed: int) -> None:
    events = _story(seed)
    one, batch = await parts_of_a_world(), await parts_of_a_world()
    for event in events:
        await one[0].observe(event)
    await batch[0].observe_many(events)
    shown_one = {k: (m.text, m.thread_key) for k, (m, _) in one[2].sent.items()}
    shown_batch = {k: (m.text, m.thread_key) for k, (m, _) in batch[2].sent.items()}
    assert shown_batch == shown_one  # the same messages and replies, each in its final state
    assert {k: r.state for k, r in batch[1].records.items()} == {
        k: r.state for k, r in one[1].records.items()
    }
    assert batch[1].refs.keys() == one[1].refs.keys()
    assert all(r.announced == r.version for r in batch[1].records.values())


async def test_a_failure_left_unannounced_by_a_crash_is_told_before_its_retry() -> None:
    notifier, store, outbox, _ = await parts_of_a_world()
    outbox.fail_next = 1
    with pytest.raises(ConnectionError):
        await notifier.observe(_observation(1, "failed"))
    assert outbox.sent == {}
    retried = replace(
        _observation(1, "running", minutes=30), created_at=T0, finished_at=None
    )  # a new run of the same pipeline, then its result, in the next batch
    passed = replace(_observation(1, "success", minutes=30), created_at=T0)
    await notifier.observe_many([retried, passed])
    failure, _ = outbox.sent["pipeline:shop/orders:1:failure:1"]
    assert "failed" in failure.text  # about the failed run, as it was
    assert not any(key.startswith("pipeline:shop/orders:1:failure:2") for key in outbox.sent)
    message, _ = outbox.sent["pipeline:shop/orders:1"]
    assert " passed " in message.text
    assert store.records[("shop/orders", 1)].announced == store.records[("shop/orders", 1)].version
