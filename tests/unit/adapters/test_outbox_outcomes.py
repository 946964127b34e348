"""When a post failed, did Slack post it all the same? Only an unknown outcome is worth reading the
channel's history for; an answer that says nothing was posted is not."""

from __future__ import annotations

import pytest
from aiohttp import (
    ClientConnectorError,
    ClientOSError,
    ClientPayloadError,
    ConnectionTimeoutError,
    ServerDisconnectedError,
    SocketTimeoutError,
)
from aiohttp.client_reqrep import ConnectionKey
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.adapters.slack.outbox import outcome_unknown

SLACK = ConnectionKey("slack.com", 443, True, True, None, None, None, None)


def _answer(status: int, data: dict[str, object]) -> SlackApiError:
    """What the SDK raises for an answer; a body that is not JSON (a gateway's page) reads {}."""
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data=data,
        headers={},
        status_code=status,
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("failure", "unknown"),
    [
        # Slack answered, and the answer says nothing was posted.
        (_answer(429, {"ok": False, "error": "ratelimited"}), False),
        (_answer(429, {}), False),
        (_answer(200, {"ok": False, "error": "channel_not_found"}), False),
        (_answer(200, {"ok": False, "error": "invalid_auth"}), False),
        (_answer(200, {"ok": False, "error": "invalid_blocks"}), False),
        # Nothing left this machine.
        (ClientConnectorError(SLACK, ConnectionRefusedError(111, "refused")), False),
        (ConnectionTimeoutError("connect timed out"), False),
        # The request may have reached Slack: it may have posted.
        (_answer(500, {}), True),
        (_answer(502, {}), True),
        (_answer(503, {"ok": False, "error": "service_unavailable"}), True),
        (_answer(504, {}), True),
        (_answer(200, {}), True),
        (TimeoutError(), True),
        (SocketTimeoutError("read timed out"), True),
        (ServerDisconnectedError(), True),
        (ClientOSError(104, "connection reset by peer"), True),
        (ClientPayloadError("response cut short"), True),
        (ConnectionResetError(104, "connection reset by peer"), True),
    ],
    ids=[
        "429",
        "429-no-body",
        "ok-false",
        "refused-token",
        "invalid-blocks",
        "connection-refused",
        "connect-timeout",
        "500-page",
        "502-page",
        "503-json",
        "504-page",
        "200-no-verdict",
        "timeout",
        "read-timeout",
        "server-disconnected",
        "connection-reset",
        "payload-cut",
        "os-reset",
    ],
)
def test_only_an_unknown_outcome_is_looked_up(failure: Exception, unknown: bool) -> None:
    assert outcome_unknown(failure) is unknown
