"""The composition root: builds the adapters, wires the services, runs the workers, stops cleanly.

Nothing else constructs adapters. Tests and ``pitcrew demo`` build the same ``Pitcrew`` object
as ``pitcrew serve`` does, pointed at the sandbox, so they exercise the real wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from slack_sdk.web.async_client import AsyncWebClient

from bot import __version__, logs
from bot.adapters.catalog_file import FileCatalogSource
from bot.adapters.charts.dora import DoraCharts
from bot.adapters.gitlab.events import GitLabEvents, Stored
from bot.adapters.gitlab.gitops import (
    AppTagsFromGitLab,
    GitLabCatalogSource,
    GitOpsFilesFromGitLab,
    GitOpsReleasesFromGitLab,
    IssuesFromGitLab,
)
from bot.adapters.gitlab.intake import GitLabIntake
from bot.adapters.gitlab.repository import GitLabRepository
from bot.adapters.kube.bindings import RoleBindingReader
from bot.adapters.kube.mapping import to_snapshot
from bot.adapters.kube.pods import PodReader
from bot.adapters.kube.schema import KubeSchemaValidator
from bot.adapters.kube.watcher import KubeWatcher, ListedPage, ListEnded, ObjectEvent
from bot.adapters.slack.actions import Actions
from bot.adapters.slack.blocks.access import AccessBlocks
from bot.adapters.slack.blocks.autopilot import AutopilotBlocks
from bot.adapters.slack.blocks.dora import DoraBlocks
from bot.adapters.slack.blocks.home import HomeBlocks
from bot.adapters.slack.blocks.locks import LockBlocks
from bot.adapters.slack.blocks.pipelines import PipelineBlocks
from bot.adapters.slack.blocks.releases import ReleaseBlocks
from bot.adapters.slack.blocks.rollouts import RolloutBlocks
from bot.adapters.slack.bolt_app import aiohttp_handler, build_bolt_app, register_fallbacks
from bot.adapters.slack.commands import Commands
from bot.adapters.slack.dora import DoraAnswers
from bot.adapters.slack.files import WAIT_FOR_MESSAGE, SlackFiles
from bot.adapters.slack.home import SlackHome
from bot.adapters.slack.outbox import SlackOutbox
from bot.adapters.slack.people import SlackPeople
from bot.adapters.slack.whatsinprod import WhatsInProd
from bot.adapters.store.access import RedisGrantStore
from bot.adapters.store.audit import RedisAuditLog
from bot.adapters.store.autopilot import RedisAutopilotStore
from bot.adapters.store.connection import Store, open_store
from bot.adapters.store.dora import RedisDeploymentStore
from bot.adapters.store.failures import RedisFailureLog
from bot.adapters.store.inbox import RedisInbox, stream_name
from bot.adapters.store.inventory import RedisInventoryCache
from bot.adapters.store.leases import Lease, lead
from bot.adapters.store.locks import RedisLockStore
from bot.adapters.store.pipelines import RedisPipelineStore
from bot.adapters.store.releases import RedisReleaseStore
from bot.adapters.store.rollouts import RedisRolloutStore
from bot.adapters.store.shares import RedisShares
from bot.adapters.store.streams import Entry, StreamConsumer
from bot.adapters.store.throttle import RedisThrottle
from bot.domain.errors import PitcrewError
from bot.domain.release_flow import Deadlines
from bot.domain.relisting import Listing, workload_key
from bot.services.access import AccessService
from bot.services.autopilot import TICK_EVERY, Autopilot
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder, CatalogSource
from bot.services.home import HomeService
from bot.services.insights import RECONCILE_EVERY as INSIGHTS_RECONCILE_EVERY
from bot.services.insights import TICK_EVERY as INSIGHTS_TICK
from bot.services.insights import Insights
from bot.services.inventory import InventoryService
from bot.services.locks import LockService
from bot.services.periodic import every
from bot.services.pipelines import PipelineNotifier
from bot.services.releases import ReleaseService
from bot.services.releases.engine import ReleaseEngine
from bot.services.rollouts import RolloutNotifier
from bot.settings import Settings
from bot.web import build_web_app

log = logs.get(__name__)

CATALOG_REFRESH = 300.0
PROGRESS_DEADLINE = 600
"""Seconds without progress before a StatefulSet or DaemonSet rollout fails (Deployments carry
their own ``progressDeadlineSeconds``)."""
STOP_TIMEOUT = 10.0
GITLAB_BATCH = 1000
"""Stream entries the GitLab worker reads and handles at once (XREADGROUP COUNT): under load,
one round trip per step serves hundreds of events; when traffic is light a read returns what
there is, one entry included."""


class StartupError(PitcrewError):
    """Start-up cannot go on; the message says why in one line."""


async def _within(step: str, closing: Awaitable[None]) -> None:
    """One step of stopping, given ``STOP_TIMEOUT``: a stuck close is logged, never waited
    for (Kubernetes would kill the pod at the end of its grace period anyway)."""
    try:
        await asyncio.wait_for(closing, timeout=STOP_TIMEOUT)
    except TimeoutError:
        log.error("stopping took too long; going on", step=step, seconds=STOP_TIMEOUT)


def _report_stopped(task: asyncio.Task[None]) -> None:
    """A worker runs until cancelled; one that ends otherwise leaves /readyz failing: say why."""
    if not task.cancelled() and task.exception() is not None:
        log.error("worker stopped", worker=task.get_name(), exc_info=task.exception())


def instance_name() -> str:
    """Unique per bot: two bots of one process (tests, the demo) must not share leases or a
    consumer name (``id(object())`` did: a freed object's address comes back)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Pitcrew:
    """One running bot: HTTP server, outbox sender, catalog refresher."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "0.0.0.0",
        port: int | None = None,
        outbox_pacing: float = 1.0,
        lease_ttl: float = 10.0,
        catalog_source: CatalogSource | None = None,
        release_sweep_every: float | None = None,
        autopilot_tick: float = TICK_EVERY,
        insights_tick: float = INSIGHTS_TICK,
        insights_reconcile_every: float = INSIGHTS_RECONCILE_EVERY,
        upload_wait: float = WAIT_FOR_MESSAGE,
        claim_idle: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.instance = instance_name()
        self._host = host
        self._port = settings.port if port is None else port
        self._outbox_pacing = outbox_pacing
        self._lease_ttl = lease_ttl
        self._catalog_source = catalog_source
        self._release_sweep_every = release_sweep_every
        self._autopilot_tick = autopilot_tick
        self._insights_tick = insights_tick
        self._insights_reconcile_every = insights_reconcile_every
        self._upload_wait = upload_wait
        self._claim_idle = claim_idle
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._socket_mode: Any = None
        self.store: Store | None = None
        self.outbox: SlackOutbox | None = None
        self.catalog: CatalogHolder | None = None
        self.slack: AsyncWebClient | None = None
        self.bound_port: int | None = None
        self.gitlab_worker: StreamConsumer | None = None
        self.locks: LockService | None = None
        self.rollouts: RolloutNotifier | None = None
        self.watchers: list[KubeWatcher] = []
        self.gitlab: GitLabRepository | None = None
        self.inventory: InventoryService | None = None
        self.releases: ReleaseService | None = None
        self.access: AccessService | None = None
        self.home: HomeService | None = None
        self.autopilot: Autopilot | None = None
        self.insights: Insights | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bound_port}"

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_stopped)
        self._tasks.append(task)

    def _catalog_source_from_settings(self, gitlab: GitLabRepository) -> CatalogSource:
        if self._catalog_source is not None:
            return self._catalog_source
        if self.settings.catalog_path is None:
            return GitLabCatalogSource(gitlab, project=self.settings.gitops_project)
        return FileCatalogSource(self.settings.catalog_path)

    async def start(self) -> None:
        settings = self.settings
        self.gitlab = GitLabRepository(
            url=str(settings.gitlab_url),
            token=settings.gitlab_token.get_secret_value(),
            gitops_project=settings.gitops_project,
            branch=settings.gitops_branch,
        )
        self.catalog = CatalogHolder(self._catalog_source_from_settings(self.gitlab))
        try:
            await self.catalog.reload()
        except PitcrewError as exc:
            # One line per problem, each saying where it comes from.
            lines = str(exc).splitlines() or [str(exc)]
            raise StartupError("\n".join(f"catalog: {line}" for line in lines)) from exc

        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        try:
            self.store = await asyncio.to_thread(
                open_store,
                redis_url=redis_url,
                state_dir=settings.state_dir,
                min_replicas=settings.redis_min_replicas,
            )
        except PitcrewError as exc:  # REDIS_URL unusable, the embedded server would not start
            raise StartupError(str(exc)) from exc
        if not await self.store.ping():
            raise StartupError(f"Redis at {self.store.url_for_display} is not reachable")
        log.info("store ready", redis=self.store.url_for_display, topology=self.store.topology)
        replication = self.store.replication
        if replication.required:
            online = await self.store.replicas_online()
            if online is not None and online < replication.replicas:
                log.warning(
                    "fewer Redis replicas online than REDIS_MIN_REPLICAS: webhooks get 503 and "
                    "commands 'try again' until they are back",
                    online=online,
                    required=replication.replicas,
                )

        self.slack = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
            timeout=15,
            retry_handlers=[],  # the outbox decides about retries, so a post is never doubled
            # One session for every call: without it the SDK opens (and closes) a connection,
            # a TLS handshake in production, per call. stop() closes it.
            session=ClientSession(timeout=ClientTimeout(total=15)),
        )
        self.outbox = SlackOutbox(
            self.store.redis, self.slack, pacing=self._outbox_pacing, durability=replication
        )
        intake = GitLabIntake(
            RedisInbox(self.store.redis, replication=replication),
            secret=settings.gitlab_webhook_secret.get_secret_value(),
        )
        signing_secret = (
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        )
        bolt = build_bolt_app(
            client=self.slack, signing_secret=None if settings.socket_mode else signing_secret
        )
        self._inventory_cache = RedisInventoryCache(self.store.redis)
        self.inventory = InventoryService(
            catalog=self.catalog,
            files=GitOpsFilesFromGitLab(self.gitlab),
            cache=self._inventory_cache,
            clock=self._clock,
        )
        people = SlackPeople(self.store.redis, self.slack)
        throttle = RedisThrottle(self.store.redis)
        audit = RedisAuditLog(self.store.redis)
        self._failures = RedisFailureLog(self.store.redis)
        self.locks = LockService(
            catalog=self.catalog,
            store=RedisLockStore(self.store.redis),
            outbox=self.outbox,
            audit=audit,
            views=LockBlocks(),
            clock=self._clock,
        )
        try:
            validator = KubeSchemaValidator(settings.kubernetes_version)
        except PitcrewError as exc:
            raise StartupError(str(exc)) from exc
        self.releases = ReleaseService(
            catalog=self.catalog,
            store=RedisReleaseStore(self.store.redis),
            repo=GitOpsReleasesFromGitLab(self.gitlab),
            validator=validator,
            outbox=self.outbox,
            people=people,
            locks=self.locks,
            audit=audit,
            views=ReleaseBlocks(),
            watched_envs=frozenset(settings.kube_contexts),
            deadlines=Deadlines(
                expiry=timedelta(hours=settings.release_expiry_hours),
                pipeline_wait=timedelta(seconds=settings.release_pipeline_wait),
                rollout_wait=timedelta(seconds=settings.release_rollout_wait),
            ),
            clock=self._clock,
            failures=self._failures,
            **(
                {"sweep_every": self._release_sweep_every}
                if self._release_sweep_every is not None
                else {}
            ),
        )
        self.locks.when_unlocked(self.releases.on_unlocked)
        self.access = AccessService(
            catalog=self.catalog,
            store=RedisGrantStore(self.store.redis),
            repo=GitOpsReleasesFromGitLab(self.gitlab),
            validator=validator,
            outbox=self.outbox,
            people=people,
            audit=audit,
            views=AccessBlocks(),
            deadlines=Deadlines(
                expiry=timedelta(hours=settings.release_expiry_hours),
                pipeline_wait=timedelta(seconds=settings.release_pipeline_wait),
                rollout_wait=timedelta(seconds=settings.release_rollout_wait),
            ),
            watched_envs=frozenset(settings.kube_contexts),
            bindings=RoleBindingReader(
                contexts=settings.kube_contexts, kubeconfig=settings.kubeconfig
            )
            if settings.kube_contexts
            else None,
            clock=self._clock,
            **(
                {"sweep_every": self._release_sweep_every}
                if self._release_sweep_every is not None
                else {}
            ),
        )
        whatsinprod = WhatsInProd(
            inventory=self.inventory,
            catalog=self.catalog,
            locks=self.locks,
            shares=RedisShares(self.store.redis),
            clock=self._clock,
        )
        self.locks.when_locked(self.releases.on_locked)
        self.autopilot = Autopilot(
            catalog=self.catalog,
            releases=self.releases,
            tags=AppTagsFromGitLab(self.gitlab),
            issues=IssuesFromGitLab(self.gitlab),
            store=RedisAutopilotStore(self.store.redis),
            freezer=self.locks,
            outbox=self.outbox,
            audit=audit,
            views=AutopilotBlocks(),
            reconcile_every=settings.autopilot_interval,
            tick_every=self._autopilot_tick,
            clock=self._clock,
        )
        self.releases.when_ended(self.autopilot.on_release_ended)
        self.insights = Insights(
            catalog=self.catalog,
            store=RedisDeploymentStore(self.store.redis),
            releases=self.releases,
            markers=RedisAutopilotStore(self.store.redis),
            outbox=self.outbox,
            views=DoraBlocks(),
            charts=DoraCharts(),
            uploads=SlackFiles(self.slack, self.outbox, wait_for_message=self._upload_wait),
            audit=audit,
            tick_every=self._insights_tick,
            reconcile_every=self._insights_reconcile_every,
            clock=self._clock,
        )
        self.releases.when_ended(self.insights.recorder.on_release_ended)
        dora = DoraAnswers(
            reports=self.insights.reports,
            shares=RedisShares(self.store.redis, namespace="dora"),
            views=DoraBlocks(),
        )
        Commands(
            outbox=self.outbox,
            people=people,
            audit=audit,
            once=throttle,
            locks=self.locks,
            whatsinprod=whatsinprod,
            releases=self.releases,
            access=self.access,
            dora=dora,
            durability=replication,
        ).register(bolt)
        home_tab = SlackHome(self.slack)
        self.home = HomeService(
            catalog=self.catalog,
            releases=self.releases,
            locks=self.locks,
            people=people,
            failures=self._failures,
            views=HomeBlocks(),
            publisher=home_tab,
            approvers=ReleaseEngine.approvers,
            clock=self._clock,
        )
        home_tab.register(bolt, draw=self.home.refresh)
        Actions(
            outbox=self.outbox,
            audit=audit,
            once=throttle,
            releases=self.releases,
            access=self.access,
            whatsinprod=whatsinprod,
            home=self.home.refresh,
            dora=dora,
            durability=replication,
        ).register(bolt)
        register_fallbacks(bolt, version=__version__)
        web_app = build_web_app(
            slack_events=None if settings.socket_mode else aiohttp_handler(bolt),
            gitlab_webhook=intake.handle,
            readiness=self.readiness,
        )

        self._spawn(self.store.follow(), "store-follow")
        outbox_lease = Lease(
            self.store.redis, name="outbox", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(outbox_lease, self.outbox.run), "outbox")
        locks_lease = Lease(
            self.store.redis, name="locks", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(locks_lease, self.locks.run_sweeper), "lock-sweeper")
        releases_lease = Lease(
            self.store.redis, name="releases", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(releases_lease, self.releases.run_sweeper), "release-sweeper")
        autopilot_lease = Lease(
            self.store.redis, name="autopilot", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(autopilot_lease, self.autopilot.run), "autopilot")
        access_lease = Lease(
            self.store.redis, name="access", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(access_lease, self.access.run_sweeper), "access-sweeper")
        insights_lease = Lease(
            self.store.redis, name="insights", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(insights_lease, self.insights.run), "insights")
        pipelines = PipelineNotifier(
            catalog=self.catalog,
            store=RedisPipelineStore(self.store.redis),
            outbox=self.outbox,
            people=people,
            throttle=throttle,
            views=PipelineBlocks(),
            gitops_project=settings.gitops_project,
            failures=self._failures,
        )
        gitlab_events = GitLabEvents(
            pipelines=pipelines,
            gitops_project=settings.gitops_project,
            gitops_pushes=[self.catalog, self.inventory],  # the catalog first: it names the apps
            releases=self.releases,
            tags=self.autopilot,
            access=self.access,
        )
        inventory_lease = Lease(
            self.store.redis, name="inventory", owner=self.instance, ttl=self._lease_ttl
        )
        self._spawn(lead(inventory_lease, self.inventory.run_refresher), "inventory")

        def stored(entry: Entry) -> Stored:
            return Stored(entry.text("kind"), entry.fields.get("body", b""), entry.id)

        async def on_gitlab_event(entry: Entry) -> None:
            await gitlab_events.handle_many([stored(entry)])

        async def on_gitlab_events(entries: list[Entry]) -> None:
            await gitlab_events.handle_many([stored(entry) for entry in entries])

        self.gitlab_worker = StreamConsumer(
            self.store.redis,
            stream=stream_name("gitlab"),
            group="notifications",
            consumer=self.instance,
            handler=on_gitlab_event,
            batch_handler=on_gitlab_events,
            batch=GITLAB_BATCH,
            claim_idle=self._claim_idle,  # after that, a dead replica's events are taken over
        )
        await self.gitlab_worker.ensure_group()  # readiness and lag are meaningful from the start
        self._spawn(self.gitlab_worker.run(), "gitlab-events")
        self._spawn(self._refresh_catalog(), "catalog-refresh")
        if settings.kube_contexts:
            self._watch_kubernetes()
        else:
            log.info("KUBE_CONTEXTS is unset: rollout watching is off")

        self._runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(
                f"cannot listen on port {self._port}: {reason} (setting PORT)"
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("pitcrew serving", port=self.bound_port, instance=self.instance)

        if settings.socket_mode and settings.slack_app_token is not None:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            self._socket_mode = AsyncSocketModeHandler(
                bolt, settings.slack_app_token.get_secret_value()
            )
            self._spawn(self._connect_socket_mode(), "socket-mode")

    async def _connect_socket_mode(self) -> None:
        """Connect, retrying with back-off: Slack being down at start must not stop the bot.
        Once connected, the Socket Mode client reconnects by itself; this task then idles."""
        backoff = 1.0
        while True:
            try:
                await self._socket_mode.connect_async()
                log.info("slack socket mode connected")
                break
            except Exception as exc:  # the SDK raises several kinds; all mean "try again"
                log.warning("slack socket mode connection failed; retrying", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
        await asyncio.Event().wait()

    def _watch_kubernetes(self) -> None:
        """Rollouts are watched and reported by one replica at a time: the lease holder."""
        assert self.store is not None
        assert self.outbox is not None
        assert self.catalog is not None
        settings = self.settings
        contexts = settings.kube_contexts  # env → kube context
        self.rollouts = RolloutNotifier(
            catalog=self.catalog,
            store=RedisRolloutStore(self.store.redis),
            outbox=self.outbox,
            views=RolloutBlocks(),
            envs={context: env for env, context in contexts.items()},
            live=self._inventory_cache,
            followers=[self.releases] if self.releases is not None else [],
            offers=self.releases,
            failures=self._failures,
            outside=self.insights.recorder if self.insights is not None else None,
            pods={
                context: PodReader(context=context, kubeconfig=settings.kubeconfig)
                for context in contexts.values()
            },
            clock=self._clock,
        )
        self.watchers = [
            KubeWatcher(
                context=context,
                kubeconfig=settings.kubeconfig,
                label_selector=settings.kube_label_selector,
            )
            for context in contexts.values()
        ]
        rollouts = self.rollouts

        async def on_object(event: ObjectEvent) -> None:
            meta = event.obj.get("metadata") or {}
            key = f"{event.context}/{event.kind}/{meta.get('namespace')}/{meta.get('name')}"
            try:
                snapshot = to_snapshot(
                    event.obj,
                    kind=event.kind,
                    context=event.context,
                    observed_at=self._clock(),
                    deadline=PROGRESS_DEADLINE,
                )
                if event.type == "DELETED":
                    await rollouts.removed(snapshot)
                    return
                await rollouts.observe(snapshot)
            except Exception:  # one odd object must not stop the watch
                reraise_if_cancelling()
                log.exception("workload event failed", workload=key, type=event.type)

        async def on_listed(page: ListedPage) -> None:
            observed_at = self._clock()
            snapshots = []
            for obj in page.objs:
                try:
                    snapshots.append(
                        to_snapshot(
                            obj,
                            kind=page.kind,
                            context=page.context,
                            observed_at=observed_at,
                            deadline=PROGRESS_DEADLINE,
                        )
                    )
                except Exception:  # one odd object must not stop the watch
                    reraise_if_cancelling()
                    meta = obj.get("metadata") or {}
                    key = f"{page.context}/{page.kind}/{meta.get('namespace')}/{meta.get('name')}"
                    log.exception("workload event failed", workload=key, type="LISTED")
            await rollouts.observe_many(snapshots)

        async def on_list_ended(ended: ListEnded) -> None:
            # Remembered but no longer listed: deleted while nobody watched.
            listing = Listing(
                context=ended.context,
                kind=ended.kind,
                present=frozenset(
                    workload_key(context=ended.context, kind=ended.kind, namespace=ns, name=name)
                    for ns, name in ended.present
                ),
                complete=True,  # the watcher hands over the end of complete lists only
                selector=ended.label_selector,
            )
            try:
                await rollouts.relisted(listing)
            except Exception:  # the watch goes on; the next list judges again
                reraise_if_cancelling()
                log.exception("workloads gone while unwatched not judged", kind=ended.kind)

        async def watch_all() -> None:
            await asyncio.gather(
                *(watcher.run(on_object, on_listed, on_list_ended) for watcher in self.watchers),
                rollouts.run_ticker(),
            )

        lease = Lease(self.store.redis, name="kubernetes", owner=self.instance, ttl=self._lease_ttl)
        self._spawn(lead(lease, watch_all), "kubernetes")

    async def _refresh_catalog(self) -> None:
        catalog = self.catalog
        assert catalog is not None

        async def reload() -> None:
            try:
                await catalog.reload()
            except PitcrewError as exc:  # an invalid catalog is an error someone must fix
                log.error("catalog refresh failed; the last valid catalog stays", error=str(exc))

        await every(CATALOG_REFRESH, reload, what="catalog refresh", wait_first=True)

    async def readiness(self) -> Mapping[str, bool]:
        store_ok = self.store is not None and await self.store.ping()
        workers_ok = bool(self._tasks) and all(not t.done() for t in self._tasks)
        return {"redis": store_ok, "workers": workers_ok}

    async def stop(self) -> None:
        if self._socket_mode is not None:
            with contextlib.suppress(Exception):
                await _within("socket mode", self._socket_mode.close_async())
        if self._runner is not None:
            await _within("web server", self._runner.cleanup())
            self._runner = None
        for task in self._tasks:
            task.cancel()
        for watcher in self.watchers:  # its threads end now, whatever its task is doing
            watcher.stop()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:  # a bug, but shutdown must not hang on it
                log.error(
                    "worker did not stop in time",
                    worker=task.get_name(),
                    stack="".join(str(f) for f in task.get_stack(limit=5)),
                )
        self._tasks.clear()
        await asyncio.sleep(0)  # cancelled Redis calls close their connections
        if self.slack is not None:
            session = getattr(self.slack, "session", None)
            if session is not None:
                await _within("slack client", session.close())
        if self.gitlab is not None:
            self.gitlab.close()
            self.gitlab = None
        if self.store is not None:
            await _within("store", self.store.close())
            self.store = None
        # A Redis call cancelled mid-flight closes its connection without waiting; let those
        # closes run before the loop may end, so no socket is left to the garbage collector.
        await asyncio.sleep(0.05)

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly (Kubernetes sends SIGTERM)."""
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        # What start-up made (modules, the catalog, clients) lives as long as the process:
        # out of the collector's sight, so that its full collections, which the first list
        # of thousands of workloads triggers, walk only what is new (about 1 s less CPU).
        gc.freeze()
        try:
            await stop.wait()
        finally:
            log.info("pitcrew stopping")
            await self.stop()
