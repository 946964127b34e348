"""Button clicks on release messages: record, acknowledge, let the service decide.

Nothing in a click is trusted but who clicked (Slack signs the request) and the button's value,
which is only ever looked up as a release (or pending request) id: a forged or foreign value
finds nothing, or finds a release whose own rules then apply to the person who clicked. Every
click is written to the audit log before anything happens, including refused ones, and
acknowledged once recorded (``receipts.take``, with ``REDIS_MIN_REPLICAS``). A click is handled
once per ``trigger_id``, so a redelivery does nothing twice.

Answers go only to the person who clicked, through the click's ``response_url``: approving,
refusing and explaining never add noise to the channel; the release message and its thread
tell the channel what changed. A click on a view (the App Home, a modal) comes with no
``response_url`` and no channel: its answer is a direct message to the person, and a click on
the App Home redraws it, so that what was done shows there at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot import logs
from bot.adapters.slack.blocks.access import APPROVE as ACCESS_APPROVE
from bot.adapters.slack.blocks.access import REJECT as ACCESS_REJECT
from bot.adapters.slack.blocks.dora import SHARE as SHARE_DORA
from bot.adapters.slack.blocks.releases import APPROVE, DEPLOY_ANYWAY, REJECT
from bot.adapters.slack.blocks.releases import ROLL_BACK as ROLL_BACK_RELEASE
from bot.adapters.slack.blocks.rollouts import ROLL_BACK as ROLL_BACK_ROLLOUT
from bot.adapters.slack.blocks.whatsinprod import SHARE
from bot.adapters.slack.dora import DoraAnswers
from bot.adapters.slack.outbox import SlackOutbox
from bot.adapters.slack.receipts import IMMEDIATE, safe_answer, take
from bot.adapters.slack.whatsinprod import WhatsInProd
from bot.domain.errors import PitcrewError
from bot.services.access import AccessService
from bot.services.ports import AuditEntry, AuditLog, Durability, Rendered, Throttle
from bot.services.releases import ReleaseService

log = logs.get(__name__)

_ID = re.compile(r"[0-9a-f]{12}")


def _on_home(body: dict[str, Any]) -> bool:
    return (body.get("container") or {}).get("type") == "view" and (body.get("view") or {}).get(
        "type"
    ) == "home"


def _origin(body: dict[str, Any]) -> str:
    """Where the click came from, for the audit log."""
    if (body.get("container") or {}).get("type") == "view":
        view_type = (body.get("view") or {}).get("type") or "view"
        return f"slack {'App Home' if view_type == 'home' else view_type} (button)"
    channel = body.get("channel") or {}
    return f"slack #{channel.get('name') or channel.get('id') or '?'} (button)"


class Actions:
    def __init__(
        self,
        *,
        outbox: SlackOutbox,
        audit: AuditLog,
        once: Throttle,
        releases: ReleaseService,
        access: AccessService | None = None,
        whatsinprod: WhatsInProd | None = None,
        home: Callable[[str], Awaitable[None]] | None = None,
        dora: DoraAnswers | None = None,
        durability: Durability = IMMEDIATE,
    ) -> None:
        self._dora = dora
        self._durability = durability
        self._outbox = outbox
        self._audit = audit
        self._once = once
        self._releases = releases
        self._access = access
        self._whatsinprod = whatsinprod
        self._home = home
        """Redraws a person's App Home after their click in it."""

    def register(self, app: AsyncApp) -> None:
        app.action(APPROVE)(self._listener(APPROVE, self._approve))
        app.action(REJECT)(self._listener(REJECT, self._reject))
        app.action(DEPLOY_ANYWAY)(self._listener(DEPLOY_ANYWAY, self._deploy_anyway))
        app.action(ROLL_BACK_RELEASE)(self._listener(ROLL_BACK_RELEASE, self._roll_back_release))
        app.action(ROLL_BACK_ROLLOUT)(self._listener(ROLL_BACK_ROLLOUT, self._roll_back_rollout))
        app.action(SHARE)(self._listener(SHARE, self._share))
        app.action(ACCESS_APPROVE)(self._listener(ACCESS_APPROVE, self._access_approve))
        app.action(ACCESS_REJECT)(self._listener(ACCESS_REJECT, self._access_reject))
        app.action(SHARE_DORA)(self._listener(SHARE_DORA, self._share_dora))

    def _listener(
        self,
        name: str,
        work: Callable[[str, str, Callable[..., Awaitable[None]], str], Awaitable[None]],
    ) -> Callable[..., Awaitable[None]]:
        async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
            user = str((body.get("user") or {}).get("id") or "")
            action: dict[str, Any] = next(iter(body.get("actions") or []), {})
            value = str(action.get("value") or "")
            trigger = body.get("trigger_id") or f"{user}:{action.get('action_ts')}"
            origin = _origin(body)
            entry = AuditEntry(
                at=time.time(),
                actor=user,
                action=f"click {name.removeprefix('release_')}",
                target=value[:40],
                origin=origin,
            )
            taken = await take(
                ack,
                what="your click",
                dedup=f"slack-action:{trigger}",
                entry=entry,
                once=self._once,
                audit=self._audit,
                durability=self._durability,
            )
            if not taken:
                return
            response_url = str(body.get("response_url") or "")

            async def send(rendered: Rendered, *, in_channel: bool = False) -> None:
                """Only to the person who clicked, unless ``in_channel`` (a share)."""
                if response_url:
                    await self._outbox.respond(
                        response_url, text=rendered[0], blocks=rendered[1], in_channel=in_channel
                    )
                else:
                    await self._outbox.direct(user=user, text=rendered[0], blocks=rendered[1])

            answer = safe_answer(send, what="your click", durability=self._durability)
            if not _ID.fullmatch(value):
                await answer(("This button is not one of Pitcrew's.", ()))
                return
            try:
                await work(value, user, answer, origin)
            except PitcrewError as exc:
                log.warning("click failed", action=name, error=str(exc))
                await answer((f":warning: That did not go through: {exc}. Try again.", ()))
            except Exception:
                log.exception("click failed", action=name)
                await answer(
                    (":warning: That failed on Pitcrew's side. Try again, or ask the platform"
                     " team to look at Pitcrew's logs.", ())
                )  # fmt: skip
            if self._home is not None and _on_home(body):
                await self._home(user)

        return listener

    async def _approve(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        await self._releases.approve(release_id=value, user=user, answer=answer, origin=origin)

    async def _reject(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        await self._releases.reject(release_id=value, user=user, answer=answer, origin=origin)

    async def _deploy_anyway(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        await self._releases.deploy_anyway(request_id=value, user=user, reply=answer, origin=origin)

    async def _roll_back_release(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        await self._releases.roll_back_release(
            release_id=value, user=user, reply=answer, origin=origin
        )

    async def _roll_back_rollout(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        await self._releases.roll_back_offer(offer_id=value, user=user, reply=answer, origin=origin)

    async def _share(
        self, value: str, user: str, answer: Callable[..., Awaitable[None]], origin: str
    ) -> None:
        """ "Share in channel": the question kept behind the button, answered again for all."""
        shared = await self._whatsinprod.shared(value, by=user) if self._whatsinprod else None
        if shared is None:
            await answer(
                (
                    "This answer can no longer be shared (it was asked over a day ago, or the"
                    " catalog changed): ask `/whatsinprod` again.",
                    (),
                )
            )
            return
        await answer(shared, in_channel=True)

    async def _access_approve(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        if self._access is None:
            await answer(("Break-glass access is not set up here.", ()))
            return
        await self._access.approve(grant_id=value, user=user, answer=answer, origin=origin)

    async def _access_reject(
        self, value: str, user: str, answer: Callable[[Rendered], Awaitable[None]], origin: str
    ) -> None:
        if self._access is None:
            await answer(("Break-glass access is not set up here.", ()))
            return
        await self._access.reject(grant_id=value, user=user, answer=answer, origin=origin)

    async def _share_dora(
        self, value: str, user: str, answer: Callable[..., Awaitable[None]], origin: str
    ) -> None:
        """ "Share in channel" on a ``/dora`` answer: the figures as they stand now, for all."""
        shared = await self._dora.shared(value, by=user) if self._dora else None
        if shared is None:
            await answer(
                (
                    "This answer can no longer be shared (it was asked over a day ago, or the"
                    " catalog changed): ask `/dora` again.",
                    (),
                )
            )
            return
        await answer(shared, in_channel=True)
