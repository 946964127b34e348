"""The Slack sandbox, driven by the real slack_sdk client (and bolt) over HTTP.

What the bot's integration tests rely on is pinned here: the sandbox records what a person would
see, answers like Slack (including its failures), and signs requests the way bolt verifies them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.sandbox.slack import (
    SandboxUser,
    SlackSandbox,
    sign,
    signed_block_action,
    signed_slash_command,
)

KEY_METADATA = {"event_type": "pitcrew_message", "event_payload": {"key": "pipeline:42"}}
APPROVAL_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy orders 1.4.2 to production"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*from* 1.4.1 → 1.4.2, requested by <@U0ALICE>"},
    },
    {
        "type": "actions",
        "block_id": "release",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "rel-1",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "reject",
                "value": "rel-1",
                "text": {"type": "plain_text", "text": "Reject"},
            },
        ],
    },
]


def bolt_request(body: bytes, headers: dict[str, str]) -> AsyncBoltRequest:
    """What bolt's aiohttp adapter builds from Slack's HTTP request."""
    multi: dict[str, str | Sequence[str]] = dict(headers)
    return AsyncBoltRequest(body=body.decode(), headers=multi)


class FakeClock:
    """Pacing and outage windows run on this instead of real seconds, to keep tests fast."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sandbox() -> AsyncIterator[SlackSandbox]:
    async with SlackSandbox(
        channels=("general", "payments-deploys"),
        usergroups={"sre-oncall": ["U0BOB", "U0CAROL"]},
        enforce_pacing=False,
    ) as running:
        yield running


@pytest.fixture
def client(sandbox: SlackSandbox) -> AsyncWebClient:
    return AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)


async def test_posts_updates_threads_and_ephemerals_are_recorded(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(
        channel="#payments-deploys", text="pipeline running", metadata=KEY_METADATA
    )
    channel = sandbox.channel_id("payments-deploys")
    assert posted["channel"] == channel
    assert re.fullmatch(r"\d{10}\.\d{6}", posted["ts"])
    assert posted["message"]["metadata"] == KEY_METADATA

    await client.chat_update(channel=channel, ts=posted["ts"], text="pipeline passed")
    await client.chat_update(channel=channel, ts=posted["ts"], text="pipeline passed again")
    reply = await client.chat_postMessage(
        channel=channel, text="job failed", thread_ts=posted["ts"]
    )
    fixed = await client.chat_postMessage(
        channel=channel, text="fixed", thread_ts=posted["ts"], reply_broadcast=True
    )
    ephemeral = await client.chat_postEphemeral(channel=channel, user="U0ALICE", text="psst")

    [message] = sandbox.messages("#payments-deploys")
    assert (message.text, message.edits, message.metadata) == (
        "pipeline passed again",
        2,
        KEY_METADATA,
    )
    assert [(r.text, r.thread_ts, r.reply_broadcast) for r in message.replies] == [
        ("job failed", posted["ts"], False),
        ("fixed", posted["ts"], True),
    ]
    assert posted["ts"] < reply["ts"] < fixed["ts"]
    assert [m.text for m in sandbox.all_messages()] == [
        "pipeline passed again",
        "job failed",
        "fixed",
    ]
    [private] = sandbox.ephemerals("payments-deploys")
    assert (private.user, private.text, private.message_ts) == (
        "U0ALICE",
        "psst",
        ephemeral["message_ts"],
    )
    assert [c.method for c in sandbox.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.update",
        "chat.postMessage",
        "chat.postMessage",
        "chat.postEphemeral",
    ]


async def test_replies_to_a_reply_join_the_parent_thread(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel="general", text="release")
    first = await client.chat_postMessage(channel="general", text="one", thread_ts=parent["ts"])
    await client.chat_postMessage(channel="general", text="two", thread_ts=first["ts"])

    [message] = sandbox.messages("general")
    assert [r.text for r in message.replies] == ["one", "two"]


async def test_bad_or_missing_token_is_rejected(sandbox: SlackSandbox) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=sandbox.api_url)
    anonymous = AsyncWebClient(base_url=sandbox.api_url)

    with pytest.raises(SlackApiError) as bad:
        await wrong.chat_postMessage(channel="general", text="hi")
    with pytest.raises(SlackApiError) as missing:
        await anonymous.auth_test()

    assert (bad.value.response.status_code, bad.value.response["error"]) == (200, "invalid_auth")
    assert missing.value.response["error"] == "not_authed"
    assert sandbox.messages("general") == []


async def test_auth_test_names_the_bot(client: AsyncWebClient) -> None:
    answer = await client.auth_test()

    assert (answer["user_id"], answer["team_id"], answer["bot_id"]) == (
        "U0PITCREW",
        "T0SANDBOX",
        "B0PITCREW",
    )
    assert "chat:write" in answer.headers["X-OAuth-Scopes"]


async def test_injected_429_carries_retry_after(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    sandbox.fail("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="general", text="hi")
    await client.chat_postMessage(channel="general", text="hi again")

    response = refused.value.response
    assert (response.status_code, response["error"]) == (429, "ratelimited")
    assert response.headers["Retry-After"] == "7"
    assert [m.text for m in sandbox.messages("general")] == ["hi again"]
    assert [(c.status, c.error) for c in sandbox.calls] == [(429, "ratelimited"), (200, None)]


async def test_injected_5xx_is_a_gateway_page(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    sandbox.fail("chat.postMessage", status=503, times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as failed:
            await client.chat_postMessage(channel="general", text="hi")
        assert failed.value.response.status_code == 503
        assert failed.value.response.headers["Content-Type"].startswith("text/html")

    await client.chat_postMessage(channel="general", text="hi")
    assert len(sandbox.messages("general")) == 1


async def test_an_applied_failure_posts_and_history_finds_it_by_metadata(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    channel = sandbox.channel_id("general")
    sandbox.fail("chat.postMessage", status=504, applied=True)

    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=channel, text="pipeline 42", metadata=KEY_METADATA)
    await client.chat_postMessage(channel=channel, text="something else")
    history = await client.conversations_history(channel=channel, include_all_metadata=True)

    assert [m["text"] for m in history["messages"]] == ["something else", "pipeline 42"]
    assert [m.get("metadata") for m in history["messages"]] == [None, KEY_METADATA]


async def test_history_hides_metadata_unless_asked_and_pages_newest_first(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    channel = sandbox.channel_id("general")
    posted = [
        await client.chat_postMessage(channel=channel, text=f"m{i}", metadata=KEY_METADATA)
        for i in range(5)
    ]

    plain = await client.conversations_history(channel=channel)
    pages = [
        [m["text"] for m in page["messages"]]
        async for page in await client.conversations_history(
            channel=channel, limit=2, include_all_metadata=True
        )
    ]
    since = await client.conversations_history(channel=channel, oldest=posted[2]["ts"])
    inclusive = await client.conversations_history(
        channel=channel, oldest=posted[2]["ts"], inclusive=True
    )

    assert all("metadata" not in m for m in plain["messages"])
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]
    assert [m["text"] for m in since["messages"]] == ["m4", "m3"]
    assert [m["text"] for m in inclusive["messages"]] == ["m4", "m3", "m2"]


async def test_replies_list_the_thread_with_metadata(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    channel = sandbox.channel_id("general")
    parent = await client.chat_postMessage(channel=channel, text="release")
    await client.chat_postMessage(
        channel=channel, text="merged", thread_ts=parent["ts"], metadata=KEY_METADATA
    )

    thread = await client.conversations_replies(
        channel=channel, ts=parent["ts"], include_all_metadata=True
    )

    assert [m["text"] for m in thread["messages"]] == ["release", "merged"]
    assert thread["messages"][0]["reply_count"] == 1
    assert thread["messages"][1]["metadata"] == KEY_METADATA


MISTAKES: list[tuple[str, Callable[[AsyncWebClient, str], Awaitable[Any]]]] = [
    ("channel_not_found", lambda c, ch: c.chat_postMessage(channel="#nope", text="hi")),
    (
        "thread_not_found",
        lambda c, ch: c.chat_postMessage(channel=ch, text="hi", thread_ts="1700000000.000100"),
    ),
    (
        "message_not_found",
        lambda c, ch: c.chat_update(channel=ch, ts="1700000000.000100", text="hi"),
    ),
    ("users_not_found", lambda c, ch: c.users_lookupByEmail(email="nobody@example.com")),
    ("user_not_found", lambda c, ch: c.users_info(user="U0NOBODY")),
    ("no_such_subteam", lambda c, ch: c.usergroups_users_list(usergroup="S0NOPE")),
    (
        "invalid_metadata_format",
        lambda c, ch: c.chat_postMessage(
            channel=ch, text="hi", metadata={"event_type": "no spaces allowed"}
        ),
    ),
    (
        "not_in_channel",
        lambda c, ch: c.conversations_history(channel=c.sandbox_uninvited),  # type: ignore[attr-defined]
    ),
]


@pytest.mark.parametrize(("error", "attempt"), MISTAKES, ids=[m[0] for m in MISTAKES])
async def test_slack_errors_for_mistakes(
    sandbox: SlackSandbox,
    client: AsyncWebClient,
    error: str,
    attempt: Callable[[AsyncWebClient, str], Awaitable[Any]],
) -> None:
    client.sandbox_uninvited = sandbox.add_channel("uninvited", member=False)  # type: ignore[attr-defined]

    with pytest.raises(SlackApiError) as refused:
        await attempt(client, sandbox.channel_id("general"))

    assert refused.value.response["error"] == error
    assert sandbox.all_messages() == []


async def test_conversations_info_takes_ids_only_like_slack(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    info = await client.conversations_info(channel=sandbox.channel_id("general"))

    with pytest.raises(SlackApiError) as by_name:
        await client.conversations_info(channel="#general")

    assert info["channel"]["name"] == "general"
    assert by_name.value.response["error"] == "channel_not_found"


async def test_blocks_breaking_slack_limits_are_refused(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}

    with pytest.raises(SlackApiError) as too_many:
        await client.chat_postMessage(channel="general", text="hi", blocks=[section] * 51)
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel="general", text="hi", blocks=[long_section])
    await client.chat_postMessage(channel="general", text="hi", blocks=[section] * 50)

    assert too_many.value.response["error"] == "invalid_blocks"
    assert too_long.value.response["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    assert len(sandbox.messages("general")) == 1


async def test_pacing_answers_429_beyond_a_burst_then_recovers() -> None:
    clock = FakeClock()
    async with SlackSandbox(clock=clock) as sandbox:
        client = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
        outcomes: list[Any] = []
        for i in range(10):
            try:
                await client.chat_postMessage(channel="general", text=f"m{i}")
                outcomes.append("ok")
            except SlackApiError as exc:
                outcomes.append(exc.response)
        sandbox.add_channel("other")
        await client.chat_postMessage(channel="other", text="other channels are not paced")
        clock.now += 1.0
        await client.chat_postMessage(channel="general", text="after a second")

        assert outcomes[:3] == ["ok"] * 3
        assert [(r.status_code, r["error"], r.headers["Retry-After"]) for r in outcomes[3:]] == [
            (429, "ratelimited", "1")
        ] * 7
        assert [c.status for c in sandbox.calls].count(429) == 7
        assert [m.text for m in sandbox.messages("general")] == [
            "m0",
            "m1",
            "m2",
            "after a second",
        ]


async def test_fail_for_is_an_outage_window() -> None:
    clock = FakeClock()
    async with SlackSandbox(clock=clock, enforce_pacing=False) as sandbox:
        client = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
        sandbox.fail_for("*", status=500, seconds=30)
        for _ in range(3):
            with pytest.raises(SlackApiError):
                await client.auth_test()
        clock.now += 30
        await client.auth_test()

        assert [c.status for c in sandbox.calls] == [500, 500, 500, 200]


async def test_conversations_list_paginates(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.add_channel("releases")

    names = [
        [c["name"] for c in page["channels"]]
        async for page in await client.conversations_list(limit=2, types="public_channel")
    ]

    assert names == [["general", "payments-deploys"], ["releases"]]


async def test_users_and_usergroups(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    found = await client.users_lookupByEmail(email="Alice@example.com")
    info = await client.users_info(user="U0BOB")
    groups = await client.usergroups_list(include_users=True)
    members = await client.usergroups_users_list(usergroup=sandbox.usergroup_id("sre-oncall"))

    assert (found["user"]["id"], found["user"]["tz"]) == ("U0ALICE", "Europe/Paris")
    assert info["user"]["profile"]["email"] == "bob@example.com"
    assert [(g["handle"], g["users"]) for g in groups["usergroups"]] == [
        ("sre-oncall", ["U0BOB", "U0CAROL"])
    ]
    assert members["users"] == ["U0BOB", "U0CAROL"]


async def test_form_bodies_query_params_and_body_tokens_work(sandbox: SlackSandbox) -> None:
    blocks = json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}])
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{sandbox.api_url}chat.postMessage",
            data={"token": sandbox.bot_token, "channel": "general", "text": "hi", "blocks": blocks},
        ) as response:
            posted = await response.json()
        async with http.get(
            f"{sandbox.api_url}conversations.info",
            params={"channel": posted["channel"]},
            headers={"Authorization": f"Bearer {sandbox.bot_token}"},
        ) as response:
            info = await response.json()
        async with http.post(f"{sandbox.api_url}chat.fly", data={}) as response:
            unknown = await response.json()

    assert posted["ok"] is True
    assert sandbox.messages("general")[0].blocks[0]["text"]["text"] == "*hi*"
    assert info["channel"]["id"] == posted["channel"]
    assert unknown == {"ok": False, "error": "unknown_method", "req_method": "chat.fly"}
    assert "token" not in sandbox.calls[0].params


async def test_response_url_answers_ephemerally_in_channel_and_replaces(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    release = await client.chat_postMessage(
        channel="general", text="approve?", blocks=APPROVAL_BLOCKS
    )
    command_hook = AsyncWebhookClient(sandbox.response_url(channel="general", user="alice"))
    click_hook = AsyncWebhookClient(
        sandbox.response_url(channel="general", user="U0BOB", message_ts=release["ts"])
    )

    private = await command_hook.send(text="Usage: /deploy orders 1.4.2 to production")
    public = await command_hook.send(text="deploying", response_type="in_channel")
    replaced = await click_hook.send(text="approved by <@U0BOB>", replace_original=True)

    assert [r.status_code for r in (private, public, replaced)] == [200, 200, 200]
    [ephemeral] = sandbox.ephemerals()
    assert (ephemeral.user, ephemeral.via) == ("U0ALICE", "response_url")
    first, second = sandbox.messages("general")
    assert (first.text, first.blocks, first.edits) == ("approved by <@U0BOB>", [], 1)
    assert second.text == "deploying"


async def test_response_url_is_good_for_five_uses(sandbox: SlackSandbox) -> None:
    hook = AsyncWebhookClient(sandbox.response_url(channel="general", user="U0ALICE"))

    statuses = [(await hook.send(text=f"try {i}")).status_code for i in range(6)]

    assert statuses == [200] * 5 + [404]


async def test_render_reads_like_the_channel(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    channel = sandbox.channel_id("general")
    group = sandbox.usergroup_id("sre-oncall")
    release = await client.chat_postMessage(
        channel=channel, text="Deploy orders 1.4.2 to production", blocks=APPROVAL_BLOCKS
    )
    approved = [
        *APPROVAL_BLOCKS[:1],
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*from* 1.4.1 → 1.4.2, approved by <@U0BOB>"},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<!subteam^{group}>"}]},
    ]
    await client.chat_update(channel=channel, ts=release["ts"], text="approved", blocks=approved)
    await client.chat_postMessage(
        channel=channel,
        text="Merge request <https://gitlab.example.com/mr/12|!12> merged",
        thread_ts=release["ts"],
    )
    await client.chat_postMessage(
        channel=channel,
        text="orders 1.4.2 is live in production",
        thread_ts=release["ts"],
        reply_broadcast=True,
    )
    await client.chat_postEphemeral(
        channel=channel, user="U0ALICE", text="Usage: `/deploy &lt;app&gt; &lt;version&gt;`"
    )
    await client.chat_postMessage(channel="U0CAROL", text="your lock is a day old\nstill needed?")

    assert sandbox.render() == (
        "#general\n"
        "pitcrew: Deploy orders 1.4.2 to production\n"
        "         *from* 1.4.1 → 1.4.2, approved by @bob\n"
        "         @sre-oncall (edited 1×)\n"  # noqa: RUF001 - how Slack-like transcripts count edits
        "  ↳ pitcrew: Merge request !12 merged\n"
        "  ↳ pitcrew: orders 1.4.2 is live in production (also sent to the channel)\n"
        "pitcrew: Usage: `/deploy <app> <version>` (only visible to @alice)\n"
        "\n"
        "@carol (direct messages)\n"
        "pitcrew: your lock is a day old\n"
        "         still needed?\n"
    )
    assert sandbox.render("payments-deploys") == "#payments-deploys\n"
    assert re.match(
        r"#general\n\d\d:\d\d:\d\d pitcrew: Deploy", sandbox.render("general", times=True)
    )


async def test_control_api_serves_other_processes(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    async with aiohttp.ClientSession(base_url=sandbox.base_url) as http:
        async with http.post(
            "/_sandbox/fail", json={"method": "chat.postMessage", "status": 502}
        ) as response:
            assert response.status == 200
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel="general", text="lost")
        await client.chat_postMessage(channel="general", text="hello")
        async with http.get("/_sandbox/transcript", params={"channel": "general"}) as response:
            transcript = await response.text()
        async with http.get("/_sandbox/messages", params={"channel": "#general"}) as response:
            messages = await response.json()
        async with http.get("/_sandbox/calls") as response:
            calls = await response.json()

    assert transcript == "#general\npitcrew: hello\n"
    assert [m["text"] for m in messages["messages"]] == ["hello"]
    assert [c["status"] for c in calls["calls"]] == [502, 200]


async def test_signed_requests_verify_like_slacks() -> None:
    verifier = SignatureVerifier("s3cret")
    command_body, command_headers = signed_slash_command(
        signing_secret="s3cret",
        command="/deploy",
        text="orders 1.4.2 to production",
        user_id="U0ALICE",
        user_name="alice",
        channel_id="C00000001",
        channel_name="general",
        response_url="http://127.0.0.1:1/response/abc",
    )
    click_body, click_headers = signed_block_action(
        signing_secret="s3cret",
        action_id="approve",
        value="rel-1",
        user_id="U0BOB",
        user_name="bob",
        channel_id="C00000001",
        message_ts="1700000000.000100",
        response_url="http://127.0.0.1:1/response/def",
    )

    for body, headers in ((command_body, command_headers), (click_body, click_headers)):
        assert verifier.is_valid_request(body, headers)
        assert not verifier.is_valid_request(body + b"&x=1", headers)
        assert not SignatureVerifier("other").is_valid_request(body, headers)
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    command = {k: v[0] for k, v in parse_qs(command_body.decode()).items()}
    assert command["command"] == "/deploy"
    assert command["text"] == "orders 1.4.2 to production"
    assert command["trigger_id"]
    payload = json.loads(parse_qs(click_body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000100",
        "channel_id": "C00000001",
        "is_ephemeral": False,
    }
    assert payload["actions"][0]["action_id"] == "approve"
    assert payload["actions"][0]["value"] == "rel-1"
    assert sign("s3cret", b"a=b", 1700000000) == verifier.generate_signature(
        timestamp="1700000000", body="a=b"
    )


async def test_bolt_accepts_sandbox_commands_and_clicks(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    app = AsyncApp(
        client=client, signing_secret=sandbox.signing_secret, process_before_response=True
    )
    seen: list[str] = []

    @app.command("/deploy")
    async def deploy(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        seen.append(command["text"])
        await respond(text="release opened", response_type="in_channel", blocks=APPROVAL_BLOCKS)

    @app.action("approve")
    async def approve(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        await ack()
        seen.append(body["actions"][0]["value"])
        await respond(text=f"approved by <@{body['user']['id']}>", replace_original=True)

    body, headers = sandbox.slash_command(
        command="/deploy", text="orders 1.4.2 to production", user="alice", channel="general"
    )
    command_answer = await app.async_dispatch(bolt_request(body, headers))
    [release] = sandbox.messages("general")
    body, headers = sandbox.block_action(
        user="bob", channel="general", message_ts=release.ts, action_id="approve"
    )
    click_answer = await app.async_dispatch(bolt_request(body, headers))
    stale_body, stale_headers = sandbox.slash_command(
        command="/deploy", text="x", user="alice", channel="general", timestamp=1_600_000_000
    )
    stale = await app.async_dispatch(bolt_request(stale_body, stale_headers))

    assert (command_answer.status, click_answer.status, stale.status) == (200, 200, 401)
    assert seen == ["orders 1.4.2 to production", "rel-1"]
    edited = "#general\npitcrew: approved by @bob (edited 1×)\n"  # noqa: RUF001 - as rendered
    assert sandbox.render("general") == edited
    with pytest.raises(ValueError, match="no button"):
        sandbox.block_action(user="bob", channel="general", message_ts=release.ts, action_id="x")


async def test_bolt_draws_an_app_home_opened_and_takes_its_clicks(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    """The Events API delivery of ``app_home_opened`` is signed as Slack signs it; two releases
    on one home each carry Approve (``action_id`` is unique within a block, as Slack has it)."""
    app = AsyncApp(
        client=client, signing_secret=sandbox.signing_secret, process_before_response=True
    )
    opened: list[tuple[str, str]] = []
    clicked: list[str] = []

    def release(value: str) -> dict[str, Any]:
        return {
            "type": "actions",
            "block_id": f"home-{value}",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "value": value,
                    "text": {"type": "plain_text", "text": "Approve"},
                }
            ],
        }

    @app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        opened.append((event["user"], event["tab"]))
        await client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": [release("rel-1"), release("rel-2")]},
        )

    @app.action("approve")
    async def approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        clicked.append(body["actions"][0]["value"])

    body, headers = sandbox.app_home_opened(user="carol")
    assert json.loads(body)["type"] == "event_callback"
    assert (await app.async_dispatch(bolt_request(body, headers))).status == 200
    assert sandbox.read_home("carol") == "[Approve]\n[Approve]"
    body, headers = sandbox.home_action(user="carol", action_id="approve", value="rel-2")
    assert (await app.async_dispatch(bolt_request(body, headers))).status == 200
    messages_tab, headers = sandbox.app_home_opened(user="carol", tab="messages")
    await app.async_dispatch(bolt_request(messages_tab, headers))
    forged, _ = sandbox.app_home_opened(user="carol")
    _, stale_headers = sandbox.app_home_opened(user="carol", timestamp=1_600_000_000)
    assert (await app.async_dispatch(bolt_request(forged, stale_headers))).status == 401
    assert opened == [("U0CAROL", "home"), ("U0CAROL", "messages")]
    assert clicked == ["rel-2"]
    assert json.loads(messages_tab)["event"].get("view") is None


async def test_date_tokens_read_as_their_fallback_and_must_be_whole(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    good = "until <!date^1764007200^{date_short_pretty} {time}|2025-11-24 18:00 UTC>"
    await client.chat_postMessage(
        channel="general",
        text=good,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": good}}],
    )
    [message] = sandbox.messages("general")
    assert sandbox.read(message) == "until 2025-11-24 18:00 UTC"
    bad = "until <!date^1764007200^{time}>"  # no fallback
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(
            channel="general",
            text=bad,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": bad}}],
        )
    assert refused.value.response["errors"][0].startswith("invalid date token")


def test_custom_users_and_channels_get_deterministic_ids() -> None:
    sandbox = SlackSandbox(
        channels=("#alpha", "beta"),
        users=[SandboxUser(id="U0DAN", name="dan", real_name="Dan", email="dan@example.com")],
        usergroups={"@ops": ["U0DAN"]},
    )

    assert [sandbox.channel_id(n) for n in ("alpha", "#beta")] == ["C00000001", "C00000002"]
    assert sandbox.add_channel("alpha") == "C00000001"
    assert sandbox.usergroup_id("ops") == "S00000001"
    with pytest.raises(ValueError, match="unknown users"):
        sandbox.add_usergroup("ghosts", ["U0NOBODY"])
    with pytest.raises(KeyError):
        sandbox.channel_id("#missing")


async def test_the_bot_posts_anywhere_public_but_reads_history_only_after_joining(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    channel = sandbox.add_channel("uninvited", member=False)
    await client.chat_postMessage(channel="#uninvited", text="hello")  # chat:write.public
    with pytest.raises(SlackApiError):
        await client.conversations_history(channel=channel)
    await client.conversations_join(channel=channel)
    history = await client.conversations_history(channel=channel)
    assert [m["text"] for m in history["messages"]] == ["hello"]


# --------------------------------------------------------------------------------------------
# Files: the external upload flow


async def test_a_file_uploads_by_the_external_flow_into_a_thread_and_keeps_its_bytes(
    tmp_path: Any,
) -> None:
    async with SlackSandbox(channels=("general",), files_dir=tmp_path / "files") as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        parent = await client.chat_postMessage(channel="general", text="digest")
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
        granted = await client.files_getUploadURLExternal(
            filename="chart.png", length=len(png), alt_txt="a chart"
        )
        assert granted["upload_url"].startswith(slack.base_url + "/upload/")
        async with aiohttp.ClientSession() as http:
            async with http.post(granted["upload_url"], data=b"short") as refused:
                assert refused.status == 400  # not the length announced
            async with http.post(granted["upload_url"], data=png) as uploaded:
                assert uploaded.status == 200
                assert await uploaded.text() == f"OK - {len(png)}"
        done = await client.files_completeUploadExternal(
            files=[{"id": granted["file_id"], "title": "The week"}],
            channel_id=parent["channel"],
            thread_ts=parent["ts"],
        )
        assert done["files"][0]["mimetype"] == "image/png"
        [file] = slack.files("general")
        assert (file.title, file.thread_ts, file.alt_txt) == ("The week", parent["ts"], "a chart")
        assert slack.file_bytes(file.id) == png
        assert file.path is not None
        assert file.path.read_bytes() == png
        assert slack.render("general").splitlines()[-1] == (
            f"  ↳ pitcrew: [file: The week (image/png, {len(png)} bytes)]"
        )
        history = await client.conversations_replies(channel=parent["channel"], ts=parent["ts"])
        assert history["messages"][-1]["files"][0]["id"] == file.id
        # a file is shared once; an unknown one is not found
        for wanted in (granted["file_id"], "F0NOPE"):
            with pytest.raises(SlackApiError) as caught:
                await client.files_completeUploadExternal(
                    files=[{"id": wanted}], channel_id=parent["channel"]
                )
            assert caught.value.response["error"] == "file_not_found"


async def test_file_uploads_need_the_files_write_scope() -> None:
    scopes = [s for s in SlackSandbox().scopes if s != "files:write"]
    async with SlackSandbox(channels=("general",), scopes=scopes) as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        with pytest.raises(SlackApiError) as caught:
            await client.files_getUploadURLExternal(filename="chart.png", length=10)
        assert caught.value.response["error"] == "missing_scope"
        assert caught.value.response["needed"] == "files:write"
