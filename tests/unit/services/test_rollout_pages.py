"""A page of listed workloads is judged in batches, and tells exactly what one at a time would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.catalog import App, Catalog, Environment, Team
from bot.domain.inventory import Live
from bot.domain.relisting import Listing
from bot.domain.rollouts import Container, Rollout, Workload, WorkloadSnapshot
from bot.services.ports import OutgoingMessage, Rendered
from bot.services.rollouts import RolloutNotifier, Save

NOW = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)


class Holder:
    def __init__(self) -> None:
        def app(name: str) -> App:
            return App(
                name=name,
                team="payments",
                source=f"shop/{name}",
                image=f"registry.example.com/shop/{name}",
                manifests=f"apps/{name}/{{env}}/deployment.yaml",
            )

        self.current = Catalog(
            teams=(Team(name="payments", channel="#payments-deploys"),),
            environments=(Environment(name="production", policy="auto"),),
            apps=(app("orders"), app("billing"), app("search")),
        )


class Store:
    """In memory, counting the calls; ``lose`` makes the batch's compare-and-set of those
    workloads lose to another writer, ``down`` makes every batch fail."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[Workload, int]] = {}
        self.calls: dict[str, int] = {}
        self.lose: set[str] = set()
        self.down = False

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def load(self, key: str) -> tuple[Workload | None, int]:
        self._count("load")
        state, version = self.records.get(key, (None, 0))
        return state, version

    async def save(self, workload: Workload, *, expected: int, active: bool) -> bool:
        self._count("save")
        return self._put(workload, expected)

    def _put(self, workload: Workload, expected: int) -> bool:
        _, version = self.records.get(workload.key, (None, 0))
        if version != expected:
            return False
        self.records[workload.key] = (workload, version + 1)
        return True

    async def load_many(self, keys: Sequence[str]) -> list[tuple[Workload | None, int]]:
        self._count("load_many")
        if self.down:
            raise ConnectionError("Redis went away")
        return [self.records.get(key, (None, 0)) for key in keys]

    async def save_many(self, saves: Sequence[Save]) -> list[bool]:
        self._count("save_many")
        done = []
        for save in saves:
            if save.workload.key in self.lose:  # another writer stored this state first
                self._put(save.workload, save.expected)
                done.append(False)
                continue
            done.append(self._put(save.workload, save.expected))
        return done

    async def forget(self, key: str, *, context: str, kind: str) -> None:
        self.records.pop(key, None)

    async def known(self, *, context: str, kind: str) -> list[str]:
        self._count("known")
        prefix = f"{context}/{kind}/"
        return sorted(k for k in self.records if k.startswith(prefix))

    async def unindex(self, keys: Sequence[str], *, context: str, kind: str) -> None:
        pass

    async def active(self) -> list[str]:
        return []

    async def keep_own_message(self, rollout_id: str) -> None:
        pass

    async def has_own_message(self, rollout_id: str) -> bool:
        return True


class LiveStates:
    def __init__(self) -> None:
        self.live: dict[tuple[str, str], Live] = {}
        self.batches = 0

    async def put_live(self, live: Live) -> None:
        self.live[(live.app, live.env)] = live

    async def put_live_many(self, lives: Sequence[Live]) -> None:
        self.batches += 1
        for live in lives:
            await self.put_live(live)

    async def drop_live(self, app: str, env: str) -> None:
        self.live.pop((app, env), None)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage, *, version: int | None = None) -> None:
        self.sent.append(message.key)


class Views:
    def rollout(self, rollout: Rollout, *, app: str, env: str) -> Rendered:
        return f"{app} {rollout.phase}", []

    def failure(self, rollout: Rollout, *, app: str, env: str, offer: Any) -> Rendered:
        return "failed", []

    def recovered(self, rollout: Rollout, *, app: str, env: str) -> Rendered:
        return "recovered", []

    def removed(self, snapshot: WorkloadSnapshot, *, app: str, env: str) -> Rendered:
        return "removed", []


def workload(namespace: str, rv: int, *, rolling: bool = False, version: str = "1.0") -> Any:
    image = f"registry.example.com/shop/{namespace}:{version}"
    return WorkloadSnapshot(
        kind="Deployment",
        context="prod",
        namespace=namespace,
        name=namespace,
        uid=f"uid-{namespace}",
        generation=2 if rolling else 1,
        observed_generation=1,
        resource_version=str(rv),
        template_hash=image,
        containers=(Container(name="app", image=image),),
        replicas=2,
        status_replicas=2,
        updated=2,
        ready=2,
        available=2,
        observed_at=NOW,
    )


def notifier(store: Store, live: LiveStates, outbox: Outbox) -> RolloutNotifier:
    return RolloutNotifier(
        catalog=Holder(),  # type: ignore[arg-type]
        store=store,
        outbox=outbox,
        views=Views(),
        envs={"prod": "production"},
        pods={},
        live=live,
        clock=lambda: NOW,
    )


PAGE = [
    workload("orders", 10),
    workload("billing", 11),
    workload("search", 12, rolling=True),  # a rollout under way when first seen: told
    workload("kube-system", 13),  # no app's: not judged
]


async def test_a_first_list_stores_the_quiet_ones_in_one_batch() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    await notifier(store, live, outbox).observe_many(PAGE)
    assert outbox.sent == ["rollout:prod/Deployment/search/search/2"]
    assert sorted(store.records) == [
        "prod/Deployment/billing/billing",
        "prod/Deployment/orders/orders",
        "prod/Deployment/search/search",
    ]
    # One batch to read, one to store the two quiet ones; the told one alone, as a watch event.
    assert store.calls == {"load_many": 1, "save_many": 1, "load": 1, "save": 1}
    assert live.batches == 1
    assert sorted(live.live) == [
        ("billing", "production"),
        ("orders", "production"),
        ("search", "production"),
    ]


async def test_a_restart_stores_nothing_and_tells_nothing() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    await notifier(store, live, outbox).observe_many(PAGE)
    outbox.sent.clear()
    store.calls.clear()
    await notifier(store, live, outbox).observe_many(PAGE)
    assert outbox.sent == []
    assert store.calls == {"load_many": 1}


async def test_a_change_while_away_is_told_once_then_never_again() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    await notifier(store, live, outbox).observe_many(PAGE)
    changed = replace(workload("orders", 20, version="1.1"), generation=2, observed_generation=2)
    again = notifier(store, live, outbox)
    await again.observe_many([changed, *PAGE[1:]])
    told = list(outbox.sent)
    await again.observe_many([changed, *PAGE[1:]])
    assert outbox.sent == told  # the same page again: nothing
    # Started and ended while away: one message (posted, then updated to its end).
    assert sorted(set(told)) == [
        "rollout:prod/Deployment/orders/orders/2",
        "rollout:prod/Deployment/search/search/2",
    ]


async def test_a_compare_and_set_lost_in_the_batch_is_judged_again_alone() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    store.lose = {"prod/Deployment/orders/orders"}
    await notifier(store, live, outbox).observe_many(PAGE)
    state, version = store.records["prod/Deployment/orders/orders"]
    assert (state.resource_version, version) == ("10", 1)  # the other writer's, kept
    assert store.calls["load"] == 2  # search (told), then orders again
    assert outbox.sent == ["rollout:prod/Deployment/search/search/2"]


@pytest.mark.parametrize("down", [True, False])
async def test_a_failed_batch_judges_the_page_one_at_a_time(down: bool) -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    store.down = down
    await notifier(store, live, outbox).observe_many(PAGE)
    alone = Store()
    for snapshot in PAGE:
        await notifier(alone, LiveStates(), Outbox()).observe(snapshot)
    assert outbox.sent == ["rollout:prod/Deployment/search/search/2"]
    assert {k: v[0] for k, v in store.records.items()} == {
        k: v[0] for k, v in alone.records.items()
    }
    assert sorted(live.live) == [
        ("billing", "production"),
        ("orders", "production"),
        ("search", "production"),
    ]


def listing(*snapshots: WorkloadSnapshot, complete: bool = True) -> Listing:
    return Listing(
        context="prod",
        kind="Deployment",
        present=frozenset(s.key for s in snapshots),
        complete=complete,
    )


async def test_a_workload_missing_from_a_complete_list_is_told_gone_once() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    await notifier(store, live, outbox).observe_many(PAGE)
    outbox.sent.clear()
    again = notifier(store, live, outbox)  # a restart: billing was deleted meanwhile
    page = [PAGE[0], PAGE[2], PAGE[3]]
    await again.observe_many(page)
    await again.relisted(listing(*page, complete=False))  # a list cut short: nothing
    assert outbox.sent == []
    await again.relisted(listing(*page))
    assert outbox.sent == ["removed:prod/Deployment/billing/billing:uid-billing"]
    assert "prod/Deployment/billing/billing" not in store.records
    assert ("billing", "production") not in live.live
    await again.relisted(listing(*page))  # the next re-list: told once
    assert outbox.sent == ["removed:prod/Deployment/billing/billing:uid-billing"]


async def test_nothing_deleted_nothing_said() -> None:
    store, live, outbox = Store(), LiveStates(), Outbox()
    await notifier(store, live, outbox).observe_many(PAGE)
    outbox.sent.clear()
    store.calls.clear()
    await notifier(store, live, outbox).relisted(listing(*PAGE))
    assert outbox.sent == []
    assert store.calls == {"known": 1}  # nothing absent: no state read
