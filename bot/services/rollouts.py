"""Rollout notifications: one Slack message per rollout, in the owning team's channel.

The watcher (on the leader only) hands every workload snapshot to ``observe``. The pure state
machine (``bot.domain.rollouts``) decides what happened; the state is committed by
compare-and-set before anything is announced, so a restart replays nothing already reported, and
a rollout that finished while the bot was down is reported when the re-list shows it.

One story per change: a rollout that a release follows (the release of that version, merged,
in that app and env) is told in the release's message and thread only. The followers are asked
first, and a rollout none of them explains gets its own message (applied by hand, by another
tool). Once a rollout has a message of its own, it keeps it to the end, so that nobody is left
reading a message that stopped moving.

Messages are keyed ``rollout:<id>`` (id: context/kind/namespace/name/generation) and sent with
the workload's ``resourceVersion`` as their version, so an older state never overwrites a newer
one. A failure gets one reply, updated as new problems appear: the new pods' problems, read at
the moment it failed, and a Roll back button when the version it replaced is known. A recovery
after a failure gets its own reply, broadcast to the channel.

A workload deleted from the cluster (an undeploy merged and pruned, or someone with kubectl) is
said once in the app's channel — in the thread of the undeploy that removed it, when one did
(one story per change again) — and leaves ``/whatsinprod``'s live column. The watch says so by
a ``DELETED`` event; a workload deleted while nobody watched (every replica down, the watch
broken) is missing from the next complete list instead, and ``relisted`` tells it the same way.

Rollouts in progress (or failed) are also ticked every few seconds: their new pods are read,
which both finds the problems to show and serves as the clock for StatefulSet and DaemonSet
deadlines, whose status stops changing once they are stuck.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot import logs, metrics
from bot.domain.catalog import App
from bot.domain.home import RecentFailure
from bot.domain.inventory import Live
from bot.domain.releases import RollbackOffer
from bot.domain.relisting import Listing, gone
from bot.domain.rollouts import (
    Happening,
    PodProblem,
    PodsObserved,
    Rollout,
    Transition,
    Workload,
    WorkloadSnapshot,
    last_seen,
    needs_pods,
    observe,
    observe_pods,
    owner,
    rollback_version,
    version_change,
    with_problems,
)
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import FailureLog, Outbox, OutgoingMessage, Rendered

log = logs.get(__name__)

MAX_RACES = 20
TICK_EVERY = 10.0


class RolloutStore(Protocol):
    async def load(self, key: str) -> tuple[Workload | None, int]: ...

    async def save(self, workload: Workload, *, expected: int, active: bool) -> bool: ...

    async def load_many(self, keys: Sequence[str]) -> list[tuple[Workload | None, int]]:
        """``load`` of each key, in one batch."""
        ...

    async def save_many(self, saves: Sequence[Save]) -> list[bool]:
        """``save`` of each, in one batch (each its own compare-and-set)."""
        ...

    async def forget(self, key: str, *, context: str, kind: str) -> None: ...

    async def known(self, *, context: str, kind: str) -> list[str]:
        """The keys of the workloads of ``kind`` in ``context`` with a stored state."""
        ...

    async def unindex(self, keys: Sequence[str], *, context: str, kind: str) -> None:
        """Drop from ``known`` keys whose state is gone (expired)."""
        ...

    async def active(self) -> list[str]: ...

    async def keep_own_message(self, rollout_id: str) -> None:
        """This rollout was given a message of its own: it keeps it to the end."""
        ...

    async def has_own_message(self, rollout_id: str) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Save:
    """One compare-and-set of a batch: store ``workload`` if its version is still
    ``expected``; ``active``: its rollout is in progress or failed (the ticker reads it)."""

    workload: Workload
    expected: int
    active: bool


class PodSource(Protocol):
    async def problems(self, *, kind: str, namespace: str, name: str) -> list[PodProblem]: ...


class LiveSink(Protocol):
    async def put_live(self, live: Live) -> None: ...

    async def put_live_many(self, lives: Sequence[Live]) -> None:
        """``put_live`` of each, in one batch."""
        ...

    async def drop_live(self, app: str, env: str) -> None:
        """The app's workload left ``env``: nothing runs there any more."""
        ...


class RolloutFollower(Protocol):
    """Something that follows rollouts beyond their own message: the release they deploy."""

    async def on_rollout(self, *, app: str, env: str, rollout: Rollout, what: Happening) -> bool:
        """Follow the rollout; ``True`` when a release tells its story (in its own thread)."""
        ...

    async def on_removed(self, *, app: str, env: str) -> bool:
        """The app's workload was deleted from ``env``; ``True`` when a release (the undeploy
        that removed it) tells it."""
        ...


class RollbackOffers(Protocol):
    async def offer_rollback(self, *, key: str, app: str, env: str, version: str) -> RollbackOffer:
        """A Roll back button's server-side record, the same one each time for ``key``."""
        ...


class OutsideRollouts(Protocol):
    """Hears of rollouts of a new version that no release explains, once they end: the
    deployment records (they count as deployments, or failed changes)."""

    async def on_outside_rollout(
        self,
        *,
        rollout_id: str,
        app: str,
        env: str,
        version: str,
        previous: str | None,
        started: datetime | None,
        ended: datetime,
        succeeded: bool,
    ) -> None: ...


class RolloutViews(Protocol):
    def rollout(self, rollout: Rollout, *, app: str, env: str) -> Rendered: ...

    def failure(
        self, rollout: Rollout, *, app: str, env: str, offer: RollbackOffer | None
    ) -> Rendered:
        """The failure reply: the new pods' problems, and the Roll back button."""
        ...

    def recovered(self, rollout: Rollout, *, app: str, env: str) -> Rendered: ...

    def removed(self, snapshot: WorkloadSnapshot, *, app: str, env: str) -> Rendered:
        """A workload deleted that no undeploy explains."""
        ...


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
        offers: RollbackOffers | None = None,
        failures: FailureLog | None = None,
        outside: OutsideRollouts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._outside = outside
        self._store = store
        self._outbox = outbox
        self._views = views
        self._envs = envs
        """kube context → environment name."""
        self._pods = pods
        self._live = live
        self._followers = followers
        self._offers = offers
        self._failures = failures
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
            await self._live.put_live(self._live_of(snapshot, app))
        await self._judge(snapshot, app)

    async def observe_many(self, snapshots: Sequence[WorkloadSnapshot]) -> None:
        """``observe`` of a page of a list, each of a different workload, in a few batches.

        At start every workload of the cluster is listed, and nearly all of them are quiet:
        seen before with the same ``resourceVersion``, or seen first and tracked without a
        word. Those are judged together (one batch to read their states, one to store the
        changed ones, each by its own compare-and-set). Anything to tell, a failure whose pods
        must be read first, or a compare-and-set lost to another writer goes through
        ``observe``'s own path, one at a time, exactly as a watch event does. If a batch fails
        (Redis briefly away), the page is judged one workload at a time instead.
        """
        catalog = self._catalog.current
        routed: list[tuple[WorkloadSnapshot, App]] = []
        for snapshot in snapshots:
            app = owner(snapshot, catalog)
            if app is None:
                continue
            self._owners[snapshot.key] = app.name
            routed.append((snapshot, app))
        if len(routed) < len(snapshots):
            metrics.EVENTS_UNROUTED.labels("kubernetes").inc(len(snapshots) - len(routed))
        if not routed:
            return
        try:
            one_by_one = await self._judge_quietly(routed)
        except Exception as exc:  # judged one at a time below, each on its own
            reraise_if_cancelling()
            log.warning(
                "judging listed workloads together failed; one at a time instead",
                workloads=len(routed),
                error=repr(exc),
            )
            one_by_one = [(snapshot, app, True) for snapshot, app in routed]
        for snapshot, app, put_live in one_by_one:
            try:
                if put_live and self._live is not None:
                    await self._live.put_live(self._live_of(snapshot, app))
                await self._judge(snapshot, app)
            except Exception:  # one odd workload must not stop the others
                reraise_if_cancelling()
                log.exception("workload event failed", workload=snapshot.key, type="LISTED")

    async def _judge_quietly(
        self, routed: Sequence[tuple[WorkloadSnapshot, App]]
    ) -> list[tuple[WorkloadSnapshot, App, bool]]:
        """Store what the quiet ones make of their states, in batches; the others are
        returned, to be judged one at a time (with whether their live state is still to
        write)."""
        if self._live is not None:
            await self._live.put_live_many([self._live_of(s, app) for s, app in routed])
        loaded = await self._store.load_many([s.key for s, _ in routed])
        later: list[tuple[WorkloadSnapshot, App, bool]] = []
        saves: list[tuple[WorkloadSnapshot, App, Save]] = []
        for (snapshot, app), (state, version) in zip(routed, loaded, strict=True):
            transition = observe(state, snapshot)
            if not transition.advanced:
                continue
            if transition.announcements or needs_pods(transition) is not None:
                later.append((snapshot, app, False))
                continue
            current = transition.state.current
            active = current is not None and current.phase in ("progressing", "failed")
            saves.append(
                (snapshot, app, Save(workload=transition.state, expected=version, active=active))
            )
        if saves:
            stored = await self._store.save_many([save for _, _, save in saves])
            # Lost to another writer meanwhile: judged again from what it stored.
            later.extend(
                (snapshot, app, False)
                for (snapshot, app, _), done in zip(saves, stored, strict=True)
                if not done
            )
        return later

    def _live_of(self, snapshot: WorkloadSnapshot, app: App) -> Live:
        return Live(
            app=app.name,
            env=self._envs.get(snapshot.context, snapshot.context),
            ready=snapshot.ready,
            desired=snapshot.replicas,
            images=tuple(c.image for c in snapshot.containers),
            observed_at=snapshot.observed_at,
        )

    async def _judge(self, snapshot: WorkloadSnapshot, app: App) -> None:
        transition = await self._commit(
            snapshot.key, lambda state: observe(state, snapshot), read_pods=True
        )
        if transition is not None:
            await self._announce(transition, app=app)

    async def removed(self, snapshot: WorkloadSnapshot) -> None:
        """The workload was deleted (its last state is ``snapshot``): forgotten (one re-created
        later starts afresh), out of the live column, and said once in the app's channel, by
        the undeploy that removed it if one did, else in a message of its own."""
        await self._store.forget(snapshot.key, context=snapshot.context, kind=snapshot.kind)
        self._owners.pop(snapshot.key, None)
        catalog = self._catalog.current
        app = owner(snapshot, catalog)
        if app is None:
            return
        env = self._envs.get(snapshot.context, snapshot.context)
        if self._live is not None:
            await self._live.drop_live(app.name, env)
        metrics.ROLLOUTS.labels("removed").inc()
        told = False
        for follower in self._followers:
            try:
                told = await follower.on_removed(app=app.name, env=env) or told
            except Exception:  # told on its own rather than not at all
                reraise_if_cancelling()
                log.exception("a follower failed on a removed workload", workload=snapshot.key)
        if told:
            return
        text, blocks = self._views.removed(snapshot, app=app.name, env=env)
        version = int(snapshot.resource_version) if snapshot.resource_version.isdigit() else None
        await self._outbox.send(
            OutgoingMessage(
                key=f"removed:{snapshot.key}:{snapshot.uid or snapshot.resource_version}",
                channel=catalog.channel_for_app(app),
                text=text,
                blocks=blocks,
            ),
            version=version,
        )

    async def relisted(self, listing: Listing) -> None:
        """A list of one kind in one context ended: the workloads remembered there that it no
        longer shows were deleted while nobody watched (every replica down, the watch broken),
        and are told exactly as a ``DELETED`` event would have told them (``removed``: the
        state is forgotten first, so a restart does not tell them again). Only the watcher
        (the lease holder) lists, so only it tells."""
        if not listing.complete:
            return
        absent = [
            key
            for key in await self._store.known(context=listing.context, kind=listing.kind)
            if key not in listing.present
        ]
        if not absent:
            return
        loaded = await self._store.load_many(absent)
        expired = [key for key, (state, _) in zip(absent, loaded, strict=True) if state is None]
        if expired:  # nothing remembered of them any more: nothing to tell
            await self._store.unindex(expired, context=listing.context, kind=listing.kind)
        states = [state for state, _ in loaded if state is not None]
        now = self._clock()
        for state in gone(known=states, listing=listing):
            log.info("workload gone while unwatched", workload=state.key)
            try:
                await self.removed(last_seen(state, at=now))
            except Exception:  # one odd workload must not keep the others from being told
                reraise_if_cancelling()
                log.exception("workload event failed", workload=state.key, type="GONE")

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
        self,
        key: str,
        step: Callable[[Workload | None], Transition | None],
        *,
        read_pods: bool = False,
    ) -> Transition | None:
        """Commit what ``step`` makes of the stored state; with ``read_pods``, a rollout that
        fails now has its new pods read first, so that its failure is told with its reasons."""
        pods: PodsObserved | None = None
        for _ in range(MAX_RACES):
            state, version = await self._store.load(key)
            transition = step(state)
            if transition is None or not transition.advanced:
                return None
            failing = needs_pods(transition) if read_pods else None
            if failing is not None:
                if pods is None or pods.rollout_id != failing.id:
                    pods = await self._read_pods(failing)
                if pods is not None:
                    transition = with_problems(transition, pods)
            current = transition.state.current
            active = current is not None and current.phase in ("progressing", "failed")
            if await self._store.save(transition.state, expected=version, active=active):
                return transition
        log.warning("rollout state kept changing; observation dropped", workload=key)
        return None

    async def _read_pods(self, rollout: Rollout) -> PodsObserved | None:
        source = self._pods.get(rollout.context)
        if source is None:
            return None
        try:
            problems = await source.problems(
                kind=rollout.kind, namespace=rollout.namespace, name=rollout.name
            )
        except Exception as exc:  # told without reasons rather than not told; the tick retries
            reraise_if_cancelling()
            log.warning("reading new pods failed", rollout=rollout.id, error=repr(exc))
            return None
        return PodsObserved(
            rollout_id=rollout.id, problems=tuple(problems), observed_at=self._clock()
        )

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
            told, explained = await self._told_by_a_release(
                rollout, app=app.name, env=env, what=announcement.what
            )
            if not explained and announcement.what in ("succeeded", "failed", "recovered"):
                await self._record_outside(rollout, app=app, env=env, what=announcement.what)
            if told:
                continue
            text, blocks = self._views.rollout(rollout, app=app.name, env=env)
            await self._outbox.send(
                OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks),
                version=version,
            )
            if announcement.what == "failed":
                await self._record_failure(rollout, app=app, env=env)
            if announcement.what in ("failed", "problems"):
                offer = await self._offer(rollout, app=app, env=env)
                text, blocks = self._views.failure(rollout, app=app.name, env=env, offer=offer)
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

    async def _told_by_a_release(
        self, rollout: Rollout, *, app: str, env: str, what: Happening
    ) -> tuple[bool, bool]:
        """Feed the followers; ``(told, explained)``: a release explains this rollout, and
        tells it when it has no message of its own yet (else it gets one, and keeps it)."""
        explained = False
        for follower in self._followers:
            try:
                explained = (
                    await follower.on_rollout(app=app, env=env, rollout=rollout, what=what)
                    or explained
                )
            except Exception:  # told on its own rather than not at all
                reraise_if_cancelling()
                log.exception("a rollout follower failed", rollout=rollout.id)
        if explained and not await self._store.has_own_message(rollout.id):
            return True, True
        await self._store.keep_own_message(rollout.id)
        return False, explained

    async def _record_outside(
        self, rollout: Rollout, *, app: App, env: str, what: Happening
    ) -> None:
        """A rollout no release explains ended: a deployment of its new version (or a failed
        change) done outside Pitcrew. A restart or a sidecar's change is no deployment."""
        change = version_change(rollout, image=app.image)
        if self._outside is None or change is None:
            return
        previous, version = change
        try:
            await self._outside.on_outside_rollout(
                rollout_id=rollout.id,
                app=app.name,
                env=env,
                version=version,
                previous=previous,
                started=rollout.started_at,
                ended=rollout.finished_at or self._clock(),
                succeeded=what != "failed",
            )
        except Exception:  # the notification goes on whatever the record makes of it
            reraise_if_cancelling()
            log.exception("an outside rollout was not recorded", rollout=rollout.id)

    async def _record_failure(self, rollout: Rollout, *, app: App, env: str) -> None:
        """For the App Home of the team's people; never holds the notification up."""
        if self._failures is None:
            return
        versions = sorted({c.new_version for c in rollout.changes or rollout.images})
        try:
            await self._failures.record(
                RecentFailure(
                    key=f"rollout:{rollout.id}",
                    team=app.team,
                    kind="rollout",
                    title=f"{app.name} {', '.join(versions)} in {env}".replace("  ", " "),
                    reason=rollout.reason or rollout.message,
                    at=rollout.finished_at or self._clock(),
                )
            )
        except Exception:
            reraise_if_cancelling()
            log.exception("a rollout failure was not recorded for the App Home", rollout=rollout.id)

    async def _offer(self, rollout: Rollout, *, app: App, env: str) -> RollbackOffer | None:
        """The Roll back button of a failed rollout: to the version it replaced, if known."""
        version = rollback_version(rollout, image=app.image)
        if version is None or self._offers is None:
            return None
        try:
            return await self._offers.offer_rollback(
                key=f"rollout:{rollout.id}", app=app.name, env=env, version=version
            )
        except Exception:  # the reasons are told without the button rather than not at all
            reraise_if_cancelling()
            log.exception("a Roll back button could not be stored", rollout=rollout.id)
            return None
