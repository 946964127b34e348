"""Errors raised at the edges. Adapters translate SDK errors into these, keeping the cause."""

from __future__ import annotations

from bot.domain.errors import PitcrewError, Refused, Unavailable

__all__ = ["PitcrewError", "Refused", "SlackUnavailable", "StoreUnavailable", "Unavailable"]


class StoreUnavailable(Unavailable):
    """Redis cannot be reached or started."""


class SlackUnavailable(Unavailable):
    """Slack's Web API answered with a lasting error or cannot be reached."""
