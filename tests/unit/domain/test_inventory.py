"""`/whatsinprod`'s grammar and the drift check, as people type and read them (SPEC 5)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import pytest

from bot.domain.catalog import Catalog, parse_catalog
from bot.domain.inventory import (
    WHATSINPROD_USAGE,
    Deployed,
    Inventory,
    Live,
    Query,
    QueryError,
    drift,
    parse_whatsinprod,
)

NOW = datetime(2025, 11, 24, 10, 0, tzinfo=UTC)
IMAGE = "registry.example.com/shop/orders"
ALL = ("orders", "invoices", "search-api")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    text = files("bot.sandbox").joinpath("example_catalog.yaml").read_text()
    return parse_catalog(text, source="example_catalog.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Query(kind="all", subject="all", apps=ALL, envs=("production",))),
        ("  all ", Query(kind="all", subject="all", apps=ALL, envs=("production",))),
        ("all staging", Query(kind="all", subject="all", apps=ALL, envs=("staging",))),
        ("staging", Query(kind="all", subject="all", apps=ALL, envs=("staging",))),
        (
            "orders",
            Query(kind="app", subject="orders", apps=("orders",), envs=("staging", "production")),
        ),
        (
            "Orders production",
            Query(kind="app", subject="orders", apps=("orders",), envs=("production",)),
        ),
        (
            "orders in staging",
            Query(kind="app", subject="orders", apps=("orders",), envs=("staging",)),
        ),
        (
            "payments",
            Query(
                kind="team", subject="payments", apps=("orders", "invoices"), envs=("production",)
            ),
        ),
        (
            "payments staging",
            Query(kind="team", subject="payments", apps=("orders", "invoices"), envs=("staging",)),
        ),
    ],
)
def test_grammar(catalog: Catalog, text: str, expected: Query) -> None:
    assert parse_whatsinprod(text, catalog=catalog) == expected


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("", "all apps in production"),
        ("orders", "orders"),
        ("orders staging", "orders in staging"),
        ("payments", "payments in production"),
    ],
)
def test_titles(catalog: Catalog, text: str, title: str) -> None:
    assert parse_whatsinprod(text, catalog=catalog).title == title


@pytest.mark.parametrize(
    ("text", "problem", "suggestions"),
    [
        ("ordres", "no app or team named ordres — did you mean orders?", ("orders",)),
        ("paymnts staging", "no app or team named paymnts — did you mean payments?", ("payments",)),
        ("stagin", "no app or team named stagin — did you mean staging?", ("staging",)),
        ("zebra", "no app or team named zebra", ()),
        (
            "orders prod",
            "no environment prod — environments are staging, production",
            (),
        ),
        (
            "orders prodution",
            "no environment prodution — did you mean production? environments are staging,"
            " production",
            ("production",),
        ),
        (
            "orders staging now",
            "`/whatsinprod` takes an app or team and an environment, not “now”",
            (),
        ),
    ],
)
def test_mistakes_are_named_with_a_suggestion(
    catalog: Catalog, text: str, problem: str, suggestions: tuple[str, ...]
) -> None:
    with pytest.raises(QueryError) as caught:
        parse_whatsinprod(text, catalog=catalog)
    assert caught.value.problem == problem
    assert caught.value.suggestions == suggestions
    assert str(caught.value) == f"{problem}\n{WHATSINPROD_USAGE}"


@pytest.mark.parametrize("text", ["help", "--help", "?", "HELP orders"])
def test_help_is_the_usage(catalog: Catalog, text: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_whatsinprod(text, catalog=catalog)
    assert caught.value.problem is None
    assert str(caught.value) == WHATSINPROD_USAGE


def test_a_team_without_apps_is_an_empty_answer() -> None:
    catalog = Catalog.model_validate(
        {
            "teams": [{"name": "idle", "channel": "#idle"}],
            "environments": [{"name": "dev", "policy": "auto"}],
        }
    )
    assert parse_whatsinprod("idle", catalog=catalog) == Query(
        kind="team", subject="idle", apps=(), envs=("dev",)
    )


def deployed(version: str | None = "1.4.2") -> Deployed:
    return Deployed(app="orders", env="production", version=version)


def live(*images: str) -> Live:
    return Live(app="orders", env="production", ready=3, desired=3, images=images, observed_at=NOW)


@pytest.mark.parametrize(
    ("git", "cluster", "image", "expected"),
    [
        (deployed(), live(f"{IMAGE}:1.4.2"), IMAGE, None),
        (deployed(), live(f"{IMAGE}:1.4.1"), IMAGE, "cluster runs 1.4.1"),
        (deployed(), live(f"{IMAGE}:1.4.1"), None, "cluster runs 1.4.1"),
        # A sidecar's tag is not the app's version.
        (deployed(), live(f"{IMAGE}:1.4.2", "docker.io/istio/proxyv2:1.22.0"), IMAGE, None),
        (deployed(), live(f"{IMAGE}:1.4.1", f"{IMAGE}:1.4.2"), IMAGE, "cluster runs 1.4.1, 1.4.2"),
        (deployed(), live(f"{IMAGE}@sha256:" + "a" * 64), IMAGE, "cluster runs sha256:" + "a" * 64),
        (deployed(), live(IMAGE), IMAGE, "cluster runs no tag"),
        # Nothing to compare is not drift.
        (deployed(), None, IMAGE, None),
        (deployed(), live(), IMAGE, None),
        (deployed(), live("docker.io/istio/proxyv2:1.22.0"), IMAGE, None),
        (deployed(None), live(f"{IMAGE}:1.4.1"), IMAGE, None),
    ],
)
def test_drift(
    git: Deployed, cluster: Live | None, image: str | None, expected: str | None
) -> None:
    assert drift(git, cluster, image=image) == expected


def test_staleness() -> None:
    fresh = Inventory(refreshed_at=datetime(2025, 11, 24, 9, 50, tzinfo=UTC))
    stale = Inventory(refreshed_at=datetime(2025, 11, 24, 9, 49, tzinfo=UTC))
    assert not fresh.stale(NOW)
    assert stale.stale(NOW)
    assert not Inventory().stale(NOW)
    assert Inventory().age(NOW) is None
