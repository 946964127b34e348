"""The world a release lives in, for the tests that follow releases end to end: the GitOps
repo and an app's repo in the GitLab sandbox, a cluster in the Kubernetes sandbox, the bots, and
the gestures of the people in the story (slash commands and clicks signed like Slack's).

The fixtures that build it (``gitops_ci``, ``gitops_gitlab``, ``orders_cluster``, ``start``) are
in ``conftest.py``; a test picks the GitOps repo's CI setup with
``@pytest.mark.parametrize("gitops_ci", ["merge_requests"])``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import Pitcrew
from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import SandboxUser, SlackSandbox

from .conftest import WEBHOOK_SECRET, drained, eventually

GITOPS = "platform/deployments"
SOURCE = "shop/orders"
IMAGE = "registry.example.com/shop/orders"
TEAM = "payments-deploys"
STAGING = "apps/orders/staging/deployment.yaml"
PRODUCTION = "apps/orders/production/deployment.yaml"
DAVE = SandboxUser(id="U0DAVE", name="dave", real_name="Dave Roy", email="dave@example.com")


def deployment(version: str, *, namespace: str = "orders") -> str:
    return f"""# orders: the shop's order service — edited by Pitcrew
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  namespace: {namespace}   # <appId>[-suffix]
  labels: {{appId: orders}}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: orders}}
  template:
    metadata:
      labels: {{app: orders, appId: orders}}
    spec:
      containers:
        - name: orders
          image: "{IMAGE}:{version}"   # the version
          ports: [{{containerPort: 8080}}]
        - name: envoy
          image: envoyproxy/envoy:v1.30.1
"""


def tag_commits(gitlab: GitLabSandbox) -> None:
    gitlab.add_project(SOURCE)
    gitlab.commit(SOURCE, {"VERSION": "1.4.0\n"}, message="Release 1.4.0", author="alice")
    gitlab.tag(SOURCE, "1.4.0")
    gitlab.commit(SOURCE, {"VERSION": "1.4.1\n"}, message="Fix totals (#7)", author="alice")
    gitlab.tag(SOURCE, "1.4.1")
    gitlab.commit(
        SOURCE, {"a.py": "1\n"}, message="Round invoices half-up\n\nFixes #12", author="alice"
    )
    gitlab.commit(SOURCE, {"VERSION": "1.4.2\n"}, message="Release 1.4.2", author="bob")
    gitlab.tag(SOURCE, "v1.4.2")


@dataclass
class World:
    """Everything a release touches, and the gestures of the people in the story."""

    slack: SlackSandbox
    gitlab: GitLabSandbox
    kube: KubeSandbox
    bots: list[Pitcrew]
    http: aiohttp.ClientSession
    answers: list[str] = field(default_factory=list)
    relaunch: Callable[..., Awaitable[Pitcrew]] | None = None
    """Stop the first bot and start a new one on the same Redis (a restart, a new pod);
    ``while_down`` is called between the two."""
    hooks: list[int] = field(default_factory=list)
    """The GitLab sandbox's webhooks to the bots (a test may remove one to lose events)."""

    async def restart(self, *, while_down: Callable[[], object] | None = None) -> Pitcrew:
        """A new bot on the same Redis; ``while_down``: what happens while it is stopped."""
        assert self.relaunch is not None
        return await self.relaunch(while_down=while_down)

    @property
    def bot(self) -> Pitcrew:
        return self.bots[0]

    async def slash(self, command: str, text: str, *, user: str = "bob", bot: int = 0) -> str:
        before = len(self.slack.ephemerals())
        body, headers = self.slack.slash_command(
            command=command, text=text, user=user, channel=TEAM
        )
        async with self.http.post(
            f"{self.bots[bot].url}/slack/events", data=body, headers=headers
        ) as response:
            assert response.status == 200
        await eventually(lambda: self._settled(before), within=15)
        answer = self.slack.read(self.slack.ephemerals()[-1])
        await self.quiet()  # what the command posted in channels is there too
        return answer

    def _settled(self, before: int, *, user: str | None = None) -> bool:
        """The last answer is in (the first is "working on it")."""
        new = (self.answers_to(user) if user else self.slack.ephemerals())[before:]
        return bool(new) and ":hourglass_flowing_sand: Working on it" not in self.slack.read(
            new[-1]
        )

    def signed_click(self, action: str, *, user: str, message: Any = None) -> Any:
        """The request Slack sends when ``user`` clicks ``action`` on ``message``."""
        message = message or self.release_message()
        ts = getattr(message, "ts", None) or message.message_ts  # a message or an ephemeral
        return self.slack.block_action(
            user=user, channel=message.channel, message_ts=ts, action_id=action
        )

    async def send_click(self, click: Any, *, user: str, bot: int = 0) -> str:
        before = len(self.answers_to(user))
        body, headers = click
        async with self.http.post(
            f"{self.bots[bot].url}/slack/events", data=body, headers=headers
        ) as response:
            assert response.status == 200
        await eventually(lambda: self._settled(before, user=user), within=15)
        return self.slack.read(self.answers_to(user)[-1])

    async def click(self, action: str, *, user: str, message: Any = None, bot: int = 0) -> str:
        click = self.signed_click(action, user=user, message=message)
        return await self.send_click(click, user=user, bot=bot)

    def answers_to(self, user: str) -> list[Any]:
        person = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", "dave": "U0DAVE"}[user]
        return [e for e in self.slack.ephemerals() if e.user == person]

    def release_message(self, channel: str = TEAM) -> Any:
        found = [
            m
            for m in self.slack.messages(channel)
            if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
        ]
        assert len(found) == 1, [self.slack.read(m) for m in found]
        return found[0]

    def header(self, channel: str = TEAM) -> str:
        return self.slack.read(self.release_message(channel)).splitlines()[1]

    def thread(self) -> list[str]:
        return [self.slack.read(r) for r in self.release_message().replies]

    def mrs(self) -> list[dict[str, Any]]:
        return self.gitlab.merge_requests(GITOPS)

    def branches(self) -> list[str]:
        return sorted(self.gitlab.branches(GITOPS))

    async def pipelines(self) -> None:
        """GitLab runs every pipeline (MR, then the merge's) and its hooks reach the bot."""
        for _ in range(4):
            await asyncio.to_thread(self.gitlab.run_pipelines)
            await self.gitlab.drain()
            await asyncio.sleep(0.2)

    async def quiet(self) -> None:
        await self.gitlab.drain()
        for bot in self.bots:
            await eventually(lambda b=bot: drained(b), within=15)


async def roll(kube: KubeSandbox, *, steps: int = 40) -> None:
    for _ in range(steps):
        if not kube.step():
            return
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Building it (the fixtures in conftest.py call these)


@contextlib.asynccontextmanager
async def gitops_sandbox(tmp_path: Path, *, ci: str) -> AsyncIterator[GitLabSandbox]:
    """orders' repo with its tags, and the GitOps repo with orders in staging and production,
    whose CI runs as ``ci`` says (``both``, ``merge_requests``, ``branches``, ``none``)."""
    async with GitLabSandbox(tmp_path / "gitlab") as sandbox:
        for name, real in (("alice", "Alice Martin"), ("bob", "Bob Okafor")):
            sandbox.add_user(name, name=real, email=f"{name}@example.com")
        await asyncio.to_thread(tag_commits, sandbox)
        sandbox.add_project(GITOPS, ci=ci)  # type: ignore[arg-type]
        await asyncio.to_thread(
            sandbox.commit,
            GITOPS,
            {STAGING: deployment("1.4.1"), PRODUCTION: deployment("1.4.1")},
            message="orders manifests",
            author="alice",
        )
        await asyncio.to_thread(sandbox.run_pipelines)
        yield sandbox


@contextlib.asynccontextmanager
async def orders_cluster(tmp_path: Path) -> AsyncIterator[tuple[KubeSandbox, Path]]:
    """The production cluster, running orders 1.4.1."""
    async with KubeSandbox() as sandbox:
        sandbox.add_namespace("orders", {"appId": "orders"})
        sandbox.add_deployment(
            "orders", "orders", image=f"{IMAGE}:1.4.1", replicas=2, labels={"appId": "orders"}
        )
        yield sandbox, sandbox.kubeconfig(tmp_path / "kubeconfig", context="prod")


@contextlib.asynccontextmanager
async def world_starter(
    *,
    make_bot: Callable[..., Pitcrew],
    slack: SlackSandbox,
    gitlab: GitLabSandbox,
    cluster: tuple[KubeSandbox, Path],
) -> AsyncIterator[Callable[..., Any]]:
    """``start(replicas=1, **env)``: the bots (production watched), the people and their
    groups; every bot started is stopped at the end. ``env``: settings (upper case) and
    ``Pitcrew`` options (lower case) that differ from the defaults here."""
    kube, kubeconfig = cluster
    slack.add_user(DAVE)
    slack.add_usergroup("sre-oncall", ["U0CAROL", "U0DAVE"])
    slack.add_usergroup("payments-oncall", ["U0ALICE"])
    bots: list[Pitcrew] = []
    hooks: list[int] = []
    async with aiohttp.ClientSession() as http:

        async def start_world(replicas: int = 1, **env: Any) -> World:
            settings = {
                "GITLAB_URL": gitlab.url,
                "KUBE_CONTEXTS": "production=prod",
                "KUBECONFIG": str(kubeconfig),
                "lease_ttl": 1.0,
                "release_sweep_every": 0.2,
                **env,
            }
            for _ in range(replicas):
                bot = make_bot(**settings)
                await bot.start()
                bots.append(bot)
            hooks.append(
                gitlab.add_webhook(f"{bots[0].url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET)
            )
            await eventually(lambda: kube.open_watches >= 3)

            async def relaunch(while_down: Callable[[], object] | None = None) -> Pitcrew:
                await bots[0].stop()
                if len(bots) == 1:  # else another replica takes the watch over at once
                    await eventually(lambda: kube.open_watches == 0)
                if while_down is not None:
                    await asyncio.to_thread(while_down)
                bots[0] = make_bot(**settings)
                await bots[0].start()
                gitlab.remove_webhook(hooks.pop())
                hooks.append(
                    gitlab.add_webhook(
                        f"{bots[0].url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET
                    )
                )
                await eventually(lambda: kube.open_watches >= 3)
                return bots[0]

            return World(
                slack=slack,
                gitlab=gitlab,
                kube=kube,
                bots=bots,
                http=http,
                relaunch=relaunch,
                hooks=hooks,
            )

        try:
            yield start_world
        finally:
            for bot in bots:
                await bot.stop()
