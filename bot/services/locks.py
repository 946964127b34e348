"""Environment locks: ``/lock``, ``/unlock``, expiry and reminders (SPEC section 6).

A lock record changes only by compare-and-set, so two people locking at once, or an unlock
racing the expiry sweep, resolve to one outcome. Announcements are keyed by the lock (its env and
the moment it was taken): the "end" of a lock, whether an unlock or an expiry, has one key, so
it is announced once even when replicas, retries and the sweep all try.

The sweep (expiry, reminders) runs on one replica at a time, under a lease.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from bot import logs
from bot.domain.autopilot import (
    AUTOPILOT,
    ExtendFreeze,
    FreezeDecision,
    TakeFreeze,
    decide_freeze,
)
from bot.domain.catalog import Catalog, NotInCatalogError
from bot.domain.locks import (
    LOCK_USAGE,
    UNLOCK_USAGE,
    CommandError,
    Created,
    HeldByOther,
    ListLocks,
    Lock,
    LockDecision,
    LockHelp,
    NotLocked,
    Unchanged,
    UnlockDecision,
    Unlocked,
    Updated,
    decide_lock,
    decide_unlock,
    due_for_expiry,
    format_until,
    in_force,
    parse_lock,
    parse_unlock,
    reminder_due,
)
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import AuditEntry, AuditLog, Outbox, OutgoingMessage, Rendered

log = logs.get(__name__)

Reply = Callable[[Rendered], Awaitable[None]]
"""Answers the person who typed the command, privately."""

MAX_RACES = 20
SWEEP_EVERY = 5.0


class LockStore(Protocol):
    async def get(self, env: str) -> tuple[Lock | None, int]: ...

    async def put(self, lock: Lock, *, expected: int) -> bool: ...

    async def delete(self, env: str, *, expected: int) -> bool: ...

    async def all(self) -> list[tuple[Lock, int]]: ...


class LockViews(Protocol):
    def locked(self, lock: Lock, *, now: datetime) -> Rendered: ...

    def changed(self, lock: Lock, previous: Lock, *, now: datetime) -> Rendered: ...

    def unlocked(self, lock: Lock, *, by: str, now: datetime) -> Rendered: ...

    def expired(self, lock: Lock, *, now: datetime) -> Rendered: ...

    def reminder(self, lock: Lock, *, now: datetime) -> Rendered: ...

    def listing(self, locks: Sequence[Lock], *, now: datetime, envs: Sequence[str]) -> Rendered: ...

    def confirmation(self, decision: LockDecision, *, now: datetime) -> Rendered: ...

    def unlock_answer(self, decision: UnlockDecision, *, now: datetime) -> Rendered: ...

    def help(self) -> Rendered: ...

    def error(self, error: CommandError) -> Rendered: ...


class RaceLost(Exception):
    """The lock kept changing under us; the person is asked to try again."""


def _stamp(lock: Lock) -> int:
    return int(lock.since.timestamp())


class LockService:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: LockStore,
        outbox: Outbox,
        audit: AuditLog,
        views: LockViews,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._outbox = outbox
        self._audit = audit
        self._views = views
        self._clock = clock
        self._unlocked: list[Callable[[str], Awaitable[None]]] = []
        self._locked: list[Callable[[str], Awaitable[None]]] = []

    def when_unlocked(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Call ``listener(env)`` after an env is unlocked or its lock expires (held releases)."""
        self._unlocked.append(listener)

    def when_locked(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Call ``listener(env)`` after an env is locked (a release merging is held)."""
        self._locked.append(listener)

    # ------------------------------------------------------------------ what others ask

    async def lock_of(self, env: str) -> Lock | None:
        """Is ``env`` locked, by whom, since when, why (``None``: open)."""
        lock, _ = await self._store.get(env)
        return in_force(lock, self._clock())

    async def locks(self) -> dict[str, Lock]:
        now = self._clock()
        return {lock.env: lock for lock, _ in await self._store.all() if in_force(lock, now)}

    # ------------------------------------------------------------------ commands

    async def lock_command(
        self, *, user: str, text: str, tz: str | None, reply: Reply, origin: str
    ) -> None:
        now = self._clock()
        catalog = self._catalog.current
        try:
            request = parse_lock(text, now=now, tz=tz)
            if isinstance(request, ListLocks):
                locks = list((await self.locks()).values())
                await reply(self._views.listing(locks, now=now, envs=catalog.env_names))
                return
            if isinstance(request, LockHelp):
                await reply(self._views.help())
                return
            _known_env(catalog, request.env, usage=LOCK_USAGE)
        except CommandError as exc:
            await reply(self._views.error(exc))
            return
        for _ in range(MAX_RACES):
            existing, version = await self._store.get(request.env)
            decision = decide_lock(existing, request=request, user=user, now=now)
            if isinstance(decision, Created | Updated) and not await self._store.put(
                decision.lock, expected=version
            ):
                continue
            break
        else:
            raise RaceLost(f"the lock on {request.env} kept changing; try again")
        if isinstance(decision, Created):
            if decision.expired is not None:
                await self._announce_end(decision.expired, by=None, now=now, origin=origin)
            await self._announce(
                decision.lock, "locked", self._views.locked(decision.lock, now=now)
            )
            await self._record(user, "lock", decision.lock, origin=origin, now=now)
            await self._tell(self._locked, decision.lock.env)
        elif isinstance(decision, Updated):
            rendered = self._views.changed(decision.lock, decision.previous, now=now)
            await self._announce(decision.lock, f"changed:{int(now.timestamp())}", rendered)
            await self._record(user, "lock-change", decision.lock, origin=origin, now=now)
        elif isinstance(decision, HeldByOther | Unchanged):
            pass
        await reply(self._views.confirmation(decision, now=now))

    async def unlock_command(self, *, user: str, text: str, reply: Reply, origin: str) -> None:
        now = self._clock()
        try:
            env = parse_unlock(text)
            _known_env(self._catalog.current, env, usage=UNLOCK_USAGE)
        except CommandError as exc:
            await reply(self._views.error(exc))
            return
        for _ in range(MAX_RACES):
            existing, version = await self._store.get(env)
            decision = decide_unlock(existing, env=env, user=user, now=now)
            gone = decision.lock if isinstance(decision, Unlocked) else decision.expired
            if gone is not None and not await self._store.delete(env, expected=version):
                continue
            break
        else:
            raise RaceLost(f"the lock on {env} kept changing; try again")
        if isinstance(decision, Unlocked):
            await self._announce_end(decision.lock, by=user, now=now, origin=origin)
        elif isinstance(decision, NotLocked) and decision.expired is not None:
            await self._announce_end(decision.expired, by=None, now=now, origin=origin)
        await reply(self._views.unlock_answer(decision, now=now))

    # ------------------------------------------------------------------ scheduled freezes

    async def freeze(self, *, env: str, reason: str, end: datetime, origin: str) -> FreezeDecision:
        """A freeze window (the autopilot's): lock ``env`` as ``AUTOPILOT`` until ``end``,
        announced like any lock. A person's lock is left as it is (``LeaveLock``)."""
        for _ in range(MAX_RACES):
            now = self._clock()
            existing, version = await self._store.get(env)
            decision = decide_freeze(existing, env=env, reason=reason, end=end, now=now)
            if isinstance(decision, TakeFreeze | ExtendFreeze) and not await self._store.put(
                decision.lock, expected=version
            ):
                continue
            break
        else:
            raise RaceLost(f"the lock on {env} kept changing; the freeze waits for the next look")
        if isinstance(decision, TakeFreeze):
            if decision.expired is not None:
                await self._announce_end(decision.expired, by=None, now=now, origin=origin)
            await self._announce(
                decision.lock, "locked", self._views.locked(decision.lock, now=now)
            )
            await self._record(AUTOPILOT, "freeze", decision.lock, origin=origin, now=now)
            await self._tell(self._locked, env)
        elif isinstance(decision, ExtendFreeze):
            rendered = self._views.changed(decision.lock, decision.previous, now=now)
            await self._announce(decision.lock, f"changed:{int(now.timestamp())}", rendered)
            await self._record(AUTOPILOT, "freeze-extend", decision.lock, origin=origin, now=now)
        return decision

    # ------------------------------------------------------------------ the sweep

    async def sweep(self) -> None:
        """Expire what is due and remind holders of endless locks; safe to run anywhere."""
        now = self._clock()
        for lock, version in await self._store.all():
            if due_for_expiry(lock, now):
                if await self._store.delete(lock.env, expected=version):
                    await self._announce_end(lock, by=None, now=now, origin="pitcrew (expiry)")
            elif reminder_due(lock, now) and await self._store.put(
                lock.reminded(now), expected=version
            ):
                days = int(lock.age(now).total_seconds() // 86400)
                text, blocks = self._views.reminder(lock, now=now)
                await self._outbox.send(
                    OutgoingMessage(
                        key=f"lock:{lock.env}:{_stamp(lock)}:reminder:{days}",
                        channel=lock.holder,
                        text=text,
                        blocks=blocks,
                    )
                )

    async def run_sweeper(self) -> None:
        await every(SWEEP_EVERY, self.sweep, what="lock sweep")

    # ------------------------------------------------------------------ announcing

    async def _announce_end(
        self, lock: Lock, *, by: str | None, now: datetime, origin: str
    ) -> None:
        if by is None:
            rendered = self._views.expired(lock, now=now)
            await self._record("pitcrew", "lock-expire", lock, origin=origin, now=now)
        else:
            rendered = self._views.unlocked(lock, by=by, now=now)
            await self._record(by, "unlock", lock, origin=origin, now=now)
        await self._announce(lock, "end", rendered)
        await self._tell(self._unlocked, lock.env)

    @staticmethod
    async def _tell(listeners: Sequence[Callable[[str], Awaitable[None]]], env: str) -> None:
        for listener in listeners:
            try:
                await listener(env)
            except Exception:  # the lock change stands; the release sweep repairs what is left
                reraise_if_cancelling()
                log.exception("a lock listener failed", env=env)

    async def _announce(self, lock: Lock, event: str, rendered: Rendered) -> None:
        text, blocks = rendered
        for channel in self._channels(lock.env):
            await self._outbox.send(
                OutgoingMessage(
                    key=f"lock:{lock.env}:{_stamp(lock)}:{event}@{channel}",
                    channel=channel,
                    text=text,
                    blocks=blocks,
                )
            )

    def _channels(self, env: str) -> list[str]:
        """The env's own channel, else every team's channel (SPEC section 6)."""
        catalog = self._catalog.current
        own = catalog.environment(env).channel if env in catalog.env_names else None
        if own:
            return [own]
        return sorted({team.channel for team in catalog.teams})

    async def _record(
        self, actor: str, action: str, lock: Lock, *, origin: str, now: datetime
    ) -> None:
        until = (
            format_until(lock.expires_at, now=now, tz=None, relative=False) + " UTC"
            if lock.expires_at
            else ""
        )
        detail = " · ".join(part for part in (lock.reason, until) if part)
        await self._audit.record(
            AuditEntry(
                at=now.timestamp(),
                actor=actor,
                action=action,
                env=lock.env,
                target=f"lock by {lock.holder}",
                detail=detail,
                origin=origin,
            )
        )


def _known_env(catalog: Catalog, env: str, *, usage: str) -> None:
    try:
        catalog.environment(env)
    except NotInCatalogError:
        names = ", ".join(catalog.env_names)
        raise CommandError(
            f"no environment {env} — environments are {names}", usage=usage
        ) from None
