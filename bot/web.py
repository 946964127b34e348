"""HTTP routes: Slack, GitLab webhooks, health, readiness and metrics (SPEC section 1)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from bot import logs, metrics

log = logs.get(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[Mapping[str, bool]]]

CLIENT_MAX_SIZE = 1024 * 1024
"""What aiohttp's own ``request.read()``/``text()`` accept (Slack's requests are a few kB).
A route that takes more reads its body with ``read_body`` and its own limit."""


class BodyTooLarge(Exception):
    """The request body is larger than the route accepts; nothing more of it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


async def read_body(request: web.Request, *, limit: int) -> bytes:
    """The whole request body, whichever TCP segments or HTTP chunks it arrived in.

    ``request.content.read(n)`` returns what has arrived so far, not ``n`` bytes: a body sent in
    two writes, or any body of a few hundred kB, comes back cut short. This reads until the end.
    A body declared (``Content-Length``) or found (chunked, so undeclared) larger than ``limit``
    raises ``BodyTooLarge`` with at most ``limit + 1`` bytes held; aiohttp discards the rest.
    """
    if (request.content_length or 0) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


REQUEST_ID = web.RequestKey("request_id", str)
"""Where ``observe`` leaves the request's id (``X-Request-Id``, or one it made up)."""

_ROUTE_NAMES = {
    "/slack/events": "slack",
    "/webhooks/gitlab": "gitlab",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
}


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request, bind a request id to its logs, never leak a traceback."""
    route = _ROUTE_NAMES.get(request.path, "other")
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request[REQUEST_ID] = request_id  # one id for the request's log lines and what it stores
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception:
            log.exception("request failed", path=request.path)
            return web.json_response(
                {"error": "internal error", "request_id": request_id}, status=500
            )
        finally:
            metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)


def build_web_app(
    *,
    slack_events: Handler | None,
    gitlab_webhook: Handler,
    readiness: ReadinessCheck,
) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=CLIENT_MAX_SIZE)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = dict(await readiness())
        ready = all(checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def metrics_endpoint(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.content_type = "text/plain"
        response.headers["Content-Type"] = metrics.CONTENT_TYPE_LATEST
        return response

    if slack_events is not None:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/webhooks/gitlab", gitlab_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
