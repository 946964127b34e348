"""``POST /slack/events`` does nothing for a request Slack did not sign, or signed too long ago.

Every refused request is checked to have done nothing at all: no answer to anyone, no message,
no audit entry, no lock, no release. Each test ends with the genuine request, which does act, so
that "nothing happened" is known to be observable.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox, sign, signed_block_action, signed_slash_command
from tests.integration.conftest import eventually

Request = tuple[bytes, dict[str, str]]
FIVE_MINUTES = 5 * 60


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def lock_command(
    slack: SlackSandbox, *, secret: str | None = None, at: int | None = None
) -> Request:
    """Alice's ``/lock production freeze`` in #general, signed with ``secret`` at ``at``."""
    return signed_slash_command(
        signing_secret=slack.signing_secret if secret is None else secret,
        command="/lock",
        text="production freeze",
        user_id="U0ALICE",
        user_name="alice",
        channel_id=slack.channel_id("general"),
        channel_name="general",
        response_url=slack.response_url(channel="general", user="alice"),
        timestamp=at,
    )


def approve_click(
    slack: SlackSandbox, *, secret: str | None = None, at: int | None = None
) -> Request:
    """Alice clicking an Approve button (on a message that is not there: it must not matter)."""
    return signed_block_action(
        signing_secret=slack.signing_secret if secret is None else secret,
        action_id="release_approve",
        value="0123456789ab",
        user_id="U0ALICE",
        user_name="alice",
        channel_id=slack.channel_id("general"),
        message_ts="1700000000.000100",
        response_url=slack.response_url(
            channel="general", user="alice", message_ts="1700000000.000100"
        ),
        timestamp=at,
    )


def _without(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in names}


Forge = Callable[[SlackSandbox, Callable[..., Request]], Request]


def _wrong_secret(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    return make(slack, secret="not-" + slack.signing_secret)


def _user_changed(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)  # a genuine request from alice...
    return body.replace(b"U0ALICE", b"U0CAROL"), headers  # ...now claiming to be carol


def _text_changed(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body + b"&text=staging", headers


def _captured_too_long_ago(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    return make(slack, at=int(time.time()) - FIVE_MINUTES - 30)


def _timestamp_refreshed(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack, at=int(time.time()) - FIVE_MINUTES - 30)
    return body, {**headers, "X-Slack-Request-Timestamp": str(int(time.time()))}


def _from_the_future(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    return make(slack, at=int(time.time()) + FIVE_MINUTES + 30)


def _no_signature(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body, _without(headers, "X-Slack-Signature")


def _no_timestamp(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body, _without(headers, "X-Slack-Request-Timestamp")


def _no_headers(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body, _without(headers, "X-Slack-Signature", "X-Slack-Request-Timestamp")


def _empty_signature(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body, {**headers, "X-Slack-Signature": ""}


def _signature_of_another_scheme(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    body, headers = make(slack)
    return body, {**headers, "X-Slack-Signature": "v1=" + headers["X-Slack-Signature"][3:]}


def _timestamp_not_a_number(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    """Signed with the right secret over a timestamp that is not an integer."""
    body, headers = make(slack)
    at = f"{time.time():.3f}"
    return body, {
        **headers,
        "X-Slack-Request-Timestamp": at,
        "X-Slack-Signature": sign(slack.signing_secret, body, at),
    }


def _timestamp_too_long(slack: SlackSandbox, make: Callable[..., Request]) -> Request:
    """More digits than Python's int() accepts from a string."""
    body, headers = make(slack)
    at = "9" * 5000
    return body, {
        **headers,
        "X-Slack-Request-Timestamp": at,
        "X-Slack-Signature": sign(slack.signing_secret, body, at),
    }


FORGERIES: dict[str, Forge] = {
    "wrong-secret": _wrong_secret,
    "tampered-user": _user_changed,
    "tampered-text": _text_changed,
    "replayed-after-5-minutes": _captured_too_long_ago,
    "replayed-with-a-new-timestamp": _timestamp_refreshed,
    "timestamp-in-the-future": _from_the_future,
    "no-signature": _no_signature,
    "no-timestamp": _no_timestamp,
    "no-headers": _no_headers,
    "empty-signature": _empty_signature,
    "other-signature-scheme": _signature_of_another_scheme,
    "timestamp-not-a-number": _timestamp_not_a_number,
    "timestamp-too-long": _timestamp_too_long,
}


async def _post(http: aiohttp.ClientSession, bot: Pitcrew, request: Request) -> int:
    body, headers = request
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body
    async with http.post(f"{bot.url}/slack/events", data=data, headers=headers) as response:
        return response.status


async def _nothing_happened(bot: Pitcrew, slack: SlackSandbox, redis: aioredis.Redis) -> None:
    assert bot.locks is not None
    await asyncio.sleep(0.2)  # a listener would have started by now (ack comes first)
    assert slack.ephemerals() == []
    assert slack.all_messages() == []
    assert await redis.xlen("audit") == 0
    assert await bot.locks.locks() == {}
    assert await redis.keys("release*") == []
    assert await redis.keys("throttle:slack-*") == []  # not even de-duplicated: never dispatched


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_request_slack_did_not_sign_now_is_refused_and_does_nothing(
    bot: Pitcrew,
    slack: SlackSandbox,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    forge: Forge,
) -> None:
    assert bot.locks is not None
    for make in (lock_command, approve_click):
        assert await _post(http, bot, forge(slack, make)) == 401
    await _nothing_happened(bot, slack, redis)

    # the same command, signed by Slack just now, does act
    assert await _post(http, bot, lock_command(slack)) == 200
    await eventually(lambda: slack.ephemerals())
    assert "production" in await bot.locks.locks()
    assert await redis.xlen("audit") > 0


async def test_a_fresh_replay_of_a_command_runs_it_once(
    bot: Pitcrew, slack: SlackSandbox, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    """Within its 5 minutes a captured request still verifies: the trigger_id de-duplicates."""
    captured = lock_command(slack)
    statuses = [await _post(http, bot, captured) for _ in range(3)]
    statuses += await asyncio.gather(*(_post(http, bot, captured) for _ in range(3)))
    assert statuses == [200] * 6  # acknowledged, as Slack expects, ...
    await eventually(lambda: slack.ephemerals())
    # ...then a later, different command is answered: the replays had their chance to run
    assert await _post(http, bot, lock_command(slack)) == 200
    await eventually(lambda: len(slack.ephemerals()) == 2)
    await asyncio.sleep(0.2)

    audit = await redis.xrange("audit")
    commands = [fields[b"target"] for _, fields in audit if fields[b"action"] == b"command"]
    assert commands == [b"/lock", b"/lock"]  # not 7
    assert len(slack.ephemerals()) == 2
    announcements = [m for m in slack.all_messages() if "locked" in slack.read(m)]
    assert len(announcements) == 1, [slack.read(m) for m in slack.all_messages()]


async def test_a_signed_body_over_1_mib_is_refused_and_does_nothing(
    bot: Pitcrew, slack: SlackSandbox, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    body, headers = lock_command(slack)
    big = body + b"&padding=" + b"x" * (1024 * 1024)
    signed = {
        **headers,
        "X-Slack-Signature": sign(slack.signing_secret, big, headers["X-Slack-Request-Timestamp"]),
    }
    assert await _post(http, bot, (big, signed)) == 413
    await _nothing_happened(bot, slack, redis)
