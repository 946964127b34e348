"""`/whatsinprod` answers exactly as people read them in Slack."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest

from bot.adapters.slack.blocks.common import MAX_BLOCKS, MAX_SECTION, Rendered
from bot.adapters.slack.blocks.whatsinprod import render_whatsinprod
from bot.domain.catalog import Catalog, parse_catalog
from bot.domain.inventory import Deployed, Inventory, Live, parse_whatsinprod
from bot.domain.locks import Lock
from tests.unit.adapters.hostile import HOSTILE, assert_inert

NOW = datetime(2025, 11, 24, 10, 0, tzinfo=UTC)
REGISTRY = "registry.example.com/shop/"
GITOPS = "https://gitlab.example.com/shop/gitops/-/"
FREEZE = Lock(
    env="production",
    holder="UALICE",
    since=NOW - timedelta(hours=2),
    reason="black friday <freeze>",
)

INVENTORY = Inventory(
    entries={
        ("orders", "staging"): Deployed(
            app="orders",
            env="staging",
            version="1.4.3",
            changed_at=NOW - timedelta(minutes=40),
            changed_by="bob",
            commit_url=GITOPS + "commit/abc",
            mr_iid=14,
            mr_url=GITOPS + "merge_requests/14",
        ),
        ("orders", "production"): Deployed(
            app="orders",
            env="production",
            version="1.4.2",
            changed_at=NOW - timedelta(hours=3),
            changed_by="alice",
            commit_url=GITOPS + "commit/def",
            mr_iid=12,
            mr_url=GITOPS + "merge_requests/12",
        ),
        ("invoices", "production"): Deployed(
            app="invoices", env="production", unreadable="line 4: mapping values <here>"
        ),
        ("search-api", "production"): Deployed(app="search-api", env="production"),
    },
    live={
        ("orders", "staging"): Live(
            app="orders",
            env="staging",
            ready=1,
            desired=2,
            images=(REGISTRY + "orders:1.4.3",),
            observed_at=NOW,
        ),
        ("orders", "production"): Live(
            app="orders",
            env="production",
            ready=3,
            desired=3,
            images=(REGISTRY + "orders:1.4.1", "docker.io/istio/proxyv2:1.22.0"),
            observed_at=NOW,
        ),
    },
    refreshed_at=NOW - timedelta(minutes=2),
)

ORDERS_STAGING = (
    f"*staging* `1.4.3` · <{GITOPS}commit/abc|changed 40 min ago> by bob"
    f" (<{GITOPS}merge_requests/14|!14>) · 1/2 ready"
)
ORDERS_PRODUCTION = (
    f"*production* `1.4.2` · <{GITOPS}commit/def|changed 3 h ago> by alice"
    f" (<{GITOPS}merge_requests/12|!12>) · 3/3 ready · :warning: drift: cluster runs 1.4.1"
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    text = files("bot.sandbox").joinpath("example_catalog.yaml").read_text()
    return parse_catalog(text, source="example_catalog.yaml")


def render(
    text: str,
    catalog: Catalog,
    *,
    inventory: Inventory = INVENTORY,
    locks: dict[str, Lock] | None = None,
) -> Rendered:
    query = parse_whatsinprod(text, catalog=catalog)
    return render_whatsinprod(
        query, inventory=inventory, catalog=catalog, locks=locks or {}, now=NOW
    )


def texts(rendered: Rendered) -> list[str]:
    assert all(b["type"] == "section" and b["text"]["type"] == "mrkdwn" for b in rendered.blocks)
    return [b["text"]["text"] for b in rendered.blocks]


def test_one_app_in_every_environment_in_promotion_order(catalog: Catalog) -> None:
    rendered = render("orders", catalog)
    header = ":mag: *orders* · payments · 1 drifting · as of 2 min ago"
    assert rendered.text == header
    assert texts(rendered) == [header, f"{ORDERS_STAGING}\n{ORDERS_PRODUCTION}"]


def test_a_team_with_its_lock_a_drift_and_an_unreadable_manifest(catalog: Catalog) -> None:
    rendered = render("payments", catalog, locks={"production": FREEZE})
    header = (
        ":mag: *payments* in *production* · 2 apps · 1 drifting · 1 unreadable · as of 2 min ago"
    )
    assert rendered.text == header
    assert texts(rendered) == [
        f"{header}\n:lock: *production* locked by <@UALICE> for 2 h — black friday &lt;freeze&gt;",
        f"{ORDERS_PRODUCTION.replace('*production*', '*orders*')}\n"
        "*invoices* :x: unreadable: line 4: mapping values &lt;here&gt;",
    ]


def test_all_apps_show_their_owner_and_what_is_not_there(catalog: Catalog) -> None:
    rendered = render("all production", catalog, locks={"staging": FREEZE})
    assert texts(rendered)[1:] == [
        f"{ORDERS_PRODUCTION.replace('*production* `1.4.2`', '*orders* `1.4.2` · payments')}\n"
        "*invoices* :x: unreadable: line 4: mapping values &lt;here&gt; · payments\n"
        "*search-api* not deployed · search"
    ]


def test_an_expired_lock_is_not_shown(catalog: Catalog) -> None:
    lapsed = replace(FREEZE, expires_at=NOW - timedelta(minutes=1))
    assert texts(render("orders", catalog, locks={"production": lapsed}))[0] == (
        ":mag: *orders* · payments · 1 drifting · as of 2 min ago"
    )


def test_a_stale_cache_says_how_old_the_answer_is(catalog: Catalog) -> None:
    stale = replace(INVENTORY, refreshed_at=NOW - timedelta(minutes=25))
    assert texts(render("orders staging", catalog, inventory=stale)) == [
        ":mag: *orders* in *staging* · payments\n"
        ":warning: GitLab unreachable? answer from 25 min ago",
        ORDERS_STAGING,
    ]


def test_before_the_first_read_nothing_is_known(catalog: Catalog) -> None:
    assert texts(render("search", catalog, inventory=Inventory())) == [
        ":mag: *search* in *production* · 1 app · still reading the GitOps repo",
        "*search-api* not known yet",
    ]


def test_links_only_where_they_are_safe(catalog: Catalog) -> None:
    sneaky = Deployed(
        app="orders",
        env="production",
        version="1.4.2",
        changed_at=NOW,
        changed_by="<!channel>",
        commit_url="javascript:alert(1)",
        mr_iid=7,
        mr_url=GITOPS + "merge_requests/7|click>",
    )
    inventory = Inventory(entries={("orders", "production"): sneaky}, refreshed_at=NOW)
    assert texts(render("orders production", catalog, inventory=inventory))[1] == (
        f"*production* `1.4.2` · changed just now by &lt;!channel&gt;"
        f" (<{GITOPS}merge_requests/7%7Cclick&gt;|!7>)"
    )


def big_catalog(apps: int, teams: int) -> Catalog:
    return Catalog.model_validate(
        {
            "teams": [{"name": f"team-{t:02}", "channel": f"#team-{t:02}"} for t in range(teams)],
            "environments": [
                {"name": name, "policy": "auto"} for name in ("dev", "qa", "staging", "production")
            ],
            "apps": [
                {
                    "name": f"app-{a:03}",
                    "team": f"team-{a % teams:02}",
                    "source": f"shop/app-{a:03}",
                    "image": f"{REGISTRY}app-{a:03}",
                    "manifests": f"apps/app-{a:03}/{{env}}/deployment.yaml",
                }
                for a in range(apps)
            ],
        }
    )


def big_inventory(catalog: Catalog) -> Inventory:
    entries: dict[tuple[str, str], Deployed] = {}
    live: dict[tuple[str, str], Live] = {}
    for index, app in enumerate(catalog.apps):
        for env in catalog.env_names:
            entries[app.name, env] = Deployed(
                app=app.name,
                env=env,
                version="2.10.1",
                changed_at=NOW - timedelta(days=3),
                changed_by="release-bot",
                commit_url=f"{GITOPS}commit/{index:040x}",
                mr_iid=1000 + index,
                mr_url=f"{GITOPS}merge_requests/{1000 + index}",
            )
            running = "2.10.0" if index in (7, 450) and env == "production" else "2.10.1"
            live[app.name, env] = Live(
                app=app.name,
                env=env,
                ready=3,
                desired=3,
                images=(f"{app.image}:{running}",),
                observed_at=NOW,
            )
    return Inventory(entries=entries, live=live, refreshed_at=NOW - timedelta(minutes=4))


def test_500_apps_in_4_environments_are_summarised_within_slack_limits() -> None:
    catalog = big_catalog(500, 17)
    rendered = render("", catalog, inventory=big_inventory(catalog))
    blocks = texts(rendered)
    assert len(blocks) <= MAX_BLOCKS
    assert all(len(text) <= MAX_SECTION for text in blocks)
    assert blocks[0] == ":mag: *all apps* in *production* · 500 apps · 2 drifting · as of 4 min ago"
    shown = "\n".join(blocks[1:-1]).splitlines()
    assert len(shown) == 50
    assert shown[0] == (
        f"*app-000* `2.10.1` · team-00 · <{GITOPS}commit/{0:040x}|changed 3 days ago>"
        f" by release-bot (<{GITOPS}merge_requests/1000|!1000>) · 3/3 ready"
    )
    assert shown[7].endswith(" · :warning: drift: cluster runs 2.10.0")
    assert blocks[-1] == (
        "… and 450 more apps (1 problem among them: app-450): narrow with `/whatsinprod <team>`"
    )


def test_a_team_of_30_is_shown_whole() -> None:
    catalog = big_catalog(60, 2)
    rendered = render("team-01 staging", catalog, inventory=big_inventory(catalog))
    blocks = texts(rendered)
    assert blocks[0] == ":mag: *team-01* in *staging* · 30 apps · as of 4 min ago"
    assert len("\n".join(blocks[1:]).splitlines()) == 30
    assert all(len(text) <= MAX_SECTION for text in blocks)


# --------------------------------------------------------------------------------------------
# Hostile text from git, the cluster and people


def test_control_and_bidi_characters_are_removed(catalog: Catalog) -> None:
    odd = Deployed(
        app="orders",
        env="production",
        version="1.4.2\u202e",
        changed_at=NOW,
        changed_by="bob\x00\x1b[1m",
    )
    inventory = Inventory(entries={("orders", "production"): odd}, refreshed_at=NOW)
    assert texts(render("orders production", catalog, inventory=inventory))[1] == (
        "*production* `1.4.2` · changed just now by bob[1m"
    )


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_comes_out_as_text(catalog: Catalog, evil: str) -> None:
    deployed = Deployed(
        app="orders",
        env="production",
        version=evil,
        changed_at=NOW - timedelta(hours=1),
        changed_by=evil,
        commit_url=GITOPS + "commit/abc",
        mr_iid=12,
        mr_url=GITOPS + "merge_requests/12",
    )
    inventory = Inventory(
        entries={
            ("orders", "production"): deployed,
            ("orders", "staging"): replace(deployed, env="staging", version="1.4.3"),
            ("invoices", "production"): Deployed(app="invoices", env="production", unreadable=evil),
        },
        live={
            ("orders", "production"): Live(
                app="orders",
                env="production",
                ready=1,
                desired=2,
                images=(f"{REGISTRY}orders:{evil}", f"{REGISTRY}orders:{evil}2"),
                observed_at=NOW,
            )
        },
        refreshed_at=NOW,
    )
    locks = {"production": replace(FREEZE, holder=evil, reason=evil)}
    for query in ("orders", "payments", "all production"):
        rendered = render(query, catalog, inventory=inventory, locks=locks)
        assert_inert(rendered, links=(GITOPS,))


# --------------------------------------------------------------------------------------------
# Share in channel


def test_an_answer_carries_a_share_button_with_an_opaque_id(catalog: Catalog) -> None:
    query = parse_whatsinprod("orders", catalog=catalog)
    rendered = render_whatsinprod(
        query, inventory=INVENTORY, catalog=catalog, locks={}, now=NOW, share="0a1b2c3d4e5f"
    )
    assert rendered.blocks[:-1] == render("orders", catalog).blocks
    assert rendered.blocks[-1] == {
        "type": "actions",
        "block_id": "whatsinprod",
        "elements": [
            {
                "type": "button",
                "action_id": "whatsinprod_share",
                "text": {"type": "plain_text", "text": "Share in channel"},
                "value": "0a1b2c3d4e5f",
            }
        ],
    }


def test_a_shared_answer_says_who_shared_what_and_has_no_button(catalog: Catalog) -> None:
    query = parse_whatsinprod("orders", catalog=catalog)
    rendered = render_whatsinprod(
        query,
        inventory=INVENTORY,
        catalog=catalog,
        locks={},
        now=NOW,
        shared_by="UCAROL",
        asked="  orders <@U1>",
    )
    assert rendered.blocks[:-1] == render("orders", catalog).blocks
    assert rendered.blocks[-1] == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "Shared by <@UCAROL> · `/whatsinprod orders &lt;@U1&gt;`"}
        ],
    }


def test_a_long_shared_answer_keeps_within_slacks_limits() -> None:
    catalog = big_catalog(500, 17)
    query = parse_whatsinprod("", catalog=catalog)
    for extra in ({"share": "0a1b2c3d4e5f"}, {"shared_by": "UCAROL", "asked": ""}):
        rendered = render_whatsinprod(
            query,
            inventory=big_inventory(catalog),
            catalog=catalog,
            locks={},
            now=NOW,
            **extra,  # type: ignore[arg-type]
        )
        assert len(rendered.blocks) <= MAX_BLOCKS
        assert rendered.blocks[-2]["text"]["text"].startswith("… and ")
