"""Ports: the small Protocols through which services reach the outside world.

Adapters implement them; the composition root (``bot.app``) wires one to the other. Services and
the domain never see an SDK type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.domain.home import RecentFailure

JsonBlock = Mapping[str, Any]


@dataclass(frozen=True)
class InboundEvent:
    """A webhook as received, before any parsing: what must not be lost."""

    source: str
    kind: str
    dedup_key: str
    body: bytes
    received_at: float
    request_id: str


class Inbox(Protocol):
    async def append(self, event: InboundEvent) -> str | None:
        """Durably record the event; return its id, or ``None`` when it is a duplicate."""
        ...


@dataclass(frozen=True)
class OutgoingMessage:
    """The newest state of one keyed Slack message (or thread reply).

    ``key`` names the message for its whole life (``pipeline:shop/orders:1234``); sending the
    same key again updates the message in place. ``thread_key`` makes it a reply in the thread
    of another keyed message.
    """

    key: str
    channel: str
    text: str
    blocks: Sequence[JsonBlock] = field(default_factory=tuple)
    thread_key: str | None = None
    broadcast: bool = False


class Outbox(Protocol):
    async def send(self, message: OutgoingMessage, *, version: int | None = None) -> None:
        """Queue the message durably; it reaches Slack once, paced, whatever happens meanwhile.

        With a ``version``, a state older than one already queued for the key is ignored."""
        ...

    async def send_many(self, messages: Sequence[tuple[OutgoingMessage, int | None]]) -> None:
        """``send`` for many messages at once (each with its version), in order."""
        ...


class Durability(Protocol):
    def mark(self) -> int:
        """A token for the store's primary now, for ``confirm(since=…)``."""
        ...

    async def confirm(self, near: str | None = None, *, since: int | None = None) -> None:
        """Return once every write made so far would survive a failover of the store
        (``REDIS_MIN_REPLICAS`` replicas have it; at once when that is 0). Raise ``Unavailable``
        when that cannot be confirmed in time, or when the primary changed since ``mark()``
        gave ``since`` (writes made before may be lost): then say "try again", not "done".
        ``near``: a key whose primary is the one to ask (Redis Cluster); every primary without."""
        ...


Rendered = tuple[str, Sequence[JsonBlock]]
"""A message as Slack shows it: the text fallback and the Block Kit blocks."""


class Throttle(Protocol):
    async def first_in(self, key: str, *, seconds: float) -> bool:
        """True for the first call with ``key`` in a window of ``seconds``, across replicas."""
        ...


class PeopleDirectory(Protocol):
    async def slack_user_for_email(self, email: str) -> str | None:
        """The Slack user id of the person with this email, or ``None`` when Slack has none."""
        ...


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who did what, when, from where (SPEC 7). ``actor`` is a Slack user id or ``pitcrew``."""

    at: float
    actor: str
    action: str
    env: str | None = None
    target: str | None = None
    detail: str = ""
    origin: str = ""


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...


class FailureLog(Protocol):
    """What failed, per team, for the App Home's "your teams' failures of the last 24 h"."""

    async def record(self, failure: RecentFailure) -> None:
        """Keep it (recording the same ``key`` again keeps the newest)."""
        ...

    async def recent(self, teams: Sequence[str], *, since: datetime) -> list[RecentFailure]: ...


class Shares(Protocol):
    """Server-side records behind "Share in channel" buttons: a button carries an id, never
    the thing shared."""

    async def keep(self, text: str, *, ttl: float) -> str:
        """Keep ``text`` for ``ttl`` seconds; the opaque id to put in the button."""
        ...

    async def find(self, share_id: str) -> str | None: ...
