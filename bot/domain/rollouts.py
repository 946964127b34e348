"""Kubernetes rollouts as Pitcrew reports them: one message per rollout, told once, never replayed.

The watcher only sees objects, not intentions: a stream of Deployments, StatefulSets and
DaemonSets, each a ``WorkloadSnapshot``, delivered again after every reconnect, re-list and bot
restart. ``observe`` folds each snapshot into a ``Workload`` state (kept in Redis by the service)
and says in its ``Transition`` what to announce. The rules, in the order they apply:

1. **Order.** Snapshots are ordered by ``resourceVersion``: compared as integers when both are
   (as every API server writes them), and a snapshot that is not newer than the state changes
   nothing. Duplicates, replays after a reconnect and the re-list after a 410 are all this case.
   An opaque, non-numeric resourceVersion that differs is taken as newer (it cannot be ordered).
   A different ``uid`` (the object was deleted and created again) starts the workload afresh.
2. **A rollout is a new pod template.** It starts when the generation is above the last one
   seen *and* the pod template differs (``template_hash``, computed by the adapter from
   ``spec.template``). A generation bump alone is a scale or a strategy edit, not a rollout; a
   template hash that changes without a generation bump is our own hashing having changed (a
   bot upgrade), and it is adopted silently rather than announced 5,000 times. The rollout's id
   is ``context/kind/namespace/name/generation`` of the snapshot that showed the new template;
   its versions are the image tags of the containers whose image changed since the last
   template seen (a rollback after a failure is "1.4.2 → 1.4.1", not nothing).
3. **First sight is quiet.** A workload seen for the first time (bot start, state lost) is
   tracked without a word, unless pods of an older template are still being replaced
   (generation not yet observed, or updated < desired, or old pods left): then a rollout is
   already under way and is announced as started. A workload that is only short of available
   pods (degraded, not rolling out) or whose rollout has already failed is quiet: in a cluster
   of thousands there are always some, and their story started before we looked.
4. **Completion and failure follow ``kubectl rollout status``** (``rollout_status``, line by
   line k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go): a Deployment fails when its
   Progressing condition says ``ProgressDeadlineExceeded``. StatefulSets and DaemonSets have no
   such condition, so Pitcrew applies the Deployment controller's rule itself: no progress
   (more updated, ready or available pods) for ``progress_deadline_seconds`` fails them too.
   Their pods stop changing their status when stuck, so the clock is also read from
   ``PodsObserved``, which the service sends as it reads the new pods of a rollout in progress.
   Workloads updated ``OnDelete`` never start a rollout: kubectl cannot tell their status, and
   nothing rolls until someone deletes pods.
5. **One rollout at a time.** A new template while a rollout is in progress supersedes it: the
   old one is announced ``superseded`` (its message says a newer rollout took over, so nobody
   waits for it) and the new one ``started``, with its own message. A failed rollout that is
   followed by a new one is left as it was: its message already says it failed.
6. **A failed rollout can still recover:** if it later completes, ``recovered`` (once). Until
   then it stays failed, whatever the Progressing condition does in between, so a Deployment
   that progresses again after its deadline does not flap between failed and rolling out.
7. **After the end, health is not a rollout.** Once a rollout has ended, availability dips,
   restarts and scaling move no message: only a new template starts one.
8. **Restarts.** The state is in Redis, so after a restart a rollout that was in progress is
   completed by the first snapshot that shows it done (``succeeded``, once), and a workload
   whose template changed while the bot was away gets its rollout started and, when already
   finished, ended in the same transition. Its duration is then unknown rather than wrong.
   A Deployment's completion time is read from its Progressing condition, so a completion
   read after a restart does not count the downtime; other kinds are timed as seen.
9. **A state remembers the labels it was last seen with**, so that a workload missing from a
   later list can still be routed and judged (``bot.domain.relisting``). A state stored before
   labels were kept gets them, without a word, from the next snapshot of the same version.

Everything here is pure: the service loads the previous state, calls ``observe`` or
``observe_pods``, stores the new state when ``advanced`` and renders what the ``Transition``
announces, one message per rollout id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Literal

from bot.domain.catalog import App, Catalog
from bot.domain.ground_rules import APP_LABEL
from bot.domain.images import ImageRef, ImageRefError

__all__ = [
    "DEADLINE_EXCEEDED",
    "DEFAULT_PROGRESS_DEADLINE",
    "PROBLEM_SEVERITY",
    "Announcement",
    "Condition",
    "Container",
    "Happening",
    "ImageChange",
    "PodCounts",
    "PodProblem",
    "PodsObserved",
    "Progress",
    "Rollout",
    "RolloutPhase",
    "Status",
    "StatusPhase",
    "Transition",
    "UpdateStrategy",
    "Workload",
    "WorkloadKind",
    "WorkloadSnapshot",
    "last_seen",
    "needs_pods",
    "observe",
    "observe_pods",
    "owner",
    "rollback_version",
    "rollout_status",
    "summarize_problems",
    "version_of",
    "with_problems",
    "workload_key",
]

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
UpdateStrategy = Literal["RollingUpdate", "Recreate", "OnDelete"]
"""``spec.strategy.type`` of a Deployment, ``spec.updateStrategy.type`` of the others."""
StatusPhase = Literal["progressing", "complete", "failed", "unsupported"]
RolloutPhase = Literal["progressing", "succeeded", "failed", "superseded"]
Happening = Literal[
    "started", "progressed", "succeeded", "failed", "recovered", "superseded", "problems"
]

DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
"""The Deployment controller's ``TimedOutReason``; Pitcrew uses it for every kind."""
DEFAULT_PROGRESS_DEADLINE: Final = 600
"""Seconds, as the API server defaults ``progressDeadlineSeconds`` for Deployments."""

_COMPLETE_REASON: Final = "NewReplicaSetAvailable"
_KUBECTL_NAMES: Final[Mapping[WorkloadKind, str]] = {
    "Deployment": "deployment",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemon set",
}


# --------------------------------------------------------------------------------------------
# Observations: what the Kubernetes adapter translates objects into


def workload_key(*, context: str, kind: str, namespace: str, name: str) -> str:
    """The key of a workload: what states, rollouts and their stored records are found by."""
    return f"{context}/{kind}/{namespace}/{name}"


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str
    status: str
    """``"True"``, ``"False"`` or ``"Unknown"``, as the API writes it."""
    reason: str | None = None
    message: str | None = None
    last_update: datetime | None = None
    """``lastUpdateTime``: when the controller last wrote this condition."""


@dataclass(frozen=True, kw_only=True)
class Container:
    name: str
    image: str


@dataclass(frozen=True, kw_only=True)
class WorkloadSnapshot:
    """One workload as one watch event showed it.

    Counters use the Deployment's names for every kind. A DaemonSet maps ``replicas`` to
    ``desiredNumberScheduled``, ``status_replicas`` to ``currentNumberScheduled``, ``updated``
    to ``updatedNumberScheduled``, ``ready`` to ``numberReady``, ``available`` to
    ``numberAvailable`` and ``unavailable`` to ``numberUnavailable``.
    """

    kind: WorkloadKind
    context: str
    """The kubeconfig context (or environment) the watcher reads; part of every id."""
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    generation: int
    observed_generation: int = 0
    resource_version: str
    template_hash: str
    """A fingerprint of ``spec.template``: it changes exactly when a rollout is due."""
    containers: tuple[Container, ...] = ()
    """``spec.template.spec.containers`` (init containers are not versions people deploy)."""
    replicas: int
    """Desired pods: ``spec.replicas`` (the API server defaults it to 1)."""
    status_replicas: int = 0
    """``status.replicas``: pods of every template, old ones included."""
    updated: int = 0
    ready: int = 0
    available: int = 0
    unavailable: int = 0
    current_replicas: int = 0
    """StatefulSet ``status.currentReplicas``: pods at ``current_revision``."""
    current_revision: str | None = None
    update_revision: str | None = None
    update_strategy: UpdateStrategy = "RollingUpdate"
    partition: int | None = None
    """StatefulSet ``rollingUpdate.partition``; ``None`` when ``rollingUpdate`` is absent."""
    conditions: tuple[Condition, ...] = ()
    progress_deadline_seconds: int | None = DEFAULT_PROGRESS_DEADLINE
    """A Deployment's own; for the other kinds, Pitcrew's setting. ``None``: never fail."""
    observed_at: datetime
    """When the watcher received the event (timezone-aware)."""

    @property
    def key(self) -> str:
        return workload_key(
            context=self.context, kind=self.kind, namespace=self.namespace, name=self.name
        )

    def condition(self, type_: str) -> Condition | None:
        """The first condition of this type, as kubectl's ``GetDeploymentCondition`` reads it."""
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True, kw_only=True)
class PodProblem:
    """Why a new pod is not becoming ready, as its status says it."""

    pod: str
    container: str | None = None
    """``None`` for problems of the pod itself (``Unschedulable``)."""
    reason: str
    """``CrashLoopBackOff``, ``ImagePullBackOff``, ``ErrImagePull``, ``OOMKilled``,
    ``Unschedulable``, ``CreateContainerConfigError``…: the waiting or last-terminated reason."""
    message: str = ""
    """The last message from the container (or the scheduler)."""
    restarts: int = 0
    pods: int = 1
    """How many pods have this problem; ``pod`` is one of them."""


@dataclass(frozen=True, kw_only=True)
class PodsObserved:
    """The new pods of a rollout, read by the service (from the new ReplicaSet or revision).

    It also serves as a clock: a stuck StatefulSet's status stops changing, so a rollout
    without a Progressing condition fails its deadline when the service reads its pods.
    """

    rollout_id: str
    problems: tuple[PodProblem, ...] = ()
    observed_at: datetime


# --------------------------------------------------------------------------------------------
# kubectl rollout status


@dataclass(frozen=True, kw_only=True)
class Status:
    """What ``kubectl rollout status`` would say of one snapshot."""

    phase: StatusPhase
    message: str
    """kubectl's words (without its trailing newline)."""
    reason: str | None = None
    """Why it failed (``ProgressDeadlineExceeded``)."""

    @property
    def done(self) -> bool:
        return self.phase == "complete"


def _progressing(message: str) -> Status:
    return Status(phase="progressing", message=message)


def _complete(message: str) -> Status:
    return Status(phase="complete", message=message)


_UNSUPPORTED: Final = Status(
    phase="unsupported",
    message="rollout status is only available for RollingUpdate strategy type",
)


def rollout_status(s: WorkloadSnapshot) -> Status:
    """kubectl's ``StatusViewer`` for the snapshot's kind, check for check and word for word.

    kubectl answers ``done`` with an error for workloads updated ``OnDelete``; that is
    ``unsupported`` here, so that nobody is told such a workload "rolled out".
    """
    if s.kind == "Deployment":
        return _deployment_status(s)
    if s.kind == "DaemonSet":
        return _daemon_set_status(s)
    return _stateful_set_status(s)


def _deployment_status(s: WorkloadSnapshot) -> Status:
    if s.generation > s.observed_generation:
        return _progressing("Waiting for deployment spec update to be observed...")
    progressing = s.condition("Progressing")
    if progressing is not None and progressing.reason == DEADLINE_EXCEEDED:
        return Status(
            phase="failed",
            reason=DEADLINE_EXCEEDED,
            message=f'deployment "{s.name}" exceeded its progress deadline',
        )
    waiting = f'Waiting for deployment "{s.name}" rollout to finish: '
    if s.updated < s.replicas:
        return _progressing(
            f"{waiting}{s.updated} out of {s.replicas} new replicas have been updated..."
        )
    if s.status_replicas > s.updated:
        old = s.status_replicas - s.updated
        return _progressing(f"{waiting}{old} old replicas are pending termination...")
    if s.available < s.updated:
        return _progressing(
            f"{waiting}{s.available} of {s.updated} updated replicas are available..."
        )
    return _complete(f'deployment "{s.name}" successfully rolled out')


def _daemon_set_status(s: WorkloadSnapshot) -> Status:
    if s.update_strategy != "RollingUpdate":
        return _UNSUPPORTED
    if s.generation > s.observed_generation:
        return _progressing("Waiting for daemon set spec update to be observed...")
    waiting = f'Waiting for daemon set "{s.name}" rollout to finish: '
    if s.updated < s.replicas:
        return _progressing(
            f"{waiting}{s.updated} out of {s.replicas} new pods have been updated..."
        )
    if s.available < s.replicas:
        return _progressing(f"{waiting}{s.available} of {s.replicas} updated pods are available...")
    return _complete(f'daemon set "{s.name}" successfully rolled out')


def _stateful_set_status(s: WorkloadSnapshot) -> Status:
    if s.update_strategy != "RollingUpdate":
        return _UNSUPPORTED
    if s.observed_generation == 0 or s.generation > s.observed_generation:
        return _progressing("Waiting for statefulset spec update to be observed...")
    if s.ready < s.replicas:
        return _progressing(f"Waiting for {s.replicas - s.ready} pods to be ready...")
    if s.partition is not None:
        target = s.replicas - s.partition
        if s.updated < target:
            return _progressing(
                "Waiting for partitioned roll out to finish: "
                f"{s.updated} out of {target} new pods have been updated..."
            )
        return _complete(
            f"partitioned roll out complete: {s.updated} new pods have been updated..."
        )
    if s.update_revision != s.current_revision:
        return _progressing(
            f"waiting for statefulset rolling update to complete {s.updated} pods "
            f"at revision {s.update_revision}..."
        )
    return _complete(
        f"statefulset rolling update complete {s.current_replicas} pods "
        f"at revision {s.current_revision}..."
    )


def _replacing_pods(s: WorkloadSnapshot) -> bool:
    """Pods of an older template are still being replaced: a rollout is under way.

    Unlike "not complete", this leaves out workloads that merely lack available pods.
    """
    if s.generation > s.observed_generation:
        return True
    if s.kind == "Deployment":
        return s.updated < s.replicas or s.status_replicas > s.updated
    if s.kind == "DaemonSet":
        return s.updated < s.replicas
    if s.partition is not None:
        return s.updated < s.replicas - s.partition
    return s.update_revision != s.current_revision


# --------------------------------------------------------------------------------------------
# Versions and ownership


def version_of(image: str) -> str:
    """The version people read in an image: its tag, else a short digest, else ``latest``."""
    try:
        ref = ImageRef.parse(image)
    except ImageRefError:
        return image
    if ref.tag is not None:
        return ref.tag
    if ref.digest is not None:
        algorithm, _, hex_digits = ref.digest.partition(":")
        return f"{algorithm}:{hex_digits[:12]}"
    return "latest"


@dataclass(frozen=True, kw_only=True)
class ImageChange:
    """One container of the new template, with the image it had in the template before."""

    container: str
    old: str | None
    """``None``: the container is new, or the old template is unknown (first sight)."""
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def old_version(self) -> str | None:
        return version_of(self.old) if self.old is not None else None

    @property
    def new_version(self) -> str:
        return version_of(self.new)


def _image_changes(old: Sequence[Container], new: Sequence[Container]) -> tuple[ImageChange, ...]:
    before = {c.name: c.image for c in old}
    return tuple(ImageChange(container=c.name, old=before.get(c.name), new=c.image) for c in new)


def last_seen(state: Workload, *, at: datetime) -> WorkloadSnapshot:
    """The workload as it was last seen, for telling that it is gone (``at``: when its absence
    was noticed). Its counters are unknown, hence zero: a gone workload runs nothing."""
    return WorkloadSnapshot(
        kind=state.kind,
        context=state.context,
        namespace=state.namespace,
        name=state.name,
        uid=state.uid,
        labels=dict(state.labels or {}),
        generation=state.generation,
        observed_generation=state.generation,
        resource_version=state.resource_version,
        template_hash=state.template_hash,
        containers=state.containers,
        replicas=0,
        observed_at=at,
    )


def owner(snapshot: WorkloadSnapshot, catalog: Catalog) -> App | None:
    """The app a workload belongs to, per the ground rules; ``None`` for strangers.

    The ``appId`` label decides when present, even when it names no app: a label is a claim,
    and guessing from the namespace would route a stranger's rollout to the wrong team.
    """
    app_id = snapshot.labels.get(APP_LABEL)
    if app_id is not None:
        return catalog.app_named(app_id)
    exact = catalog.app_for_namespace(snapshot.namespace)
    if exact is not None:
        return exact
    # <appId>[-<suffix>]: the longest app name wins, so "orders-api-eu" is orders-api's.
    return catalog.app_named_in(snapshot.namespace)


# --------------------------------------------------------------------------------------------
# Pod problems

PROBLEM_SEVERITY: Final[Mapping[str, int]] = {
    "ErrImagePull": 0,
    "ImagePullBackOff": 0,
    "InvalidImageName": 0,
    "ErrImageNeverPull": 0,
    "CreateContainerConfigError": 1,
    "CreateContainerError": 1,
    "RunContainerError": 1,
    "OOMKilled": 2,
    "CrashLoopBackOff": 3,
    "Error": 4,
    "Unschedulable": 5,
}
"""Lower is shown first: a wrong image or missing config is the whole story; a crash loop is
often caused by them or by memory; scheduling is a capacity matter. Unknown reasons go last."""
_UNKNOWN_SEVERITY: Final = len(set(PROBLEM_SEVERITY.values()))


def summarize_problems(problems: Iterable[PodProblem]) -> tuple[PodProblem, ...]:
    """One problem per reason and container, most severe first.

    Twenty replicas crash-looping are one line, not twenty: the pod shown is the one that
    restarted most, ``pods`` counts them all, and summarizing twice changes nothing.
    """
    groups: dict[tuple[str, str], list[PodProblem]] = {}
    for problem in problems:
        groups.setdefault((problem.reason, problem.container or ""), []).append(problem)
    merged = []
    for group in groups.values():
        shown = min(group, key=lambda p: (-p.restarts, not p.message, p.pod))
        message = shown.message or next((p.message for p in group if p.message), "")
        pods = sum(p.pods for p in group)
        merged.append(replace(shown, message=message, pods=pods))
    return tuple(sorted(merged, key=_problem_order))


def _problem_order(p: PodProblem) -> tuple[int, str, str, str]:
    severity = PROBLEM_SEVERITY.get(p.reason, _UNKNOWN_SEVERITY)
    return severity, p.reason, p.container or "", p.pod


def _problem_keys(problems: Iterable[PodProblem]) -> frozenset[tuple[str, str]]:
    return frozenset((p.reason, p.container or "") for p in problems)


# --------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True, kw_only=True)
class PodCounts:
    """A rollout as the person on call reads it: the new pods, and the old ones still serving.

    ``new pods 0/1 ready · old pods 3/3 serving`` says what "1/3 updated, 3/3 ready, 3/3
    available" only lets one work out: nothing of the new version is serving, and the old one
    still carries the traffic.
    """

    new: int
    """Pods of the new template (``updated``)."""
    new_ready: int
    old: int
    """Pods of older templates still there."""
    old_serving: int
    """Old pods counted among the ready ones."""
    desired: int


@dataclass(frozen=True, kw_only=True)
class Progress:
    replicas: int
    updated: int
    ready: int
    available: int
    total: int = 0
    """``status.replicas``: pods of every template, old ones included (0 when unknown)."""

    def beyond(self, other: Progress) -> bool:
        """More pods got further: the Deployment controller's notion of progress."""
        return (
            self.updated > other.updated
            or self.ready > other.ready
            or self.available > other.available
        )

    def pods(self) -> PodCounts:
        """New and old pods from the workload's counters.

        The status counts ready pods of every template together, so the split is worked out:
        old pods are counted as serving first. They ran before the rollout began, so this is
        exact while the new version starts (the case people watch) and for a new version that
        fails; it reads new pods as less ready than they are only while old pods that were not
        ready themselves are still being replaced.
        """
        old = max(0, self.total - self.updated)
        old_serving = min(old, self.ready)
        new_ready = max(0, min(self.updated, self.ready - old_serving))
        return PodCounts(
            new=self.updated,
            new_ready=new_ready,
            old=old,
            old_serving=old_serving,
            desired=self.replicas,
        )


@dataclass(frozen=True, kw_only=True)
class Rollout:
    id: str
    """``context/kind/namespace/name/generation``; its message's key is ``rollout:<id>``."""
    context: str
    kind: WorkloadKind
    namespace: str
    name: str
    generation: int
    images: tuple[ImageChange, ...]
    """Every container of the new template; ``changes`` are those whose image changed."""
    phase: RolloutPhase
    message: str
    """kubectl's words for the latest status seen."""
    reason: str | None = None
    """Why it failed; kept after a recovery."""
    recovered: bool = False
    """It completed after having failed."""
    progress: Progress
    started_at: datetime | None
    """``None``: it started while Pitcrew was not looking, so its duration is unknown."""
    progressed_at: datetime
    """The last observation that saw progress: the deadline counts from here."""
    progress_deadline_seconds: int | None = DEFAULT_PROGRESS_DEADLINE
    finished_at: datetime | None = None
    """When it succeeded, failed or was superseded (a recovery moves it)."""
    problems: tuple[PodProblem, ...] = ()
    """The new pods' problems, summarized, as last read."""
    problems_at: datetime | None = None
    superseded_by: str | None = None
    """The id of the rollout that took over."""
    deadline_before: datetime | None = None
    """The ``lastUpdateTime`` of a ``ProgressDeadlineExceeded`` the workload showed when this
    rollout's spec change was seen: the previous rollout's, not this one's (``_stale_deadline``)."""

    @property
    def workload_key(self) -> str:
        return workload_key(
            context=self.context, kind=self.kind, namespace=self.namespace, name=self.name
        )

    @property
    def changes(self) -> tuple[ImageChange, ...]:
        return tuple(i for i in self.images if i.changed)

    @property
    def ended(self) -> bool:
        return self.phase in ("succeeded", "superseded")

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What Pitcrew remembers of one workload between events (and restarts)."""

    context: str
    kind: WorkloadKind
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] | None = None
    """The workload's labels when last seen: who owns it (``appId``), and whether the watch's
    label selector still covers it once it is missing from a list. ``None``: a state stored
    before labels were kept (the next sight of it fills them in)."""
    resource_version: str
    generation: int
    template_hash: str
    containers: tuple[Container, ...] = ()
    """The last template seen: the "old" side of the next rollout."""
    current: Rollout | None = None
    """The rollout in progress, or failed and still able to recover."""
    last: Rollout | None = None
    """The latest rollout that ended: succeeded (or recovered), superseded, or failed and
    then followed by another."""

    @property
    def key(self) -> str:
        return workload_key(
            context=self.context, kind=self.kind, namespace=self.namespace, name=self.name
        )


@dataclass(frozen=True, kw_only=True)
class Announcement:
    what: Happening
    rollout: Rollout
    """The rollout as it stands after this happening."""


@dataclass(frozen=True, kw_only=True)
class Transition:
    """The new state and what to say about it.

    Every announcement's rollout message is ``rollout:<id>``, posted or updated to show the
    rollout as it now stands. ``failed`` also gets a thread reply with ``rollout.problems``;
    ``problems`` (new pod problems of a failed rollout) gets one too; ``recovered`` gets its
    own reply. One observation may announce several things, in order (``superseded`` then
    ``started``; ``started`` then ``succeeded`` for a rollout that ran while the bot was away).
    """

    state: Workload
    previous: Workload | None
    advanced: bool
    """The state changed at all: store it. ``False``: a duplicate or stale observation."""
    announcements: tuple[Announcement, ...] = ()

    @property
    def rollouts(self) -> tuple[Rollout, ...]:
        """Each rollout announced, once, as it finally stands: the messages to render."""
        latest = {a.rollout.id: a.rollout for a in self.announcements}
        return tuple(latest.values())

    def announced(self, what: Happening) -> tuple[Rollout, ...]:
        return tuple(a.rollout for a in self.announcements if a.what == what)


# --------------------------------------------------------------------------------------------
# The state machine


def observe(state: Workload | None, snapshot: WorkloadSnapshot) -> Transition:
    """Fold one snapshot into the workload's state (``None``: never seen before)."""
    if state is not None:
        if state.key != snapshot.key:
            raise ValueError(f"snapshot of {snapshot.key} observed for {state.key}")
        if not _newer(snapshot.resource_version, state.resource_version):
            if state.labels is None and snapshot.resource_version == state.resource_version:
                # Stored before labels were kept: keep them now, quietly (rule 9).
                new = replace(state, labels=dict(snapshot.labels))
                return Transition(state=new, previous=state, advanced=True)
            return Transition(state=state, previous=state, advanced=False)
    status = rollout_status(snapshot)
    recreated = state is not None and bool(state.uid and snapshot.uid) and state.uid != snapshot.uid
    if state is None or recreated:
        new, said = _first_sight(snapshot, status)
    else:
        new, said = _follow(state, snapshot, status=status)
    return Transition(state=new, previous=state, advanced=True, announcements=said)


def observe_pods(state: Workload, pods: PodsObserved) -> Transition:
    """Fold a reading of a rollout's new pods into the workload's state."""
    current = state.current
    if (
        current is None
        or current.id != pods.rollout_id
        or (current.problems_at is not None and pods.observed_at < current.problems_at)
    ):
        return Transition(state=state, previous=state, advanced=False)
    problems = summarize_problems(pods.problems)
    rollout = replace(current, problems=problems, problems_at=pods.observed_at)
    said: tuple[Announcement, ...] = ()
    if current.phase == "progressing" and _deadline_passed(rollout, now=pods.observed_at):
        rollout = _fail(rollout, reason=DEADLINE_EXCEEDED, at=pods.observed_at)
        said = (Announcement(what="failed", rollout=rollout),)
    elif current.phase == "failed" and _problem_keys(problems) - _problem_keys(current.problems):
        said = (Announcement(what="problems", rollout=rollout),)
    new = replace(state, current=rollout)
    return Transition(state=new, previous=state, advanced=new != state, announcements=said)


def with_problems(transition: Transition, pods: PodsObserved) -> Transition:
    """A failing transition with the new pods read at the moment it failed.

    A failure is announced with its reasons: the pods of a rollout that fails on a watch
    event (a Deployment's deadline) are read right then, not at the next periodic reading,
    by which time a rollback may already have replaced them and the reasons would be lost.
    Anything but a transition that announces the failure of the rollout read is left as is.
    """
    current = transition.state.current
    if (
        current is None
        or current.id != pods.rollout_id
        or current.phase != "failed"
        or not any(
            a.what == "failed" and a.rollout.id == current.id for a in transition.announcements
        )
    ):
        return transition
    rollout = replace(
        current, problems=summarize_problems(pods.problems), problems_at=pods.observed_at
    )
    said = tuple(
        replace(a, rollout=rollout) if a.what == "failed" and a.rollout.id == rollout.id else a
        for a in transition.announcements
    )
    return replace(transition, state=replace(transition.state, current=rollout), announcements=said)


def needs_pods(transition: Transition) -> Rollout | None:
    """The rollout whose new pods must be read before ``transition`` is told: one that fails
    now without a reading of its pods taken since."""
    current = transition.state.current
    if current is None or not any(
        a.what == "failed" and a.rollout.id == current.id for a in transition.announcements
    ):
        return None
    read = current.problems_at
    if read is not None and current.finished_at is not None and read >= current.finished_at:
        return None
    return current


def rollback_version(rollout: Rollout, *, image: str) -> str | None:
    """The version a failed rollout of the app's ``image`` replaced, to roll back to.

    Only the app's own containers count (a sidecar's tag is not the app's version), they must
    all have come from one tagged version, and that tag must name a version people deploy:
    a digest or an untagged image cannot be put back by a ``/rollback``.
    """
    olds: set[str] = set()
    for change in rollout.changes:
        try:
            new = ImageRef.parse(change.new)
            if not new.matches(image):
                continue
            old = ImageRef.parse(change.old) if change.old is not None else None
        except ImageRefError:
            return None
        if old is None or old.tag is None or old.digest is not None:
            return None
        olds.add(old.tag)
    return olds.pop() if len(olds) == 1 else None


def version_change(rollout: Rollout, *, image: str) -> tuple[str | None, str] | None:
    """``(old, new)``: the versions of the app's own image this rollout went between; ``None``
    when it changed no container of that image (a sidecar, a config change, a restart) or
    changed them to several versions at once."""
    found: set[tuple[str | None, str]] = set()
    for change in rollout.changes:
        try:
            if not ImageRef.parse(change.new).matches(image):
                continue
        except ImageRefError:
            continue
        found.add((change.old_version, change.new_version))
    if len(found) != 1:
        return None
    old, new = found.pop()
    return (old, new) if old != new else None


def _newer(candidate: str, known: str) -> bool:
    if candidate.isdigit() and known.isdigit():
        return int(candidate) > int(known)
    return candidate != known


def _remember(
    snapshot: WorkloadSnapshot, *, current: Rollout | None, last: Rollout | None
) -> Workload:
    return Workload(
        context=snapshot.context,
        kind=snapshot.kind,
        namespace=snapshot.namespace,
        name=snapshot.name,
        uid=snapshot.uid,
        labels=dict(snapshot.labels),
        resource_version=snapshot.resource_version,
        generation=snapshot.generation,
        template_hash=snapshot.template_hash,
        containers=snapshot.containers,
        current=current,
        last=last,
    )


def _first_sight(
    snapshot: WorkloadSnapshot, status: Status
) -> tuple[Workload, tuple[Announcement, ...]]:
    if status.phase != "progressing" or not _replacing_pods(snapshot):
        return _remember(snapshot, current=None, last=None), ()
    rollout = _start(snapshot, status, old=None)
    state = _remember(snapshot, current=rollout, last=None)
    return state, (Announcement(what="started", rollout=rollout),)


def _follow(
    state: Workload, snapshot: WorkloadSnapshot, *, status: Status
) -> tuple[Workload, tuple[Announcement, ...]]:
    said: list[Announcement] = []
    current, last = state.current, state.last
    new_template = (
        snapshot.generation > state.generation
        and snapshot.template_hash != state.template_hash
        and status.phase != "unsupported"
    )
    if new_template:
        rollout = _start(snapshot, status, old=state.containers)
        if current is not None:
            if current.phase == "progressing":
                current = replace(
                    current,
                    phase="superseded",
                    finished_at=snapshot.observed_at,
                    superseded_by=rollout.id,
                )
                said.append(Announcement(what="superseded", rollout=current))
            last = current
        said.append(Announcement(what="started", rollout=rollout))
        current = rollout
    if current is not None:
        current, said_now = _advance(current, snapshot, status=status)
        said.extend(said_now)
        if current.ended:
            current, last = None, current
    new = _remember(snapshot, current=current, last=last)
    return new, tuple(said)


def _start(
    snapshot: WorkloadSnapshot, status: Status, *, old: Sequence[Container] | None
) -> Rollout:
    # The spec change is first seen with the status still behind; anything later means the
    # rollout began while we were not looking, and its true start is unknown.
    seen_start = snapshot.generation > snapshot.observed_generation
    before = snapshot.condition("Progressing")
    deadline_before = (
        before.last_update
        if seen_start and before is not None and before.reason == DEADLINE_EXCEEDED
        else None
    )
    return Rollout(
        id=f"{snapshot.key}/{snapshot.generation}",
        context=snapshot.context,
        kind=snapshot.kind,
        namespace=snapshot.namespace,
        name=snapshot.name,
        generation=snapshot.generation,
        images=_image_changes(old or (), snapshot.containers),
        phase="progressing",
        message=status.message,
        progress=_progress(snapshot),
        started_at=snapshot.observed_at if seen_start else None,
        progressed_at=snapshot.observed_at,
        progress_deadline_seconds=snapshot.progress_deadline_seconds,
        deadline_before=deadline_before,
    )


def _progress(s: WorkloadSnapshot) -> Progress:
    return Progress(
        replicas=s.replicas,
        updated=s.updated,
        ready=s.ready,
        available=s.available,
        total=s.status_replicas,
    )


def _advance(
    rollout: Rollout, snapshot: WorkloadSnapshot, *, status: Status
) -> tuple[Rollout, tuple[Announcement, ...]]:
    """The current rollout under a new snapshot of its workload."""
    progress = _progress(snapshot)
    moved = progress.beyond(rollout.progress)
    updated = replace(
        rollout,
        progress=progress,
        message=status.message,
        progressed_at=snapshot.observed_at if moved else rollout.progressed_at,
        progress_deadline_seconds=snapshot.progress_deadline_seconds,
    )
    if status.phase == "complete":
        finished_at = _completed_at(snapshot, updated)
        done = replace(updated, phase="succeeded", finished_at=finished_at)
        if rollout.phase == "failed":
            done = replace(done, recovered=True)
            return done, (Announcement(what="recovered", rollout=done),)
        return done, (Announcement(what="succeeded", rollout=done),)
    if rollout.phase != "progressing" or status.phase == "unsupported":
        # A failed rollout waits for completion (or a successor) without flapping; one whose
        # workload switched to OnDelete can no longer be judged, so it waits too.
        return updated, ()
    if status.phase == "failed" and _stale_deadline(updated, snapshot):
        status = rollout_status(_without_progressing(snapshot))
        if _deadline_passed(updated, now=snapshot.observed_at, kinds=("Deployment",)):
            status = Status(
                phase="failed",
                reason=DEADLINE_EXCEEDED,
                message=f'deployment "{snapshot.name}" exceeded its progress deadline',
            )
        updated = replace(updated, message=status.message)
    if status.phase == "failed":
        failed = _fail(updated, reason=status.reason or DEADLINE_EXCEEDED, at=snapshot.observed_at)
        return failed, (Announcement(what="failed", rollout=failed),)
    if _deadline_passed(updated, now=snapshot.observed_at):
        failed = _fail(updated, reason=DEADLINE_EXCEEDED, at=snapshot.observed_at)
        return failed, (Announcement(what="failed", rollout=failed),)
    if progress != rollout.progress:
        return updated, (Announcement(what="progressed", rollout=updated),)
    return updated, ()


def _fail(rollout: Rollout, *, reason: str, at: datetime) -> Rollout:
    message = rollout.message
    if reason == DEADLINE_EXCEEDED and rollout.kind != "Deployment":
        message = f'{_KUBECTL_NAMES[rollout.kind]} "{rollout.name}" exceeded its progress deadline'
    return replace(rollout, phase="failed", reason=reason, message=message, finished_at=at)


def _deadline_passed(
    rollout: Rollout, *, now: datetime, kinds: tuple[str, ...] = ("StatefulSet", "DaemonSet")
) -> bool:
    """Pitcrew's own deadline, for the kinds whose controller keeps none (and for a
    Deployment whose controller still shows the previous rollout's deadline)."""
    deadline = rollout.progress_deadline_seconds
    if rollout.kind not in kinds or deadline is None:
        return False
    return (now - rollout.progressed_at).total_seconds() > deadline


def _stale_deadline(rollout: Rollout, snapshot: WorkloadSnapshot) -> bool:
    """The Deployment's ``ProgressDeadlineExceeded`` is the one it showed before this rollout.

    Going back to an existing ReplicaSet (a rollback after a failed rollout), the deployment
    controller sets a Progressing condition only where there is none (``getNewReplicaSet``:
    ``HasProgressDeadline(d) && cond == nil``), so the previous rollout's deadline stays until
    the new one makes progress, and ``kubectl rollout status`` reports the rollback failed at
    once. A condition not rewritten since the spec change (same ``lastUpdateTime``, the API
    server's clock against itself) says nothing about this rollout. Only a rollout whose spec
    change was seen can tell; Pitcrew's own deadline still applies to it.
    """
    condition = snapshot.condition("Progressing")
    return (
        rollout.kind == "Deployment"
        and rollout.deadline_before is not None
        and condition is not None
        and condition.reason == DEADLINE_EXCEEDED
        and condition.last_update is not None
        and condition.last_update <= rollout.deadline_before
    )


def _without_progressing(snapshot: WorkloadSnapshot) -> WorkloadSnapshot:
    kept = tuple(c for c in snapshot.conditions if c.type != "Progressing")
    return replace(snapshot, conditions=kept)


def _completed_at(snapshot: WorkloadSnapshot, rollout: Rollout) -> datetime:
    """When the rollout completed: the Deployment controller writes it down, which matters
    when the completion is read after a restart; otherwise, when we saw it."""
    condition = snapshot.condition("Progressing")
    if (
        condition is not None
        and condition.reason == _COMPLETE_REASON
        and condition.last_update is not None
        and condition.last_update <= snapshot.observed_at
        and (rollout.started_at is None or condition.last_update >= rollout.started_at)
    ):
        return condition.last_update
    return snapshot.observed_at
