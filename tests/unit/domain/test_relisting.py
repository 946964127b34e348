"""Workloads gone while nobody watched: what a complete list says, and what it does not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from bot.domain.relisting import Listing, gone, selector_matches, workload_key
from bot.domain.rollouts import Container, Workload, WorkloadSnapshot, last_seen, observe

T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
ORDERS = {"appId": "orders"}


def known(
    name: str,
    *,
    namespace: str = "orders",
    context: str = "prod",
    kind: Any = "Deployment",
    labels: Mapping[str, str] | None = ORDERS,
) -> Workload:
    return Workload(
        context=context,
        kind=kind,
        namespace=namespace,
        name=name,
        uid=f"uid-{name}",
        labels=labels,
        resource_version="7",
        generation=3,
        template_hash="abc",
        containers=(Container(name="api", image="registry.example.com/orders:1.4.1"),),
    )


def listing(*names: str, complete: bool = True, selector: str | None = None, **kw: Any) -> Listing:
    context = kw.get("context", "prod")
    kind = kw.get("kind", "Deployment")
    return Listing(
        context=context,
        kind=kind,
        present=frozenset(
            workload_key(context=context, kind=kind, namespace=ns, name=n)
            for ns, n in (name.split("/") for name in names)
        ),
        complete=complete,
        selector=selector,
    )


ORDERS_WL = known("orders")
BILLING = known("billing", namespace="billing", labels={"appId": "billing"})

CASES: list[tuple[str, list[Workload], Listing, list[str]]] = [
    ("first start ever: nothing known, nothing gone", [], listing(), []),
    ("still listed", [ORDERS_WL], listing("orders/orders"), []),
    ("deleted while down", [ORDERS_WL], listing(), [ORDERS_WL.key]),
    ("one of two deleted", [ORDERS_WL, BILLING], listing("billing/billing"), [ORDERS_WL.key]),
    (
        "a list cut short proves nothing",
        [ORDERS_WL, BILLING],
        listing(complete=False),
        [],
    ),
    (
        "the same name in another namespace is another workload",
        [ORDERS_WL],
        listing("orders-eu/orders"),
        [ORDERS_WL.key],
    ),
    (
        "another context's list judges nothing of prod",
        [ORDERS_WL],
        listing(context="staging"),
        [],
    ),
    (
        "another kind's list judges nothing of Deployments",
        [ORDERS_WL],
        listing(kind="StatefulSet"),
        [],
    ),
    (
        "a StatefulSet deleted while down, in a StatefulSet list",
        [known("db", kind="StatefulSet"), ORDERS_WL],
        listing(kind="StatefulSet"),
        ["prod/StatefulSet/orders/db"],
    ),
    (
        "a workload the selector no longer covers is not watched, not deleted",
        [ORDERS_WL, known("legacy", labels={"appId": "orders", "team": "old"})],
        listing(selector="team=payments"),
        [],
    ),
    (
        "the selector covers it: gone",
        [known("orders", labels={"appId": "orders", "team": "payments"})],
        listing(selector="team=payments"),
        ["prod/Deployment/orders/orders"],
    ),
    (
        "labels never kept, and a selector: cannot tell",
        [known("orders", labels=None)],
        listing(selector="team=payments"),
        [],
    ),
    (
        "labels never kept, no selector: gone",
        [known("orders", labels=None)],
        listing(),
        ["prod/Deployment/orders/orders"],
    ),
    (
        "a selector Pitcrew cannot read judges nothing",
        [ORDERS_WL],
        listing(selector="team in (a"),
        [],
    ),
    (
        "an empty selector is none",
        [ORDERS_WL],
        listing(selector="  "),
        [ORDERS_WL.key],
    ),
]


@pytest.mark.parametrize(("why", "states", "listed", "expected"), CASES, ids=[c[0] for c in CASES])
def test_gone(why: str, states: list[Workload], listed: Listing, expected: list[str]) -> None:
    assert [s.key for s in gone(known=states, listing=listed)] == expected


def test_gone_is_in_key_order() -> None:
    states = [known("zeta"), known("alpha"), known("mid")]
    assert [s.name for s in gone(known=states, listing=listing())] == ["alpha", "mid", "zeta"]


SELECTORS: list[tuple[str | None, dict[str, str], bool | None]] = [
    (None, {}, True),
    ("", {"a": "b"}, True),
    ("team=payments", {"team": "payments"}, True),
    ("team==payments", {"team": "payments"}, True),
    ("team=payments", {"team": "search"}, False),
    ("team=payments", {}, False),
    ("team!=payments", {}, True),
    ("team!=payments", {"team": "payments"}, False),
    ("env in (prod, staging)", {"env": "prod"}, True),
    ("env in (prod,staging)", {"env": "dev"}, False),
    ("env notin (dev)", {"env": "prod"}, True),
    ("env notin (dev)", {}, True),
    ("env notin (dev)", {"env": "dev"}, False),
    ("pitcrew.io/watched", {"pitcrew.io/watched": "yes"}, True),
    ("pitcrew.io/watched", {}, False),
    ("!legacy", {}, True),
    ("!legacy", {"legacy": "1"}, False),
    ("team=payments,env in (prod),!legacy", {"team": "payments", "env": "prod"}, True),
    ("team=payments,env in (prod),!legacy", {"team": "payments", "env": "dev"}, False),
    ("team=payments,", {"team": "payments"}, None),
    ("env in (prod", {"env": "prod"}, None),
    ("env in ((prod))", {"env": "prod"}, None),
    ("team=pay ments", {"team": "payments"}, None),
    ("team>3", {"team": "4"}, None),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTORS)
def test_selector_matches(
    selector: str | None, labels: dict[str, str], expected: bool | None
) -> None:
    assert selector_matches(selector, labels) is expected


def snapshot(rv: str, labels: Mapping[str, str]) -> WorkloadSnapshot:
    return WorkloadSnapshot(
        kind="Deployment",
        context="prod",
        namespace="orders",
        name="orders",
        uid="uid-orders",
        labels=labels,
        generation=3,
        observed_generation=3,
        resource_version=rv,
        template_hash="abc",
        containers=(Container(name="api", image="registry.example.com/orders:1.4.1"),),
        replicas=2,
        status_replicas=2,
        updated=2,
        ready=2,
        available=2,
        observed_at=T0,
    )


def test_a_state_keeps_the_labels_it_was_last_seen_with() -> None:
    first = observe(None, snapshot("7", ORDERS)).state
    assert first.labels == ORDERS
    relabelled = observe(first, snapshot("8", {"appId": "orders", "team": "x"}))
    assert relabelled.advanced
    assert relabelled.announcements == ()
    assert relabelled.state.labels == {"appId": "orders", "team": "x"}


def test_a_state_stored_before_labels_were_kept_gets_them_quietly() -> None:
    old = TypeAdapter(Workload).validate_json(
        TypeAdapter(Workload).dump_json(known("orders", labels=None))
    )
    assert old.labels is None
    same = observe(old, snapshot("7", ORDERS))
    assert same.advanced
    assert same.announcements == ()
    assert same.state.labels == ORDERS
    assert not observe(same.state, snapshot("7", ORDERS)).advanced  # once, then as before
    assert not observe(old, snapshot("6", ORDERS)).advanced  # an older snapshot changes nothing


def test_last_seen_is_routable_and_runs_nothing() -> None:
    seen = last_seen(ORDERS_WL, at=T0)
    assert seen.key == ORDERS_WL.key
    assert seen.labels == ORDERS
    assert (seen.uid, seen.resource_version, seen.containers) == (
        ORDERS_WL.uid,
        "7",
        ORDERS_WL.containers,
    )
    assert (seen.replicas, seen.ready, seen.observed_at) == (0, 0, T0)
