"""The autopilot's decisions (SPEC 13): which release to open for a new version or a scheduled
promotion, what a freeze window does to an environment's lock, which versions it gave up on.

Everything here is pure; ``bot.services.autopilot`` gathers what it needs (tags, what each env
runs per git, the latest release, the lock) and carries out what these functions say.

New versions and promotions, the same rules for both::

    situation                                              decision
    the app opted out (auto_deploy: false), or the env
      does not auto_deploy (new versions only)             skip
    the tag is not a version (the app's ``versions``)      skip
    not newer than what the env runs (per git)             skip
    this version's release to this env gave up before      skip: not retried
    the latest release there is of this version, open      skip: already on its way
    a person's release there is open, before its merge     skip: the person's goes first
    the autopilot's own release there, before its merge    open, superseding it
    anything else                                          open

A release "gave up" (``gives_up``) when it failed or was never seen running (any release: the
version is known to break), or when the autopilot's own release was rejected or expired (a
person said no, or nobody said yes): opening it again every hour would be noise. A release that
was superseded, or refused before its MR opened (GitLab down), may be tried again.

Freeze windows: the autopilot locks the env as ``AUTOPILOT`` until the window's end, announced
like any lock. A person's lock in force is left as it is (the freeze takes over if it ends
before the window does); the autopilot's own lock from an overlapping window is extended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from bot.domain.catalog import App, Environment
from bot.domain.locks import Lock, in_force
from bot.domain.release_flow import BEFORE_MERGE, END_STATES
from bot.domain.releases import AUTOPILOT, AutopilotCause, Release, ReleaseState
from bot.domain.versions import VersionTag, is_newer, is_version

__all__ = [
    "AUTOPILOT",
    "ExtendFreeze",
    "FreezeDecision",
    "FreezeOver",
    "LeaveLock",
    "OpenRelease",
    "Skip",
    "TakeFreeze",
    "VersionDecision",
    "decide_freeze",
    "decide_new_version",
    "decide_promotion",
    "gives_up",
]

_FAILED: Final[frozenset[ReleaseState]] = frozenset({"failed", "not_seen"})
_REFUSED_BY_PEOPLE: Final[frozenset[ReleaseState]] = frozenset({"rejected", "expired"})


@dataclass(frozen=True, kw_only=True)
class OpenRelease:
    """Open a release of ``version`` (it supersedes the autopilot's older one, if open)."""

    version: str
    cause: AutopilotCause


@dataclass(frozen=True, kw_only=True)
class Skip:
    """Nothing to open; ``reason`` is one line for the log."""

    reason: str


VersionDecision = OpenRelease | Skip


def gives_up(release: Release) -> bool:
    """Whether the autopilot must not try ``release``'s version in its env again."""
    if release.kind != "deploy":
        return False
    if release.state in _FAILED:
        return True
    return release.autopilot is not None and release.state in _REFUSED_BY_PEOPLE


def decide_new_version(
    *,
    app: App,
    env: Environment,
    tag: VersionTag,
    running: VersionTag | None,
    latest: Release | None,
    given_up: frozenset[str],
) -> VersionDecision:
    """What the newest tag of ``app`` means for ``env`` (``running``: what git says runs
    there, with its tag's date when known)."""
    where = f"{app.name} in {env.name}"
    if not env.auto_deploy:
        return Skip(reason=f"{env.name} does not auto_deploy")
    if not app.auto_deploy:
        return Skip(reason=f"{app.name} opted out of auto_deploy")
    if not is_version(tag.name, app.versions):
        return Skip(reason=f"{tag.name} is not a version of {app.name} (versions: {app.versions})")
    return _decide(
        where=where,
        version=tag,
        running=running,
        latest=latest,
        given_up=given_up,
        cause="new_version",
    )


def decide_promotion(
    *,
    app: App,
    env: Environment,
    source: VersionTag | None,
    running: VersionTag | None,
    latest: Release | None,
    given_up: frozenset[str],
) -> VersionDecision:
    """What a promotion slot of ``env`` means for ``app``: ``source`` is what runs in the env
    it promotes from (per git), ``running`` what runs in ``env``."""
    promote = env.promote
    if promote is None:
        return Skip(reason=f"{env.name} has no scheduled promotion")
    if source is None:
        return Skip(reason=f"{app.name} does not run in {promote.source}")
    return _decide(
        where=f"{app.name} in {env.name}",
        version=source,
        running=running,
        latest=latest,
        given_up=given_up,
        cause="promotion",
    )


def _decide(
    *,
    where: str,
    version: VersionTag,
    running: VersionTag | None,
    latest: Release | None,
    given_up: frozenset[str],
    cause: AutopilotCause,
) -> VersionDecision:
    name = version.name
    if not is_newer(version, running):
        now = running.name if running else "nothing"
        return Skip(reason=f"{name} is not newer than {now}, which runs {where}")
    if name in given_up:
        return Skip(reason=f"{name} gave up {where} before: the autopilot does not retry it")
    if latest is not None and latest.state not in END_STATES:
        if latest.to_version == name:
            return Skip(reason=f"a release of {name} is already on its way {where}")
        if latest.state in BEFORE_MERGE and latest.autopilot is None:
            return Skip(
                reason=f"{latest.requester}'s release of {latest.to_version} {where} goes first"
            )
    return OpenRelease(version=name, cause=cause)


# --------------------------------------------------------------------------------------------
# Freeze windows


@dataclass(frozen=True, kw_only=True)
class TakeFreeze:
    lock: Lock
    expired: Lock | None = None
    """A lapsed lock this one replaces, not yet announced as expired."""


@dataclass(frozen=True, kw_only=True)
class ExtendFreeze:
    lock: Lock
    previous: Lock


@dataclass(frozen=True, kw_only=True)
class LeaveLock:
    """A lock stands already: a person's (left as it is), or the autopilot's own (unchanged)."""

    lock: Lock


@dataclass(frozen=True)
class FreezeOver:
    """The window has ended: nothing to lock."""


FreezeDecision = TakeFreeze | ExtendFreeze | LeaveLock | FreezeOver


def decide_freeze(
    existing: Lock | None, *, env: str, reason: str, end: datetime, now: datetime
) -> FreezeDecision:
    """What a freeze window ending at ``end`` does to ``env``'s lock at ``now``."""
    if now >= end:
        return FreezeOver()
    current = in_force(existing, now)
    if current is None:
        lock = Lock(env=env, holder=AUTOPILOT, since=now, reason=reason, expires_at=end)
        return TakeFreeze(lock=lock, expired=existing)
    if current.holder != AUTOPILOT:
        return LeaveLock(lock=current)
    if current.expires_at is not None and current.expires_at < end:
        return ExtendFreeze(lock=replace(current, expires_at=end), previous=current)
    return LeaveLock(lock=current)
