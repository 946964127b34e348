"""The real bot, wired as ``pitcrew serve`` wires it, against the sandbox simulators."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from bot.settings import Settings

EXAMPLE_CATALOG = Path(__file__).parents[2] / "bot" / "sandbox" / "example_catalog.yaml"
WEBHOOK_SECRET = "gitlab-webhook-secret"
CHANNELS = ("payments-deploys", "search-deploys", "releases", "general")


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    async with SlackSandbox(channels=CHANNELS, enforce_pacing=False) as sandbox:
        yield sandbox


def bot_environment(*, slack: SlackSandbox, redis_url: str, state_dir: Path) -> dict[str, str]:
    """The environment of a bot talking to the sandbox: what an operator would set."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "GITLAB_URL": "http://127.0.0.1:9",
        "GITLAB_TOKEN": "glpat-sandbox",
        "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITOPS_PROJECT": "platform/deployments",
        "CATALOG_PATH": str(EXAMPLE_CATALOG),
        "REDIS_URL": redis_url,
        "STATE_DIR": str(state_dir),
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def bot_env(slack: SlackSandbox, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")


@pytest.fixture
def make_bot(bot_env: dict[str, str]) -> Callable[..., Pitcrew]:
    def make(**overrides: Any) -> Pitcrew:
        env = {**bot_env, **{k: v for k, v in overrides.items() if k.isupper()}}
        options = {k: v for k, v in overrides.items() if not k.isupper()}
        options.setdefault("outbox_pacing", 0.02)
        settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
        return Pitcrew(settings, host="127.0.0.1", port=0, **options)

    return make


@pytest.fixture
async def bot(make_bot: Callable[..., Pitcrew]) -> AsyncIterator[Pitcrew]:
    pitcrew = make_bot()
    await pitcrew.start()
    yield pitcrew
    await pitcrew.stop()


async def eventually(
    check: Callable[[], Any], *, within: float = 10.0, interval: float = 0.02
) -> Any:
    """Wait until ``check()`` is truthy (awaiting it if needed); fail with the last value."""
    deadline = time.monotonic() + within
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within} s (last value: {value!r})")


async def drained(bot: Pitcrew) -> bool:
    """Everything the bot queued for Slack has been delivered."""
    assert bot.outbox is not None
    return await bot.outbox.pending() == 0


# --------------------------------------------------------------------------------------------
# The world of a release (tests/integration/release_world.py)


@pytest.fixture
def gitops_ci() -> str:
    """How the GitOps repo's CI runs; a test picks another setup with
    ``@pytest.mark.parametrize("gitops_ci", [...])``."""
    return "both"


@pytest.fixture
async def gitops_gitlab(tmp_path: Path, gitops_ci: str) -> AsyncIterator[Any]:
    from .release_world import gitops_sandbox

    async with gitops_sandbox(tmp_path, ci=gitops_ci) as sandbox:
        yield sandbox


@pytest.fixture
async def orders_cluster(tmp_path: Path) -> AsyncIterator[Any]:
    from .release_world import orders_cluster as build

    async with build(tmp_path) as cluster:
        yield cluster


@pytest.fixture
async def start(
    make_bot: Callable[..., Pitcrew],
    slack: SlackSandbox,
    gitops_gitlab: Any,
    orders_cluster: Any,
) -> AsyncIterator[Callable[..., Any]]:
    """``await start(replicas=1, **env)`` → a ``World`` with the bots running."""
    from .release_world import world_starter

    async with world_starter(
        make_bot=make_bot, slack=slack, gitlab=gitops_gitlab, cluster=orders_cluster
    ) as begin:
        yield begin
