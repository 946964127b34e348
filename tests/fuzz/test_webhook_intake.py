"""The GitLab webhook endpoint: whatever arrives, the answer is one of the documented ones, with a
JSON body, never a 500; what is accepted is stored as sent, and the worker never chokes on it."""

from __future__ import annotations

import asyncio
import io
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import from_json

from bot.adapters.gitlab.intake import KNOWN_EVENTS, GitLabIntake
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from bot.services.ports import InboundEvent
from bot.web import build_web_app
from tests.integration.conftest import WEBHOOK_SECRET, eventually
from tests.integration.gitlab_payloads import job_hook, pipeline_hook

from .strategies import dumps, mutated
from .test_webhook_payloads import GITOPS, GITOPS_EXAMPLES, KINDS, bad_bodies, kinds

if TYPE_CHECKING:
    Intake: TypeAlias = tuple[TestClient[web.Request, web.Application], "MemoryInbox"]

# A failing example may hold 100 kB strings: show it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

MAX_BODY = 4096
DOCUMENTED_ANSWERS = frozenset({200, 400, 401, 413})

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.strip)
tokens = st.one_of(
    st.just(WEBHOOK_SECRET),
    st.just(WEBHOOK_SECRET),
    st.sampled_from(["", WEBHOOK_SECRET + "x", WEBHOOK_SECRET[:-1], WEBHOOK_SECRET.upper()]),
    header_text,
)
event_headers = st.one_of(
    kinds.filter(lambda k: k == k.strip() and k.isascii() and k.isprintable()), header_text
)


@dataclass
class MemoryInbox:
    """Stores what it is given, de-duplicating by key like the Redis inbox."""

    events: list[InboundEvent] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    async def append(self, event: InboundEvent) -> str | None:
        if event.dedup_key in self.keys:
            return None
        self.keys.add(event.dedup_key)
        self.events.append(event)
        return f"{len(self.events)}-0"


@pytest.fixture
async def intake() -> AsyncIterator[Intake]:
    inbox = MemoryInbox()
    handler = GitLabIntake(inbox, secret=WEBHOOK_SECRET, max_body=MAX_BODY)

    async def ready() -> dict[str, bool]:
        return {"ok": True}

    # The real web app, middleware included: it is what turns an exception into a 500.
    app = build_web_app(slack_events=None, gitlab_webhook=handler.handle, readiness=ready)
    async with TestClient(TestServer(app)) as client:
        yield client, inbox


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, str], bytes, int | None]:
    kind = draw(event_headers)
    body = draw(
        st.one_of(
            bad_bodies(kind),
            st.just(b""),
            st.binary(min_size=MAX_BODY - 2, max_size=MAX_BODY + 2),
            st.integers(min_value=MAX_BODY + 1, max_value=3 * MAX_BODY).map(
                lambda n: b'{"padding": "' + b"x" * n + b'"}'
            ),
            st.integers(min_value=150, max_value=2000).map(  # nested past any parser's limit
                lambda depth: b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
            ),
        )
    )
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": kind}
    token = draw(st.one_of(st.none(), tokens))
    if token is not None:
        headers["X-Gitlab-Token"] = token
    for name in ("X-Gitlab-Event-UUID", "Idempotency-Key", "X-Request-Id"):
        value = draw(st.one_of(st.none(), header_text, st.just("k" * 300)))
        if value:
            headers[name] = value
    # Chunked (no Content-Length: the size is only known by reading), in pieces that arrive
    # one by one; or in one piece with its Content-Length.
    chunk = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=2 * MAX_BODY)))
    return headers, body, chunk


def documented_answer(headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """The table in ``bot/adapters/gitlab/intake.py``, as an independent oracle."""
    if headers.get("X-Gitlab-Token") != WEBHOOK_SECRET:
        return 401, "error"
    if len(body) > MAX_BODY:
        return 413, "error"
    kind = headers["X-Gitlab-Event"].strip()
    if not kind:
        return 400, "error"
    try:
        payload = from_json(body)  # the workers' parser: what it cannot read is refused
    except ValueError:
        return 400, "error"
    if not isinstance(payload, dict):
        return 400, "error"
    return 200, "queued" if kind in KNOWN_EVENTS else "ignored"


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        if start:
            await asyncio.sleep(0.001)  # a separate segment: the server sees part of the body
        yield body[start : start + size]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_every_answer_is_documented_and_what_is_queued_is_stored_as_sent(
    intake: Intake,
    request: tuple[dict[str, str], bytes, int | None],
) -> None:
    client, inbox = intake
    headers, body, chunk = request
    stored = len(inbox.events)
    data = _chunks(body, chunk) if chunk else io.BytesIO(body)  # with its Content-Length
    async with client.post("/webhooks/gitlab", data=data, headers=headers) as response:
        status = response.status
        assert response.content_type == "application/json"
        answer = await response.json()

    assert status in DOCUMENTED_ANSWERS, answer
    expected_status, expected_field = documented_answer(headers, body)
    assert status == expected_status, answer
    if status != 200:
        assert isinstance(answer["error"], str)
        assert answer["error"]
        assert len(inbox.events) == stored, "a refused webhook is not stored"
        return
    if expected_field == "ignored":
        assert answer["status"] == "ignored"
        assert len(inbox.events) == stored
        return
    assert answer["status"] in ("queued", "duplicate")
    if answer["status"] == "queued":
        assert len(inbox.events) == stored + 1
        event = inbox.events[-1]
        assert (event.kind, event.body) == (headers["X-Gitlab-Event"].strip(), body)
        assert len(event.dedup_key) <= 200


# --------------------------------------------------------------------------------------------
# The running bot: webhooks in, worker handles them, the next good event still gets to Slack

CHANNEL = "payments-deploys"


APP_KINDS = [k for k in KINDS if "Push" not in k]
"""A push to the GitOps repo makes the bot read GitLab, which these tests do not run."""


def realistic(kind: str, *, gitops: bool) -> dict[str, Any]:
    """An event of the example catalog's app or of the GitOps repo, to be mutated."""
    if kind == "Pipeline Hook":
        if gitops:
            return pipeline_hook(project=GITOPS, pipeline_id=32, status="running")
        return pipeline_hook(project="shop/orders", pipeline_id=31, status="failed")
    if kind == "Job Hook":
        return job_hook(project="shop/orders", pipeline_id=31, name="unit", status="failed")
    return GITOPS_EXAMPLES[kind]


@st.composite
def webhooks(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(APP_KINDS))
    if draw(st.booleans()):
        return kind, draw(bad_bodies(kind))
    return kind, dumps(draw(mutated(realistic(kind, gitops=draw(st.booleans())))))


MARKERS = itertools.count(888_000)
"""Pipeline ids of the good events, one per example (hypothesis replays examples)."""


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(webhooks(), min_size=1, max_size=4))
async def test_the_bot_answers_handles_and_keeps_going(
    bot: Pitcrew, slack: SlackSandbox, batch: list[tuple[str, bytes]]
) -> None:
    assert bot.store is not None
    redis = bot.store.redis
    marker = next(MARKERS)
    good = dumps(pipeline_hook(project="shop/orders", pipeline_id=marker, status="failed"))
    async with aiohttp.ClientSession() as http:
        for kind, body in [*batch, ("Pipeline Hook", good)]:
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": kind,
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            }
            url = f"{bot.url}/webhooks/gitlab"
            data = io.BytesIO(body) if len(body) > 1024 * 1024 else body  # as GitLab streams it
            async with http.post(url, data=data, headers=headers) as response:
                assert response.status in DOCUMENTED_ANSWERS
                assert response.content_type == "application/json"
                await response.json()

    async def handled() -> bool:
        groups = await redis.xinfo_groups("events:gitlab")
        return bool(groups) and not any(g["pending"] or g["lag"] for g in groups)

    await eventually(handled)
    # Nothing was dead-lettered: every bad event was dropped by the handler, not by retries.
    assert await redis.xlen("events:gitlab:dead") == 0
    await eventually(lambda: f"pipeline #{marker}" in slack.render(CHANNEL))
