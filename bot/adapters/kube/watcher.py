"""List+watch of workloads with the official ``kubernetes`` client, feeding asyncio.

The official client is synchronous, so each (context, kind) is watched by a daemon thread that
hands raw objects to the event loop through a bounded backlog (at most ``queue_size`` objects
waiting, a page counting as its objects: a slow consumer slows the watch rather than growing
memory). Per kind:

1. **List** in pages (``limit``/``continue``), as raw JSON: no model objects are built, which
   keeps 10,000 workloads cheap. Each page is handed over whole (a ``ListedPage``) when the
   consumer takes pages, so that it judges a page in a few Redis round trips instead of a few
   per object; otherwise every item is delivered as a ``LISTED`` event.
2. **Watch** from the list's ``resourceVersion`` with bookmarks, for ``watch_timeout`` seconds,
   then again from the last ``resourceVersion`` seen (bookmarks move it forward too).
3. **410 Gone** (the server no longer has that version): list again. Anything that changed
   meanwhile arrives as ``LISTED`` events; consumers de-duplicate by ``resourceVersion``.
4. **Errors** (connection cut, API server restarting): retry with exponential back-off, capped.

``stop()`` asks the threads to end; a thread blocked in a read ends at its next event or read
timeout, and being a daemon it never holds up the process's exit.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot import logs, metrics
from bot.adapters.kube.contexts import api_client

log = logs.get(__name__)

LIST_CALLS = {
    "Deployment": "list_deployment_for_all_namespaces",
    "StatefulSet": "list_stateful_set_for_all_namespaces",
    "DaemonSet": "list_daemon_set_for_all_namespaces",
}


class _Stopping(Exception):
    """The watcher is stopping: a thread waiting to hand objects over ends."""


@dataclass(frozen=True)
class ObjectEvent:
    context: str
    kind: str
    type: str
    """``LISTED`` (from a list), ``ADDED``, ``MODIFIED`` or ``DELETED`` (from the watch)."""
    obj: dict[str, Any]


@dataclass(frozen=True)
class ListedPage:
    """One page of a list, every object of it ``LISTED``: judged together."""

    context: str
    kind: str
    objs: list[dict[str, Any]]


Handler = Callable[[ObjectEvent], Awaitable[None]]
PageHandler = Callable[[ListedPage], Awaitable[None]]


class _Backlog:
    """How many objects the threads handed over that the consumer has not handled yet; a
    thread waits for room before it hands more (one item always fits, however large)."""

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self._limit = limit
        self._stop = stop
        self._pending = 0
        self._room = threading.Condition()

    def reserve(self, count: int) -> bool:
        """Wait for room for ``count`` objects; ``False`` when the watcher is stopping."""
        with self._room:
            while self._pending and self._pending + count > self._limit:
                if self._stop.is_set():
                    return False
                self._room.wait(0.5)
            if self._stop.is_set():
                return False
            self._pending += count
            return True

    def release(self, count: int) -> None:
        with self._room:
            self._pending -= count
            self._room.notify_all()

    def wake(self) -> None:
        with self._room:
            self._room.notify_all()


class KubeWatcher:
    def __init__(
        self,
        *,
        context: str,
        kubeconfig: str | None,
        label_selector: str | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        queue_size: int = 2000,
    ) -> None:
        self.context = context
        self._kubeconfig = kubeconfig
        self._selector = label_selector
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        self._queue_size = queue_size
        self._stop = threading.Event()
        self._backlog = _Backlog(queue_size, self._stop)
        self._watches: dict[str, watch.Watch] = {}
        self.listed: dict[str, int] = {}
        """How many times each kind was listed (1 at start, +1 per 410): for tests and metrics."""

    async def run(self, handle: Handler, handle_page: PageHandler | None = None) -> None:
        """Watch every kind until cancelled, handing each object event to ``handle``, and each
        page of a list to ``handle_page`` when given (else its objects one by one)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ObjectEvent | ListedPage] = asyncio.Queue()
        # A stop of its own per run: the threads of an earlier run (a lease lost, then won
        # again) end instead of carrying on beside this run's.
        self._stop = stop = threading.Event()
        self._backlog = backlog = _Backlog(self._queue_size, stop)

        def push(item: ObjectEvent | ListedPage) -> None:
            count = len(item.objs) if isinstance(item, ListedPage) else 1
            if not backlog.reserve(count):
                raise _Stopping
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is closed: the bot is stopping
                raise _Stopping from None

        def push_page(page: ListedPage) -> None:
            if handle_page is not None:
                push(page)
                return
            for obj in page.objs:
                push(ObjectEvent(page.context, page.kind, "LISTED", obj))

        for kind in LIST_CALLS:
            thread = threading.Thread(
                target=self._watch_kind,
                args=(kind, push, push_page, stop),
                daemon=True,
                name=f"watch:{self.context}:{kind}",
            )
            thread.start()
        try:
            while True:
                item = await queue.get()
                try:
                    if isinstance(item, ListedPage):
                        assert handle_page is not None
                        await handle_page(item)
                    else:
                        await handle(item)
                finally:
                    backlog.release(len(item.objs) if isinstance(item, ListedPage) else 1)
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._backlog.wake()
        for w in list(self._watches.values()):
            w.stop()

    # ------------------------------------------------------------------ in the threads

    def _watch_kind(
        self,
        kind: str,
        push: Callable[[ObjectEvent], None],
        push_page: Callable[[ListedPage], None],
        stop: threading.Event,
    ) -> None:
        backoff = 1.0
        version: str | None = None
        api: client.ApiClient | None = None
        try:
            while not stop.is_set():
                try:
                    if api is None:
                        api = api_client(self.context, kubeconfig=self._kubeconfig)
                    apps = client.AppsV1Api(api)
                    if version is None:
                        version = self._list(apps, kind, push_page, stop)
                    version = self._watch(apps, kind, version, push, stop)
                    backoff = 1.0
                except ApiException as exc:
                    if exc.status == 410:
                        log.info("watch expired; listing again", context=self.context, kind=kind)
                        metrics.KUBE_RELISTS.labels(self.context, kind).inc()
                        version = None
                        continue
                    backoff = self._pause(kind, f"API {exc.status} {exc.reason}", backoff, stop)
                except (urllib3.exceptions.HTTPError, OSError, ConfigException, ValueError) as exc:
                    backoff = self._pause(kind, repr(exc), backoff, stop)
                except (_Stopping, RuntimeError):  # stop(), or the event loop is gone
                    return
                except Exception as exc:  # a thread that dies would stop watching silently
                    log.exception("watch thread error", context=self.context, kind=kind)
                    backoff = self._pause(kind, repr(exc), backoff, stop)
        finally:
            if api is not None:
                api.close()

    def _pause(self, kind: str, error: str, backoff: float, stop: threading.Event) -> float:
        if stop.is_set():
            return backoff
        metrics.KUBE_WATCH_ERRORS.labels(self.context, kind).inc()
        log.warning(
            "watch failed; reconnecting",
            context=self.context,
            kind=kind,
            error=error,
            retry_in=backoff,
        )
        stop.wait(backoff)
        return min(backoff * 2, self._max_backoff)

    def _list(
        self,
        apps: client.AppsV1Api,
        kind: str,
        push_page: Callable[[ListedPage], None],
        stop: threading.Event,
    ) -> str:
        call = getattr(apps, LIST_CALLS[kind])
        token: str | None = None
        version = "0"
        began = time.monotonic()
        count = 0
        while not stop.is_set():
            kwargs: dict[str, Any] = {"limit": self._page_size, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            if self._selector:
                kwargs["label_selector"] = self._selector
            response = call(**kwargs)
            page = json.loads(response.data)
            metadata = page.get("metadata") or {}
            version = str(metadata.get("resourceVersion") or version)
            items = page.get("items") or []
            del page, response  # the page's raw bytes and envelope, before the handler's work
            count += len(items)
            if items:
                push_page(ListedPage(self.context, kind, items))
            token = metadata.get("continue") or None
            if not token:
                break
        self.listed[kind] = self.listed.get(kind, 0) + 1
        log.info(
            "workloads listed",
            context=self.context,
            kind=kind,
            count=count,
            seconds=round(time.monotonic() - began, 2),
            resource_version=version,
        )
        return version

    def _watch(
        self,
        apps: client.AppsV1Api,
        kind: str,
        version: str,
        push: Callable[[ObjectEvent], None],
        stop: threading.Event,
    ) -> str:
        w = watch.Watch()
        self._watches[kind] = w
        kwargs: dict[str, Any] = {
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": self._watch_timeout,
            # deserialize=False would be cheaper, but the client then fails on ERROR events
            # (KeyError 'raw_object') instead of raising the 410 we must see.
            "_request_timeout": (10, self._watch_timeout + 30),
        }
        if self._selector:
            kwargs["label_selector"] = self._selector
        for event in w.stream(getattr(apps, LIST_CALLS[kind]), **kwargs):
            if stop.is_set():
                w.stop()
                break
            obj = event.get("raw_object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            kind_of_event = str(event.get("type"))
            metrics.KUBE_WATCH_EVENTS.labels(self.context, kind, kind_of_event).inc()
            if kind_of_event == "BOOKMARK":
                continue
            push(ObjectEvent(self.context, kind, kind_of_event, obj))
        return version
