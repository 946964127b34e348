"""What the autopilot says in channels besides its releases (whose messages are the releases'
own, marked as the autopilot's): a release it could not open, a freeze waiting for a person's
lock to end.

    :robot_face: Autopilot could not open *Deploy orders 1.5.0 to staging* (new version): …
    :lock: The scheduled freeze of *production* (weekend freeze) began, but <@U…> holds …
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    Rendered,
    clip,
    mention,
    plain,
    section,
    slack_date,
)
from bot.domain.locks import Lock
from bot.domain.releases import AutopilotCause, release_title

__all__ = ["AUTOPILOT_CAUSES", "AutopilotBlocks", "render_freeze_deferred", "render_refused"]

AUTOPILOT_CAUSES: Final[dict[AutopilotCause, str]] = {
    "new_version": "new version",
    "promotion": "scheduled promotion",
}
_MAX_REASON: Final = 800


def _one(text: str) -> Rendered:
    return Rendered(text=text, blocks=[section(clip(text, MAX_SECTION))])


def render_refused(
    *, app: str, env: str, version: str, cause: AutopilotCause, reason: str
) -> Rendered:
    title = release_title(kind="deploy", app=app, version=version, env=env)
    return _one(
        f":robot_face: Autopilot could not open *{plain(title, MAX_TITLE)}*"
        f" ({AUTOPILOT_CAUSES[cause]}): {plain(reason, _MAX_REASON)}."
        f" It tries again at its next look; `/deploy` works as usual."
    )


def render_freeze_deferred(lock: Lock, *, reason: str, end: datetime) -> Rendered:
    until = slack_date(end)  # each reader's own zone
    return _one(
        f":lock: The scheduled freeze of *{plain(lock.env, MAX_NAME)}*"
        f" ({plain(reason, MAX_TITLE)}) began, but {mention(lock.holder)} holds a lock there:"
        f" theirs stands. If it ends before {until}, the freeze takes over until then."
    )


class AutopilotBlocks:
    """The ``AutopilotViews`` port."""

    def refused(
        self, *, app: str, env: str, version: str, cause: AutopilotCause, reason: str
    ) -> Rendered:
        return render_refused(app=app, env=env, version=version, cause=cause, reason=reason)

    def freeze_deferred(self, lock: Lock, *, reason: str, end: datetime) -> Rendered:
        return render_freeze_deferred(lock, reason=reason, end=end)
