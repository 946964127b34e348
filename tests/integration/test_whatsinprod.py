"""/whatsinprod against a GitOps repo in the GitLab sandbox, answered from the inventory cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Pitcrew
from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.slack import SlackSandbox

from .conftest import WEBHOOK_SECRET, eventually

GITOPS = "platform/deployments"


def deployment(app: str, version: str) -> str:
    return f"""# {app}: managed by Pitcrew
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  namespace: {app}
  labels: {{appId: {app}}}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: {app}
          image: registry.example.com/shop/{app}:{version}   # the version
        - name: envoy
          image: envoyproxy/envoy:v1.30.1
"""


KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: invoices
images:
  - name: registry.example.com/shop/invoices
    newTag: "2.1.0"
"""
VALUES = "image:\n  repository: registry.example.com/shop/search-api\n  tag: '3.2.0'\n"


@pytest.fixture
async def gitlab(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    async with GitLabSandbox(tmp_path / "gitlab") as sandbox:
        sandbox.add_user("alice", name="Alice Martin", email="alice@example.com")
        sandbox.add_project(GITOPS)
        files = {
            "apps/orders/staging/deployment.yaml": deployment("orders", "1.4.2"),
            "apps/orders/production/deployment.yaml": deployment("orders", "1.4.1"),
            "apps/invoices/staging/kustomization.yaml": KUSTOMIZATION,
            "apps/invoices/production/kustomization.yaml": "images: [unclosed\n",
            "apps/search-api/production/values.yaml": VALUES,
        }
        await asyncio.to_thread(
            sandbox.commit, GITOPS, files, message="Initial manifests", author="alice"
        )
        yield sandbox


@pytest.fixture
async def bot(make_bot: Callable[..., Pitcrew], gitlab: GitLabSandbox) -> AsyncIterator[Pitcrew]:
    pitcrew = make_bot(GITLAB_URL=gitlab.url)
    await pitcrew.start()
    gitlab.add_webhook(f"{pitcrew.url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET)
    assert pitcrew.inventory is not None
    inventory = pitcrew.inventory

    async def built() -> bool:
        return (await inventory.current()).refreshed_at is not None

    await eventually(built, within=20)
    yield pitcrew
    await pitcrew.stop()


@pytest.fixture
async def ask(bot: Pitcrew, slack: SlackSandbox) -> AsyncIterator[Callable[..., Any]]:
    async with aiohttp.ClientSession() as http:

        async def send(text: str, *, user: str = "bob") -> str:
            before = len(slack.ephemerals())
            body, headers = slack.slash_command(
                command="/whatsinprod", text=text, user=user, channel="payments-deploys"
            )
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
            await eventually(lambda: len(slack.ephemerals()) > before)
            return slack.read(slack.ephemerals()[-1])

        yield send


async def test_one_app_across_environments(ask: Callable[..., Any]) -> None:
    answer = await ask("orders")
    lines = answer.splitlines()
    assert lines[0].startswith(":mag: *orders* · payments")
    assert any(line.startswith("*staging* `1.4.2`") and "Alice Martin" in line for line in lines)
    assert any(line.startswith("*production* `1.4.1`") for line in lines)


async def test_a_team_shows_an_unreadable_manifest_without_failing(ask: Callable[..., Any]) -> None:
    answer = await ask("payments production")
    assert "*orders* `1.4.1`" in answer
    assert "*invoices* :x: unreadable:" in answer


async def test_all_apps_in_one_environment(ask: Callable[..., Any]) -> None:
    answer = await ask("all staging")
    assert "*orders* `1.4.2`" in answer
    assert "*invoices* `2.1.0`" in answer
    assert "*search-api* not deployed" in answer


async def test_a_push_to_the_gitops_repo_changes_the_answer(
    ask: Callable[..., Any], gitlab: GitLabSandbox
) -> None:
    await asyncio.to_thread(
        gitlab.commit,
        GITOPS,
        {"apps/orders/production/deployment.yaml": deployment("orders", "1.4.3")},
        message="Deploy orders 1.4.3 to production",
        author="alice",
    )

    async def updated() -> bool:
        return "*production* `1.4.3`" in await ask("orders")

    await eventually(updated, within=5, interval=0.2)


async def test_unknown_names_get_a_suggestion(ask: Callable[..., Any]) -> None:
    answer = await ask("ordrs")
    assert "no app or team named ordrs" in answer
    assert "orders" in answer


async def test_a_lock_is_shown_with_its_age(
    ask: Callable[..., Any], bot: Pitcrew, slack: SlackSandbox
) -> None:
    body, headers = slack.slash_command(
        command="/lock",
        text="production for 2h release freeze",
        user="alice",
        channel="payments-deploys",
    )
    answered = len(slack.ephemerals())
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r,
    ):
        assert r.status == 200
    assert bot.locks is not None
    locks = bot.locks

    async def locked() -> bool:
        return bool(await locks.locks())

    await eventually(locked)
    # the /lock answer first, so that it is not taken for the /whatsinprod one
    await eventually(lambda: len(slack.ephemerals()) > answered)
    answer = await ask("payments production")
    assert ":lock: *production* locked by @alice just now — release freeze" in answer


async def test_the_cluster_is_checked_against_git(
    make_bot: Callable[..., Pitcrew], gitlab: GitLabSandbox, slack: SlackSandbox, tmp_path: Path
) -> None:
    from bot.sandbox.kube import KubeSandbox

    async with KubeSandbox() as kube, aiohttp.ClientSession() as http:
        kube.add_namespace("orders", {"appId": "orders"})
        kube.add_deployment(
            "orders",
            "orders",
            image="registry.example.com/shop/orders:1.4.0",
            replicas=3,
            labels={"appId": "orders"},
        )
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", context="prod")
        bot = make_bot(
            GITLAB_URL=gitlab.url, KUBE_CONTEXTS="production=prod", KUBECONFIG=str(kubeconfig)
        )
        await bot.start()
        try:
            assert bot.inventory is not None
            inventory = bot.inventory

            async def known() -> bool:
                current = await inventory.current()
                return current.refreshed_at is not None and bool(current.live)

            await eventually(known, within=20)
            body, headers = slack.slash_command(
                command="/whatsinprod",
                text="orders production",
                user="bob",
                channel="payments-deploys",
            )
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
            await eventually(lambda: slack.ephemerals())
            answer = slack.read(slack.ephemerals()[-1])
        finally:
            await bot.stop()
    assert "`1.4.1`" in answer
    assert "3/3 ready" in answer
    assert "drift: cluster runs 1.4.0" in answer


async def test_the_catalog_comes_from_the_gitops_repo_and_follows_its_pushes(
    make_bot: Callable[..., Pitcrew], gitlab: GitLabSandbox, slack: SlackSandbox
) -> None:
    catalog = (Path(__file__).parents[2] / "bot" / "sandbox" / "example_catalog.yaml").read_text()
    await asyncio.to_thread(
        gitlab.commit, GITOPS, {"catalog.yaml": catalog}, message="Catalog", author="alice"
    )
    bot = make_bot(GITLAB_URL=gitlab.url, CATALOG_PATH="")
    await bot.start()
    gitlab.add_webhook(f"{bot.url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET)
    try:
        assert bot.catalog is not None
        assert "billing" not in bot.catalog.current.app_names
        billing = (
            "  billing:\n    team: payments\n    source: shop/billing\n"
            "    image: registry.example.com/shop/billing\n"
            '    manifests: "apps/billing/{env}/deployment.yaml"\n'
        )
        await asyncio.to_thread(
            gitlab.commit,
            GITOPS,
            {
                "catalog.yaml": catalog + billing,
                "apps/billing/production/deployment.yaml": deployment("billing", "0.1.0"),
            },
            message="Add billing",
            author="alice",
        )
        holder, inventory = bot.catalog, bot.inventory
        assert inventory is not None

        async def billing_known() -> bool:
            entry = (await inventory.current()).deployed("billing", "production")
            return (
                "billing" in holder.current.app_names
                and entry is not None
                and entry.version == "0.1.0"
            )

        await eventually(billing_known, within=10)
    finally:
        await bot.stop()


async def test_with_gitlab_down_the_answer_comes_from_the_cache_and_says_its_age(
    make_bot: Callable[..., Pitcrew], gitlab: GitLabSandbox, slack: SlackSandbox
) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.domain.errors import PitcrewError

    skipped = timedelta(0)
    bot = make_bot(GITLAB_URL=gitlab.url, clock=lambda: datetime.now(UTC) + skipped)
    await bot.start()
    try:
        assert bot.inventory is not None
        inventory = bot.inventory

        async def built() -> bool:
            return (await inventory.current()).refreshed_at is not None

        await eventually(built, within=20)
        gitlab.fail("*", status=503, times=1000)
        skipped = timedelta(minutes=25)
        with pytest.raises(PitcrewError):
            await inventory.rebuild()  # what the 5-minute refresher meets
        body, headers = slack.slash_command(
            command="/whatsinprod", text="orders", user="bob", channel="payments-deploys"
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r,
        ):
            assert r.status == 200
        await eventually(lambda: slack.ephemerals())
        answer = slack.read(slack.ephemerals()[-1])
    finally:
        await bot.stop()
    assert ":warning: GitLab unreachable? answer from 25 min ago" in answer
    assert "*production* `1.4.1`" in answer
