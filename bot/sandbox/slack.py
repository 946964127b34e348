"""A Slack workspace in a box: the Web API over real HTTP, for tests and ``pitcrew demo``.

The real ``AsyncWebClient`` (``base_url=sandbox.api_url``) and slack-bolt talk to it unchanged, so
what passes here exercises the same wire format, encodings and error handling as production.

Simulated, as Slack documents it:

* ``POST``/``GET /api/<method>`` with form, JSON or query parameters, ``Authorization: Bearer``
  (``not_authed``/``invalid_auth``), answers ``{"ok": ...}`` with HTTP 200 — for ``auth.test``,
  ``chat.postMessage``/``update``/``delete``/``postEphemeral``, ``conversations.history``/
  ``replies``/``list``/``info``/``open``, ``users.info``/``lookupByEmail``, ``usergroups.list``/
  ``users.list``. Anything else is ``unknown_method``.
* Threads, broadcast replies, edits, message metadata (returned by history only with
  ``include_all_metadata``), cursor pagination, Slack-shaped increasing ``ts``.
* Block Kit limits that bite in production (50 blocks, 3000 characters per section, 150 per
  header, unique ``block_id``/``action_id``...) answer ``invalid_blocks`` with Slack's ``errors``.
* Per-channel pacing of ``chat.postMessage``: a burst of 3, then about 1 per second; beyond that
  HTTP 429, ``Retry-After: 1``, ``ratelimited``.
* ``response_url`` hooks (``/response/<token>``): ephemeral or in-channel answers,
  ``replace_original``/``delete_original``, at most 5 uses.
* Faults on demand: 429 with ``Retry-After``, 5xx with an HTML gateway page, or an ``ok: false``
  error; optionally *after* the call took effect (the answer is lost, the message exists), which is
  how a client learns to not post twice.
* Slash commands, button clicks (on messages and on the App Home) and the ``app_home_opened``
  event signed with the signing secret exactly as Slack sends them; ``views.publish`` for the
  App Home (``home``, ``read_home``).
* Files, by the external upload flow (the only one Slack keeps): ``files.getUploadURLExternal``
  (``filename``, ``length``) answers an ``upload_url`` on this server; a ``POST`` there (raw
  bytes, or a multipart ``file``) stores the bytes, which must be ``length`` long;
  ``files.completeUploadExternal`` (``files`` as JSON, ``channel_id``, ``thread_ts``,
  ``initial_comment``) shares them as a message of the bot in that channel or thread. The bytes
  are kept (``files()``, ``file_bytes``) and, with ``files_dir``, written there so that a person
  can open them.

Deliberately stricter than Slack, to catch bugs early: a ``thread_ts`` that names no message is
``thread_not_found`` (Slack would accept it); ``chat.update``/``chat.delete`` and the
``conversations.*`` methods take channel IDs only (as Slack does), while ``chat.postMessage`` and
``chat.postEphemeral`` also accept ``#name``, ``name`` or a user ID (a DM); a date token
(``<!date^…>``) without a timestamp, a format or a fallback is ``invalid_blocks`` (Slack would
show it as raw text). People read a date token as its fallback.

Scopes: every answer carries the token's scopes in ``X-OAuth-Scopes``, as Slack's do; only the
history, join and file scopes are enforced (``scopes=``: ``conversations.history``/``replies``
without ``channels:history``, ``conversations.join`` without ``channels:join``, the ``files.*``
methods without ``files:write`` answer ``missing_scope``).

Deliberately not simulated: the other scopes (the bot has them), private channels and membership
changes, attachments (accepted, not rendered), other file methods (``files.info``, the legacy
``files.upload``), reactions, modals, Events API deliveries
other than ``app_home_opened``, Enterprise Grid, the per-method tier limits other than the one
above.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from bot.sandbox import SHUTDOWN_TIMEOUT

BOT_USER_ID = "U0PITCREW"
BOT_ID = "B0PITCREW"
BOT_NAME = "pitcrew"
APP_ID = "A0PITCREW"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
VERIFICATION_TOKEN = "sandbox-verification-token"
BOT_SCOPES = (
    "chat:write,chat:write.public,commands,channels:read,channels:history,groups:read,"
    "groups:history,channels:join,metadata.message:read,im:write,users:read,users:read.email,"
    "usergroups:read,files:write"
)

_NEEDED_SCOPES = {
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "conversations.join": "channels:join",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}

PACING_BURST = 3
PACING_RATE = 1.0
RESPONSE_URL_USES = 5
MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT = 40_000

JsonDict = dict[str, Any]
_TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class SandboxUser:
    id: str
    name: str
    real_name: str
    email: str
    tz: str = "UTC"
    tz_offset: int = 0


DEFAULT_USERS = (
    SandboxUser(
        id="U0ALICE",
        name="alice",
        real_name="Alice Martin",
        email="alice@example.com",
        tz="Europe/Paris",
        tz_offset=3600,
    ),
    SandboxUser(
        id="U0BOB",
        name="bob",
        real_name="Bob Okafor",
        email="bob@example.com",
        tz="Europe/London",
        tz_offset=0,
    ),
    SandboxUser(
        id="U0CAROL",
        name="carol",
        real_name="Carol Chen",
        email="carol@example.com",
        tz="America/New_York",
        tz_offset=-18000,
    ),
)


@dataclass
class Message:
    """A channel message or a thread reply, as the workspace holds it now."""

    ts: str
    channel: str
    user: str
    text: str
    blocks: list[JsonDict] = field(default_factory=list)
    metadata: JsonDict | None = None
    thread_ts: str | None = None  # set on replies only: the parent's ts
    reply_broadcast: bool = False
    edits: int = 0
    replies: list[Message] = field(default_factory=list)
    seq: int = 0  # arrival order across the workspace, for transcripts
    edited_ts: str | None = None
    files: list[SandboxFile] = field(default_factory=list)


@dataclass
class SandboxFile:
    """A file uploaded by the external flow: its bytes, and where it was shared."""

    id: str
    name: str
    length: int
    alt_txt: str = ""
    title: str = ""
    content: bytes | None = None
    """``None`` until the bytes are posted to the upload URL."""
    channel: str | None = None
    thread_ts: str | None = None
    path: Path | None = None
    """Where the bytes were written (``files_dir``), once shared."""

    @property
    def mimetype(self) -> str:
        if self.content is not None and self.content.startswith(b"\x89PNG\r\n\x1a\n"):
            return "image/png"
        return "application/octet-stream"


@dataclass
class Ephemeral:
    """What only ``user`` sees: from ``chat.postEphemeral`` or an ephemeral ``response_url``."""

    channel: str
    user: str
    text: str
    blocks: list[JsonDict] = field(default_factory=list)
    response_type: Literal["ephemeral"] = "ephemeral"
    via: Literal["chat.postEphemeral", "response_url"] = "chat.postEphemeral"
    thread_ts: str | None = None
    message_ts: str = ""
    edits: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Call:
    """One HTTP call the sandbox answered; ``time`` is on the sandbox clock (monotonic)."""

    method: str
    params: JsonDict
    status: int
    time: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class _Channel:
    id: str
    name: str
    created: int
    is_member: bool = True
    user: str | None = None  # the person on the other side of a DM
    messages: list[Message] = field(default_factory=list)

    @property
    def is_im(self) -> bool:
        return self.user is not None


@dataclass
class _Fault:
    method: str
    status: int
    retry_after: int | None
    error: str | None
    applied: bool
    remaining: int | None = None
    until: float | None = None


@dataclass
class _Usergroup:
    handle: str
    members: list[str]
    created: int


@dataclass
class _Hook:
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after


class _Params:
    """Slack parameters arrive as strings (form, query) or JSON values; read them either way."""

    def __init__(self, values: JsonDict) -> None:
        self.values = values

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value)

    def required(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise _SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] missing required field: {key}"]},
            )
        return value

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        return isinstance(value, str) and value.strip().lower() in {"1", "true", "yes"}

    def integer(self, key: str, *, default: int, low: int, high: int) -> int:
        value = self.values.get(key)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _SlackError("invalid_arguments") from None
        if number <= 0:
            return default
        return max(low, min(number, high))

    def structured(self, key: str, *, error: str) -> Any:
        value = self.values.get(key)
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise _SlackError(error) from None
        return value


class SlackSandbox:
    """One Slack workspace with one bot, served over HTTP on localhost."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-sandbox-token",
        signing_secret: str = "sandbox-signing-secret",
        team_id: str = "T0SANDBOX",
        channels: Iterable[str] = ("general",),
        users: Iterable[SandboxUser] = DEFAULT_USERS,
        usergroups: Mapping[str, Sequence[str]] | None = None,
        enforce_pacing: bool = True,
        clock: Callable[[], float] = time.monotonic,
        app_token: str = "xapp-sandbox-token",
        scopes: Iterable[str] | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.files_dir = files_dir
        self._files: dict[str, SandboxFile] = {}
        self.scopes = tuple(BOT_SCOPES.split(",") if scopes is None else scopes)
        self.app_token = app_token
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[JsonDict]] = {}
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.enforce_pacing = enforce_pacing
        self.calls: list[Call] = []
        self._clock = clock
        self._counters: dict[str, Iterator[int]] = {}
        self._seq = itertools.count(1)
        self._last_ts = 0
        self._users: dict[str, SandboxUser] = {}
        self._channels: dict[str, _Channel] = {}
        self._names: dict[str, str] = {}
        self._dms: dict[str, str] = {}
        self._index: dict[tuple[str, str], Message] = {}
        self._ephemerals: list[Ephemeral] = []
        self._usergroups: dict[str, _Usergroup] = {}
        self._faults: list[_Fault] = []
        self._buckets: dict[str, _Bucket] = {}
        self._hooks: dict[str, _Hook] = {}
        self._homes: dict[str, JsonDict] = {}
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        for user in users:
            self.add_user(user)
        for name in channels:
            self.add_channel(name)
        for handle, members in (usergroups or {}).items():
            self.add_usergroup(handle, members)
        self._methods: dict[str, Callable[[_Params], JsonDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.list": self._conversations_list,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.join": self._conversations_join,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "apps.connections.open": self._apps_connections_open,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the Slack sandbox is already running")
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{token}", self._response)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket-mode", self._socket_mode)
        app.router.add_get("/_sandbox/transcript", self._control_transcript)
        app.router.add_get("/_sandbox/messages", self._control_messages)
        app.router.add_get("/_sandbox/ephemerals", self._control_ephemerals)
        app.router.add_get("/_sandbox/calls", self._control_calls)
        app.router.add_post("/_sandbox/fail", self._control_fail)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._port = None

    async def __aenter__(self) -> SlackSandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the Slack sandbox is not running: await start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ workspace set-up

    def add_user(self, user: SandboxUser) -> None:
        self._users[user.id] = user

    def add_channel(self, name: str, *, member: bool = True) -> str:
        """Create a public channel (or return the existing one); ``member`` is whether the bot
        has joined it. The bot may post to any public channel (it has ``chat:write.public``)
        but reads history only where it is a member, as in Slack."""
        name = name.removeprefix("#")
        if not re.fullmatch(r"[a-z0-9_][a-z0-9_.-]{0,79}", name):
            raise ValueError(f"not a Slack channel name: {name!r} (lowercase, no spaces, <= 80)")
        if name in self._names:
            return self._names[name]
        channel = _Channel(
            id=self._new_id("C0"), name=name, created=int(time.time()), is_member=member
        )
        self._channels[channel.id] = channel
        self._names[name] = channel.id
        return channel.id

    def add_usergroup(self, handle: str, members: Sequence[str]) -> str:
        handle = handle.removeprefix("@")
        unknown = [m for m in members if m not in self._users]
        if unknown:
            raise ValueError(f"usergroup @{handle} names unknown users: {', '.join(unknown)}")
        for group_id, group in self._usergroups.items():
            if group.handle == handle:
                group.members = list(members)
                return group_id
        group_id = self._new_id("S0")
        self._usergroups[group_id] = _Usergroup(handle, list(members), int(time.time()))
        return group_id

    def usergroup_id(self, handle: str) -> str:
        handle = handle.removeprefix("@")
        for group_id, group in self._usergroups.items():
            if group.handle == handle:
                return group_id
        raise KeyError(f"no usergroup @{handle} in the Slack sandbox")

    def channel_id(self, name_or_id: str) -> str:
        """The ID for ``#name``, ``name``, a channel ID, or a user ID (their DM with the bot)."""
        channel = self._find_channel(name_or_id, names=True, users=True)
        if channel is None:
            known = ", ".join(f"#{n}" for n in self._names)
            raise KeyError(f"no channel {name_or_id!r} in the Slack sandbox (known: {known})")
        return channel.id

    def response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        """Mint a response_url as Slack attaches to a command (no ``message_ts``) or to a click on
        the message ``message_ts``, which ``replace_original``/``delete_original`` then act on."""
        token = secrets.token_urlsafe(16)
        self._hooks[token] = _Hook(
            channel=self.channel_id(channel), user=self._user(user).id, message_ts=message_ts
        )
        return f"{self.base_url}/response/{token}"

    # ------------------------------------------------------------------ fault injection

    def fail(
        self,
        method: str,
        *,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        error: str | None = None,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any) with ``status``.

        A 200 answers ``{"ok": false, "error": error}``; ``applied=True`` lets the call take
        effect before the failure is answered, like a gateway timing out after Slack posted.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(
            _Fault(
                method=method,
                status=_fault_status(status),
                retry_after=retry_after,
                error=error,
                applied=applied,
                remaining=times,
            )
        )

    def fail_for(
        self,
        method: str,
        *,
        status: int,
        seconds: float,
        retry_after: int | None = None,
        error: str | None = None,
        applied: bool = False,
    ) -> None:
        """Like ``fail`` for every call during the next ``seconds`` (an outage, not a blip)."""
        self._faults.append(
            _Fault(
                method=method,
                status=_fault_status(status),
                retry_after=retry_after,
                error=error,
                applied=applied,
                until=self._clock() + seconds,
            )
        )

    # ------------------------------------------------------------------ inspection

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages, oldest first; copies, so tests cannot change the workspace."""
        return copy.deepcopy(self._channel(channel).messages)

    def all_messages(self) -> list[Message]:
        found = [
            m for c in self._channels.values() for top in c.messages for m in (top, *top.replies)
        ]
        return copy.deepcopy(sorted(found, key=lambda m: m.seq))

    def files(self, channel: str | None = None) -> list[SandboxFile]:
        """Files shared so far (in ``channel``, a name or ID), in the order they were shared."""
        wanted = self.channel_id(channel) if channel is not None else None
        return [
            f
            for f in self._files.values()
            if f.channel is not None and (wanted is None or f.channel == wanted)
        ]

    def file_bytes(self, file_id: str) -> bytes:
        found = self._files.get(file_id)
        if found is None or found.content is None:
            raise KeyError(f"no uploaded file {file_id!r} in the Slack sandbox")
        return found.content

    def ephemerals(self, channel: str | None = None) -> list[Ephemeral]:
        wanted = None if channel is None else self.channel_id(channel)
        return copy.deepcopy([e for e in self._ephemerals if wanted in (None, e.channel)])

    def seed_message(
        self, channel: str, *, text: str, at: float, metadata: JsonDict | None = None
    ) -> str:
        """A bot message already in the channel's history, posted at ``at`` (epoch seconds):
        what an earlier run of the bot left behind. Returns its ts."""
        where = self._channel(channel)
        micros = int(at * 1_000_000)
        while (where.id, f"{micros // 1_000_000}.{micros % 1_000_000:06d}") in self._index:
            micros += 1
        message = Message(
            ts=f"{micros // 1_000_000}.{micros % 1_000_000:06d}",
            channel=where.id,
            user=BOT_USER_ID,
            text=text,
            metadata=metadata,
            seq=next(self._seq),
        )
        where.messages.append(message)
        where.messages.sort(key=lambda m: _micros(m.ts))
        self._index[(where.id, message.ts)] = message
        return message.ts

    def read(self, item: Message | Ephemeral) -> str:
        """One message or private answer as a person reads it: blocks, links and mentions."""
        return "\n".join(self._readable(line) for line in _plain_lines(item.text, item.blocks))

    def home(self, user: str) -> JsonDict | None:
        """The App Home view last published for ``user`` (a user id or name), if any."""
        return self._homes.get(self._user(user).id)

    def read_home(self, user: str) -> str:
        """``user``'s App Home tab as they read it."""
        view = self.home(user)
        if view is None:
            return ""
        return "\n".join(self._readable(line) for line in _plain_lines("", view["blocks"]))

    def render(self, channel: str | None = None, *, times: bool = False) -> str:
        """The channels as a person would read them; ``times`` adds local HH:MM:SS (off by
        default so that transcripts are deterministic)."""
        if channel is not None:
            chosen = [self._channel(channel)]
        else:
            busy = {e.channel for e in self._ephemerals}
            chosen = [c for c in self._channels.values() if c.messages or c.id in busy]
        return "".join(
            ("\n" if i else "") + self._render_channel(c, times=times) for i, c in enumerate(chosen)
        )

    # ------------------------------------------------------------------ signed requests

    def slash_command(
        self,
        *,
        command: str,
        text: str,
        user: str,
        channel: str,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed slash command from ``user`` (ID or name) in ``channel``, with a live
        response_url."""
        person = self._user(user)
        where = self._channel(channel)
        return signed_slash_command(
            signing_secret=self.signing_secret,
            command=command,
            text=text,
            user_id=person.id,
            user_name=person.name,
            channel_id=where.id,
            channel_name=_channel_label(where),
            team_id=self.team_id,
            response_url=self.response_url(channel=where.id, user=person.id),
            timestamp=timestamp,
        )

    def block_action(
        self,
        *,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed click on a button that exists in the message (or ephemeral) ``message_ts``.

        Raises ``ValueError`` when no such button is there: a person can only click what they
        see.
        """
        person = self._user(user)
        where = self._channel(channel)
        ephemeral = next(
            (e for e in self._ephemerals if e.channel == where.id and e.message_ts == message_ts),
            None,
        )
        if ephemeral is not None:
            blocks = ephemeral.blocks
            payload_message: JsonDict = {
                "type": "message",
                "ts": message_ts,
                "text": ephemeral.text,
                "blocks": ephemeral.blocks,
            }
        else:
            message = self._index.get((where.id, message_ts))
            if message is None:
                raise ValueError(f"no message {message_ts} in #{where.name}")
            blocks = message.blocks
            payload_message = self._message_json(message, metadata=False)
        button = _find_button(blocks, action_id)
        if button is None:
            raise ValueError(f"message {message_ts} has no button with action_id {action_id!r}")
        block_id, element = button
        return signed_block_action(
            signing_secret=self.signing_secret,
            action_id=action_id,
            value=value if value is not None else str(element.get("value", "")),
            user_id=person.id,
            user_name=person.name,
            channel_id=where.id,
            channel_name=_channel_label(where),
            message_ts=message_ts,
            response_url=self.response_url(channel=where.id, user=person.id, message_ts=message_ts),
            block_id=block_id,
            team_id=self.team_id,
            timestamp=timestamp,
            message=payload_message,
            is_ephemeral=ephemeral is not None,
            button_text=_text_of(element.get("text")),
        )

    def home_action(
        self,
        *,
        user: str,
        action_id: str,
        value: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed click on a button of ``user``'s App Home, as Slack sends it: the container is
        the view, and there is neither a channel nor a ``response_url``."""
        person = self._user(user)
        view = self._homes.get(person.id)
        if view is None:
            raise ValueError(f"{person.name} has no App Home published")
        button = _find_button(view["blocks"], action_id, value=value)
        if button is None:
            raise ValueError(f"{person.name}'s App Home has no button {action_id!r} ({value})")
        block_id, element = button
        at = int(time.time()) if timestamp is None else timestamp
        payload: JsonDict = {
            "type": "block_actions",
            "user": {"id": person.id, "username": person.name, "name": person.name,
                     "team_id": self.team_id},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": _trigger_id(at),
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": _text_of(element.get("text")),
                             "emoji": True},
                    "value": str(element.get("value", "")),
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }  # fmt: skip
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        return _signed(self.signing_secret, body, at)

    # ------------------------------------------------------------------ HTTP: Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            values, token = await _read_params(request)
        except _SlackError as exc:
            return self._answer(method, {}, 200, {"ok": False, "error": exc.error})
        fault = self._take_fault(method)
        if fault is not None and not fault.applied:
            return self._answer_fault(method, values, fault, api=True)
        status, body, headers = self._dispatch(method, _Params(values), token)
        if fault is not None:
            return self._answer_fault(method, values, fault, api=True)
        return self._answer(method, values, status, body, headers)

    def _dispatch(
        self, method: str, params: _Params, token: str | None
    ) -> tuple[int, JsonDict, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if not hmac.compare_digest(token.encode(), expected.encode()):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        granted = {"X-OAuth-Scopes": ",".join(self.scopes)}
        needed = _NEEDED_SCOPES.get(method)
        if needed is not None and needed not in self.scopes:
            refusal = {"ok": False, "error": "missing_scope", "needed": needed}
            return 200, {**refusal, "provided": ",".join(self.scopes)}, granted
        try:
            body = handler(params)
        except _SlackError as exc:
            return 200, {"ok": False, "error": exc.error, **exc.extra}, {}
        except _RateLimited as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            return 429, {"ok": False, "error": "ratelimited"}, headers
        return 200, {"ok": True, **body}, granted

    def _answer(
        self,
        method: str,
        params: JsonDict,
        status: int,
        body: JsonDict,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        error = None if body.get("ok") else str(body.get("error", ""))
        self._record(method, params, status, error)
        return web.json_response(body, status=status, headers=dict(headers or {}))

    def _answer_fault(
        self, method: str, params: JsonDict, fault: _Fault, *, api: bool
    ) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.status == 429:
            error = "ratelimited"
        elif fault.status == 200:
            error = fault.error or "fatal_error"
        else:
            error = fault.error or f"http_{fault.status}"
        self._record(method, params, fault.status, error)
        if fault.status in (200, 429) and api:
            return web.json_response(
                {"ok": False, "error": error}, status=fault.status, headers=headers
            )
        if fault.status in (200, 429):
            return web.Response(
                status=fault.status, text=error, content_type="text/html", headers=headers
            )
        return web.Response(
            status=fault.status,
            text=_gateway_page(fault.status),
            content_type="text/html",
            headers=headers,
        )

    def _record(self, method: str, params: JsonDict, status: int, error: str | None) -> None:
        self.calls.append(
            Call(method=method, params=params, status=status, time=self._clock(), error=error)
        )

    def _take_fault(self, method: str) -> _Fault | None:
        now = self._clock()
        self._faults = [f for f in self._faults if f.until is None or f.until > now]
        for fault in self._faults:
            if fault.method not in ("*", method):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
            return fault
        return None

    # ------------------------------------------------------------------ methods

    def _auth_test(self, params: _Params) -> JsonDict:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params, names=True, users=True)
        text, blocks = _content(params, required=True)
        metadata = _metadata(params)
        parent: Message | None = None
        thread_ts = params.text("thread_ts")
        if thread_ts:
            parent = self._index.get((channel.id, thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
            if parent.thread_ts is not None:
                parent = self._index[(channel.id, parent.thread_ts)]
        self._pace(channel.id)
        message = self._post(
            channel,
            user=BOT_USER_ID,
            text=text,
            blocks=blocks,
            metadata=metadata,
            parent=parent,
            broadcast=parent is not None and params.flag("reply_broadcast"),
        )
        return {"channel": channel.id, "ts": message.ts, "message": self._message_json(message)}

    def _chat_update(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params)
        message = self._index.get((channel.id, params.required("ts")))
        if message is None:
            raise _SlackError("message_not_found")
        if message.user != BOT_USER_ID:
            raise _SlackError("cant_update_message")
        if not (params.has("text") or params.has("blocks") or params.has("markdown_text")):
            raise _SlackError("no_text")
        text, blocks = _content(params, required=False)
        if params.has("text") or params.has("markdown_text"):
            message.text = text
        if params.has("blocks"):
            message.blocks = blocks
        if params.has("metadata"):
            message.metadata = _metadata(params)
        message.edits += 1
        message.edited_ts = self._next_ts()
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": self._message_json(message),
        }

    def _chat_delete(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params)
        message = self._index.get((channel.id, params.required("ts")))
        if message is None:
            raise _SlackError("message_not_found")
        if message.user != BOT_USER_ID:
            raise _SlackError("cant_delete_message")
        self._delete(message)
        return {"channel": channel.id, "ts": message.ts}

    def _chat_post_ephemeral(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params, names=True)
        user = self._users.get(params.required("user"))
        if user is None:
            raise _SlackError("user_not_found")
        text, blocks = _content(params, required=True)
        thread_ts = params.text("thread_ts") or None
        if thread_ts is not None:
            parent = self._index.get((channel.id, thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
            thread_ts = parent.thread_ts or parent.ts
        ephemeral = Ephemeral(
            channel=channel.id,
            user=user.id,
            text=text,
            blocks=blocks,
            via="chat.postEphemeral",
            thread_ts=thread_ts,
            message_ts=self._next_ts(),
            seq=next(self._seq),
        )
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def _files_get_upload_url_external(self, params: _Params) -> JsonDict:
        filename = params.required("filename")
        length = params.integer("length", default=-1, low=-1, high=1 << 30)
        if length < 1:
            raise _SlackError("invalid_arguments")
        file = SandboxFile(
            id=self._new_id("F0"),
            name=filename,
            length=length,
            alt_txt=params.text("alt_txt") or "",
        )
        self._files[file.id] = file
        return {"upload_url": f"{self.base_url}/upload/{file.id}", "file_id": file.id}

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL: raw bytes, or a multipart form's ``file`` (Slack takes both)."""
        file = self._files.get(request.match_info["file_id"])
        if file is None or file.content is not None:
            return web.Response(status=404, text="Not Found")
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            part = form.get("file")
            if isinstance(part, web.FileField):
                data = part.file.read()
            else:
                data = part.encode() if isinstance(part, str) else bytes(part or b"")
        else:
            data = await request.read()
        if len(data) != file.length:
            return web.Response(status=400, text=f"length mismatch: {len(data)} != {file.length}")
        file.content = data
        return web.Response(status=200, text=f"OK - {len(data)}")

    def _files_complete_upload_external(self, params: _Params) -> JsonDict:
        wanted = params.structured("files", error="invalid_arguments")
        if not isinstance(wanted, list) or not wanted:
            raise _SlackError("invalid_arguments")
        found: list[tuple[SandboxFile, str]] = []
        for item in wanted:
            file = self._files.get(str(item.get("id"))) if isinstance(item, dict) else None
            if file is None or file.content is None or file.channel is not None:
                raise _SlackError("file_not_found")
            found.append((file, str(item.get("title") or file.name)))
        channel_ref = params.text("channel_id")
        channel = self._find_channel(channel_ref, names=False) if channel_ref else None
        if channel_ref and channel is None:
            raise _SlackError("channel_not_found")
        parent: Message | None = None
        thread_ts = params.text("thread_ts")
        if thread_ts:
            if channel is None:
                raise _SlackError("invalid_arguments")
            parent = self._index.get((channel.id, thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
        shared = []
        for file, title in found:
            file.title = title
            if channel is not None:
                file.channel, file.thread_ts = channel.id, thread_ts
                if self.files_dir is not None:
                    self.files_dir.mkdir(parents=True, exist_ok=True)
                    file.path = self.files_dir / f"{file.id}-{Path(file.name).name}"
                    file.path.write_bytes(file.content or b"")
            shared.append(file)
        if channel is not None:
            message = self._post(
                channel,
                user=BOT_USER_ID,
                text=params.text("initial_comment") or "",
                blocks=[],
                metadata=None,
                parent=parent,
                broadcast=False,
            )
            message.files = shared
        return {"files": [self._file_json(f) for f in shared]}

    def _file_json(self, file: SandboxFile) -> JsonDict:
        return {
            "id": file.id,
            "name": file.name,
            "title": file.title,
            "mimetype": file.mimetype,
            "size": file.length,
            "user": BOT_USER_ID,
            "channels": [file.channel] if file.channel else [],
        }

    def _apps_connections_open(self, params: _Params) -> JsonDict:
        return {"url": f"ws://{self._host}:{self._port}/socket-mode?ticket={uuid.uuid4().hex}"}

    def app_home_opened(
        self, *, user: str, tab: str = "home", timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The signed Events API delivery Slack POSTs when ``user`` opens the app's ``tab``
        (``home`` or ``messages``): an ``event_callback`` whose event carries the view last
        published for them, if any."""
        person = self._user(user)
        at = int(time.time()) if timestamp is None else timestamp
        event: JsonDict = {
            "type": "app_home_opened",
            "user": person.id,
            "channel": self._dm(person.id).id,
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        }
        view = self._homes.get(person.id)
        if tab == "home" and view is not None:
            event["view"] = view
        payload: JsonDict = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}",
            "event_time": at,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        signed_body, headers = _signed(self.signing_secret, body, at)
        return signed_body, {**headers, "Content-Type": "application/json"}

    def _views_publish(self, params: _Params) -> JsonDict:
        """``views.publish``: a user's App Home tab (``type: home``, at most 100 blocks)."""
        user = self._users.get(params.required("user_id"))
        if user is None:
            raise _SlackError("user_not_found")
        view = params.structured("view", error="invalid_arguments")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _SlackError("invalid_arguments")
        blocks = view.get("blocks")
        if not isinstance(blocks, list):
            raise _SlackError("invalid_arguments")
        errors = [e for e in _block_errors(blocks[:MAX_VIEW_BLOCKS]) if "must be less" not in e]
        if len(blocks) > MAX_VIEW_BLOCKS:
            errors.append(f"must be less than {MAX_VIEW_BLOCKS + 1} items [json-pointer:/blocks]")
        if errors:
            raise _SlackError("invalid_blocks", errors=errors)
        previous = self._homes.get(user.id)
        published: JsonDict = {
            "id": previous["id"] if previous else self._new_id("V"),
            "team_id": self.team_id,
            "type": "home",
            "blocks": blocks,
            "private_metadata": str(view.get("private_metadata") or ""),
            "callback_id": str(view.get("callback_id") or ""),
            "hash": uuid.uuid4().hex[:20],
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        self._homes[user.id] = published
        return {"view": published}

    async def _socket_mode(self, request: web.Request) -> web.StreamResponse:
        """A Socket Mode connection: hello first, then envelopes out and acknowledgements in."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        try:
            await socket.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "sandbox", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                ack = json.loads(frame.data)
                waiter = self._acks.pop(str(ack.get("envelope_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack)
        finally:
            self._sockets.remove(socket)
        return socket

    @property
    def socket_connections(self) -> int:
        return len(self._sockets)

    async def socket_slash_command(
        self, *, command: str, text: str, user: str, channel: str, within: float = 5.0
    ) -> JsonDict:
        """Deliver a slash command over Socket Mode; return the app's acknowledgement."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection is open")
        person = self._user(user)
        where = self._channel(channel)
        envelope_id = str(uuid.uuid4())
        waiter: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiter
        payload = _slash_command_fields(
            command=command,
            text=text,
            user_id=person.id,
            user_name=person.name,
            channel_id=where.id,
            channel_name=_channel_label(where),
            team_id=self.team_id,
            response_url=self.response_url(channel=where.id, user=person.id),
            at=int(time.time()),
        )
        await self._sockets[0].send_json(
            {
                "envelope_id": envelope_id,
                "type": "slash_commands",
                "payload": payload,
                "accepts_response_payload": True,
            }
        )
        return await asyncio.wait_for(waiter, timeout=within)

    def _conversations_join(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params)
        already = channel.is_member
        channel.is_member = True
        body: JsonDict = {"channel": self._channel_json(channel)}
        if already:
            body["warning"] = "already_in_channel"
        return body

    def _conversations_history(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params)
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        shown = [
            m
            for top in channel.messages
            for m in (top, *(r for r in top.replies if r.reply_broadcast))
        ]
        return self._history_page(params, sorted(shown, key=lambda m: _micros(m.ts), reverse=True))

    def _conversations_replies(self, params: _Params) -> JsonDict:
        channel = self._require_channel(params)
        if not channel.is_member:
            raise _SlackError("not_in_channel")
        message = self._index.get((channel.id, params.required("ts")))
        if message is None:
            raise _SlackError("thread_not_found")
        root = self._index[(channel.id, message.thread_ts)] if message.thread_ts else message
        page = self._history_page(params, [root, *root.replies])
        page.pop("pin_count", None)
        page.pop("channel_actions_ts", None)
        page.pop("channel_actions_count", None)
        return page

    def _history_page(self, params: _Params, messages: list[Message]) -> JsonDict:
        """Filter by oldest/latest and paginate in the given order (newest first for history,
        oldest first for replies); the cursor names the position to resume from."""
        inclusive = params.flag("inclusive")
        oldest = _ts_param(params, "oldest")
        latest = _ts_param(params, "latest")

        def in_range(message: Message) -> bool:
            at = _micros(message.ts)
            if oldest is not None and (at < oldest or (at == oldest and not inclusive)):
                return False
            return latest is None or at < latest or (at == latest and inclusive)

        chosen = [m for m in messages if in_range(m)]
        start = _decode_cursor(params.text("cursor"), "next_ts")
        if start is not None:
            positions = [i for i, m in enumerate(chosen) if str(_micros(m.ts)) == start]
            if not positions:
                raise _SlackError("invalid_cursor")
            chosen = chosen[positions[0] :]
        limit = params.integer("limit", default=100, low=1, high=999)
        page, rest = chosen[:limit], chosen[limit:]
        metadata = params.flag("include_all_metadata")
        body: JsonDict = {
            "messages": [self._message_json(m, metadata=metadata) for m in page],
            "has_more": bool(rest),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if rest:
            cursor = _encode_cursor("next_ts", str(_micros(rest[0].ts)))
            body["response_metadata"] = {"next_cursor": cursor}
        return body

    def _conversations_list(self, params: _Params) -> JsonDict:
        types = {t.strip() for t in (params.text("types") or "public_channel").split(",")}
        listed = [
            c for c in self._channels.values() if ("im" if c.is_im else "public_channel") in types
        ]
        start = 0
        after = _decode_cursor(params.text("cursor"), "team")
        if after is not None:
            ids = [c.id for c in listed]
            if after not in ids:
                raise _SlackError("invalid_cursor")
            start = ids.index(after)
        limit = params.integer("limit", default=100, low=1, high=1000)
        page, rest = listed[start : start + limit], listed[start + limit :]
        return {
            "channels": [self._channel_json(c) for c in page],
            "response_metadata": {
                "next_cursor": _encode_cursor("team", rest[0].id) if rest else ""
            },
        }

    def _conversations_info(self, params: _Params) -> JsonDict:
        return {"channel": self._channel_json(self._require_channel(params))}

    def _conversations_open(self, params: _Params) -> JsonDict:
        if params.has("channel"):
            return {"channel": {"id": self._require_channel(params).id}}
        wanted = [u.strip() for u in (params.text("users") or "").split(",") if u.strip()]
        if len(wanted) != 1:
            raise _SlackError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] the sandbox opens one-person DMs only"]},
            )
        if wanted[0] not in self._users:
            raise _SlackError("user_not_found")
        existed = wanted[0] in self._dms
        channel = self._dm(wanted[0])
        return {"no_op": existed, "already_open": existed, "channel": {"id": channel.id}}

    def _users_info(self, params: _Params) -> JsonDict:
        user_id = params.required("user")
        if user_id == BOT_USER_ID:
            return {"user": self._bot_user_json()}
        user = self._users.get(user_id)
        if user is None:
            raise _SlackError("user_not_found")
        return {"user": self._user_json(user)}

    def _users_lookup_by_email(self, params: _Params) -> JsonDict:
        email = params.required("email").strip().lower()
        for user in self._users.values():
            if user.email.lower() == email:
                return {"user": self._user_json(user)}
        raise _SlackError("users_not_found")

    def _usergroups_list(self, params: _Params) -> JsonDict:
        with_users = params.flag("include_users")
        groups = []
        for group_id, usergroup in self._usergroups.items():
            handle, members, created = usergroup.handle, usergroup.members, usergroup.created
            group: JsonDict = {
                "id": group_id,
                "team_id": self.team_id,
                "is_usergroup": True,
                "is_subteam": True,
                "name": handle.replace("-", " ").title(),
                "description": "",
                "handle": handle,
                "is_external": False,
                "date_create": created,
                "date_update": created,
                "date_delete": 0,
                "auto_type": None,
                "created_by": BOT_USER_ID,
                "updated_by": BOT_USER_ID,
                "deleted_by": None,
                "prefs": {"channels": [], "groups": []},
                "user_count": len(members),
            }
            if with_users:
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: _Params) -> JsonDict:
        found = self._usergroups.get(params.required("usergroup"))
        if found is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(found.members)}

    # ------------------------------------------------------------------ HTTP: response_url

    async def _response(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        try:
            raw = await request.json() if request.can_read_body else {}
        except ValueError:
            raw = None
        values: JsonDict = raw if isinstance(raw, dict) else {}
        fault = self._take_fault("response_url")
        if fault is not None and not fault.applied:
            return self._answer_fault("response_url", values, fault, api=False)
        status, text = self._use_hook(token, raw)
        if fault is not None:
            return self._answer_fault("response_url", values, fault, api=False)
        self._record("response_url", values, status, None if status == 200 else text)
        return web.Response(status=status, text=text, content_type="text/html")

    def _use_hook(self, token: str, raw: Any) -> tuple[int, str]:
        hook = self._hooks.get(token)
        if hook is None:
            return 404, "no_service"
        if hook.uses >= RESPONSE_URL_USES:
            return 404, "used_url"
        if not isinstance(raw, dict):
            return 400, "invalid_payload"
        params = _Params(raw)
        try:
            text, blocks = _content(params, required=not params.flag("delete_original"))
        except _SlackError as exc:
            return 400, exc.error
        hook.uses += 1
        channel = self._channels[hook.channel]
        original = self._original(hook)
        if params.flag("delete_original"):
            if isinstance(original, Message):
                self._delete(original)
            elif isinstance(original, Ephemeral):
                self._ephemerals.remove(original)
            return 200, "ok"
        if params.flag("replace_original") and original is not None:
            original.text, original.blocks = text, blocks
            original.edits += 1
            if isinstance(original, Message):
                original.edited_ts = self._next_ts()
            return 200, "ok"
        thread_ts = params.text("thread_ts") or None
        parent = self._index.get((channel.id, thread_ts)) if thread_ts else None
        if params.text("response_type") == "in_channel":
            self._post(
                channel,
                user=BOT_USER_ID,
                text=text,
                blocks=blocks,
                metadata=None,
                parent=parent,
                broadcast=False,
            )
        else:
            self._ephemerals.append(
                Ephemeral(
                    channel=channel.id,
                    user=hook.user,
                    text=text,
                    blocks=blocks,
                    via="response_url",
                    thread_ts=parent.ts if parent else None,
                    message_ts=self._next_ts(),
                    seq=next(self._seq),
                )
            )
        return 200, "ok"

    def _original(self, hook: _Hook) -> Message | Ephemeral | None:
        if hook.message_ts is None:
            return None
        for ephemeral in self._ephemerals:
            if ephemeral.channel == hook.channel and ephemeral.message_ts == hook.message_ts:
                return ephemeral
        return self._index.get((hook.channel, hook.message_ts))

    # ------------------------------------------------------------------ HTTP: control API

    async def _control_transcript(self, request: web.Request) -> web.StreamResponse:
        channel = request.query.get("channel") or None
        times = request.query.get("times", "") in {"1", "true"}
        try:
            text = self.render(channel, times=times)
        except KeyError as exc:
            return web.Response(status=404, text=str(exc))
        return web.Response(text=text, content_type="text/plain")

    async def _control_messages(self, request: web.Request) -> web.StreamResponse:
        channel = request.query.get("channel")
        if channel:
            try:
                found = self.messages(channel)
            except KeyError as exc:
                return web.json_response({"ok": False, "error": str(exc)}, status=404)
            return web.json_response(
                {"channel": self.channel_id(channel), "messages": [asdict(m) for m in found]}
            )
        return web.json_response(
            {
                "channels": {
                    c.name: [asdict(m) for m in copy.deepcopy(c.messages)]
                    for c in self._channels.values()
                }
            }
        )

    async def _control_ephemerals(self, request: web.Request) -> web.StreamResponse:
        try:
            found = self.ephemerals(request.query.get("channel") or None)
        except KeyError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=404)
        return web.json_response({"ephemerals": [asdict(e) for e in found]})

    async def _control_calls(self, request: web.Request) -> web.StreamResponse:
        method = request.query.get("method")
        calls = [asdict(c) for c in self.calls if method in (None, c.method)]
        return web.json_response({"calls": calls})

    async def _control_fail(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.json()
            common: JsonDict = {
                "status": int(spec["status"]),
                "retry_after": None
                if spec.get("retry_after") is None
                else int(spec["retry_after"]),
                "error": spec.get("error"),
                "applied": bool(spec.get("applied", False)),
            }
            if spec.get("seconds") is not None:
                self.fail_for(str(spec["method"]), seconds=float(spec["seconds"]), **common)
            else:
                self.fail(str(spec["method"]), times=int(spec.get("times", 1)), **common)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"ok": False, "error": repr(exc)}, status=400)
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ state helpers

    def _new_id(self, prefix: str) -> str:
        counter = self._counters.setdefault(prefix, itertools.count(1))
        return f"{prefix}{next(counter):07X}"

    def _next_ts(self) -> str:
        """Wall-clock based like Slack's (clients compare ts with ``time.time()``), strictly
        increasing so that ts identifies a message."""
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _user(self, ref: str) -> SandboxUser:
        ref = ref.removeprefix("@")
        for user in self._users.values():
            if ref in (user.id, user.name):
                return user
        raise KeyError(f"no user {ref!r} in the Slack sandbox")

    def _channel(self, ref: str) -> _Channel:
        return self._channels[self.channel_id(ref)]

    def _dm(self, user_id: str) -> _Channel:
        if user_id not in self._dms:
            channel = _Channel(
                id=self._new_id("D0"), name=user_id, created=int(time.time()), user=user_id
            )
            self._channels[channel.id] = channel
            self._dms[user_id] = channel.id
        return self._channels[self._dms[user_id]]

    def _find_channel(self, ref: str, *, names: bool, users: bool = False) -> _Channel | None:
        if ref in self._channels:
            return self._channels[ref]
        if users and ref in self._users:
            return self._dm(ref)
        if names:
            found = self._names.get(ref.removeprefix("#").lower())
            return None if found is None else self._channels[found]
        return None

    def _require_channel(
        self, params: _Params, *, names: bool = False, users: bool = False
    ) -> _Channel:
        ref = params.text("channel")
        channel = self._find_channel(ref, names=names, users=users) if ref else None
        if channel is None:
            raise _SlackError("channel_not_found")
        return channel

    def _pace(self, channel_id: str) -> None:
        """Slack allows about one message per second per channel, with short bursts."""
        if not self.enforce_pacing:
            return
        now = self._clock()
        bucket = self._buckets.setdefault(channel_id, _Bucket(tokens=PACING_BURST, updated=now))
        bucket.tokens = min(PACING_BURST, bucket.tokens + (now - bucket.updated) * PACING_RATE)
        bucket.updated = now
        if bucket.tokens < 1:
            raise _RateLimited(max(1, math.ceil((1 - bucket.tokens) / PACING_RATE)))
        bucket.tokens -= 1

    def _post(
        self,
        channel: _Channel,
        *,
        user: str,
        text: str,
        blocks: list[JsonDict],
        metadata: JsonDict | None,
        parent: Message | None,
        broadcast: bool,
    ) -> Message:
        message = Message(
            ts=self._next_ts(),
            channel=channel.id,
            user=user,
            text=text,
            blocks=blocks,
            metadata=metadata,
            thread_ts=parent.ts if parent else None,
            reply_broadcast=broadcast,
            seq=next(self._seq),
        )
        (parent.replies if parent else channel.messages).append(message)
        self._index[(channel.id, message.ts)] = message
        return message

    def _delete(self, message: Message) -> None:
        channel = self._channels[message.channel]
        if message.thread_ts is not None:
            self._index[(channel.id, message.thread_ts)].replies.remove(message)
        else:
            channel.messages.remove(message)
        for gone in (message, *message.replies):
            self._index.pop((channel.id, gone.ts), None)

    # ------------------------------------------------------------------ JSON shapes

    def _message_json(self, message: Message, *, metadata: bool = True) -> JsonDict:
        body: JsonDict = {"type": "message", "user": message.user, "text": message.text}
        if message.user == BOT_USER_ID:
            body |= {
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "bot_profile": {
                    "id": BOT_ID,
                    "app_id": APP_ID,
                    "name": BOT_NAME,
                    "team_id": self.team_id,
                    "deleted": False,
                },
            }
        body |= {"ts": message.ts, "team": self.team_id}
        if message.blocks:
            body["blocks"] = message.blocks
        if message.thread_ts is not None:
            parent = self._index.get((message.channel, message.thread_ts))
            body["thread_ts"] = message.thread_ts
            body["parent_user_id"] = parent.user if parent else BOT_USER_ID
            if message.reply_broadcast:
                body["subtype"] = "thread_broadcast"
        elif message.replies:
            repliers = list(dict.fromkeys(r.user for r in message.replies))
            body |= {
                "thread_ts": message.ts,
                "reply_count": len(message.replies),
                "reply_users_count": len(repliers),
                "latest_reply": message.replies[-1].ts,
                "reply_users": repliers,
                "is_locked": False,
                "subscribed": False,
            }
        if message.files:
            body["files"] = [self._file_json(f) for f in message.files]
        if message.edited_ts is not None:
            body["edited"] = {"user": message.user, "ts": message.edited_ts}
        if metadata and message.metadata is not None:
            body["metadata"] = message.metadata
        return body

    def _channel_json(self, channel: _Channel) -> JsonDict:
        if channel.is_im:
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": channel.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": channel.id,
            "name": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "created": channel.created,
            "is_archived": False,
            "is_general": channel.name == "general",
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_member": channel.is_member,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "num_members": len(self._users) + (1 if channel.is_member else 0),
        }

    def _user_json(self, user: SandboxUser) -> JsonDict:
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": user.tz,
            "tz_label": user.tz,
            "tz_offset": user.tz_offset,
            "is_admin": False,
            "is_owner": False,
            "is_bot": False,
            "is_app_user": False,
            "profile": {
                "real_name": user.real_name,
                "real_name_normalized": user.real_name,
                "display_name": user.name,
                "display_name_normalized": user.name,
                "email": user.email,
                "team": self.team_id,
            },
        }

    def _bot_user_json(self) -> JsonDict:
        return {
            "id": BOT_USER_ID,
            "team_id": self.team_id,
            "name": BOT_NAME,
            "deleted": False,
            "real_name": BOT_NAME,
            "is_bot": True,
            "is_app_user": False,
            "profile": {
                "real_name": BOT_NAME,
                "display_name": BOT_NAME,
                "bot_id": BOT_ID,
                "api_app_id": APP_ID,
                "team": self.team_id,
            },
        }

    # ------------------------------------------------------------------ transcript

    def _render_channel(self, channel: _Channel, *, times: bool) -> str:
        lines = [_channel_header(channel, self._users)]
        entries: list[Message | Ephemeral] = [
            *channel.messages,
            *(e for e in self._ephemerals if e.channel == channel.id and e.thread_ts is None),
        ]
        for entry in sorted(entries, key=lambda e: e.seq):
            lines += self._render_entry(entry, lead="", times=times)
            if isinstance(entry, Message):
                thread: list[Message | Ephemeral] = [
                    *entry.replies,
                    *(
                        e
                        for e in self._ephemerals
                        if e.channel == channel.id and e.thread_ts == entry.ts
                    ),
                ]
                for reply in sorted(thread, key=lambda e: e.seq):
                    lines += self._render_entry(reply, lead="  ↳ ", times=times)
        return "\n".join(lines) + "\n"

    def _render_entry(self, entry: Message | Ephemeral, *, lead: str, times: bool) -> list[str]:
        body = [self._readable(line) for line in _plain_lines(entry.text, entry.blocks)] or [""]
        if isinstance(entry, Message) and entry.files:
            shown = [
                f"[file: {f.title or f.name} ({f.mimetype}, {f.length} bytes)]" for f in entry.files
            ]
            body = [*(line for line in body if line), *shown]
        marks = []
        if entry.edits:
            marks.append(f"(edited {entry.edits}{_TIMES})")
        if isinstance(entry, Message):
            author = self._display_name(entry.user)
            ts = entry.ts
            if entry.reply_broadcast:
                marks.append("(also sent to the channel)")
        else:
            author = BOT_NAME
            ts = entry.message_ts
            marks.append(f"(only visible to {self._display_name(entry.user, at=True)})")
        body[-1] = " ".join(part for part in (body[-1], *marks) if part)
        clock = time.strftime("%H:%M:%S ", time.localtime(int(float(ts)))) if times else ""
        prefix = f"{lead}{clock}{author}: "
        pad = " " * len(prefix)
        return [prefix + body[0], *(pad + line if line else "" for line in body[1:])]

    def _display_name(self, user_id: str, *, at: bool = False) -> str:
        if user_id == BOT_USER_ID:
            name = BOT_NAME
        else:
            user = self._users.get(user_id)
            name = user.name if user else user_id
        return f"@{name}" if at else name

    def _readable(self, line: str) -> str:
        """Mentions and links as Slack shows them (``<@U0BOB>`` → ``@bob``, ``<url|label>`` →
        ``label``, ``<url>`` → ``url``); mrkdwn emphasis stays."""

        def mention(match: re.Match[str]) -> str:
            kind, ref, label = match.group(1), match.group(2), match.group(3)
            if kind == "@":
                user = self._users.get(ref)
                if ref == BOT_USER_ID:
                    return f"@{BOT_NAME}"
                return f"@{user.name}" if user else f"@{label or ref}"
            if kind == "#":
                channel = self._channels.get(ref)
                return f"#{channel.name}" if channel else f"#{label or ref}"
            if ref.startswith("subteam^"):
                group = self._usergroups.get(ref.removeprefix("subteam^"))
                return f"@{group.handle}" if group else (label or "@group")
            if ref in {"here", "channel", "everyone"}:
                return f"@{ref}"
            return label or ref

        line = re.sub(r"<([@#!])([^>|]+)(?:\|([^>]*))?>", mention, line)
        line = re.sub(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>", _link_label, line)
        return line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").rstrip()


# ---------------------------------------------------------------------- signed requests


def sign(signing_secret: str, body: bytes | str, timestamp: int | str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def signed_slash_command(
    *,
    signing_secret: str,
    command: str,
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    response_url: str,
    team_id: str = "T0SANDBOX",
    trigger_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The form-encoded body and headers Slack POSTs for a slash command."""
    at = int(time.time()) if timestamp is None else timestamp
    fields = _slash_command_fields(
        command=command,
        text=text,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        team_id=team_id,
        response_url=response_url,
        at=at,
        trigger_id=trigger_id,
    )
    return _signed(signing_secret, urlencode(fields).encode(), at)


def _slash_command_fields(
    *,
    command: str,
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    team_id: str,
    response_url: str,
    at: int,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """Slack's documented slash-command payload, as sent over HTTP and over Socket Mode."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(at),
    }


def signed_block_action(
    *,
    signing_secret: str,
    action_id: str,
    value: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    message_ts: str,
    response_url: str,
    block_id: str = "actions",
    team_id: str = "T0SANDBOX",
    timestamp: int | None = None,
    channel_name: str = "",
    message: Mapping[str, Any] | None = None,
    is_ephemeral: bool = False,
    button_text: str = "",
) -> tuple[bytes, dict[str, str]]:
    """The ``payload=<json>`` body and headers Slack POSTs when a button is clicked."""
    at = int(time.time()) if timestamp is None else timestamp
    payload: JsonDict = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": _trigger_id(at),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": dict(message) if message is not None else {"type": "message", "ts": message_ts},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": button_text or action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    return _signed(signing_secret, body, at)


def _signed(signing_secret: str, body: bytes, timestamp: int) -> tuple[bytes, dict[str, str]]:
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(signing_secret, body, timestamp),
    }


def _trigger_id(timestamp: int) -> str:
    return f"{timestamp}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


# ---------------------------------------------------------------------- request parsing


async def _read_params(request: web.Request) -> tuple[JsonDict, str | None]:
    """Query string, then the body (JSON or form) on top, as slack_sdk may send either."""
    values: JsonDict = dict(request.query.items())
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            raw = await request.text()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise _SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise _SlackError("invalid_json")
            values.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            values.update({k: v for k, v in form.items() if isinstance(v, str)})
    body_token = values.pop("token", None)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return values, header.removeprefix("Bearer ").strip()
    return values, body_token if isinstance(body_token, str) else None


def _content(params: _Params, *, required: bool) -> tuple[str, list[JsonDict]]:
    text = params.text("text") or ""
    markdown = params.text("markdown_text") or ""
    if text and markdown:
        raise _SlackError("markdown_text_conflict")
    text = text or markdown
    if len(text) > MAX_TEXT:
        raise _SlackError("msg_too_long")
    raw = params.structured("blocks", error="invalid_blocks_format")
    blocks: list[JsonDict] = []
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
            raise _SlackError("invalid_blocks_format")
        errors = _block_errors(raw)
        if errors:
            raise _SlackError(
                "invalid_blocks",
                errors=errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        blocks = raw
    if required and not text and not blocks and not params.has("attachments"):
        raise _SlackError("no_text")
    return text, blocks


def _metadata(params: _Params) -> JsonDict | None:
    raw = params.structured("metadata", error="invalid_metadata_format")
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("event_type"), str)
        or not re.fullmatch(r"[A-Za-z0-9_]+", raw["event_type"])
        or not isinstance(raw.get("event_payload"), dict)
    ):
        raise _SlackError("invalid_metadata_format")
    return {"event_type": raw["event_type"], "event_payload": raw["event_payload"]}


def _ts_param(params: _Params, key: str) -> int | None:
    value = params.text(key)
    if not value:
        return None
    try:
        return _micros(value)
    except ValueError:
        raise _SlackError(f"invalid_ts_{key}") from None


def _micros(ts: str) -> int:
    try:
        return int(Decimal(ts) * 1_000_000)
    except InvalidOperation:
        raise ValueError(f"not a Slack ts: {ts!r}") from None


def _encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _decode_cursor(cursor: str | None, kind: str) -> str | None:
    if not cursor:
        return None
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _SlackError("invalid_cursor") from None
    found, _, value = decoded.partition(":")
    if found != kind or not value:
        raise _SlackError("invalid_cursor")
    if kind == "next_ts":
        try:
            return str(int(value))
        except ValueError:
            raise _SlackError("invalid_cursor") from None
    return value


def _fault_status(status: int) -> int:
    if status != 200 and not 400 <= status <= 599:
        raise ValueError(f"a fault answers 200 (with an error) or 4xx/5xx, not {status}")
    return status


def _gateway_page(status: int) -> str:
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )


# ---------------------------------------------------------------------- Block Kit


_BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "video",
}


def _block_errors(blocks: list[JsonDict]) -> list[str]:
    """The Block Kit rules a production message most often breaks, worded like Slack's."""
    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(f"must be less than {MAX_BLOCKS + 1} items [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        kind = block.get("type")
        action_ids: set[str] = set()  # unique within a block, as Slack documents
        if kind not in _BLOCK_TYPES:
            errors.append(f"unsupported type: {kind} [json-pointer:{where}/type]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                errors.append(f"duplicate block_id: {block_id} [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                errors.append(f"must provide either text or fields [json-pointer:{where}]")
            if text is not None:
                errors += _text_errors(text, f"{where}/text", limit=3000)
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > 10:
                    errors.append(f"must be less than 11 items [json-pointer:{where}/fields]")
                else:
                    for j, item in enumerate(fields):
                        errors += _text_errors(item, f"{where}/fields/{j}", limit=2000)
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                errors += _element_errors(accessory, f"{where}/accessory", action_ids)
        elif kind == "header":
            errors += _text_errors(block.get("text"), f"{where}/text", limit=150, plain=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"must have 1 to 10 elements [json-pointer:{where}/elements]")
            else:
                for j, element in enumerate(elements):
                    if isinstance(element, dict) and element.get("type") != "image":
                        errors += _text_errors(element, f"{where}/elements/{j}", limit=3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"must have 1 to 25 elements [json-pointer:{where}/elements]")
            else:
                for j, element in enumerate(elements):
                    if not isinstance(element, dict):
                        errors.append(f"must be an object [json-pointer:{where}/elements/{j}]")
                        continue
                    errors += _element_errors(element, f"{where}/elements/{j}", action_ids)
    return errors


_DATE_TOKEN = re.compile(r"<!date\^([^>]*)>")
_DATE_PARTS = re.compile(r"\d{1,12}\^[^^|>]+(?:\^[^^|>]+)?\|[^|>]+")
"""``<!date^epoch^format[^link]|fallback>``: Slack shows a malformed one as raw text."""


def _text_errors(obj: Any, where: str, *, limit: int, plain: bool = False) -> list[str]:
    allowed = {"plain_text"} if plain else {"plain_text", "mrkdwn"}
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        return [f"must be a {' or '.join(sorted(allowed))} text object [json-pointer:{where}]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{where}/text]"]
    if len(text) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{where}/text]"]
    if obj.get("type") == "mrkdwn":
        for token in _DATE_TOKEN.finditer(text):
            if not _DATE_PARTS.fullmatch(token.group(1)):
                return [f"invalid date token {token.group(0)[:60]} [json-pointer:{where}/text]"]
    return []


def _element_errors(element: JsonDict, where: str, action_ids: set[str]) -> list[str]:
    errors: list[str] = []
    action_id = element.get("action_id")
    if isinstance(action_id, str):
        if action_id in action_ids:
            errors.append(f"duplicate action_id: {action_id} [json-pointer:{where}/action_id]")
        action_ids.add(action_id)
    if element.get("type") == "button":
        errors += _text_errors(element.get("text"), f"{where}/text", limit=75, plain=True)
        value = element.get("value")
        if isinstance(value, str) and len(value) > 2000:
            errors.append(f"must be less than 2001 characters [json-pointer:{where}/value]")
    return errors


def _find_button(
    blocks: list[JsonDict], action_id: str, *, value: str | None = None
) -> tuple[str, JsonDict] | None:
    """The first button ``action_id`` in ``blocks`` (with ``value``, when several carry it)."""
    for i, block in enumerate(blocks):
        candidates = [*(block.get("elements") or []), block.get("accessory")]
        for element in candidates:
            if (
                isinstance(element, dict)
                and element.get("action_id") == action_id
                and value in (None, element.get("value"))
            ):
                return str(block.get("block_id") or f"block{i}"), element
    return None


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return str(obj["text"])
    return ""


def _link_label(match: re.Match[str]) -> str:
    return match.group(2) or match.group(1)


def _field_grid(fields: list[Any]) -> list[str]:
    """Section fields as Slack lays them out: two columns, each "title value" pair on a line."""
    cells = []
    for item in fields:
        title, _, value = _text_of(item).partition("\n")
        cells.append(f"{title.strip('*')}: {value}" if value else title)
    return ["    ".join(cells[i : i + 2]) for i in range(0, len(cells), 2)]


def _plain_lines(text: str, blocks: list[JsonDict]) -> list[str]:
    """What a person reads: the blocks when there are any, else the fallback text."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "markdown"):
            lines += (_text_of(block.get("text")) or str(block.get("text") or "")).splitlines()
        elif kind == "section":
            section = _text_of(block.get("text")).splitlines()
            section += _field_grid(block.get("fields") or [])
            label = _element_label(block.get("accessory"))
            if label:
                section = [*section[:-1], f"{section[-1]} {label}"] if section else [label]
            lines += section
        elif kind == "context":
            parts = [_text_of(e) for e in block.get("elements") or []]
            lines.append(" · ".join(p for p in parts if p))
        elif kind == "actions":
            labels = [_element_label(e) for e in block.get("elements") or []]
            lines.append(" ".join(label for label in labels if label))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines += _rich_text(block.get("elements") or []).splitlines()
    if any(line.strip() for line in lines):
        return lines
    return text.splitlines()


def _element_label(element: Any) -> str:
    if not isinstance(element, dict):
        return ""
    if element.get("type") == "button":
        return f"[{_text_of(element.get('text'))}]"
    placeholder = _text_of(element.get("placeholder"))
    if element.get("type", "").endswith("select"):
        return f"[{placeholder or 'choose'} ▾]"
    return ""


def _rich_text(elements: list[Any]) -> str:
    out: list[str] = []
    for element in elements:
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind == "text":
            out.append(str(element.get("text", "")))
        elif kind == "link":
            out.append(str(element.get("text") or element.get("url", "")))
        elif kind == "user":
            out.append(f"<@{element.get('user_id', '')}>")
        elif kind == "channel":
            out.append(f"<#{element.get('channel_id', '')}>")
        elif kind == "usergroup":
            out.append(f"<!subteam^{element.get('usergroup_id', '')}>")
        elif kind == "emoji":
            out.append(f":{element.get('name', '')}:")
        elif kind == "rich_text_list":
            items = [_rich_text([item]).strip("\n") for item in element.get("elements") or []]
            out.append("\n".join(f"• {item}" for item in items) + "\n")
        elif kind == "rich_text_preformatted":
            out.append(f"```{_rich_text(element.get('elements') or [])}```\n")
        elif kind == "rich_text_quote":
            out.append(f"> {_rich_text(element.get('elements') or [])}\n")
        elif kind == "rich_text_section":
            out.append(_rich_text(element.get("elements") or []) + "\n")
    return "".join(out)


def _channel_label(channel: _Channel) -> str:
    return channel.name if channel.user is None else "directmessage"


def _channel_header(channel: _Channel, users: Mapping[str, SandboxUser]) -> str:
    if channel.user is None:
        return f"#{channel.name}"
    user = users.get(channel.user)
    return f"@{user.name if user else channel.user} (direct messages)"
