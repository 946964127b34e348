"""Secrets never leave the process: not in log lines, not in ``/metrics``, not in any answer,
not in what is sent to Sentry.

``pitcrew serve`` runs in its own process, configured exactly as in production (JSON logs,
Sentry on), with distinctive secret values, and is driven through failures: requests with wrong
signatures and tokens, a GitLab that refuses its token and then is gone, a Slack that fails and
refuses its token. Sentry is a local HTTP endpoint that keeps every envelope the real SDK sends.

Pitcrew's own failures do not put secrets into errors, so a second process (``sentry_probe.py``,
same set-up) raises errors that do hold every secret, to see the masking and the scrubbing work.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.slack import SlackSandbox, sign, signed_slash_command
from tests.integration.conftest import EXAMPLE_CATALOG, eventually

ROOT = Path(__file__).parents[2]
SLACK_BOT_TOKEN = "xoxb-4242-SECRETBOTTOKEN-q8Zr1Lm0"
SLACK_SIGNING_SECRET = "SECRETSIGNING-7c1e9a05b3d24f68"
GITLAB_TOKEN = "glpat-SECRETGITLAB-x7Yq2Vw9"
GITLAB_WEBHOOK_SECRET = "SECRETWEBHOOK-d3a9-41f2"
SENTRY_KEY = "5ecre75e0e0a4b0c9d8e7f6a5b4c3d2e"
SECRETS = (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, GITLAB_TOKEN, GITLAB_WEBHOOK_SECRET, SENTRY_KEY)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeSentry:
    """Sentry's ingestion endpoint: keeps every envelope (decompressed) it is sent."""

    envelopes: list[bytes] = field(default_factory=list)
    port: int = 0

    def dsn(self) -> str:
        return f"http://{SENTRY_KEY}@127.0.0.1:{self.port}/1"

    async def _store(self, request: web.Request) -> web.Response:
        self.envelopes.append(await request.read())  # aiohttp undoes the Content-Encoding
        return web.json_response({"id": uuid.uuid4().hex})

    def events(self) -> list[dict[str, Any]]:
        """The event items of every envelope (not the envelope headers, which carry the DSN
        by design: it is Sentry's own key, sent to Sentry)."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found


@pytest.fixture
async def sentry() -> AsyncIterator[FakeSentry]:
    fake = FakeSentry()
    app = web.Application()
    app.router.add_post("/api/{project}/envelope/", fake._store)
    app.router.add_post("/api/{project}/store/", fake._store)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = int(runner.addresses[0][1])
    yield fake
    await runner.cleanup()


def environment(sentry: FakeSentry, **settings: str) -> dict[str, str]:
    """What an operator sets, with the secrets above; Sentry on, logs in JSON."""
    return {
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "GITLAB_TOKEN": GITLAB_TOKEN,
        "GITLAB_WEBHOOK_SECRET": GITLAB_WEBHOOK_SECRET,
        "GITOPS_PROJECT": "platform/deployments",
        "SENTRY_DSN": sentry.dsn(),
        "LOG_FORMAT": "json",
        **settings,
    }


@pytest.fixture
async def secret_slack() -> AsyncIterator[SlackSandbox]:
    async with SlackSandbox(
        bot_token=SLACK_BOT_TOKEN,
        signing_secret=SLACK_SIGNING_SECRET,
        channels=("payments-deploys", "search-deploys", "releases", "general"),
        enforce_pacing=False,
    ) as sandbox:
        yield sandbox


@pytest.fixture
async def refusing_gitlab(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    """A GitLab that does not know Pitcrew's token: every call is a 401."""
    async with GitLabSandbox(tmp_path / "gitlab") as sandbox:
        yield sandbox


@dataclass
class Served:
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def served(
    secret_slack: SlackSandbox,
    refusing_gitlab: GitLabSandbox,
    sentry: FakeSentry,
    redis_url: str,
    tmp_path: Path,
) -> AsyncIterator[Served]:
    port = _free_port()
    env = environment(
        sentry,
        SLACK_API_URL=secret_slack.api_url,
        GITLAB_URL=refusing_gitlab.url,
        CATALOG_PATH=str(EXAMPLE_CATALOG),
        REDIS_URL=redis_url,
        STATE_DIR=str(tmp_path / "var"),
        LOG_LEVEL="debug",
        PORT=str(port),
    )
    log = tmp_path / "pitcrew.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    bot = Served(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"pitcrew serve exited:\n{bot.output()}")
                try:
                    async with http.get(f"{bot.url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, within=30, interval=0.05)
        yield bot
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


def _slash(slack: SlackSandbox, command: str, text: str, *, secret: str) -> Any:
    return signed_slash_command(
        signing_secret=secret,
        command=command,
        text=text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id=slack.channel_id("payments-deploys"),
        channel_name="payments-deploys",
        response_url=slack.response_url(channel="payments-deploys", user="alice"),
    )


async def test_no_secret_in_logs_metrics_answers_or_sentry_events(
    served: Served, secret_slack: SlackSandbox, refusing_gitlab: GitLabSandbox, sentry: FakeSentry
) -> None:
    slack = secret_slack
    answers: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def post(path: str, body: bytes, headers: dict[str, str]) -> int:
            async with http.post(f"{served.url}{path}", data=body, headers=headers) as response:
                text = await response.text()
                answers.append(f"{response.status} {dict(response.headers)} {text}")
                return response.status

        async def command(text: str, *, secret: str = SLACK_SIGNING_SECRET) -> int:
            name, _, rest = text.partition(" ")
            body, headers = _slash(slack, name, rest, secret=secret)
            return await post("/slack/events", body, headers)

        # webhooks with wrong tokens, one of them another secret of the bot's
        hook = {"Content-Type": "application/json", "X-Gitlab-Event": "Pipeline Hook"}
        pipeline = json.dumps({"object_kind": "pipeline"}).encode()
        for token in ("wrong", SLACK_SIGNING_SECRET, GITLAB_WEBHOOK_SECRET[:-1]):
            wrong = {**hook, "X-Gitlab-Token": token}
            assert await post("/webhooks/gitlab", pipeline, wrong) == 401
        # a request id is logged with every line of its request: make it a secret, a canary
        tagged = {**hook, "X-Gitlab-Token": GITLAB_WEBHOOK_SECRET, "X-Request-Id": GITLAB_TOKEN}
        assert await post("/webhooks/gitlab", pipeline, tagged) == 200
        assert await post("/webhooks/gitlab", b"{not json", tagged) == 400

        # Slack requests signed with the wrong secret, or too long ago
        assert await command("/lock", secret="not-" + SLACK_SIGNING_SECRET) == 401
        body, headers = _slash(slack, "/lock", "", secret=SLACK_SIGNING_SECRET)
        stale = {
            **headers,
            "X-Slack-Request-Timestamp": "1000000000",
            "X-Slack-Signature": sign(SLACK_SIGNING_SECRET, body, "1000000000"),
        }
        assert await post("/slack/events", body, stale) == 401

        # commands against a GitLab that refuses the token, and a Slack that fails, then
        # refuses the token too
        slack.fail("chat.postMessage", status=503, times=2)
        slack.fail("chat.postMessage", status=200, error="invalid_auth")
        for text in (
            "/deploy orders 1.4.2 to production",
            "/rollback orders production",
            "/whatsinprod orders",
            "/lock production secrets week",
        ):
            assert await command(text) == 200
        await eventually(lambda: len(slack.ephemerals()) == 6, within=20)
        await eventually(lambda: [c for c in slack.calls if c.error == "invalid_auth"], within=20)

        # GitLab gone: unreachable
        await refusing_gitlab.stop()
        assert await command("/deploy orders 1.4.2 to staging") == 200
        await eventually(lambda: "unreachable" in slack.read(slack.ephemerals()[-1]), within=20)

        for path in ("/metrics", "/healthz", "/readyz"):
            async with http.get(f"{served.url}{path}") as response:
                answers.append(await response.text())
        metrics = answers[-3]

    served.process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(served.process.wait(), timeout=15)
    logs = served.output()

    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    # the failures were logged...
    problems = " ".join(line["event"] for line in lines if line["level"] != "info")
    assert "inventory refresh failed" in problems, logs
    assert "slack server error" in problems, logs
    assert "slack rejected the bot token" in problems, logs
    # ...what carried a secret was masked...
    assert [line["request_id"] for line in lines if "request_id" in line] == ["***"], logs
    # ...and no secret is anywhere
    assert leaked(logs) == []
    assert 'pitcrew_events_total{outcome="rejected",source="gitlab"} 4.0' in metrics
    assert leaked(metrics) == []
    assert leaked("\n".join(answers)) == []
    assert leaked("\n".join(slack.read(e) for e in slack.ephemerals())) == []
    assert leaked(json.dumps(sentry.events())) == []


async def test_errors_with_secrets_reach_logs_and_sentry_scrubbed(
    sentry: FakeSentry, tmp_path: Path
) -> None:
    """Errors holding every secret in their message, their frames' local variables and the
    request being handled, as ``tests/security/sentry_probe.py`` raises them."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.security.sentry_probe",
        env=environment(sentry, STATE_DIR=str(tmp_path / "var")),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    output = (out + err).decode()
    assert process.returncode == 0, output

    [logged] = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert logged["detail"] == "token ***"
    masked = ", ".join(["***"] * 5)
    assert logged["exception"].endswith(f"RuntimeError: GitLab answered 401 to {masked}")
    assert leaked(output) == []

    events = sentry.events()
    # one from the logged error (error log lines go to Sentry), one captured directly
    raised = [e for e in events if "request" not in e]
    assert len(raised) == 2
    assert raised[0]["extra"]["detail"] == "token [Filtered]"
    for event in raised:
        [exception] = event["exception"]["values"]
        assert exception["value"] == "GitLab answered 401 to " + ", ".join(["[Filtered]"] * 5)
        frame = exception["stacktrace"]["frames"][-1]
        assert frame["vars"]["secrets"] == ["'[Filtered]'"] * 5
        assert frame["vars"]["headers"] == {"PRIVATE-TOKEN": "'[Filtered]'"}

    [handled] = [e for e in events if "request" in e]
    request = handled["request"]
    assert request["query_string"] == "private_token=[Filtered]"
    for name in ("X-Gitlab-Token", "X-Slack-Signature", "Authorization", "Cookie"):
        assert request["headers"][name] == "[Filtered]"  # by name, whatever the value
    assert request["headers"]["X-Forwarded-Token"] == "[Filtered]"  # by value

    assert leaked(json.dumps(events)) == []
    for envelope in sentry.envelopes:  # the envelope header names the DSN: Sentry's own key
        assert leaked(envelope.decode().replace(SENTRY_KEY, "")) == []
