"""``pitcrew demo``: the real bot, wired as in production, against the built-in sandbox.

No credentials and no network: Slack is the sandbox simulator, Redis is the embedded server in a
temporary state directory, the catalog is the sandbox shop's. Each scene drives the bot through
its real entry points (HTTP webhooks, the outbox) and the channels are printed as a person
would read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import aiohttp

from bot.adapters.slack.blocks.whatsinprod import SHARE
from bot.app import Pitcrew
from bot.domain.errors import PitcrewError
from bot.domain.schedules import Schedule, next_slot
from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.gitops import GitOpsController
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import DEFAULT_USERS, Ephemeral, Message, SandboxUser, SlackSandbox
from bot.services.ports import OutgoingMessage
from bot.settings import Settings

CATALOG = Path(__file__).parent / "sandbox" / "example_catalog.yaml"
CHANNELS = ("payments-deploys", "search-deploys", "releases")
WEBHOOK_SECRET = "demo-webhook-secret"
DEMO_FILES = Path(tempfile.gettempdir()) / "pitcrew-demo-files"
"""Where the Slack sandbox keeps the files the demo's bot uploads (the digest's chart), so a
person can open them after the demo."""
DEMO_PACING = 0.1
"""Seconds between two messages to one channel (1.0 in production, as Slack asks)."""
DEMO_SWEEP = 1.0
"""Seconds between two sweeps of releases and grants (15 in production): the story skips
hours ("two hours later") and should not then wait on the clock of the room."""
USERGROUPS = {"payments-oncall": ["U0ALICE"], "sre-oncall": ["U0CAROL"]}
NEWCOMER = SandboxUser(id="U0DAVE", name="dave", real_name="Dave Roy", email="dave@example.com")
_USER_IDS = {user.name: user.id for user in (*DEFAULT_USERS, NEWCOMER)}


class DemoClock:
    """The bot's clock in the demo: real time, plus whatever the story skips ("2 h later")."""

    def __init__(self) -> None:
        self.skipped = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skipped


@dataclass
class Stage:
    bot: Pitcrew
    slack: SlackSandbox
    gitlab: GitLabSandbox
    kube: KubeSandbox
    http: aiohttp.ClientSession
    out: Callable[[str], None]
    clock: DemoClock
    catalog_path: Path | None = None
    """The bot's catalog file (a copy of the sandbox shop's), which a scene may edit."""

    def say(self, line: str) -> None:
        self.out(f"  {line}")

    async def webhook(
        self, kind: str, body: bytes, *, event_id: str, token: str = WEBHOOK_SECRET
    ) -> str:
        headers = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": kind,
            "X-Gitlab-Token": token,
            "X-Gitlab-Event-UUID": event_id,
        }
        url = f"{self.bot.url}/webhooks/gitlab"
        async with self.http.post(url, data=body, headers=headers) as response:
            answer = await response.json()
            return f"{response.status} {answer.get('status') or answer.get('error')}"

    async def settle(self, *, within: float = 30.0) -> None:
        """Wait until GitLab has delivered its webhooks, the bot has handled every event and the
        outbox has delivered everything (polled: the work happens in the bot's own tasks)."""
        assert self.bot.outbox is not None
        assert self.bot.store is not None
        await self.gitlab.drain(within=within)
        for _ in range(int(within / 0.05)):
            groups = await self.bot.store.redis.xinfo_groups("events:gitlab")
            busy = not groups or any(g["pending"] or g["lag"] for g in groups)
            if not busy and not await self.bot.outbox.pending():
                return
            await asyncio.sleep(0.05)

    async def slash(self, user: str, command: str, text: str, *, channel: str) -> None:
        """Type a command in Slack as ``user``; show the private answer as they see it."""
        self.say(f"{user} types in #{channel}: {command} {text}".rstrip())
        before = len(self.slack.ephemerals())
        body, headers = self.slack.slash_command(
            command=command, text=text, user=user, channel=channel
        )
        async with self.http.post(
            f"{self.bot.url}/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
        await self._answered(before)
        self._show_answers(user, before)

    async def click(self, user: str, button: str, message: Message | Ephemeral) -> None:
        """Click a button as ``user``; show the private answer as they see it."""
        ts = message.ts if isinstance(message, Message) else message.message_ts
        before = len(self.slack.ephemerals())
        body, headers = self.slack.block_action(
            user=user, channel=message.channel, message_ts=ts, action_id=button
        )
        self.say(f"{user} clicks [{_label(body)}]")
        posted = len(self.slack.messages(message.channel))
        async with self.http.post(
            f"{self.bot.url}/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
        if button == SHARE:
            for _ in range(500):
                if len(self.slack.messages(message.channel)) > posted:
                    break
                await asyncio.sleep(0.02)
            for shared in self.slack.messages(message.channel)[posted:]:
                for line in self.slack.read(shared).splitlines():
                    self.say(f"    (everyone in the channel sees) {line}")
            return
        await self._answered(before)
        self._show_answers(user, before)

    async def open_home(self, user: str) -> None:
        """``user`` opens Pitcrew's Home tab in Slack; show it as they read it."""
        self.say(f"{user} opens Pitcrew's Home tab")
        published = self._published()
        body, headers = self.slack.app_home_opened(user=user)
        async with self.http.post(
            f"{self.bot.url}/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
        await self._drawn(published)
        self._show_home(user)

    async def click_home(self, user: str, button: str) -> None:
        """Click a button of ``user``'s Home tab; the answer is a direct message."""
        self.say(f"{user} clicks [{button.removeprefix('release_').title()}] on the Home tab")
        published = self._published()
        dm = _USER_IDS[user]
        before = len(self.slack.messages(dm)) if self._has_dm(dm) else 0
        body, headers = self.slack.home_action(user=user, action_id=button)
        async with self.http.post(
            f"{self.bot.url}/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
        await self._drawn(published)
        await self.settle()
        for message in self.slack.messages(dm)[before:]:
            self.say(f"    (direct message to {user}) {self.slack.read(message)}")
        self.say(f"    (the Home tab is drawn again for {user})")
        self._show_home(user)

    def _has_dm(self, user: str) -> bool:
        try:
            self.slack.messages(user)
        except KeyError:
            return False
        return True

    def _published(self) -> int:
        return sum(1 for c in self.slack.calls if c.method == "views.publish" and c.ok)

    async def _drawn(self, published: int) -> None:
        for _ in range(500):
            if self._published() > published:
                return
            await asyncio.sleep(0.02)

    def _show_home(self, user: str) -> None:
        for line in self.slack.read_home(user).splitlines():
            self.say(f"    │ {line}")

    async def _answered(self, before: int) -> None:
        """Until the last private answer is in ("working on it" comes first)."""
        for _ in range(500):
            new = self.slack.ephemerals()[before:]
            if new and "Working on it" not in self.slack.read(new[-1]):
                break
            await asyncio.sleep(0.02)

    def _show_answers(self, user: str, before: int) -> None:
        for answer in self.slack.ephemerals()[before:]:
            for line in self.slack.read(answer).splitlines():
                self.say(f"    (only {user} sees) {line}")

    async def git(self, project: str, message: str, *, author: str, branch: str = "main") -> None:
        """Push a commit to an app's repository and let its pipeline run to the end."""
        path = f"src/{uuid.uuid4().hex[:8]}.txt"
        await asyncio.to_thread(
            self.gitlab.commit,
            project,
            {path: message},
            message=message,
            author=author,
            branch=branch,
        )
        await asyncio.to_thread(self.gitlab.run_pipelines, project)
        await self.settle()


Scene = Callable[[Stage], Awaitable[None]]


async def foundation(stage: Stage) -> None:
    """Webhooks are stored once; one Slack message per key survives a rate limit."""
    body = json.dumps(
        {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": 1,
                "ref": "main",
                "tag": False,
                "status": "running",
                "source": "push",
                "sha": "9f2c1e0b7d3a4c5e6f708192a3b4c5d6e7f80912",
                "created_at": "2026-11-22 08:00:00 UTC",
                "stages": ["test"],
            },
            "project": {
                "path_with_namespace": "tools/linter",
                "default_branch": "main",
                "web_url": "https://gitlab.example.com/tools/linter",
            },
            "commit": {"id": "9f2c1e0b7d3a4c5e6f708192a3b4c5d6e7f80912", "message": "Lint\n"},
            "builds": [],
        }
    ).encode()
    event = str(uuid.uuid4())
    stage.say(
        "GitLab posts a pipeline event ............ "
        + await stage.webhook("Pipeline Hook", body, event_id=event)
    )
    stage.say("  (tools/linter belongs to no app of the catalog: counted, not posted)")
    stage.say(
        "GitLab retries the same event ............ "
        + await stage.webhook("Pipeline Hook", body, event_id=event)
    )
    stage.say(
        "someone posts with a wrong token ......... "
        + await stage.webhook("Pipeline Hook", body, event_id=str(uuid.uuid4()), token="guess")
    )
    stage.say(
        "a GitLab event Pitcrew does not use ...... "
        + await stage.webhook("Wiki Page Hook", b"{}", event_id=str(uuid.uuid4()))
    )

    assert stage.bot.outbox is not None
    outbox = stage.bot.outbox
    stage.slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    stage.say("Slack is rate-limiting (429, Retry-After: 1); the outbox waits and posts once")
    key = "demo:hello"
    for step, text in enumerate(
        (
            ":hourglass: Pitcrew is starting",
            ":gear: Pitcrew is connecting",
            ":white_check_mark: Pitcrew is up: webhooks in, one living message per key out",
        ),
    ):
        await outbox.send(
            OutgoingMessage(
                key=key,
                channel="#payments-deploys",
                text=text,
                blocks=({"type": "section", "text": {"type": "mrkdwn", "text": text}},),
            )
        )
        if step == 0:
            await stage.settle()
    await outbox.send(
        OutgoingMessage(
            key=f"{key}:detail",
            channel="#payments-deploys",
            thread_key=key,
            text="details go in the thread, keyed too: a retry never posts them twice",
        )
    )
    await stage.settle()
    posts = sum(1 for c in stage.slack.calls if c.method == "chat.postMessage" and c.ok)
    updates = sum(1 for c in stage.slack.calls if c.method == "chat.update" and c.ok)
    throttled = sum(1 for c in stage.slack.calls if c.status == 429)
    stage.say(
        f"Slack calls: {_count(posts, 'post')}, {_count(updates, 'update')}, {throttled} throttled"
    )


def _label(body: bytes) -> str:
    """The clicked button's label, as the person saw it."""
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    return str(payload["actions"][0]["text"]["text"])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def pipelines(stage: Stage) -> None:
    """A pipeline that fails, then the fix: one message each, the failure and the fix in threads."""
    gitlab = stage.gitlab
    gitlab.set_pipeline_outcome("shop/orders", ref="main", outcome="failed", failed_job="unit")
    stage.say("alice pushes to shop/orders main; the unit tests fail")
    await stage.git("shop/orders", "Add retries to the payment client", author="alice")
    gitlab.set_pipeline_outcome("shop/orders", ref="*", outcome="success")
    stage.say("someone's feature branch passes: not reported (team filter: main, tags, failures)")
    await stage.git("shop/orders", "Try a new logo", author="bob", branch="new-logo")
    stage.say("alice pushes the fix; main passes again")
    await stage.git("shop/orders", "Fix the retry loop", author="alice")
    hooks = sum(1 for d in gitlab.deliveries if d.event in ("Pipeline Hook", "Job Hook"))
    posts = sum(1 for c in stage.slack.calls if c.method == "chat.postMessage" and c.ok)
    stage.say(f"GitLab sent {hooks} pipeline and job events; Slack got {_count(posts, 'post')}")


async def locks(stage: Stage) -> None:
    """A freeze is set, seen by everyone, and expires on its own."""
    await stage.slash(
        "alice", "/lock", "production for 2h black friday freeze", channel="payments-deploys"
    )
    await stage.settle()
    assert stage.bot.locks is not None
    lock = await stage.bot.locks.lock_of("production")
    if lock is not None and lock.expires_at is not None:
        zone = ZoneInfo("Europe/Paris")
        paris = lock.expires_at.astimezone(zone)
        days = (paris.date() - stage.clock().astimezone(zone).date()).days
        day = {0: "today", 1: "tomorrow"}.get(days, f"{paris:%b} {paris.day}")
        stage.say("  (times are Slack date tokens: Slack shows each reader their own zone — alice,")
        stage.say(
            f'   in Paris, reads "until {day} {paris:%H:%M}"; notifications show the UTC fallback,'
            " printed here)"
        )
    await stage.slash("bob", "/lock", "production hotfix", channel="search-deploys")
    await stage.slash("bob", "/lock", "", channel="search-deploys")
    stage.say("… two hours later …")
    stage.clock.skipped += timedelta(hours=2, minutes=1)
    for _ in range(300):  # the sweep runs every few seconds, on one replica
        if len(stage.slack.messages("releases")) >= 2:
            break
        await asyncio.sleep(0.05)
    await stage.settle()


async def rollouts(stage: Stage) -> None:
    """Two rollouts in production: one goes through, one crash-loops and fails."""
    kube = stage.kube
    registry = "registry.example.com/shop"
    stage.say("orders 1.4.1 → 1.4.2 is applied to the production cluster")
    kube.set_image("deploy", "orders", "orders", "orders", f"{registry}/orders:1.4.2")
    await _roll(stage, steps=20)
    stage.say("invoices 2.0.0 → 2.1.0 is applied; its new pods crash on start")
    kube.set_image("deploy", "invoices", "invoices", "invoices", f"{registry}/invoices:2.1.0")
    kube.fail_rollout(
        "deploy",
        "invoices",
        "invoices",
        "CrashLoopBackOff",
        message="panic: DATABASE_URL is not set",
    )
    await _roll(stage, steps=3)
    stage.say("… ten minutes later: the progress deadline passes …")
    kube.advance(601)
    stage.clock.skipped += timedelta(seconds=601)
    for _ in range(300):
        messages = stage.slack.messages("payments-deploys")
        if messages and messages[-1].replies:
            break
        await asyncio.sleep(0.05)
    await stage.settle()


async def _roll(stage: Stage, *, steps: int) -> None:
    """Let the cluster's controllers work; the bot's clock follows the cluster's simulated one."""
    for _ in range(steps):
        if not stage.kube.step():
            break
        stage.clock.skipped += timedelta(seconds=stage.kube.step_seconds)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    await stage.settle()


async def help_(stage: Stage) -> None:
    """A newcomer asks Pitcrew what it does."""
    await stage.slash("dave", "/pitcrew", "help", channel="search-deploys")


async def whatsinprod(stage: Stage) -> None:
    """What runs where, from git, checked against the cluster: one app drifts; shared."""
    await stage.slash("carol", "/whatsinprod", "", channel="search-deploys")
    await stage.slash("carol", "/whatsinprod", "search-api", channel="search-deploys")
    stage.say("carol shares the drifting app with the channel")
    await stage.click("carol", SHARE, stage.slack.ephemerals("search-deploys")[-1])


async def releases(stage: Stage) -> None:
    """Deploy to staging, promote to production with a second person's approval, watch the
    rollout fail, roll back."""
    gitlab, kube = stage.gitlab, stage.kube
    gitops = "platform/deployments"
    stage.say("alice tags shop/orders 1.5.0")
    await asyncio.to_thread(gitlab.tag, "shop/orders", "1.5.0", user="alice")
    await asyncio.to_thread(gitlab.run_pipelines, "shop/orders")
    await stage.settle()

    await stage.slash("bob", "/deploy", "orders 1.5.0 to staging", channel="payments-deploys")
    stage.say("the merge request's pipeline passes; staging is auto: the bot merges")
    await _pipelines(stage, gitops)

    await stage.slash(
        "bob", "/deploy", "orders from staging to production", channel="payments-deploys"
    )
    await stage.settle()
    message = _release_message(stage)
    await stage.click("bob", "release_approve", message)
    await stage.click("carol", "release_approve", message)
    await _pipelines(stage, gitops)
    stage.say("Argo CD applies 1.5.0 to production; the new pods crash on start")
    registry = "registry.example.com/shop"
    kube.set_image("deploy", "orders", "orders", "orders", f"{registry}/orders:1.5.0")
    kube.fail_rollout(
        "deploy", "orders", "orders", "CrashLoopBackOff", message="panic: no PAYMENTS_KEY"
    )
    await _roll(stage, steps=3)
    stage.say("… ten minutes later: the progress deadline passes …")
    kube.advance(601)
    stage.clock.skipped += timedelta(seconds=601)
    for _ in range(300):
        if "Failed" in stage.slack.read(_release_message(stage)):
            break
        await asyncio.sleep(0.05)
    await stage.settle()

    failed = _release_message(stage)
    reply = next(r for r in failed.replies if "[Roll back to" in stage.slack.read(r))
    stage.say("the failure reply names the crash; bob (no approver) clicks its button")
    await stage.click("bob", "release_roll_back", reply)
    await stage.settle()
    await stage.open_home("bob")
    await stage.open_home("carol")
    await stage.click_home("carol", "release_approve")
    await _pipelines(stage, gitops)
    stage.say("Argo CD applies 1.4.1 again")
    kube.set_image("deploy", "orders", "orders", "orders", f"{registry}/orders:1.4.1")
    await _roll(stage, steps=20)


AUTOPILOT_STAGING = """\
    auto_deploy: true                 # new versions open a release here by themselves
"""
AUTOPILOT_PRODUCTION = """\
    promote:                          # every Monday at 09:00 in Rome, from staging
      from: staging
      schedule: "0 9 * * 1"
      timezone: Europe/Rome
    freeze:                           # and nothing merges over the weekend
      - schedule: "0 18 * * 5"
        duration: 63h
        reason: weekend freeze
        timezone: Europe/Rome
"""


def autopilot_catalog(text: str) -> str:
    """The sandbox shop's catalog with the autopilot turned on (docs/catalog.md)."""
    staging = (
        "    policy: auto                      # merged when the merge request's pipeline passes\n"
    )
    production = (
        '    channel: "#releases"              # releases and locks are also announced here\n'
    )
    if staging not in text or production not in text:
        raise PitcrewError("the example catalog changed: the autopilot scene cannot edit it")
    return text.replace(staging, staging + AUTOPILOT_STAGING).replace(
        production, production + AUTOPILOT_PRODUCTION
    )


async def autopilot(stage: Stage) -> None:
    """A tag deploys itself to staging, Monday's promotion waits for approval, a Friday freeze
    holds it, and the linked issue hears when it ships."""
    gitlab, bot = stage.gitlab, stage.bot
    gitops, orders = "platform/deployments", "shop/orders"
    assert bot.catalog is not None
    assert stage.catalog_path is not None
    stage.say("… Tuesday, 10:00 in Rome …")
    await _skip_to(stage, "0 10 * * 2")
    stage.say("the platform team merges a catalog change: the autopilot is on")
    for line in (AUTOPILOT_STAGING + AUTOPILOT_PRODUCTION).splitlines():
        stage.say(f"  {line}")
    await asyncio.to_thread(stage.catalog_path.write_text, autopilot_catalog(CATALOG.read_text()))
    await bot.catalog.reload()

    issue = gitlab.add_issue(orders, "Checkout totals are off by a cent", author="alice")
    stage.say(f"alice opens issue {orders}#{issue}, fixes it, and tags shop/orders 1.6.0")
    await asyncio.to_thread(
        gitlab.commit,
        orders,
        {"checkout.py": "ROUND_HALF_UP\n"},
        message=f"Round checkout totals half-up (#{issue})",
        author="alice",
    )
    await asyncio.to_thread(gitlab.tag, orders, "1.6.0", user="alice")
    await stage.settle()
    stage.say("nobody types /deploy: the tag opened the release; its pipeline passes, it merges")
    await _pipelines(stage, gitops)
    _show_issue(stage, orders, issue)

    stage.say("… Monday, 09:00 in Rome: the weekly promotion …")
    await _skip_to(stage, "0 9 * * 1")
    await _until(stage, lambda: "production" in stage.slack.read(_release_message(stage)))
    await stage.settle()
    stage.say("orders 1.6.0 waits for approval in production; invoices runs 2.1.0 in staging, but")
    stage.say("shop/invoices has no such tag: the autopilot says so in the channel, and goes on")

    stage.say("… nobody approves until Friday, 17:55 in Rome; the MR pipeline is slow today …")
    gitlab.set_pipeline_outcome(gitops, ref="pitcrew/orders-production-*", outcome="hang")
    await _skip_to(stage, "55 17 * * 5")
    await stage.click("carol", "release_approve", _release_message(stage))
    await stage.settle()
    stage.say("… 18:00 in Rome: the weekend freeze begins before GitLab could merge …")
    await _skip_to(stage, "0 18 * * 5")
    await _until(stage, lambda: ":lock: Held" in stage.slack.read(_release_message(stage)))
    gitlab.set_pipeline_outcome(gitops, ref="pitcrew/orders-production-*", outcome="success")
    await _pipelines(stage, gitops)
    stage.say("the MR pipeline passes during the freeze: the merge stays held")

    stage.say("… Monday, 09:00 in Rome: the freeze ends, the merge goes ahead …")
    await _skip_to(stage, "0 9 * * 1")
    await _until(stage, lambda: gitlab.merge_requests(gitops)[-1]["state"] == "merged")
    await _pipelines(stage, gitops)
    stage.say("Argo CD applies 1.6.0 to production")
    registry = "registry.example.com/shop"
    stage.kube.set_image("deploy", "orders", "orders", "orders", f"{registry}/orders:1.6.0")
    await _roll(stage, steps=20)
    await _until(stage, lambda: len(_notes(stage, orders, issue)) >= 2)
    _show_issue(stage, orders, issue)


async def insights(stage: Stage) -> None:
    """Monday's delivery digest with its chart, then the team's DORA figures of the month."""
    stage.say("… Monday, 09:00 UTC: each team's weekly delivery digest …")
    now = stage.clock()
    slot = next_slot(Schedule(cron="0 9 * * 1", timezone="UTC"), now)
    stage.clock.skipped += slot - now + timedelta(seconds=5)
    await _until(stage, lambda: len(stage.slack.files("payments-deploys")) >= 1)
    [digest] = [m for m in stage.slack.messages("payments-deploys") if "Weekly delivery" in m.text]
    for line in stage.slack.read(digest).splitlines():
        stage.say(f"    {line}")
    for chart in stage.slack.files("payments-deploys"):
        where = f" — saved as {chart.path}" if chart.path else ""
        stage.say(f"    ↳ in its thread: {chart.title} ({chart.length:,} bytes of PNG){where}")
    stage.say("alice wants the month, for the quarterly review")
    await stage.slash("alice", "/dora", "payments 30d", channel="payments-deploys")


def _notes(stage: Stage, project: str, issue: int) -> list[str]:
    return [n["body"] for n in stage.gitlab.issue_notes(project, issue) if not n["system"]]


def _show_issue(stage: Stage, project: str, issue: int) -> None:
    found = stage.gitlab.issue(project, issue)
    stage.say(f"GitLab issue {project}#{issue} ({', '.join(found['labels']) or 'no labels'}):")
    for body in _notes(stage, project, issue):
        stage.say(f"    {body}")


async def _skip_to(stage: Stage, cron: str) -> None:
    """Move the bot's clock to just after the next slot of ``cron`` in Rome."""
    now = stage.clock()
    slot = next_slot(Schedule(cron=cron, timezone="Europe/Rome"), now)
    stage.clock.skipped += slot - now + timedelta(seconds=5)
    await asyncio.sleep(1.0)  # a look at the schedules, a lock sweep
    await stage.settle()


async def _until(stage: Stage, done: Callable[[], bool], *, within: float = 30.0) -> None:
    for _ in range(int(within / 0.1)):
        if done():
            break
        await asyncio.sleep(0.1)
    await stage.settle()


async def access(stage: Stage) -> None:
    """Break-glass access: bob asks for admin on orders in production; too long is refused;
    his own click approves nothing; carol approves; Argo CD applies the RoleBinding; two hours
    later Pitcrew takes it back by itself and tells bob."""
    gitops = "platform/deployments"
    channel = "payments-deploys"
    argo = GitOpsController(stage.gitlab, stage.kube, project=gitops, paths=("access/production",))
    try:
        await stage.slash("bob", "/access", "production orders for 12h", channel=channel)
        await stage.slash(
            "bob", "/access", "production orders for 2h checkout is stuck", channel=channel
        )
        await stage.settle()
        message = _access_message(stage)
        await stage.click("bob", "access_approve", message)
        await stage.click("carol", "access_approve", message)
        await _pipelines(stage, gitops)
        stage.say("Argo CD applies the RoleBinding to production")
        await asyncio.to_thread(argo.sync)
        await _until(stage, lambda: "Access granted" in stage.slack.read(_access_message(stage)))
        await stage.slash("carol", "/access", "", channel="releases")
        stage.say("… two hours later: the access expires …")
        before = len(stage.gitlab.merge_requests(gitops))  # earlier scenes opened some too
        stage.clock.skipped += timedelta(hours=2, minutes=1)
        await _until(stage, lambda: len(stage.gitlab.merge_requests(gitops)) > before)
        revoke = stage.gitlab.merge_requests(gitops)[-1]
        for _ in range(10):  # its pipeline, then the merge Pitcrew asked for when it passes
            await _pipelines(stage, gitops)
            if stage.gitlab.merge_request(gitops, revoke["iid"])["state"] == "merged":
                break
        stage.say("Argo CD removes the RoleBinding from production")
        await asyncio.to_thread(argo.sync)
        await _until(stage, lambda: "is gone" in stage.slack.read(_access_message(stage)))
    finally:
        argo.close()


async def undeploy(stage: Stage) -> None:
    """search-api leaves production: an undeploy, approved by someone else, pruned by Argo CD;
    the watcher sees its workload go."""
    gitops = "platform/deployments"
    argo = GitOpsController(stage.gitlab, stage.kube, project=gitops, paths=("apps/*/production",))
    try:
        await stage.slash("bob", "/undeploy", "search-api production", channel="search-deploys")
        await stage.settle()
        await stage.click("carol", "release_approve", _release_message(stage, "search-deploys"))
        await _pipelines(stage, gitops)
        stage.say("Argo CD prunes what git no longer has: search-api's Deployment")
        await asyncio.to_thread(argo.sync)
        await _until(
            stage, lambda: stage.kube.get("Deployment", "search-api", "search-api") is None
        )
        await _until(
            stage,
            lambda: "Removed from" in stage.slack.read(_release_message(stage, "search-deploys")),
        )
        await stage.slash("bob", "/whatsinprod", "search-api", channel="search-deploys")
    finally:
        argo.close()


def _access_message(stage: Stage) -> Message:
    """The newest break-glass access message in the team's channel."""
    return [
        m
        for m in stage.slack.messages("payments-deploys")
        if m.metadata and str(m.metadata["event_payload"]["key"]).startswith("access:")
    ][-1]


def _release_message(stage: Stage, channel: str = "payments-deploys") -> Message:
    """The newest release message in a team's channel, as it reads now."""
    return [
        m
        for m in stage.slack.messages(channel)
        if m.metadata and str(m.metadata["event_payload"]["key"]).startswith("release:")
    ][-1]


async def _pipelines(stage: Stage, project: str) -> None:
    for _ in range(3):  # the MR's pipeline, the merge, the merge commit's pipeline
        await asyncio.to_thread(stage.gitlab.run_pipelines, project)
        await stage.settle()
        await asyncio.sleep(0.2)


SCENES: dict[str, Scene] = {
    "foundation": foundation,
    "help": help_,
    "pipelines": pipelines,
    "whatsinprod": whatsinprod,
    "locks": locks,
    "rollouts": rollouts,
    "releases": releases,
    "access": access,
    "undeploy": undeploy,
    "autopilot": autopilot,  # it and the insights end the story on a Monday: the weekly digest
    "insights": insights,
}


def _settings(
    slack: SlackSandbox,
    gitlab: GitLabSandbox,
    kubeconfig: Path,
    state_dir: Path,
    catalog: Path = CATALOG,
) -> Settings:
    return Settings(
        _env_file=None,
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET=slack.signing_secret,
        SLACK_API_URL=slack.api_url,
        GITLAB_URL=gitlab.url,
        GITLAB_TOKEN="glpat-sandbox",
        GITLAB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GITOPS_PROJECT="platform/deployments",
        CATALOG_PATH=str(catalog),
        RELEASE_EXPIRY_HOURS="168",  # the autopilot scene's promotion waits all week
        STATE_DIR=str(state_dir),
        KUBE_CONTEXTS="production=prod",
        KUBECONFIG=str(kubeconfig),
        LOG_LEVEL="warning",
        LOG_FORMAT="console",
    )


def _shop(gitlab: GitLabSandbox) -> None:
    """The sandbox shop's people and repositories, as the example catalog describes them."""
    gitlab.add_user("alice", name="Alice Martin", email="alice@example.com")
    gitlab.add_user("bob", name="Bob Stone", email="bob@example.com")
    jobs = (("build", "compile"), ("test", "unit"), ("test", "lint"))
    for project in ("shop/orders", "shop/invoices", "shop/search-api"):
        gitlab.add_project(project, ci=True, jobs=jobs)
        gitlab.commit(
            project, {"README.md": f"# {project}\n"}, message="Initial commit", author="alice"
        )
    for version in ("1.4.1", "1.4.2"):
        gitlab.commit(
            "shop/orders", {"VERSION": f"{version}\n"}, message=f"Release {version}", author="bob"
        )
        gitlab.tag("shop/orders", version, user="bob")
    gitlab.add_project("platform/deployments", ci=True, jobs=(("deploy", "sync"),))
    gitlab.commit(
        "platform/deployments",
        {"README.md": "# GitOps\n"},
        message="Initial commit",
        author="alice",
    )
    gitlab.commit("platform/deployments", _manifests(), message="Deploy the shop", author="bob")
    gitlab.run_pipelines()  # the initial commits' pipelines, before Pitcrew listens


def _manifests() -> dict[str, str]:
    """The GitOps repo of the sandbox shop: the three kinds of manifest SPEC section 3 names."""
    registry = "registry.example.com/shop"

    def deployment(app: str, version: str) -> str:
        return (
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n"
            f"  namespace: {app}\n  labels:\n    appId: {app}\nspec:\n  replicas: 3\n"
            f"  selector:\n    matchLabels:\n      app: {app}\n"
            f"  template:\n    metadata:\n      labels:\n        app: {app}\n"
            f"    spec:\n      containers:\n        - name: {app}\n"
            f"          image: {registry}/{app}:{version}\n"
        )

    def kustomization(version: str) -> str:
        return (
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"namespace: invoices\nimages:\n  - name: {registry}/invoices\n"
            f'    newTag: "{version}"\n'
        )

    def values(version: str) -> str:
        return f"image:\n  repository: {registry}/search-api\n  tag: '{version}'\n"

    return {
        "apps/orders/staging/deployment.yaml": deployment("orders", "1.4.2"),
        "apps/orders/production/deployment.yaml": deployment("orders", "1.4.1"),
        "apps/invoices/staging/kustomization.yaml": kustomization("2.1.0"),
        "apps/invoices/production/kustomization.yaml": kustomization("2.0.0"),
        "apps/search-api/staging/values.yaml": values("3.2.1"),
        # git says 3.2.1, but the production cluster still runs 3.2.0 (see _cluster): drift
        "apps/search-api/production/values.yaml": values("3.2.1"),
    }


def _cluster(kube: KubeSandbox) -> None:
    """The production cluster: the shop's apps, running, per the ground rules."""
    for app, version, replicas in (
        ("orders", "1.4.1", 3),
        ("invoices", "2.0.0", 2),
        ("search-api", "3.2.0", 2),
    ):
        kube.add_namespace(app, {"appId": app})
        kube.add_deployment(
            app,
            app,
            image=f"registry.example.com/shop/{app}:{version}",
            replicas=replicas,
            labels={"appId": app},
        )


async def run_demo(*, scenes: Sequence[str] = (), out: Callable[[str], None] = print) -> int:
    chosen = list(scenes) or list(SCENES)
    unknown = [s for s in chosen if s not in SCENES]
    if unknown:
        raise PitcrewError(f"no scene {unknown[0]!r}; scenes are: {', '.join(SCENES)}")
    out("Pitcrew demo: the real bot against its built-in sandbox (no credentials, no network)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pitcrew-demo-") as tmp:
        async with (
            # Slack paces a channel at about a message a second; the demo's story is told
            # faster (the outbox still paces, at DEMO_PACING), and the sandbox does not
            # rate-limit it. The foundation scene shows a 429 being honoured.
            SlackSandbox(
                channels=CHANNELS,
                users=(*DEFAULT_USERS, NEWCOMER),
                usergroups=USERGROUPS,
                enforce_pacing=False,
                files_dir=DEMO_FILES,
            ) as slack,
            GitLabSandbox(Path(tmp) / "gitlab") as gitlab,
            KubeSandbox() as kube,
            aiohttp.ClientSession() as http,
        ):
            _shop(gitlab)
            _cluster(kube)
            kubeconfig = kube.kubeconfig(Path(tmp) / "kubeconfig", context="prod")
            clock = DemoClock()
            catalog = Path(tmp) / "catalog.yaml"
            catalog.write_text(CATALOG.read_text())
            settings = _settings(slack, gitlab, kubeconfig, Path(tmp) / "var", catalog)
            bot = Pitcrew(
                settings,
                host="127.0.0.1",
                port=0,
                clock=clock,
                outbox_pacing=DEMO_PACING,
                autopilot_tick=0.2,
                release_sweep_every=DEMO_SWEEP,
                insights_tick=0.2,
            )
            await bot.start()
            gitlab.add_webhook(f"{bot.url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET)
            for _ in range(200):  # the cluster is watched and git read before the story starts
                assert bot.inventory is not None
                current = await bot.inventory.current()
                if kube.open_watches >= 3 and current.refreshed_at and len(current.live) >= 3:
                    break
                await asyncio.sleep(0.05)
            stage = Stage(
                bot=bot,
                slack=slack,
                gitlab=gitlab,
                kube=kube,
                http=http,
                out=out,
                clock=clock,
                catalog_path=catalog,
            )
            try:
                for name in chosen:
                    scene = SCENES[name]
                    out("")
                    out(f"▶ {name}: {(scene.__doc__ or '').strip()}")
                    await scene(stage)
                    await stage.settle()
                out("")
                out("What the channels show")
                out("──────────────────────")
                out(slack.render())
            finally:
                await bot.stop()
    out(f"(played {len(chosen)} scene(s) in {time.monotonic() - started:.1f} s)")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------------
# pitcrew demo --interactive

INTERACTIVE_HELP = """\
Type what a person types in Slack, as anyone in the sandbox workspace (alice, bob, carol):
  /deploy orders from staging to production   a slash command, as the current person, here
  /as carol /lock production freeze           one command as someone else (/as carol: switch)
  /in search-deploys                          switch channel (#payments-deploys, #search-deploys,
                                              #releases)
  click 2   (or just 2)                       click button [2] of the list, as the current person
  /as carol click 2                           click it as someone else
  tag shop/orders 1.6.0                       GitLab: tag a version of an app (shop/orders,
                                              shop/invoices, shop/search-api); its pipeline runs
  channels | buttons | help | quit            print every channel, list the buttons, this, leave
After each step the sandbox's world turns: GitLab runs pending pipelines, Argo CD applies what was
merged for production, the cluster rolls out. Only channels that changed are printed again."""

PEOPLE = ("alice", "bob", "carol")


@dataclass(frozen=True)
class Button:
    """A button a person can see and click, numbered for the prompt."""

    number: int
    label: str
    action_id: str
    value: str | None
    channel: str
    ts: str
    where: str
    only_for: str | None = None


class Console:
    """The prompt of ``pitcrew demo --interactive``: one line in, the world's answer out."""

    def __init__(self, stage: Stage, *, gitops: Any) -> None:
        self.stage = stage
        self.gitops = gitops
        self.user = "alice"
        self.channel = "payments-deploys"
        self.buttons: list[Button] = []
        self._shown: dict[str, str] = {}

    @property
    def prompt(self) -> str:
        return f"{self.user} in #{self.channel}> "

    async def handle(self, line: str) -> bool:
        """Do what ``line`` asks; False when the person wants to leave."""
        text = line.strip()
        user = self.user
        if text.startswith("/as "):
            _, _, rest = text.partition(" ")
            name, _, text = rest.strip().partition(" ")
            if name not in PEOPLE:
                self.stage.say(f"no one called {name!r} here: {', '.join(PEOPLE)}")
                return True
            if not text.strip():
                self.user = name
                return True
            user, text = name, text.strip()
        if not text:
            return True
        if text in ("quit", "exit", "/quit", "/exit"):
            return False
        if text in ("help", "/help", "?"):
            self.stage.out(INTERACTIVE_HELP)
        elif text in ("channels", "/channels"):
            self.stage.out(self.stage.slack.render())
            self._remember()
            self._list_buttons(user)
        elif text in ("buttons", "/buttons"):
            self._list_buttons(user, refresh=True)
        elif text.startswith("/in "):
            await self._switch_channel(text.removeprefix("/in ").strip())
        elif text.isdigit() or text.startswith("click "):
            await self._click(user, text.removeprefix("click ").strip())
        elif text.startswith("tag "):
            await self._tag(text.removeprefix("tag ").split())
        elif text.startswith("/"):
            command, _, rest = text.partition(" ")
            await self._slash(user, command, rest.strip())
        else:
            self.stage.say(f"not understood: {text!r} (type help)")
        return True

    async def _slash(self, user: str, command: str, text: str) -> None:
        """As ``Stage.slash``, but the private answers are read in the channel, in place."""
        stage = self.stage
        stage.say(f"{user} types in #{self.channel}: {command} {text}".rstrip())
        before = len(stage.slack.ephemerals())
        body, headers = stage.slack.slash_command(
            command=command, text=text, user=user, channel=self.channel
        )
        url = f"{stage.bot.url}/slack/events"
        async with stage.http.post(url, data=body, headers=headers) as response:
            await response.read()
        await stage._answered(before)
        await self._turn(user)

    async def _switch_channel(self, name: str) -> None:
        name = name.removeprefix("#")
        if name not in CHANNELS:
            self.stage.say(f"no channel #{name}: {', '.join('#' + c for c in CHANNELS)}")
            return
        self.channel = name

    async def _tag(self, words: list[str]) -> None:
        if len(words) != 2:
            self.stage.say("usage: tag shop/orders 1.6.0")
            return
        project, version = words
        try:
            await asyncio.to_thread(self.stage.gitlab.tag, project, version, user=self.user)
        except Exception as exc:  # the sandbox's own refusal, e.g. an unknown project
            self.stage.say(f"GitLab refused: {exc}")
            return
        self.stage.say(f"{self.user} tags {project} {version}")
        await self._turn(self.user)

    async def _click(self, user: str, number: str) -> None:
        if not number.isdigit() or not 1 <= int(number) <= len(self.buttons):
            self.stage.say(f"no button [{number}]; type buttons to list them")
            return
        button = self.buttons[int(number) - 1]
        if button.only_for is not None and button.only_for != user:
            self.stage.say(f"[{number}] is in a private answer to {button.only_for}")
            return
        self.stage.say(f"{user} clicks [{button.label}] ({button.where})")
        before = len(self.stage.slack.ephemerals())
        try:
            body, headers = self.stage.slack.block_action(
                user=user,
                channel=button.channel,
                message_ts=button.ts,
                action_id=button.action_id,
                value=button.value,
            )
        except ValueError as exc:  # the message changed since the list was printed
            self.stage.say(f"that button is gone ({exc}); type buttons to list them again")
            return
        url = f"{self.stage.bot.url}/slack/events"
        async with self.stage.http.post(url, data=body, headers=headers) as response:
            await response.read()
        if button.action_id == SHARE:
            await self.stage.settle()  # shared in the channel: no private answer to wait for
        else:
            await self.stage._answered(before)
        await self._turn(user)

    async def _turn(self, user: str) -> None:
        """Let the world move on, then print what changed."""
        stage = self.stage
        for _ in range(3):  # an MR pipeline, the merge, the merge commit's pipeline
            await asyncio.to_thread(stage.gitlab.run_pipelines)
            await stage.settle()
            await asyncio.to_thread(self.gitops.sync)
            await _roll(stage, steps=20)
        self._print_changes()
        self._list_buttons(user)

    def _remember(self) -> None:
        for name in CHANNELS:
            self._shown[name] = self.stage.slack.render(name)

    def _print_changes(self) -> None:
        """New lines at the end of a channel are printed under its name; a message updated in
        place (a release moving on) reprints the whole channel."""
        for name in CHANNELS:
            now = self.stage.slack.render(name)
            before = self._shown.get(name, "")
            if now == before:
                continue
            self.stage.out("")
            if before and now.startswith(before):
                header = now.splitlines()[0]
                self.stage.out(f"{header} (new)\n{now[len(before) :].strip(chr(10))}")
            else:
                self.stage.out(now)
            self._shown[name] = now

    def _list_buttons(self, user: str, *, refresh: bool = False) -> None:
        self.buttons = self._collect(user)
        if not self.buttons:
            if refresh:
                self.stage.say("no buttons to click")
            return
        self.stage.out("")
        for button in self.buttons:
            self.stage.out(f"  [{button.number}] {button.label} — {button.where}")

    def _collect(self, user: str) -> list[Button]:
        slack = self.stage.slack
        found: list[Button] = []
        for name in CHANNELS:
            for top in slack.messages(name):
                for message in (top, *top.replies):
                    found += self._buttons_in(
                        message.blocks,
                        channel=name,
                        ts=message.ts,
                        where=f"#{name}: {_first_line(slack.read(message))}",
                        numbered=len(found),
                    )
        for answer in slack.ephemerals():
            person = next((p for p in PEOPLE if slack_user(p) == answer.user), answer.user)
            if person != user:
                continue
            found += self._buttons_in(
                answer.blocks,
                channel=answer.channel,
                ts=answer.message_ts,
                where=f"only {person} sees: {_first_line(slack.read(answer))}",
                numbered=len(found),
                only_for=person,
            )
        return found

    @staticmethod
    def _buttons_in(
        blocks: list[dict[str, Any]],
        *,
        channel: str,
        ts: str,
        where: str,
        numbered: int,
        only_for: str | None = None,
    ) -> list[Button]:
        found: list[Button] = []
        for block in blocks:
            for element in [*(block.get("elements") or []), block.get("accessory")]:
                if not isinstance(element, dict) or element.get("type") != "button":
                    continue
                if element.get("url") or not element.get("action_id"):
                    continue  # a link: nothing for the bot to hear
                text = element.get("text")
                label = str(text.get("text", "")) if isinstance(text, dict) else ""
                found.append(
                    Button(
                        number=numbered + len(found) + 1,
                        label=label,
                        action_id=str(element["action_id"]),
                        value=str(element["value"]) if "value" in element else None,
                        channel=channel,
                        ts=ts,
                        where=where,
                        only_for=only_for,
                    )
                )
        return found


def slack_user(name: str) -> str:
    return f"U0{name.upper()}"


def _first_line(text: str, width: int = 60) -> str:
    line = next((line for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def _read(reader: Callable[[], str]) -> asyncio.Future[str]:
    """The person's next line, read on a daemon thread: a Ctrl-C at the prompt ends the demo at
    once, where a thread of the loop's executor would keep it waiting for one more Enter."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(line or "")

    def read() -> None:
        try:
            line, error = reader(), None
        except Exception as exc:  # handed to the loop, which raises it where it waits
            line, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, line, error)

    threading.Thread(target=read, name="demo-prompt", daemon=True).start()
    return answer


async def run_interactive(
    *,
    scenes: Sequence[str] = (),
    read_line: Callable[[], str] | None = None,
    out: Callable[[str], None] = print,
    ask: Callable[[str], None] | None = None,
) -> int:
    """The sandbox and the bot stay up after ``scenes`` (none by default), with a prompt:
    ``read_line`` gives the person's next line ("" at the end), ``ask`` shows the prompt."""

    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        raise PitcrewError(f"no scene {unknown[0]!r}; scenes are: {', '.join(SCENES)}")
    reader = read_line or sys.stdin.readline

    def prompt(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    show_prompt = ask or prompt
    out("Pitcrew demo, interactive: the real bot against its built-in sandbox")
    with tempfile.TemporaryDirectory(prefix="pitcrew-demo-") as tmp:
        async with (
            SlackSandbox(
                channels=CHANNELS,
                usergroups=USERGROUPS,
                enforce_pacing=False,
                files_dir=DEMO_FILES,
            ) as slack,
            GitLabSandbox(Path(tmp) / "gitlab") as gitlab,
            KubeSandbox() as kube,
            aiohttp.ClientSession() as http,
        ):
            _shop(gitlab)
            _cluster(kube)
            kubeconfig = kube.kubeconfig(Path(tmp) / "kubeconfig", context="prod")
            clock = DemoClock()
            settings = _settings(slack, gitlab, kubeconfig, Path(tmp) / "var")
            bot = Pitcrew(
                settings,
                host="127.0.0.1",
                port=0,
                clock=clock,
                outbox_pacing=DEMO_PACING,
                release_sweep_every=DEMO_SWEEP,
            )
            await bot.start()
            gitops = GitOpsController(
                gitlab, kube, project="platform/deployments", paths=("apps/*/production",)
            )
            try:
                gitlab.add_webhook(f"{bot.url}/webhooks/gitlab", secret_token=WEBHOOK_SECRET)
                for _ in range(200):
                    assert bot.inventory is not None
                    current = await bot.inventory.current()
                    if kube.open_watches >= 3 and current.refreshed_at and len(current.live) >= 3:
                        break
                    await asyncio.sleep(0.05)
                stage = Stage(
                    bot=bot, slack=slack, gitlab=gitlab, kube=kube, http=http, out=out, clock=clock
                )
                for name in scenes:
                    scene = SCENES[name]
                    out("")
                    out(f"▶ {name}: {(scene.__doc__ or '').strip()}")
                    await scene(stage)
                    await stage.settle()
                console = Console(stage, gitops=gitops)
                out("")
                out(INTERACTIVE_HELP)
                out("")
                out(slack.render() or "(the channels are empty)")
                console._remember()
                console._list_buttons(console.user)
                while True:
                    out("")
                    show_prompt(console.prompt)
                    line = await _read(reader)
                    if not line:  # end of input
                        out("")
                        break
                    if not await console.handle(line):
                        break
            finally:
                gitops.close()
                await bot.stop()
    out("(the sandbox is gone)")
    return 0
