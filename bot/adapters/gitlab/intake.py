"""GitLab webhook intake: authenticate, bound, de-duplicate, store durably, answer fast.

Nothing is parsed beyond "is this a JSON object" here: the body is written to the durable inbox
before the 2xx, and workers parse it later. An event that is accepted is therefore never lost,
and a slow handler never makes GitLab time out (GitLab disables hooks that keep failing).

"Is this JSON" is asked of the parser the workers use (pydantic's), so that an accepted body is
JSON to them too: UTF-8, nested no deeper than that parser's limit (some 200 levels). The stdlib's
``json`` gives up near 1,000 levels, depending on the stack, with a ``RecursionError``.

Answers (docs/architecture.md lists them too):

=====  =============================================================================
200    ``{"status": "queued", "id": ...}``; ``"duplicate"`` for a retry already stored;
       ``"ignored"`` for an event kind Pitcrew does not use (still 2xx: GitLab would
       otherwise count failures against the hook and eventually disable it)
400    body is not a JSON object (or not JSON, nested too deep included), or
       ``X-Gitlab-Event`` is missing
401    ``X-Gitlab-Token`` missing or wrong (compared in constant time)
413    body larger than the limit (``MAX_BODY``), declared or found while reading
503    the store is unreachable: nothing was recorded, GitLab retries later
=====  =============================================================================
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

from aiohttp import web
from pydantic_core import from_json

from bot import logs, metrics
from bot.errors import StoreUnavailable
from bot.services.ports import InboundEvent, Inbox
from bot.web import REQUEST_ID, BodyTooLarge, read_body

log = logs.get(__name__)

SOURCE = "gitlab"
MAX_BODY = 2 * 1024 * 1024
KNOWN_EVENTS = frozenset(
    {
        "Pipeline Hook",
        "Job Hook",
        "Deployment Hook",
        "Push Hook",
        "Tag Push Hook",
        "Merge Request Hook",
    }
)


def _answer(code: int, outcome: str, **body: object) -> web.Response:
    metrics.EVENTS.labels(SOURCE, outcome).inc()
    return web.json_response(body, status=code)


class GitLabIntake:
    def __init__(self, inbox: Inbox, *, secret: str, max_body: int = MAX_BODY) -> None:
        self._inbox = inbox
        self._secret = secret.encode()
        self._max_body = max_body

    async def handle(self, request: web.Request) -> web.Response:
        request_id = (
            request.get(REQUEST_ID) or request.headers.get("X-Request-Id") or uuid.uuid4().hex
        )
        # the header's own bytes (aiohttp keeps undecodable ones as surrogates): never a 500
        token = request.headers.get("X-Gitlab-Token", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(token, self._secret):
            return _answer(401, "rejected", error="invalid X-Gitlab-Token")
        try:
            body = await read_body(request, limit=self._max_body)
        except BodyTooLarge as exc:
            return _answer(413, "rejected", error=str(exc))
        kind = request.headers.get("X-Gitlab-Event", "").strip()
        if not kind:
            return _answer(400, "rejected", error="missing X-Gitlab-Event header")
        try:
            payload = from_json(body)
        except ValueError:  # not JSON, not UTF-8, or nested deeper than the worker would read
            return _answer(400, "rejected", error="body is not valid JSON")
        if not isinstance(payload, dict):
            return _answer(400, "rejected", error="body must be a JSON object")
        if kind not in KNOWN_EVENTS:
            log.info("gitlab event ignored", kind=kind, request_id=request_id)
            return _answer(200, "ignored", status="ignored", reason=f"{kind!r} is not used")
        dedup_key = (
            request.headers.get("Idempotency-Key")
            or request.headers.get("X-Gitlab-Event-UUID")
            or hashlib.sha256(kind.encode() + b"\0" + body).hexdigest()
        )
        event = InboundEvent(
            source=SOURCE,
            kind=kind,
            dedup_key=dedup_key[:200],
            body=body,
            received_at=time.time(),
            request_id=request_id,
        )
        try:
            entry_id = await self._inbox.append(event)
        except StoreUnavailable as exc:
            log.warning("gitlab event refused: store unavailable", kind=kind, error=str(exc))
            metrics.EVENTS.labels(SOURCE, "unavailable").inc()
            return web.json_response(
                {"error": "store unavailable; retry later"},
                status=503,
                headers={"Retry-After": "5"},
            )
        if entry_id is None:
            return _answer(200, "duplicate", status="duplicate")
        # debug: at info, a line per accepted webhook costs 7 % of the intake's CPU under a
        # burst, and floods the logs exactly when they are read; the metric counts them
        log.debug("gitlab event queued", kind=kind, id=entry_id, request_id=request_id)
        return _answer(200, "accepted", status="queued", id=entry_id)
