"""Webhook delivery as GitLab does it: its headers, one POST at a time per project, in order.

GitLab does not retry a failed delivery (it counts failures and may disable the hook), so neither
does the sandbox; every attempt and its result is recorded in ``deliveries``. A hook made with
``deliver_twice=True`` sends each event twice with the same ``Idempotency-Key`` and
``X-Gitlab-Event-UUID``, which is how a receiver sees GitLab's re-sends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp

from bot.sandbox.gitlab.hooks import HEADERS
from bot.sandbox.gitlab.records import Event, EventKind, JsonDict

GITLAB_VERSION = "17.5.2"
USER_AGENT = f"GitLab/{GITLAB_VERSION}"
ALL_EVENTS: frozenset[EventKind] = frozenset(
    {"push", "tag_push", "merge_request", "pipeline", "job"}
)


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    secret_token: str | None
    events: frozenset[str]
    project_id: int | None  # None: every project
    uuid: str
    deliver_twice: bool


@dataclass
class Delivery:
    """One POST to one hook; ``status``/``error`` are filled once it was attempted."""

    hook_id: int
    url: str
    project_id: int
    event: str  # the X-Gitlab-Event value, e.g. "Pipeline Hook"
    payload: JsonDict
    body: bytes
    headers: dict[str, str]
    attempt: int = 1
    status: int | None = None
    error: str | None = None
    response: str | None = None
    sent_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Dispatcher:
    def __init__(self, *, instance_url: Callable[[], str], timeout: float = 10.0) -> None:
        self.hooks: list[Webhook] = []
        self.deliveries: list[Delivery] = []
        self._instance_url = instance_url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._queues: dict[int, deque[Delivery]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(
        self,
        url: str,
        *,
        secret_token: str | None,
        events: Iterable[str],
        project_id: int | None,
        deliver_twice: bool,
    ) -> Webhook:
        chosen = frozenset(events)
        unknown = chosen - ALL_EVENTS
        if unknown:
            raise ValueError(
                f"unknown webhook events {sorted(unknown)}; known: {sorted(ALL_EVENTS)}"
            )
        hook = Webhook(
            id=next(self._ids),
            url=url,
            secret_token=secret_token,
            events=chosen,
            project_id=project_id,
            uuid=str(uuid.uuid4()),
            deliver_twice=deliver_twice,
        )
        with self._lock:
            self.hooks.append(hook)
        return hook

    def remove(self, hook_id: int) -> None:
        with self._lock:
            self.hooks = [h for h in self.hooks if h.id != hook_id]

    def submit(self, event: Event) -> None:
        """Queue ``event`` for every hook that wants it; safe to call from any thread."""
        body = json.dumps(event.payload).encode()
        queued = False
        with self._lock:
            for hook in self.hooks:
                if event.kind not in hook.events or hook.project_id not in (None, event.project_id):
                    continue
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    "X-Gitlab-Event": HEADERS[event.kind],
                    "X-Gitlab-Webhook-UUID": hook.uuid,
                    "X-Gitlab-Instance": self._instance_url(),
                    "X-Gitlab-Event-UUID": event.uuid,
                    "Idempotency-Key": str(uuid.uuid5(uuid.UUID(event.uuid), hook.uuid)),
                }
                if hook.secret_token:
                    headers["X-Gitlab-Token"] = hook.secret_token
                for attempt in range(1, 3 if hook.deliver_twice else 2):
                    delivery = Delivery(
                        hook_id=hook.id,
                        url=hook.url,
                        project_id=event.project_id,
                        event=HEADERS[event.kind],
                        payload=event.payload,
                        body=body,
                        headers=headers,
                        attempt=attempt,
                    )
                    self.deliveries.append(delivery)
                    self._queues.setdefault(event.project_id, deque()).append(delivery)
                    queued = True
            loop = self._loop
        if queued and loop is not None:
            loop.call_soon_threadsafe(self._kick, event.project_id)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        with self._lock:
            waiting = [pid for pid, queue in self._queues.items() if queue]
        for project_id in waiting:
            self._kick(project_id)

    async def stop(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None

    def idle(self) -> bool:
        with self._lock:
            if any(self._queues.values()):
                return False
        return all(task.done() for task in self._workers.values())

    async def drain(self, *, within: float) -> None:
        deadline = time.monotonic() + within
        while not self.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhook deliveries still pending after {within} s")
            await asyncio.sleep(0.005)

    def _kick(self, project_id: int) -> None:
        """Runs on the loop: make sure one worker drains this project's queue."""
        if self._loop is None:
            return
        task = self._workers.get(project_id)
        if task is None or task.done():
            self._workers[project_id] = self._loop.create_task(self._work(project_id))

    async def _work(self, project_id: int) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(project_id)
                if not queue:
                    return
                delivery = queue.popleft()
            await self._post(delivery)

    async def _post(self, delivery: Delivery) -> None:
        assert self._session is not None
        delivery.sent_at = time.time()
        try:
            async with self._session.post(
                delivery.url, data=delivery.body, headers=delivery.headers
            ) as response:
                delivery.response = (await response.text(errors="replace"))[:2000]
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
