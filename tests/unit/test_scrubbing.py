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


def test_errors_pitcrew_logs_reach_sentry_scrubbed(monkeypatch) -> None:
    """SPEC 8: errors go to Sentry. Pitcrew logs through structlog, which Sentry's logging
    integration does not see; the log pipeline hands error lines to Sentry itself."""
    import sentry_sdk
    from sentry_sdk.transport import Transport

    sent: list[dict] = []

    class Capture(Transport):
        def capture_envelope(self, envelope) -> None:  # type: ignore[no-untyped-def]
            for item in envelope.items:
                if item.type == "event":
                    sent.append(item.payload.json)

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    logs.configure(level="info", fmt="json", secrets=[SECRET])
    errortracking.configure(dsn="https://key@sentry.invalid/1", secrets=[SECRET], release="t")
    sentry_sdk.get_client().transport = Capture()
    try:
        log = logs.get("test")
        log.info("all good")  # not an error: not sent
        log.error("outbox gave up on a message", channel="#payments", token=SECRET)
        try:
            raise RuntimeError(f"boom with {SECRET}")
        except RuntimeError:
            log.exception("release sweep failed")
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # off again for the other tests
        structlog.reset_defaults()
    assert [e.get("message") or e["exception"]["values"][0]["type"] for e in sent] == [
        "outbox gave up on a message",
        "RuntimeError",
    ]
    assert sent[0]["extra"]["channel"] == "#payments"
    assert SECRET not in json.dumps(sent)
