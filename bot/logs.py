"""Structured logs: one event per line, with the request or event id bound in context.

``json`` is for production (one object per line), ``console`` for people at a terminal. Known
secret values are masked in every rendered line, whatever field they hide in.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import sentry_sdk
import structlog

_MASK = "***"


def _scrubber(secrets: Iterable[str]) -> structlog.types.Processor:
    values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not values:
            return event
        for key, value in event.items():
            if isinstance(value, str):
                for secret in values:
                    if secret in value:
                        value = value.replace(secret, _MASK)
                event[key] = value
        return event

    return scrub


def _to_sentry(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Errors Pitcrew logs go to Sentry too (when it is on), with the log line's fields; the
    Sentry ``before_send`` scrubs secrets as for any other event."""
    if method not in ("error", "exception", "critical") or not sentry_sdk.get_client().is_active():
        return event
    exc_info = event.get("exc_info")
    error: BaseException | None = None
    if isinstance(exc_info, BaseException):
        error = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        error = exc_info[1]
    elif exc_info:
        error = sys.exc_info()[1]
    with sentry_sdk.new_scope() as scope:
        for key, value in event.items():
            if key not in ("event", "exc_info"):
                scope.set_extra(key, value if isinstance(value, str | int | float) else repr(value))
        if error is not None:
            sentry_sdk.capture_exception(error)
        else:
            sentry_sdk.capture_message(str(event.get("event")), level="error")
    return event


def configure(*, level: str = "info", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _to_sentry,
        structlog.processors.format_exc_info,
        _scrubber(secrets),
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: route them to stderr at WARNING and above.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
