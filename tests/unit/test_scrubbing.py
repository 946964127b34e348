"""Secrets never leave the process: not in log lines, not in Sentry events."""

from __future__ import annotations

import io
import json
import sys

import structlog

from bot import errortracking, logs

SECRET = "xoxb-very-secret-token"


def test_log_lines_mask_known_secrets_wherever_they_hide(monkeypatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure(level="info", fmt="json", secrets=[SECRET])
    try:
        logs.get("test").info(
            "calling slack", url=f"https://slack.com/api/?token={SECRET}", event_id="e-1"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["url"] == "https://slack.com/api/?token=***"
    assert line["event_id"] == "e-1"
    assert SECRET not in buffer.getvalue()


def test_sentry_events_are_scrubbed_everywhere() -> None:
    event = {
        "message": f"failed with {SECRET}",
        "request": {"headers": {"Authorization": f"Bearer {SECRET}"}},
        "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"token": SECRET}}]}}]},
    }
    event["request"]["headers"]["X-Gitlab-Token"] = "a-token-we-were-not-told-about"
    scrubbed = errortracking.scrub(event, [SECRET])
    assert SECRET not in json.dumps(scrubbed)
    assert scrubbed["request"]["headers"] == {
        "Authorization": "[Filtered]",
        "X-Gitlab-Token": "[Filtered]",
    }
    assert scrubbed["message"] == "failed with [Filtered]"
