"""Errors raised at the edges. Adapters translate SDK errors into these, keeping the cause."""

from __future__ import annotations

from bot.domain.errors import PitcrewError

__all__ = ["PitcrewError", "SlackUnavailable", "StoreUnavailable"]


class StoreUnavailable(PitcrewError):
    """Redis cannot be reached or started."""


class SlackUnavailable(PitcrewError):
    """Slack's Web API answered with a lasting error or cannot be reached."""
