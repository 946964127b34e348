"""List+watch of workloads with the official ``kubernetes`` client, feeding asyncio.

The official client is synchronous, so each (context, kind) is watched by a daemon thread that
hands raw objects to the event loop through a bounded backlog (at most ``queue_size`` objects
waiting, a page counting as its objects: a slow consumer slows the watch rather than growing
memory). Per kind:

1. **List** in pages (``limit``/``continue``), as raw JSON: no model objects are built, which
   keeps 10,000 workloads cheap. Each page is handed over whole (a ``ListedPage``) when the
   consumer takes pages, so that it judges a page in a few Redis round trips instead of a few
   per object; otherwise every item is delivered as a ``LISTED`` event. Once the last page is
   read, a ``ListEnded`` names every object the list held, so that the consumer can tell what
   it remembered and the list no longer shows (deleted while nobody watched). A list that fails
   or is cut short ends nothing: only a complete list is handed over as ended.
2. **Watch** from the list's ``resourceVersion`` with bookmarks, for ``watch_timeout`` seconds,
   then again from the last ``resourceVersion`` seen (bookmarks move it forward too).
3. **410 Gone** (the server no longer has that version): list again. Anything that changed
   meanwhile arrives as ``LISTED`` events; consumers de-duplicate by ``resourceVersion``.
4. **Errors** (connection cut, API server restarting): retry with exponential back-off, capped.

``stop()`` asks the threads to end and shuts their open watch streams, so that a thread blocked
reading one ends at once; being daemons, they never hold up the process's exit. Watch streams are
read as raw JSON lines too: no model object is built for an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch.watch import iter_resp_lines

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


@dataclass(frozen=True)
class ListEnded:
    """A complete list of one kind: every page read, each handed over before this."""

    context: str
    kind: str
    present: frozenset[tuple[str, str]]
    """``(namespace, name)`` of every object listed."""
    label_selector: str | None


Handler = Callable[[ObjectEvent], Awaitable[None]]
PageHandler = Callable[[ListedPage], Awaitable[None]]
EndHandler = Callable[[ListEnded], Awaitable[None]]


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


class _Run:
    """One run of the watcher (while the lease is held). Its threads stop with it: ``end``
    sets its stop, frees a thread waiting for room, and shuts the open watch streams so that
    a thread blocked reading one ends now, not at the stream's next event, whatever the next
    run (the lease won again) is doing meanwhile."""

    def __init__(self, queue_size: int) -> None:
        self.stop = threading.Event()
        self.backlog = _Backlog(queue_size, self.stop)
        self._streams: dict[str, Any] = {}
        self._lock = threading.Lock()

    def streaming(self, kind: str, response: Any) -> None:
        with self._lock:
            self._streams[kind] = response

    def done(self, kind: str) -> None:
        with self._lock:
            self._streams.pop(kind, None)

    def end(self) -> None:
        self.stop.set()
        self.backlog.wake()
        with self._lock:
            streams = list(self._streams.values())
        for response in streams:
            with contextlib.suppress(Exception):  # already closed: nothing to interrupt
                response.shutdown()


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
        self._run = _Run(queue_size)
        self.listed: dict[str, int] = {}
        """How many times each kind was listed (1 at start, +1 per 410): for tests and metrics."""

    async def run(
        self,
        handle: Handler,
        handle_page: PageHandler | None = None,
        handle_end: EndHandler | None = None,
    ) -> None:
        """Watch every kind until cancelled, handing each object event to ``handle``, each
        page of a list to ``handle_page`` when given (else its objects one by one), and the
        end of each complete list to ``handle_end`` when given."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ObjectEvent | ListedPage | ListEnded] = asyncio.Queue()
        # A run of its own: the threads of an earlier run (a lease lost, then won again) end
        # instead of carrying on beside this run's.
        self._run = this = _Run(self._queue_size)
        backlog = this.backlog

        def push(item: ObjectEvent | ListedPage | ListEnded) -> None:
            count = len(item.objs) if isinstance(item, ListedPage) else 1
            if not backlog.reserve(count):
                raise _Stopping
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is closed: the bot is stopping
                raise _Stopping from None

        def push_page(page: ListedPage | ListEnded) -> None:
            if isinstance(page, ListEnded):
                if handle_end is not None:
                    push(page)
                return
            if handle_page is not None:
                push(page)
                return
            for obj in page.objs:
                push(ObjectEvent(page.context, page.kind, "LISTED", obj))

        for kind in LIST_CALLS:
            thread = threading.Thread(
                target=self._watch_kind,
                args=(kind, push, push_page, this),
                daemon=True,
                name=f"watch:{self.context}:{kind}",
            )
            thread.start()
        current = asyncio.current_task()
        try:
            while True:
                if current is not None and current.cancelling():
                    # A handler's library swallowed the cancellation: the run ends anyway,
                    # rather than waiting for items while its threads watch on.
                    raise asyncio.CancelledError
                item = await queue.get()
                try:
                    if isinstance(item, ListedPage):
                        assert handle_page is not None
                        await handle_page(item)
                    elif isinstance(item, ListEnded):
                        assert handle_end is not None
                        await handle_end(item)
                    else:
                        await handle(item)
                finally:
                    backlog.release(len(item.objs) if isinstance(item, ListedPage) else 1)
        finally:
            this.end()

    def stop(self) -> None:
        self._run.end()

    # ------------------------------------------------------------------ in the threads

    def _watch_kind(
        self,
        kind: str,
        push: Callable[[ObjectEvent], None],
        push_page: Callable[[ListedPage | ListEnded], None],
        run: _Run,
    ) -> None:
        stop = run.stop
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
                    version = self._watch(apps, kind, version, push, run)
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
        push_page: Callable[[ListedPage | ListEnded], None],
        stop: threading.Event,
    ) -> str:
        call = getattr(apps, LIST_CALLS[kind])
        token: str | None = None
        version = "0"
        began = time.monotonic()
        count = 0
        present: set[tuple[str, str]] = set()
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
            for item in items:
                meta = item.get("metadata") or {}
                present.add((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
            if items:
                push_page(ListedPage(self.context, kind, items))
            token = metadata.get("continue") or None
            if not token:
                break
        if stop.is_set():
            raise _Stopping  # a list cut short is no list
        push_page(ListEnded(self.context, kind, frozenset(present), self._selector))
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
        run: _Run,
    ) -> str:
        """One watch stream from ``version``, read as raw JSON lines (no model objects): the
        version it got to. An ``ERROR`` event raises its status (410: list again)."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": self._watch_timeout,
            "_preload_content": False,
            "_request_timeout": (10, self._watch_timeout + 30),
        }
        if self._selector:
            kwargs["label_selector"] = self._selector
        response = getattr(apps, LIST_CALLS[kind])(**kwargs)
        run.streaming(kind, response)
        try:
            for line in [] if run.stop.is_set() else iter_resp_lines(response):
                if run.stop.is_set():
                    break
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:  # as the official client: a line that is no event is skipped
                    continue
                kind_of_event = str(event.get("type"))
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    raise ApiException(
                        status=int(obj.get("code") or 500),
                        reason=f"{obj.get('reason')}: {obj.get('message')}",
                    )
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                metrics.KUBE_WATCH_EVENTS.labels(self.context, kind, kind_of_event).inc()
                if kind_of_event == "BOOKMARK":
                    continue
                push(ObjectEvent(self.context, kind, kind_of_event, obj))
        finally:
            run.done(kind)
            response.close()
            response.release_conn()
        return version
