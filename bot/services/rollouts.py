"""Rollout notifications: one Slack message per rollout, in the owning team's channel.

The watcher (on the leader only) hands every workload snapshot to ``observe``. The pure state
machine (``bot.domain.rollouts``) decides what happened; the state is committed by
compare-and-set before anything is announced, so a restart replays nothing already reported, and
a rollout that finished while the bot was down is reported when the re-list shows it.

Messages are keyed ``rollout:<id>`` (id: context/kind/namespace/name/generation) and sent with
the workload's ``resourceVersion`` as their version, so an older state never overwrites a newer
one. The new pods' problems go in one reply that is updated as they change, and a recovery after
a failure gets its own reply, broadcast to the channel.

Rollouts in progress (or failed) are also ticked every few seconds: their new pods are read,
which both finds the problems to show and serves as the clock for StatefulSet and DaemonSet
deadlines, whose status stops changing once they are stuck.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from bot import logs, metrics
from bot.domain.catalog import App
from bot.domain.inventory import Live
from bot.domain.rollouts import (
    Happening,
    PodProblem,
    PodsObserved,
    Rollout,
    Transition,
    Workload,
    WorkloadSnapshot,
    observe,
    observe_pods,
    owner,
)
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import Outbox, OutgoingMessage, Rendered

log = logs.get(__name__)

MAX_RACES = 20
TICK_EVERY = 10.0


class RolloutStore(Protocol):
    async def load(self, key: str) -> tuple[Workload | None, int]: ...

    async def save(self, workload: Workload, *, expected: int, active: bool) -> bool: ...

    async def forget(self, key: str) -> None: ...

    async def active(self) -> list[str]: ...


class PodSource(Protocol):
    async def problems(self, *, kind: str, namespace: str, name: str) -> list[PodProblem]: ...


class LiveSink(Protocol):
    async def put_live(self, live: Live) -> None: ...


class RolloutFollower(Protocol):
    """Something that follows rollouts beyond their own message: the release they deploy."""

    async def on_rollout(
        self, *, app: str, env: str, rollout: Rollout, what: Happening
    ) -> None: ...


class RolloutViews(Protocol):
    def rollout(self, rollout: Rollout, *, app: str, env: str) -> Rendered: ...

    def problems(self, problems: Sequence[PodProblem]) -> Rendered: ...

    def recovered(self, rollout: Rollout, *, app: str, env: str) -> Rendered: ...


class RolloutNotifier:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: RolloutStore,
        outbox: Outbox,
        views: RolloutViews,
        envs: Mapping[str, str],
        pods: Mapping[str, PodSource],
        live: LiveSink | None = None,
        followers: Sequence[RolloutFollower] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._outbox = outbox
        self._views = views
        self._envs = envs
        """kube context → environment name."""
        self._pods = pods
        self._live = live
        self._followers = followers
        self._clock = clock
        self._owners: dict[str, str] = {}
        """Workload key → app, as routed when last observed (pods ticks have no labels)."""

    async def observe(self, snapshot: WorkloadSnapshot) -> None:
        app = owner(snapshot, self._catalog.current)
        if app is None:
            metrics.EVENTS_UNROUTED.labels("kubernetes").inc()
            return
        self._owners[snapshot.key] = app.name
        if self._live is not None:
            # /whatsinprod's live column: what runs, whatever a rollout is doing.
            await self._live.put_live(
                Live(
                    app=app.name,
                    env=self._envs.get(snapshot.context, snapshot.context),
                    ready=snapshot.ready,
                    desired=snapshot.replicas,
                    images=tuple(c.image for c in snapshot.containers),
                    observed_at=snapshot.observed_at,
                )
            )
        transition = await self._commit(snapshot.key, lambda state: observe(state, snapshot))
        if transition is not None:
            await self._announce(transition, app=app)

    async def forget(self, key: str) -> None:
        """The workload was deleted: a workload re-created later starts afresh."""
        await self._store.forget(key)

    async def tick(self) -> None:
        """Read the new pods of every rollout in progress or failed."""
        for key in await self._store.active():
            state, _ = await self._store.load(key)
            if state is None or state.current is None:
                continue
            rollout = state.current
            source = self._pods.get(state.context)
            if source is None:
                continue
            try:
                problems = await source.problems(
                    kind=state.kind, namespace=state.namespace, name=state.name
                )
            except Exception as exc:  # the cluster may be briefly unreachable; next tick
                reraise_if_cancelling()
                log.warning("reading new pods failed", workload=key, error=repr(exc))
                continue
            observation = PodsObserved(
                rollout_id=rollout.id, problems=tuple(problems), observed_at=self._clock()
            )
            app = self._app_of(state)

            def step(s: Workload | None, o: PodsObserved = observation) -> Transition | None:
                return observe_pods(s, o) if s is not None else None

            transition = await self._commit(key, step)
            if transition is not None and app is not None:
                await self._announce(transition, app=app)

    async def run_ticker(self) -> None:
        await every(TICK_EVERY, self.tick, what="rollout tick")

    # ------------------------------------------------------------------ internals

    async def _commit(
        self, key: str, step: Callable[[Workload | None], Transition | None]
    ) -> Transition | None:
        for _ in range(MAX_RACES):
            state, version = await self._store.load(key)
            transition = step(state)
            if transition is None or not transition.advanced:
                return None
            current = transition.state.current
            active = current is not None and current.phase in ("progressing", "failed")
            if await self._store.save(transition.state, expected=version, active=active):
                return transition
        log.warning("rollout state kept changing; observation dropped", workload=key)
        return None

    def _app_of(self, state: Workload) -> App | None:
        catalog = self._catalog.current
        name = self._owners.get(state.key)
        if name is not None and name in catalog.app_names:
            return catalog.app(name)
        return catalog.app_for_namespace(state.namespace)

    async def _announce(self, transition: Transition, *, app: App) -> None:
        state = transition.state
        env = self._envs.get(state.context, state.context)
        channel = self._catalog.current.channel_for_app(app)
        version = int(state.resource_version) if state.resource_version.isdigit() else None
        for announcement in transition.announcements:
            rollout = announcement.rollout
            key = f"rollout:{rollout.id}"
            metrics.ROLLOUTS.labels(announcement.what).inc()
            if (
                announcement.what in ("succeeded", "failed")
                and rollout.started_at is not None
                and rollout.finished_at is not None
            ):
                metrics.ROLLOUT_DURATION.labels(announcement.what).observe(
                    (rollout.finished_at - rollout.started_at).total_seconds()
                )
            text, blocks = self._views.rollout(rollout, app=app.name, env=env)
            await self._outbox.send(
                OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks),
                version=version,
            )
            if announcement.what in ("failed", "problems") and rollout.problems:
                text, blocks = self._views.problems(rollout.problems)
                await self._outbox.send(
                    OutgoingMessage(
                        key=f"{key}:problems",
                        channel=channel,
                        text=text,
                        blocks=blocks,
                        thread_key=key,
                    ),
                    version=version,
                )
            for follower in self._followers:
                try:
                    await follower.on_rollout(
                        app=app.name, env=env, rollout=rollout, what=announcement.what
                    )
                except Exception:  # the rollout's own message is sent; a release thread can lag
                    reraise_if_cancelling()
                    log.exception("a rollout follower failed", rollout=rollout.id)
            if announcement.what == "recovered":
                text, blocks = self._views.recovered(rollout, app=app.name, env=env)
                await self._outbox.send(
                    OutgoingMessage(
                        key=f"{key}:recovered",
                        channel=channel,
                        text=text,
                        blocks=blocks,
                        thread_key=key,
                        broadcast=True,
                    ),
                    version=version,
                )
