"""Slash-command listeners: record, acknowledge, then let a service answer privately.

Bolt acknowledges within Slack's 3 seconds, once the command is recorded (``receipts.take``:
de-duplicated, in the audit log, and confirmed by ``REDIS_MIN_REPLICAS`` replicas); the work
continues after the acknowledgement and the answer goes through the command's ``response_url``.
Slack does not retry slash commands, but a proxy or a second delivery could: a command is run
once per ``trigger_id``.

A command that fails for a reason of ours (Redis unreachable, a race lost) gets a one-line
apology with what to do; the trace goes to the logs and Sentry, never to the person.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot import logs, metrics
from bot.adapters.slack.blocks.help import COMMANDS, render_help
from bot.adapters.slack.dora import DoraAnswers
from bot.adapters.slack.outbox import SlackOutbox
from bot.adapters.slack.people import SlackPeople
from bot.adapters.slack.receipts import IMMEDIATE, safe_answer, take
from bot.adapters.slack.whatsinprod import WhatsInProd
from bot.domain.errors import PitcrewError
from bot.services.access import AccessService
from bot.services.locks import LockService
from bot.services.ports import AuditEntry, AuditLog, Durability, Rendered, Throttle
from bot.services.releases import ReleaseService

log = logs.get(__name__)

Work = Callable[[dict[str, Any], Callable[[Rendered], Awaitable[None]]], Awaitable[None]]


def _origin(command: dict[str, Any]) -> str:
    name = command.get("channel_name") or command.get("channel_id") or "?"
    return f"slack #{name}" if not str(name).startswith("#") else f"slack {name}"


class Commands:
    def __init__(
        self,
        *,
        outbox: SlackOutbox,
        people: SlackPeople,
        audit: AuditLog,
        once: Throttle,
        locks: LockService,
        whatsinprod: WhatsInProd,
        releases: ReleaseService,
        access: AccessService,
        dora: DoraAnswers,
        durability: Durability = IMMEDIATE,
    ) -> None:
        self._outbox = outbox
        self._dora = dora
        self._people = people
        self._audit = audit
        self._once = once
        self._locks = locks
        self._whatsinprod_answers = whatsinprod
        self._releases = releases
        self._access = access
        self._durability = durability

    def handlers(self) -> dict[str, Work]:
        """Every command Pitcrew answers (``/pitcrew help`` lists the same ones)."""
        return {
            "/whatsinprod": self._whatsinprod,
            "/deploy": self._deploy,
            "/rollback": self._rollback,
            "/undeploy": self._undeploy,
            "/access": self._access_command,
            "/lock": self._lock,
            "/unlock": self._unlock,
            "/dora": self._dora_command,
            "/pitcrew": self._pitcrew,
        }

    def register(self, app: AsyncApp) -> None:
        handlers = self.handlers()
        missing = {c.name for c in COMMANDS} ^ set(handlers)
        if missing:  # a bug: help and listeners must agree
            raise RuntimeError(f"commands without help or without a listener: {sorted(missing)}")
        for name, work in handlers.items():
            self._listen(app, name, work)

    def _listen(self, app: AsyncApp, name: str, work: Work) -> None:
        @app.command(name)
        async def listener(ack: AsyncAck, command: dict[str, Any]) -> None:
            trigger = command.get("trigger_id") or f"{command.get('user_id')}:{time.time()}"
            # Slack escapes &, < and > in command text; people typed the characters.
            command = {**command, "text": html.unescape(command.get("text") or "").strip()}
            entry = AuditEntry(
                at=time.time(),
                actor=str(command.get("user_id")),
                action="command",
                target=name,
                detail=command["text"][:300],
                origin=_origin(command),
            )
            taken = await take(
                ack,
                what=f"`{name}`",
                dedup=f"slack-command:{trigger}",
                entry=entry,
                once=self._once,
                audit=self._audit,
                durability=self._durability,
            )
            if not taken:
                return
            response_url = str(command.get("response_url") or "")

            async def respond(rendered: Rendered) -> None:
                await self._outbox.respond(response_url, text=rendered[0], blocks=rendered[1])

            reply = safe_answer(respond, what=f"`{name}`", durability=self._durability)

            started = time.perf_counter()
            outcome = "ok"
            try:
                await work(command, reply)
            except PitcrewError as exc:
                outcome = "error"
                log.warning("command failed", command=name, error=str(exc))
                await reply((f":warning: `{name}` did not go through: {exc}. Try again.", ()))
            except Exception:
                outcome = "crash"
                log.exception("command failed", command=name)
                await reply(
                    (
                        f":warning: `{name}` failed on Pitcrew's side. Try again, or ask the "
                        "platform team to look at Pitcrew's logs.",
                        (),
                    )
                )
            finally:
                metrics.COMMAND_LATENCY.labels(name, outcome).observe(time.perf_counter() - started)

    async def _lock(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        user = str(command["user_id"])
        await self._locks.lock_command(
            user=user,
            text=command["text"],
            tz=await self._people.timezone(user),
            reply=reply,
            origin=_origin(command),
        )

    async def _whatsinprod(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        """Answered from the inventory cache: never waits on GitLab."""
        await reply(await self._whatsinprod_answers.answer(command["text"]))

    async def _dora_command(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        """Read from the deployment records at once: never waits on GitLab."""
        await reply(await self._dora.answer(command["text"]))

    async def _pitcrew(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await reply(render_help(command["text"]))

    async def _unlock(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await self._locks.unlock_command(
            user=str(command["user_id"]),
            text=command["text"],
            reply=reply,
            origin=_origin(command),
        )

    async def _deploy(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await self._releases.command(
            kind="deploy",
            user=str(command["user_id"]),
            text=command["text"],
            reply=reply,
            origin=_origin(command),
        )

    async def _rollback(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await self._releases.command(
            kind="rollback",
            user=str(command["user_id"]),
            text=command["text"],
            reply=reply,
            origin=_origin(command),
        )

    async def _undeploy(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await self._releases.command(
            kind="undeploy",
            user=str(command["user_id"]),
            text=command["text"],
            reply=reply,
            origin=_origin(command),
        )

    async def _access_command(
        self, command: dict[str, Any], reply: Callable[[Rendered], Awaitable[None]]
    ) -> None:
        await self._access.command(
            user=str(command["user_id"]), text=command["text"], reply=reply, origin=_origin(command)
        )
