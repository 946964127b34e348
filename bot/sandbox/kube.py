"""A Kubernetes cluster in a box: the API server subset Pitcrew's watcher uses, over real HTTP.

The official ``kubernetes`` client (``new_client_from_config`` on the file :meth:`KubeSandbox.
kubeconfig` writes) talks to it unchanged, so what passes here exercises the same wire format,
deserialisation into ``V1Deployment`` & co. and error handling as production.

Simulated, as the API server of Kubernetes 1.33 answers (no TLS, bearer token checked):

* ``GET /version``; ``GET`` list, namespaced list and single object for ``apps/v1``
  deployments, statefulsets, daemonsets, replicasets, ``v1`` pods, events, namespaces, and
  ``rbac.authorization.k8s.io/v1`` rolebindings (made and removed with
  :meth:`KubeSandbox.apply_rolebinding` and :meth:`KubeSandbox.delete_rolebinding`, as a GitOps
  controller applying git would).
  Lists are ``{"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {...}, "items"}``
  with items lacking ``kind``/``apiVersion``, sorted by namespace/name like etcd keys.
  ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and
  ``fieldSelector`` (``metadata.name``/``namespace`` everywhere, plus the labels the real server
  supports for pods, events, namespaces and replicasets; others are a 400 like the real one).
* ``limit``/``continue`` pagination over a consistent snapshot: later pages show the objects as
  they were at the first page's resourceVersion; ``remainingItemCount`` without selectors; a token
  older than the retained history is 410 ``Expired`` (with a fresh token, as the real server).
  ``resourceVersionMatch=Exact`` lists from history too; a resourceVersion from the future is 504.
* ``watch=true``: chunked JSON lines ``{"type": ..., "object": ...}`` from a resourceVersion (every
  change after it, in order, then live ones), or from now with synthetic ``ADDED`` events when the
  resourceVersion is unset or ``0`` (``sendInitialEvents`` with its ``initial-events-end``
  bookmark too). A selector filters like the watch cache: an object leaving the selection is a
  ``DELETED``, entering it an ``ADDED``. ``allowWatchBookmarks`` gets ``BOOKMARK`` events every
  ``bookmark_interval`` seconds (or on :meth:`KubeSandbox.send_bookmarks`). ``timeoutSeconds``
  ends the stream cleanly. A resourceVersion older than the retained history (``history_size``
  changes, or :meth:`KubeSandbox.expire`) gets an HTTP 200 stream holding one ``ERROR`` event with
  a 410 ``Expired`` Status, which the official ``Watch.stream`` turns into ``ApiException(410)``.
* One cluster-wide resourceVersion: a string integer that grows by one per write.
* Objects shaped like the real ones: metadata with uid, generation, RFC 3339 timestamps,
  ownerReferences (ReplicaSet → Deployment, Pod → ReplicaSet/StatefulSet/DaemonSet); defaulted
  specs; ``omitempty`` status fields absent when zero; Deployment conditions ``Available`` and
  ``Progressing`` with the deployment controller's reasons and messages (NewReplicaSetCreated,
  FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded);
  ReplicaSets with ``pod-template-hash`` and the ``deployment.kubernetes.io/revision`` annotation
  (a rollback to an earlier template reuses its ReplicaSet, as the real controller does); Pods with
  phase, conditions and container statuses for CrashLoopBackOff (exponential back-off, restart
  count), OOMKilled, ErrImagePull/ImagePullBackOff, failing readiness and Unschedulable; core
  Events from the controllers, scheduler and kubelet, aggregated with ``count``.
* A controller driven by :meth:`KubeSandbox.step` (one reconciliation: each rollout moves by one
  replica, pods advance, deadlines are checked), :meth:`KubeSandbox.advance` (simulated time in
  steps) or a background ticker; its inputs are ``set_image``, ``scale``, ``fail_rollout``,
  ``recover`` and ``delete``, like a person with kubectl. As in a real cluster, a spec change is
  first seen with a stale status (``observedGeneration`` behind) and the controller catches up.
  Time is simulated and starts at a fixed instant unless a ``clock`` is injected, so runs are
  deterministic: names, uids and hashes derive from a seed.
* Writes (POST/PUT/PATCH/DELETE) are refused with 403, as the bot's read-only ClusterRole would.

Deliberately not simulated: TLS, authorization beyond one token, discovery (``/api``, ``/apis``),
protobuf/CBOR, ``managedFields``, server-side apply and every write, ``/status``/``/scale``
subresources, ``events.k8s.io``, ControllerRevisions, Services, Nodes, volumes and probes in pod
specs, graceful pod termination (pods vanish at once), pod-level events of healthy pods
(Scheduled, Pulled, Started), surge/unavailability beyond one pod at a time (every rollout swaps
one replica per step, StatefulSets replace a broken old pod instead of waiting on it forever),
``minReadySeconds``, ``paused``, partitions, the watch cache's wait for a future resourceVersion on
lists (answered 504 at once), and the limit being ignored for ``resourceVersion=0`` lists.
Deployments made by :meth:`KubeSandbox.bulk_add_deployments` have no Pod objects until the
controller first touches them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import copy
import functools
import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from aiohttp import web

from bot.sandbox import SHUTDOWN_TIMEOUT

JsonDict = dict[str, Any]
WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
FailureReason = Literal[
    "ProgressDeadlineExceeded", "CrashLoopBackOff", "ImagePullBackOff", "OOMKilled", "Unschedulable"
]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

START_TIME = 1_736_931_600.0  # 2025-01-15T09:00:00Z
DEFAULT_NODES = ("sandbox-node-1", "sandbox-node-2", "sandbox-node-3")
DEFAULT_TOKEN = "sandbox-token"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
VERSION_INFO: JsonDict = {
    "major": "1",
    "minor": "33",
    "emulationMajor": "1",
    "emulationMinor": "33",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "32",
    "gitVersion": "v1.33.1",
    "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:19:08Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_WATCH_TIMEOUT = 1800  # the real server picks 30-60 minutes when the client names none
REVISION_HISTORY_LIMIT = 10
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
PROBE_PERIOD = 10.0

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString
_FAILURES: tuple[str, ...] = get_args(FailureReason)
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)


# ---------------------------------------------------------------------------- small helpers


def _ts(t: float) -> str:
    return _rfc3339(int(t))


@functools.lru_cache(maxsize=4096)
def _rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _go_duration(seconds: float) -> str:
    """``time.Duration.String()`` for whole seconds: ``10s``, ``1m20s``, ``5m0s``."""
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _safe_encode(digits: str) -> str:
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in digits)


def _template_hash(labels: Mapping[str, str], containers: Mapping[str, str]) -> str:
    """A stable hash of a pod template, encoded like the controllers' ``pod-template-hash``."""
    raw = repr((sorted(labels.items()), list(containers.items()))).encode()
    value = int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")
    return _safe_encode(str(value))


def _normalized_image(image: str) -> str:
    """The image reference as containerd reports it in ``containerStatuses[].image``."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if digest:
        return f"{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "IfNotPresent" if ":" in last and not last.endswith(":latest") else "Always"


def _parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``, which the API server uses for query flags."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise _ApiError.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _status(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    body: JsonDict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class _ApiError(Exception):
    """An error answered as a ``Status`` object with its HTTP code."""

    def __init__(self, body: JsonDict) -> None:
        super().__init__(body["message"])
        self.body = body

    @property
    def code(self) -> int:
        return int(self.body["code"])

    @classmethod
    def bad_request(cls, message: str) -> _ApiError:
        return cls(_status(400, "BadRequest", message))

    @classmethod
    def not_found(
        cls, message: str = "the server could not find the requested resource"
    ) -> _ApiError:
        return cls(_status(404, "NotFound", message, {}))


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json_response(body: JsonDict, status: int = 200) -> web.Response:
    return web.Response(body=_json_bytes(body), status=status, content_type="application/json")


# ---------------------------------------------------------------------------- resources


_POD_FIELDS = frozenset(
    {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)
_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)


@dataclass(frozen=True)
class _Resource:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool = True
    fields: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the real server names the resource in messages: ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_RESOURCES: dict[str, _Resource] = {
    r.plural: r
    for r in (
        _Resource("deployments", "Deployment", "apps", "v1"),
        _Resource("statefulsets", "StatefulSet", "apps", "v1"),
        _Resource("daemonsets", "DaemonSet", "apps", "v1"),
        _Resource("replicasets", "ReplicaSet", "apps", "v1", fields=frozenset({"status.replicas"})),
        _Resource("pods", "Pod", "", "v1", fields=_POD_FIELDS),
        _Resource("events", "Event", "", "v1", fields=_EVENT_FIELDS),
        _Resource("namespaces", "Namespace", "", "v1", False, frozenset({"status.phase"})),
        _Resource("rolebindings", "RoleBinding", "rbac.authorization.k8s.io", "v1"),
    )
}
_ALIASES: dict[str, str] = {
    "deploy": "deployments",
    "sts": "statefulsets",
    "ds": "daemonsets",
    "rs": "replicasets",
    "po": "pods",
    "ev": "events",
    "ns": "namespaces",
    "rb": "rolebindings",
}
_WORKLOADS: dict[str, WorkloadKind] = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
}


def _resource(kind: str) -> _Resource:
    """``Deployment``, ``deployment``, ``deployments`` or ``deploy`` → the resource."""
    name = kind.lower()
    name = _ALIASES.get(name, name)
    if name in _RESOURCES:
        return _RESOURCES[name]
    for resource in _RESOURCES.values():
        if resource.kind.lower() == name:
            return resource
    raise ValueError(f"unknown kind: {kind!r}")


def _workload_kind(kind: str) -> WorkloadKind:
    resource = _resource(kind)
    if resource.plural not in _WORKLOADS:
        raise ValueError(f"not a workload kind (Deployment, StatefulSet, DaemonSet): {kind!r}")
    return _WORKLOADS[resource.plural]


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


# ---------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class _LabelRequirement:
    key: str
    op: Literal["=", "!=", "in", "notin", "exists", "!exists"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


_LABEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"^({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})$")
_SET = re.compile(rf"^({_LABEL_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EXISTS = re.compile(rf"^(!?)\s*({_LABEL_KEY})$")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _parse_label_selector(text: str) -> tuple[_LabelRequirement, ...]:
    if not text.strip():
        return ()
    requirements: list[_LabelRequirement] = []
    for part in _split_top_level(text):
        if m := _EQUALITY.match(part):
            op: Literal["=", "!="] = "!=" if m.group(2) == "!=" else "="
            requirements.append(_LabelRequirement(m.group(1), op, frozenset({m.group(3)})))
        elif m := _SET.match(part):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            set_op: Literal["in", "notin"] = "in" if m.group(2) == "in" else "notin"
            requirements.append(_LabelRequirement(m.group(1), set_op, values))
        elif m := _EXISTS.match(part):
            exists: Literal["exists", "!exists"] = "!exists" if m.group(1) else "exists"
            requirements.append(_LabelRequirement(m.group(2), exists))
        else:
            raise _ApiError.bad_request(
                f"unable to parse requirement: found '{part}', expected: identifier"
            )
    return tuple(requirements)


@dataclass(frozen=True)
class _FieldRequirement:
    path: str
    value: str
    negate: bool

    def matches(self, obj: JsonDict) -> bool:
        return (_field_value(obj, self.path) == self.value) != self.negate


def _field_value(obj: JsonDict, path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def _parse_field_selector(text: str, resource: _Resource) -> tuple[_FieldRequirement, ...]:
    if not text.strip():
        return ()
    requirements: list[_FieldRequirement] = []
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise _ApiError.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path = m.group(1)
        if path not in ("metadata.name", "metadata.namespace") and path not in resource.fields:
            raise _ApiError.bad_request(f"field label not supported: {path}")
        requirements.append(_FieldRequirement(path, m.group(3), m.group(2) == "!="))
    return tuple(requirements)


@dataclass(frozen=True)
class _Filter:
    resource: _Resource
    namespace: str | None = None
    labels: tuple[_LabelRequirement, ...] = ()
    fields: tuple[_FieldRequirement, ...] = ()

    @property
    def selective(self) -> bool:
        return bool(self.labels or self.fields)

    def matches(self, obj: JsonDict) -> bool:
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(
            f.matches(obj) for f in self.fields
        )


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv, start = int(data["rv"]), str(data["start"])
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unknown version")
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise _ApiError.bad_request(f"continue key is not valid: {exc}") from None
    return rv, start


# ---------------------------------------------------------------------------- the store's log


@dataclass(frozen=True, slots=True)
class _Change:
    rv: int
    resource: str
    key: str
    type: ChangeType
    obj: JsonDict  # the object after the change (for DELETED: its last state at this rv)
    prev: JsonDict | None  # the object before the change, None when ADDED


@dataclass(eq=False)
class _Watcher:
    filter: _Filter
    cursor: int
    bookmarks: bool
    request: web.Request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ending: Literal["", "cut", "close"] = ""
    bookmark_due: bool = False


# ---------------------------------------------------------------------------- the workload model


@dataclass(frozen=True)
class _Fault:
    reason: FailureReason
    message: str | None
    containers: tuple[str, ...]


@dataclass(eq=False)
class _Revision:
    """A Deployment's ReplicaSet, or a StatefulSet's/DaemonSet's controller revision."""

    name: str
    hash: str
    number: int
    labels: dict[str, str]
    containers: dict[str, str]
    uid: str
    created: float
    replicas: int = 0  # ReplicaSet spec.replicas
    generation: int = 1  # ReplicaSet metadata.generation

    def scale(self, replicas: int) -> None:
        if replicas != self.replicas:
            self.replicas = replicas
            self.generation += 1


PodPhase = Literal["creating", "ready", "crashing", "pulling", "unready", "unschedulable"]


@dataclass(eq=False)
class _Pod:
    name: str
    uid: str
    revision: _Revision
    created: float
    home: str  # the node the pod is meant for (DaemonSets) or was given
    node: str | None  # None while unscheduled
    ip: str
    ordinal: int | None = None
    phase: PodPhase = "creating"
    started: float | None = None  # when the containers last started running
    changed: float = 0.0  # when readiness last flipped
    restarts: int = 0
    attempts: int = 0
    retry_at: float = 0.0
    terminated_at: float | None = None
    waiting: str = "ContainerCreating"

    @property
    def ready(self) -> bool:
        return self.phase == "ready"


@dataclass
class _Condition:
    status: Literal["True", "False"]
    reason: str
    message: str
    updated: float
    transitioned: float


@dataclass(eq=False)
class _Workload:
    kind: WorkloadKind
    namespace: str
    name: str
    uid: str
    created: float
    labels: dict[str, str]
    annotations: dict[str, str]
    selector: dict[str, str]
    template_labels: dict[str, str]
    containers: dict[str, str]
    replicas: int
    progress_deadline: int = 600
    generation: int = 1
    observed: int = 1
    template_generation: int = 1
    revisions: list[_Revision] = field(default_factory=list)
    current: _Revision | None = None  # the newest ReplicaSet / update revision
    stable: _Revision | None = None  # StatefulSet currentRevision
    pods: list[_Pod] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)  # by template hash
    changed: tuple[str, ...] = ()  # the containers the last set_image changed
    conditions: dict[str, _Condition] = field(default_factory=dict)
    materialized: bool = True
    catching_up: bool = False  # the status reports the new ReplicaSet's pods one sync late

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def resource(self) -> str:
        return f"{self.kind.lower()}s"

    def template_hash(self) -> str:
        return _template_hash(self.template_labels, self.containers)

    def revision_name(self, template_hash: str) -> str:
        return f"{self.name}-{template_hash}"


def _max_surge(replicas: int) -> int:
    return max(1, math.ceil(replicas * 0.25)) if replicas else 1


def _max_unavailable(replicas: int) -> int:
    return math.floor(replicas * 0.25)


# ---------------------------------------------------------------------------- the sandbox


class KubeSandbox:
    """One Kubernetes cluster with a tiny controller, served over HTTP on localhost.

    Every method is safe to call from any thread; watchers are woken on the server's loop.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        token: str = DEFAULT_TOKEN,
        nodes: Sequence[str] = DEFAULT_NODES,
        history_size: int = 100_000,
        bookmark_interval: float = 60.0,
        tick_interval: float | None = None,
        step_seconds: float = 5.0,
        seed: str = "sandbox",
    ) -> None:
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.token = token
        self.nodes = tuple(nodes)
        self.history_size = history_size
        self.bookmark_interval = bookmark_interval
        self.tick_interval = tick_interval
        self.step_seconds = step_seconds
        self.requests: deque[str] = deque(maxlen=10_000)  # "GET /path?query", newest last
        self.after_list_page: Callable[[str, Mapping[str, str]], None] | None = None
        """Called (resource plural, query) once each page of a list is answered and before the
        next request is read: a test changes the cluster *during* a client's paged list."""
        self._clock = clock
        self._sim_now = START_TIME
        self._seed = seed
        self._lock = threading.RLock()
        self._rv = 0
        self._compacted = 0  # watches and lists from a resourceVersion below this are 410
        self._history: list[_Change | None] = []
        self._head = 0  # index in _history of the change with rv == _compacted + 1
        self._objects: dict[str, dict[str, JsonDict]] = {plural: {} for plural in _RESOURCES}
        self._sorted: dict[str, list[str] | None] = dict.fromkeys(_RESOURCES)
        self._workloads: dict[tuple[str, str, str], _Workload] = {}
        self._active: set[tuple[str, str, str]] = set()
        self._events: dict[tuple[str, str, str, str], str] = {}
        self._ids = itertools.count(1)
        self._ips = itertools.count(2)
        self._placement = itertools.count()
        self._watchers: set[_Watcher] = set()
        self._watch_opened = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        for namespace in SYSTEM_NAMESPACES:
            self.add_namespace(namespace)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the Kubernetes sandbox is already running")
        app = web.Application()
        for path, handler in (
            ("/version", self._version),
            ("/version/", self._version),  # what the official client asks for
            ("/healthz", self._health),
            ("/livez", self._health),
            ("/readyz", self._health),
            ("/api/v1/{resource}", self._collection),
            ("/api/v1/{resource}/{name}", self._item),
            ("/api/v1/namespaces/{namespace}/{resource}", self._collection),
            ("/api/v1/namespaces/{namespace}/{resource}/{name}", self._item),
            ("/apis/{group}/{version}/{resource}", self._collection),
            ("/apis/{group}/{version}/namespaces/{namespace}/{resource}", self._collection),
            ("/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}", self._item),
            ("/{tail:.*}", self._unknown),
        ):
            app.router.add_route("*", path, self._guarded(handler))
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._loop = asyncio.get_running_loop()
        self._watch_opened = asyncio.Event()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        if self.tick_interval is not None:
            self._ticker = asyncio.create_task(self._tick(self.tick_interval))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            for watcher in self._watchers:
                watcher.ending = "close"
                watcher.wake.set()
            for _ in range(100):
                if not self._watchers:
                    break
                await asyncio.sleep(0.01)
            await self._runner.cleanup()
            self._runner = None
            self._port = None
            self._loop = None

    async def __aenter__(self) -> KubeSandbox:
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
            raise RuntimeError("the Kubernetes sandbox is not running: await start() first")
        return f"http://{self._host}:{self._port}"

    def kubeconfig(
        self, path: str | os.PathLike[str], *, context: str = "sandbox", namespace: str = "default"
    ) -> Path:
        """Write (or merge into a file this wrote) a kubeconfig whose ``context`` points here.

        JSON is YAML, so ``kubernetes.config.new_client_from_config(config_file=path,
        context=context)`` reads it; several sandboxes can share one file as several contexts.
        """
        target = Path(path)
        config: JsonDict = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [],
            "contexts": [],
            "users": [],
        }
        if target.exists() and target.stat().st_size:
            config = json.loads(target.read_text())
        entries = {
            "clusters": {"name": context, "cluster": {"server": self.base_url}},
            "users": {"name": context, "user": {"token": self.token}},
            "contexts": {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            },
        }
        for section, entry in entries.items():
            kept = [e for e in config.get(section) or [] if e.get("name") != context]
            config[section] = [*kept, entry]
        config.setdefault("current-context", context)
        target.write_text(json.dumps(config, indent=2) + "\n")
        return target

    # ------------------------------------------------------------------ observing

    @property
    def resource_version(self) -> str:
        """The cluster's current resourceVersion."""
        with self._lock:
            return str(self._rv)

    @property
    def now(self) -> float:
        """The cluster's time (simulated unless a clock was injected), in epoch seconds."""
        return self._now()

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    async def wait_for_watches(self, count: int = 1) -> None:
        """Wait until at least ``count`` watch connections are open (on the server's loop; bound
        it with ``asyncio.timeout``)."""
        while len(self._watchers) < count:
            self._watch_opened.clear()
            await self._watch_opened.wait()

    def get(self, kind: str, namespace: str | None, name: str) -> JsonDict | None:
        """The object as the API serves it now (a copy), or None."""
        resource = _resource(kind)
        with self._lock:
            obj = self._objects[resource.plural].get(_key(namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str, namespace: str | None = None) -> list[JsonDict]:
        """Every object of a kind (in a namespace), sorted like a list, as copies."""
        resource = _resource(kind)
        with self._lock:
            store = self._objects[resource.plural]
            return [
                copy.deepcopy(store[key])
                for key in self._sorted_keys(resource.plural)
                if namespace is None or store[key]["metadata"].get("namespace") == namespace
            ]

    # ------------------------------------------------------------------ cluster set-up

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> JsonDict:
        """Create a namespace, or replace the labels of an existing one."""
        with self._mutating():
            existing = self._objects["namespaces"].get(name)
            if existing is not None:
                uid = existing["metadata"]["uid"]
                created_text = existing["metadata"]["creationTimestamp"]
            else:
                uid, created_text = self._uid(), _ts(self._now())
            obj: JsonDict = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "uid": uid,
                    "resourceVersion": "",
                    "creationTimestamp": created_text,
                    "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self._put("namespaces", obj)
            return copy.deepcopy(self._objects["namespaces"][name])

    def apply_rolebinding(self, manifest: Mapping[str, Any]) -> JsonDict:
        """Create or replace a RoleBinding from its manifest (``metadata.name``/``namespace``,
        labels, annotations, ``roleRef``, ``subjects``), as ``kubectl apply`` would."""
        meta = manifest.get("metadata") or {}
        name, namespace = str(meta["name"]), str(meta.get("namespace") or "default")
        with self._mutating():
            existing = self._objects["rolebindings"].get(_key(namespace, name))
            if existing is not None:
                uid = existing["metadata"]["uid"]
                created_text = existing["metadata"]["creationTimestamp"]
            else:
                uid, created_text = self._uid(), _ts(self._now())
            metadata: JsonDict = {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "resourceVersion": "",
                "creationTimestamp": created_text,
            }
            for field_name in ("labels", "annotations"):
                if meta.get(field_name):
                    metadata[field_name] = {
                        str(k): str(v) for k, v in dict(meta[field_name]).items()
                    }
            obj: JsonDict = {
                "kind": "RoleBinding",
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "metadata": metadata,
                "roleRef": copy.deepcopy(dict(manifest.get("roleRef") or {})),
            }
            subjects = manifest.get("subjects")
            if subjects:
                obj["subjects"] = copy.deepcopy(list(subjects))
            self._put("rolebindings", obj)
            return copy.deepcopy(self._objects["rolebindings"][_key(namespace, name)])

    def delete_rolebinding(self, namespace: str, name: str) -> bool:
        """Delete a RoleBinding; ``False`` when there was none."""
        with self._mutating():
            key = _key(namespace, name)
            if key not in self._objects["rolebindings"]:
                return False
            self._remove("rolebindings", key)
            return True

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        image: str | None = None,
        images: Mapping[str, str] | None = None,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        progress_deadline_seconds: int = 600,
    ) -> JsonDict:
        """A Deployment that has already rolled out: its ReplicaSet and ready Pods exist."""
        with self._mutating():
            w = self._new_workload(
                "Deployment", namespace, name, image, images, replicas, labels, annotations
            )
            w.progress_deadline = progress_deadline_seconds
            self._create_workload(w, materialize=True)
            return self._copy_of(w)

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        *,
        image: str | None = None,
        images: Mapping[str, str] | None = None,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> JsonDict:
        with self._mutating():
            w = self._new_workload(
                "StatefulSet", namespace, name, image, images, replicas, labels, annotations
            )
            self._create_workload(w, materialize=True)
            return self._copy_of(w)

    def add_daemonset(
        self,
        namespace: str,
        name: str,
        *,
        image: str | None = None,
        images: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> JsonDict:
        """A DaemonSet with one ready Pod on every node."""
        with self._mutating():
            w = self._new_workload(
                "DaemonSet", namespace, name, image, images, len(self.nodes), labels, annotations
            )
            self._create_workload(w, materialize=True)
            return self._copy_of(w)

    def bulk_add_deployments(
        self,
        count: int,
        *,
        namespaces: Sequence[str] | None = None,
        name_prefix: str = "svc",
        replicas: int = 2,
        labels: Mapping[str, str] | None = None,
        image_repository: str = "registry.example.com/bulk",
    ) -> list[tuple[str, str]]:
        """``count`` rolled-out Deployments (and their ReplicaSets), cheaply: their Pods are only
        created when the controller first touches one (set_image, scale, fail_rollout...).

        Without ``namespaces``, they are spread over ``bulk-000``, ``bulk-001``... 100 per
        namespace. Returns the (namespace, name) pairs.
        """
        if namespaces is None:
            namespaces = [f"bulk-{i:03d}" for i in range(max(1, math.ceil(count / 100)))]
        if not namespaces:
            raise ValueError("namespaces must not be empty")
        made: list[tuple[str, str]] = []
        with self._mutating():
            for i in range(count):
                namespace = namespaces[i % len(namespaces)]
                name = f"{name_prefix}-{i:05d}"
                image = f"{image_repository}/{name}:1.0.{i % 7}"
                w = self._new_workload(
                    "Deployment", namespace, name, image, None, replicas, labels, None
                )
                self._create_workload(w, materialize=False)
                made.append((namespace, name))
        return made

    # ------------------------------------------------------------------ the controller's inputs

    def set_image(self, kind: str, namespace: str, name: str, container: str, image: str) -> None:
        """Change one container's image: a new generation; the rollout follows over steps."""
        with self._mutating():
            w = self._workload(kind, namespace, name)
            if container not in w.containers:
                raise ValueError(f"{w.kind} {namespace}/{name} has no container {container!r}")
            if w.containers[container] == image:
                return
            self._materialize(w)
            w.containers[container] = image
            w.changed = (container,)
            w.generation += 1
            if w.kind == "DaemonSet":
                w.template_generation += 1
            self._put(w.resource, self._render_workload(w))
            self._active.add(w.key)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Change ``spec.replicas`` (a new generation, but the same pod template)."""
        with self._mutating():
            w = self._workload(kind, namespace, name)
            if w.kind == "DaemonSet":
                raise ValueError("a DaemonSet runs one pod per node: it does not scale")
            if replicas < 0:
                raise ValueError("replicas must be >= 0")
            if replicas == w.replicas:
                return
            self._materialize(w)
            w.replicas = replicas
            w.generation += 1
            self._put(w.resource, self._render_workload(w))
            self._active.add(w.key)

    def fail_rollout(
        self,
        kind: str,
        namespace: str,
        name: str,
        reason: FailureReason = "ProgressDeadlineExceeded",
        *,
        message: str | None = None,
        container: str | None = None,
    ) -> None:
        """Make the workload's current pod template broken: its pods never become ready.

        ``ProgressDeadlineExceeded``: containers run but fail their readiness probe, and a
        Deployment's Progressing condition turns False once the deadline has passed without
        progress (which happens with every other reason too). ``CrashLoopBackOff``/``OOMKilled``:
        the container exits (code 1 with ``message`` / 137) and restarts with back-off.
        ``ImagePullBackOff``: ErrImagePull, then back-off. ``Unschedulable``: Pending, not placed.
        Only the container the last :meth:`set_image` changed fails (or ``container``). A later
        :meth:`set_image` gives a new, healthy template; going back to this one fails again.
        """
        if reason not in _FAILURES:
            raise ValueError(f"unknown failure reason {reason!r}; one of {', '.join(_FAILURES)}")
        with self._mutating():
            w = self._workload(kind, namespace, name)
            if container is not None and container not in w.containers:
                raise ValueError(f"{w.kind} {namespace}/{name} has no container {container!r}")
            containers = (container,) if container else (w.changed or (next(iter(w.containers)),))
            self._materialize(w)
            w.faults[w.template_hash()] = _Fault(reason, message, containers)
            self._active.add(w.key)

    def recover(self, kind: str, namespace: str, name: str) -> None:
        """Heal the current pod template (the image got pushed, the node got memory...)."""
        with self._mutating():
            w = self._workload(kind, namespace, name)
            if w.faults.pop(w.template_hash(), None) is not None:
                self._active.add(w.key)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a workload and, like the garbage collector, its ReplicaSets and Pods."""
        with self._mutating():
            w = self._workload(kind, namespace, name)
            del self._workloads[w.key]
            self._active.discard(w.key)
            self._remove(w.resource, _key(namespace, name))
            if w.kind == "Deployment":
                for revision in w.revisions:
                    self._remove("replicasets", _key(namespace, revision.name))
            for pod in w.pods:
                self._remove("pods", _key(namespace, pod.name))

    # ------------------------------------------------------------------ time

    def step(self) -> int:
        """One reconciliation: simulated time moves by ``step_seconds`` (unless a clock was
        injected), each rollout moves by one replica, pods advance. Returns the writes made."""
        with self._mutating():
            if self._clock is None:
                self._sim_now += self.step_seconds
            return self._reconcile_all()

    def advance(self, seconds: float) -> int:
        """Let ``seconds`` of simulated time pass, reconciling every ``step_seconds``."""
        if self._clock is not None:
            raise RuntimeError("advance() moves the simulated clock: move the injected clock")
        writes = 0
        with self._mutating():
            remaining = seconds
            while remaining > 1e-9:
                delta = min(self.step_seconds, remaining)
                self._sim_now += delta
                remaining -= delta
                writes += self._reconcile_all()
        return writes

    def settle(self, max_steps: int = 1000) -> int:
        """Step until a step changes nothing; returns how many steps changed something."""
        for taken in range(max_steps):
            if not self.step():
                return taken
        return max_steps

    async def _tick(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.step()

    # ------------------------------------------------------------------ resourceVersion window

    def expire(self, resource_version: int | str | None = None) -> None:
        """Forget history up to ``resource_version`` (default: all of it), like an etcd
        compaction: a watch or a paginated list from an older version is 410 Gone."""
        with self._lock:
            target = self._rv if resource_version is None else int(resource_version)
            self._compact_to(min(target, self._rv))
        self._wake_watchers()

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK now on every open watch that asked for them."""
        self._in_loop(self._bookmark_all)

    def cut_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: abruptly (the TCP connection drops mid-stream, the client sees a
        broken chunked response) or, with ``abrupt=False``, cleanly as at a timeout."""
        ending: Literal["cut", "close"] = "cut" if abrupt else "close"

        def end_all() -> None:
            for watcher in self._watchers:
                watcher.ending = ending
                watcher.wake.set()

        self._in_loop(end_all)

    def _bookmark_all(self) -> None:
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.bookmark_due = True
                watcher.wake.set()

    # ------------------------------------------------------------------ store internals

    def _now(self) -> float:
        return self._clock() if self._clock is not None else self._sim_now

    def _digest(self, text: str) -> bytes:
        return hashlib.sha256(f"{self._seed}/{text}".encode()).digest()

    def _uid(self) -> str:
        return str(uuid.UUID(bytes=self._digest(f"uid/{next(self._ids)}")[:16], version=4))

    def _suffix(self, length: int = 5) -> str:
        digest = self._digest(f"suffix/{next(self._ids)}")
        return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in digest[:length])

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        with self._lock:
            before = self._rv
            yield
            changed = self._rv != before
        if changed:
            self._wake_watchers()

    def _in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _wake_watchers(self) -> None:
        def wake() -> None:
            for watcher in self._watchers:
                watcher.wake.set()

        self._in_loop(wake)

    def _sorted_keys(self, resource: str) -> list[str]:
        keys = self._sorted[resource]
        if keys is None:
            keys = self._sorted[resource] = sorted(self._objects[resource])
        return keys

    def _record(self, change: _Change) -> None:
        self._history.append(change)
        if self._rv - self._compacted > self.history_size:
            self._compact_to(self._rv - self.history_size)

    def _compact_to(self, target: int) -> None:
        if target <= self._compacted:
            return
        dropped = target - self._compacted
        for i in range(self._head, self._head + dropped):
            self._history[i] = None
        self._head += dropped
        self._compacted = target
        if self._head > len(self._history) // 2:
            del self._history[: self._head]
            self._head = 0

    def _changes_after(self, rv: int) -> list[_Change]:
        start = self._head + max(0, rv - self._compacted)
        return [c for c in self._history[start:] if c is not None]

    def _put(self, resource: str, obj: JsonDict) -> bool:
        """Store ``obj`` (fresh, never mutated afterwards) unless it equals the stored one."""
        meta = obj["metadata"]
        key = _key(meta.get("namespace"), meta["name"])
        store = self._objects[resource]
        old = store.get(key)
        if old is not None:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if old == obj:
                return False
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        store[key] = obj
        if old is None:
            self._sorted[resource] = None
        self._record(_Change(self._rv, resource, key, "MODIFIED" if old else "ADDED", obj, old))
        return True

    def _remove(self, resource: str, key: str) -> None:
        store = self._objects[resource]
        old = store.pop(key, None)
        if old is None:
            return
        self._sorted[resource] = None
        self._rv += 1
        last = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self._rv)}}
        self._record(_Change(self._rv, resource, key, "DELETED", last, old))

    def _snapshot(self, resource: str, rv: int) -> tuple[Mapping[str, JsonDict], list[str]]:
        """The resource's objects as they were at ``rv`` (undoing later changes)."""
        changes = [c for c in self._changes_after(rv) if c.resource == resource]
        if not changes:
            return self._objects[resource], self._sorted_keys(resource)
        snapshot = dict(self._objects[resource])
        for change in reversed(changes):
            if change.prev is None:
                snapshot.pop(change.key, None)
            else:
                snapshot[change.key] = change.prev
        return snapshot, sorted(snapshot)

    # ------------------------------------------------------------------ workload internals

    def _workload(self, kind: str, namespace: str, name: str) -> _Workload:
        w = self._workloads.get((_workload_kind(kind), namespace, name))
        if w is None:
            raise KeyError(f"no {_workload_kind(kind)} {namespace}/{name}")
        return w

    def _copy_of(self, w: _Workload) -> JsonDict:
        return copy.deepcopy(self._objects[w.resource][_key(w.namespace, w.name)])

    def _new_workload(
        self,
        kind: WorkloadKind,
        namespace: str,
        name: str,
        image: str | None,
        images: Mapping[str, str] | None,
        replicas: int,
        labels: Mapping[str, str] | None,
        annotations: Mapping[str, str] | None,
    ) -> _Workload:
        if (kind, namespace, name) in self._workloads:
            raise ValueError(f"{kind} {namespace}/{name} already exists")
        if (image is None) == (images is None):
            raise ValueError("give exactly one of image= or images={container: image}")
        containers = {name: image} if image is not None else dict(images or {})
        if not containers:
            raise ValueError("a pod template needs at least one container")
        if namespace not in self._objects["namespaces"]:
            self.add_namespace(namespace)
        all_labels = {"app": name, **(labels or {})}
        return _Workload(
            kind=kind,
            namespace=namespace,
            name=name,
            uid=self._uid(),
            created=self._now(),
            labels=dict(all_labels),
            annotations=dict(annotations or {}),
            selector={"app": name},
            template_labels=dict(all_labels),
            containers=containers,
            replicas=replicas,
        )

    def _create_workload(self, w: _Workload, *, materialize: bool) -> None:
        now = self._now()
        revision = self._new_revision(w)
        w.current = w.stable = revision
        revision.replicas = w.replicas
        w.materialized = False
        if w.kind == "Deployment":
            self._set_condition(
                w,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
            self._set_condition(
                w,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{revision.name}" has successfully progressed.',
                now,
            )
        self._workloads[w.key] = w
        self._put(w.resource, self._render_workload(w))
        if w.kind == "Deployment":
            self._put("replicasets", self._render_replicaset(w, revision))
        if materialize:
            self._materialize(w)

    def _new_revision(self, w: _Workload) -> _Revision:
        template_hash = w.template_hash()
        number = max((r.number for r in w.revisions), default=0) + 1
        for revision in w.revisions:
            if revision.hash == template_hash:  # a rollback: the old ReplicaSet comes back
                revision.number = number
                return revision
        revision = _Revision(
            name=w.revision_name(template_hash),
            hash=template_hash,
            number=number,
            labels=dict(w.template_labels),
            containers=dict(w.containers),
            uid=self._uid(),
            created=self._now(),
        )
        w.revisions.append(revision)
        return revision

    def _materialize(self, w: _Workload) -> None:
        """Create the Pods a bulk-made Deployment has been pretending to run."""
        if w.materialized:
            return
        w.materialized = True
        assert w.current is not None
        for i in range(w.replicas):
            node = self.nodes[i] if w.kind == "DaemonSet" else None
            pod = self._create_pod(w, w.current, ready=True, quiet=True, node=node)
            self._put("pods", self._render_pod(w, pod))

    def _create_pod(
        self,
        w: _Workload,
        revision: _Revision,
        *,
        ready: bool = False,
        quiet: bool = False,
        ordinal: int | None = None,
        node: str | None = None,
    ) -> _Pod:
        now = self._now()
        if w.kind == "StatefulSet":
            ordinal = len(w.pods) if ordinal is None else ordinal
            name = f"{w.name}-{ordinal}"
        elif w.kind == "DaemonSet":
            name = f"{w.name}-{self._suffix()}"
        else:
            name = f"{revision.name}-{self._suffix()}"
        if node is None:
            node = self.nodes[next(self._placement) % len(self.nodes)]
        node_index = self.nodes.index(node) + 1
        pod = _Pod(
            name=name,
            uid=self._uid(),
            revision=revision,
            created=now,
            home=node,
            node=node,
            ip=f"10.244.{node_index}.{next(self._ips) % 250 + 2}",
            ordinal=ordinal,
            changed=now,
        )
        if ready:
            pod.phase, pod.started, pod.waiting = "ready", now, ""
        w.pods.append(pod)
        fault = w.faults.get(revision.hash)
        if fault is not None and fault.reason == "Unschedulable" and not ready:
            pod.phase, pod.node = "unschedulable", None
        if not quiet:
            self._controller_event(w, "SuccessfulCreate", pod, created=True)
            if pod.phase == "unschedulable":
                self._pod_event(w, pod, "Warning", "FailedScheduling", self._unschedulable(fault))
        return pod

    def _delete_pod(self, w: _Workload, pod: _Pod) -> None:
        w.pods.remove(pod)
        self._remove("pods", _key(w.namespace, pod.name))
        self._controller_event(w, "SuccessfulDelete", pod, created=False)

    # ------------------------------------------------------------------ reconciliation

    def _reconcile_all(self) -> int:
        before = self._rv
        for key in sorted(self._active):
            w = self._workloads.get(key)
            if w is None or not self._reconcile(w):
                self._active.discard(key)
        return self._rv - before

    def _reconcile(self, w: _Workload) -> bool:
        """One pass of kubelet + controller for ``w``; returns whether it still has work."""
        now = self._now()
        for pod in list(w.pods):
            self._kubelet(w, pod, now)
        if w.kind == "Deployment":
            busy = self._reconcile_deployment(w, now)
        elif w.kind == "StatefulSet":
            busy = self._reconcile_statefulset(w)
        else:
            busy = self._reconcile_daemonset(w)
        for pod in w.pods:
            self._put("pods", self._render_pod(w, pod))
        if w.kind == "Deployment":
            for revision in w.revisions:
                self._put("replicasets", self._render_replicaset(w, revision))
        self._put(w.resource, self._render_workload(w))
        return busy or any(not pod.ready for pod in w.pods)

    def _kubelet(self, w: _Workload, pod: _Pod, now: float) -> None:
        """What the scheduler and kubelet do to one pod in one step."""
        if pod.ready:
            return
        fault = w.faults.get(pod.revision.hash)
        if fault is None:
            pod.node = pod.home
            pod.phase, pod.started, pod.changed, pod.waiting = "ready", now, now, ""
            return
        reason = fault.reason
        if reason == "Unschedulable":
            if pod.phase != "unschedulable":
                pod.phase, pod.node = "unschedulable", None
                self._pod_event(w, pod, "Warning", "FailedScheduling", self._unschedulable(fault))
        elif reason == "ImagePullBackOff":
            if pod.phase != "pulling" or (
                pod.waiting == "ImagePullBackOff" and now >= pod.retry_at
            ):
                pod.phase, pod.waiting = "pulling", "ErrImagePull"
                pod.attempts += 1
                pod.retry_at = now + min(BACKOFF_START * 2.0 ** (pod.attempts - 1), BACKOFF_MAX)
                image = self._faulty_image(pod, fault)
                self._pod_event(
                    w,
                    pod,
                    "Warning",
                    "Failed",
                    f'Failed to pull image "{image}": {self._pull_error(image, fault)}',
                    fault,
                )
                self._pod_event(w, pod, "Warning", "Failed", "Error: ErrImagePull", fault)
            elif pod.waiting == "ErrImagePull":
                pod.waiting = "ImagePullBackOff"
                image = self._faulty_image(pod, fault)
                self._pod_event(
                    w, pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', fault
                )
                self._pod_event(w, pod, "Warning", "Failed", "Error: ImagePullBackOff", fault)
        elif reason in ("CrashLoopBackOff", "OOMKilled"):
            if pod.phase != "crashing" or now >= pod.retry_at:
                pod.phase, pod.waiting = "crashing", "CrashLoopBackOff"
                pod.started = pod.terminated_at = now  # it starts and dies at once
                pod.restarts += 1
                pod.retry_at = now + self._backoff(pod)
                self._pod_event(
                    w,
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {fault.containers[0]} in pod "
                    f"{pod.name}_{w.namespace}({pod.uid})",
                    fault,
                )
        else:  # the readiness probe keeps failing
            if pod.phase != "unready":
                pod.phase, pod.started, pod.waiting = "unready", now, ""
                pod.retry_at = now
            if now >= pod.retry_at:
                pod.retry_at = now + PROBE_PERIOD
                self._pod_event(
                    w,
                    pod,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    fault,
                )

    @staticmethod
    def _backoff(pod: _Pod) -> float:
        return min(BACKOFF_START * 2.0 ** (pod.restarts - 1), BACKOFF_MAX)

    def _reconcile_deployment(self, w: _Workload, now: float) -> bool:
        progressed, w.catching_up = w.catching_up, False
        created_revision: str | None = None
        if w.observed != w.generation:
            w.observed = w.generation
            assert w.current is not None
            if w.current.hash != w.template_hash():
                reused = any(r.hash == w.template_hash() for r in w.revisions)
                w.current = self._new_revision(w)
                created_revision = "FoundNewReplicaSet" if reused else "NewReplicaSetCreated"
                w.catching_up = True
                self._put("replicasets", self._render_replicaset(w, w.current))
        new = w.current
        assert new is not None
        old_pods = [p for p in w.pods if p.revision is not new]
        new_pods = [p for p in w.pods if p.revision is new]
        ready_new = sum(p.ready for p in new_pods)
        broken_old = [p for p in old_pods if not p.ready]
        if broken_old:
            self._delete_pod(w, broken_old[0])
            old_pods.remove(broken_old[0])
            progressed = True
        elif old_pods and ready_new + len(old_pods) > w.replicas:
            self._delete_pod(w, old_pods[-1])
            old_pods.pop()
            progressed = True
        if len(new_pods) < w.replicas and len(new_pods) + len(old_pods) < w.replicas + 1:
            new_pods.append(self._create_pod(w, new))
            progressed = True
        elif len(new_pods) > w.replicas:
            victim = next((p for p in reversed(new_pods) if not p.ready), new_pods[-1])
            self._delete_pod(w, victim)
            new_pods.remove(victim)
        previous_replicas = {r.name: r.replicas for r in w.revisions}
        for revision in w.revisions:
            revision.scale(sum(1 for p in w.pods if p.revision is revision))
        for revision in w.revisions:
            before, after = previous_replicas[revision.name], revision.replicas
            if before != after:
                direction = "up" if after > before else "down"
                self._workload_event(
                    w,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled {direction} replica set {revision.name} from {before} to {after}",
                )
        self._prune_revisions(w)
        ready = sum(p.ready for p in w.pods)
        complete = len(new_pods) == w.replicas and len(w.pods) == w.replicas and ready == w.replicas
        minimum = w.replicas - _max_unavailable(w.replicas)
        if ready >= minimum:
            self._set_condition(
                w,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
        else:
            self._set_condition(
                w,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            )
        if created_revision == "NewReplicaSetCreated":
            self._set_condition(
                w,
                "Progressing",
                "True",
                created_revision,
                f'Created new replica set "{new.name}"',
                now,
                touch=True,
            )
        elif created_revision == "FoundNewReplicaSet":
            # As the deployment controller does (getNewReplicaSet: ``cond == nil``): going back
            # to an existing ReplicaSet sets the condition only where there is none, and the
            # status it writes keeps any other, even the previous rollout's
            # ProgressDeadlineExceeded, until a later sync sees progress.
            if "Progressing" not in w.conditions:
                self._set_condition(
                    w,
                    "Progressing",
                    "True",
                    created_revision,
                    f'Found new replica set "{new.name}"',
                    now,
                    touch=True,
                )
        elif complete:
            self._set_condition(
                w,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new.name}" has successfully progressed.',
                now,
            )
        elif progressed:
            self._set_condition(
                w,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{new.name}" is progressing.',
                now,
                touch=True,
            )
        else:
            progressing = w.conditions.get("Progressing")
            if (
                progressing is not None
                and progressing.reason != "ProgressDeadlineExceeded"
                and now > progressing.updated + w.progress_deadline
            ):
                self._set_condition(
                    w,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{new.name}" has timed out progressing.',
                    now,
                )
        return not complete or w.catching_up

    def _prune_revisions(self, w: _Workload) -> None:
        idle = [
            r
            for r in w.revisions
            if r is not w.current and r.replicas == 0 and not any(p.revision is r for p in w.pods)
        ]
        idle.sort(key=lambda r: r.number)
        while len(idle) > REVISION_HISTORY_LIMIT:
            revision = idle.pop(0)
            w.revisions.remove(revision)
            self._remove("replicasets", _key(w.namespace, revision.name))

    def _reconcile_statefulset(self, w: _Workload) -> bool:
        if w.observed != w.generation:
            w.observed = w.generation
            assert w.current is not None
            if w.current.hash != w.template_hash():
                w.current = self._new_revision(w)
        update = w.current
        assert update is not None
        pods = sorted(w.pods, key=lambda p: p.ordinal or 0)
        all_ready = all(p.ready for p in pods)
        if len(pods) < w.replicas:
            if all_ready:
                self._create_pod(w, update, ordinal=len(pods))
        elif len(pods) > w.replicas:
            if all_ready:
                self._delete_pod(w, pods[-1])
        else:
            broken = [p for p in pods if not p.ready and p.revision is not update]
            outdated = [p for p in pods if p.revision is not update]
            target = broken[-1] if broken else (outdated[-1] if outdated and all_ready else None)
            if target is not None:
                self._delete_pod(w, target)
                self._create_pod(w, update, ordinal=target.ordinal, node=target.home)
        if len(w.pods) == w.replicas and all(p.revision is update and p.ready for p in w.pods):
            w.stable = update
        return w.stable is not update or len(w.pods) != w.replicas

    def _reconcile_daemonset(self, w: _Workload) -> bool:
        if w.observed != w.generation:
            w.observed = w.generation
            assert w.current is not None
            if w.current.hash != w.template_hash():
                w.current = self._new_revision(w)
        update = w.current
        assert update is not None
        placed = {p.home for p in w.pods}
        for node in self.nodes:
            if node not in placed:
                self._create_pod(w, update, node=node)
        broken = [p for p in w.pods if not p.ready and p.revision is not update]
        unavailable = sum(not p.ready for p in w.pods)
        outdated = [p for p in w.pods if p.revision is not update]
        target = broken[0] if broken else (outdated[0] if outdated and not unavailable else None)
        if target is not None:
            self._delete_pod(w, target)
            self._create_pod(w, update, node=target.home)
        return any(p.revision is not update for p in w.pods)

    def _set_condition(
        self,
        w: _Workload,
        kind: str,
        status: Literal["True", "False"],
        reason: str,
        message: str,
        now: float,
        *,
        touch: bool = False,
    ) -> None:
        """``SetDeploymentCondition``: same status and reason is no change unless touched; the
        transition time moves only when the status flips; the condition goes to the end."""
        current = w.conditions.get(kind)
        unchanged = current is not None and current.status == status and current.reason == reason
        if unchanged and (not touch or current is None or current.updated == now):
            return
        transitioned = current.transitioned if current and current.status == status else now
        w.conditions.pop(kind, None)
        w.conditions[kind] = _Condition(status, reason, message, now, transitioned)

    # ------------------------------------------------------------------ core events

    def _record_event(
        self,
        *,
        involved: JsonDict,
        field_path: str | None,
        type_: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        component: str,
        host: str | None = None,
    ) -> None:
        """Create or bump (``count``) an Event, aggregated like the event recorder does."""
        meta = involved["metadata"]
        now = _ts(self._now())
        index = (meta["uid"], type_, reason, message)
        namespace = meta.get("namespace") or "default"
        key = self._events.get(index)
        existing = self._objects["events"].get(key) if key else None
        if existing is not None:
            bumped = copy.deepcopy(existing)
            bumped["count"] += 1
            bumped["lastTimestamp"] = now
            bumped["involvedObject"]["resourceVersion"] = meta["resourceVersion"]
            self._put("events", bumped)
            return
        name = f"{meta['name']}.{int(self._now() * 1e9) + next(self._ids):x}"
        reference: JsonDict = {
            "kind": involved["kind"],
            "namespace": namespace,
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": involved["apiVersion"],
            "resourceVersion": meta["resourceVersion"],
        }
        if field_path:
            reference["fieldPath"] = field_path
        source: JsonDict = {"component": component}
        if host:
            source["host"] = host
        event: JsonDict = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self._uid(),
                "resourceVersion": "",
                "creationTimestamp": now,
            },
            "involvedObject": reference,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        self._events[index] = _key(namespace, name)
        self._put("events", event)

    def _workload_event(
        self, w: _Workload, type_: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        involved = self._objects[w.resource].get(_key(w.namespace, w.name))
        if involved is not None:
            component = f"{w.kind.lower()}-controller"
            self._record_event(
                involved=involved,
                field_path=None,
                type_=type_,
                reason=reason,
                message=message,
                component=component,
            )

    def _controller_event(self, w: _Workload, reason: str, pod: _Pod, *, created: bool) -> None:
        verb = "create" if created else "delete"
        if w.kind == "StatefulSet":
            message = f"{verb} Pod {pod.name} in StatefulSet {w.name} successful"
            self._workload_event(w, "Normal", reason, message)
            return
        message = f"{'Created' if created else 'Deleted'} pod: {pod.name}"
        if w.kind == "DaemonSet":
            self._workload_event(w, "Normal", reason, message)
            return
        involved = self._objects["replicasets"].get(_key(w.namespace, pod.revision.name))
        if involved is not None:
            self._record_event(
                involved=involved,
                field_path=None,
                type_="Normal",
                reason=reason,
                message=message,
                component="replicaset-controller",
            )

    def _pod_event(
        self,
        w: _Workload,
        pod: _Pod,
        type_: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        fault: _Fault | None = None,
    ) -> None:
        key = _key(w.namespace, pod.name)
        if key not in self._objects["pods"]:
            self._put("pods", self._render_pod(w, pod))
        involved = self._objects["pods"][key]
        if reason == "FailedScheduling":
            self._record_event(
                involved=involved,
                field_path=None,
                type_=type_,
                reason=reason,
                message=message,
                component="default-scheduler",
            )
            return
        container = fault.containers[0] if fault else next(iter(pod.revision.containers))
        self._record_event(
            involved=involved,
            field_path=f"spec.containers{{{container}}}",
            type_=type_,
            reason=reason,
            message=message,
            component="kubelet",
            host=pod.node,
        )

    # ------------------------------------------------------------------ failure texts

    def _unschedulable(self, fault: _Fault | None) -> str:
        if fault is not None and fault.message:
            return fault.message
        n = len(self.nodes)
        return (
            f"0/{n} nodes are available: {n} Insufficient memory. preemption: 0/{n} nodes are "
            f"available: {n} No preemption victims found for incoming pod."
        )

    @staticmethod
    def _faulty_image(pod: _Pod, fault: _Fault) -> str:
        return pod.revision.containers.get(fault.containers[0], "")

    @staticmethod
    def _pull_error(image: str, fault: _Fault) -> str:
        if fault.message:
            return fault.message
        return (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found'
        )

    # ------------------------------------------------------------------ rendering

    def _meta(
        self,
        w: _Workload,
        *,
        generation: int,
        annotations: Mapping[str, str] | None = None,
    ) -> JsonDict:
        meta: JsonDict = {
            "name": w.name,
            "namespace": w.namespace,
            "uid": w.uid,
            "resourceVersion": "",
            "generation": generation,
            "creationTimestamp": _ts(w.created),
            "labels": dict(w.labels),
        }
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta

    @staticmethod
    def _template(labels: Mapping[str, str], containers: Mapping[str, str]) -> JsonDict:
        return {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "containers": [
                    {
                        "name": name,
                        "image": image,
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": _pull_policy(image),
                    }
                    for name, image in containers.items()
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {},
                "schedulerName": "default-scheduler",
            },
        }

    def _render_workload(self, w: _Workload) -> JsonDict:
        if w.kind == "Deployment":
            return self._render_deployment(w)
        if w.kind == "StatefulSet":
            return self._render_statefulset(w)
        return self._render_daemonset(w)

    def _counts(self, w: _Workload, revision: _Revision | None = None) -> tuple[int, int]:
        """(pods, ready pods) of the workload or one revision; bulk ones pretend to run."""
        if not w.materialized:
            matches = revision is None or revision is w.current
            return (w.replicas, w.replicas) if matches else (0, 0)
        pods = [p for p in w.pods if revision is None or p.revision is revision]
        return len(pods), sum(p.ready for p in pods)

    def _render_deployment(self, w: _Workload) -> JsonDict:
        current = w.current
        assert current is not None
        annotations = {**w.annotations, REVISION_ANNOTATION: str(current.number)}
        total, ready = self._counts(w)
        updated, _ = self._counts(w, current)
        status: JsonDict = {"observedGeneration": w.observed}
        for name, value in (
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
            ("unavailableReplicas", max(0, total - ready)),
        ):
            if value:
                status[name] = value
        status["conditions"] = [
            {
                "type": kind,
                "status": c.status,
                "lastUpdateTime": _ts(c.updated),
                "lastTransitionTime": _ts(c.transitioned),
                "reason": c.reason,
                "message": c.message,
            }
            for kind, c in w.conditions.items()
        ]
        return {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": self._meta(w, generation=w.generation, annotations=annotations),
            "spec": {
                "replicas": w.replicas,
                "selector": {"matchLabels": dict(w.selector)},
                "template": self._template(w.template_labels, w.containers),
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
                "progressDeadlineSeconds": w.progress_deadline,
            },
            "status": status,
        }

    def _render_replicaset(self, w: _Workload, revision: _Revision) -> JsonDict:
        labels = {**revision.labels, "pod-template-hash": revision.hash}
        replicas, ready = self._counts(w, revision)
        status: JsonDict = {"replicas": replicas}
        if replicas:
            status["fullyLabeledReplicas"] = replicas
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        status["observedGeneration"] = revision.generation
        return {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": revision.name,
                "namespace": w.namespace,
                "uid": revision.uid,
                "resourceVersion": "",
                "generation": revision.generation,
                "creationTimestamp": _ts(revision.created),
                "labels": labels,
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(w.replicas),
                    "deployment.kubernetes.io/max-replicas": str(
                        w.replicas + _max_surge(w.replicas)
                    ),
                    REVISION_ANNOTATION: str(revision.number),
                },
                "ownerReferences": [self._owner(w)],
            },
            "spec": {
                "replicas": revision.replicas,
                "selector": {"matchLabels": {**w.selector, "pod-template-hash": revision.hash}},
                "template": self._template(labels, revision.containers),
            },
            "status": status,
        }

    def _render_statefulset(self, w: _Workload) -> JsonDict:
        update, stable = w.current, w.stable
        assert update is not None
        assert stable is not None
        total, ready = self._counts(w)
        current_count, _ = self._counts(w, stable)
        updated, _ = self._counts(w, update)
        status: JsonDict = {"observedGeneration": w.observed, "replicas": total}
        if ready:
            status["readyReplicas"] = ready
        if current_count:
            status["currentReplicas"] = current_count
        if updated:
            status["updatedReplicas"] = updated
        status["currentRevision"] = w.revision_name(stable.hash)
        status["updateRevision"] = w.revision_name(update.hash)
        status["collisionCount"] = 0
        status["availableReplicas"] = ready
        return {
            "kind": "StatefulSet",
            "apiVersion": "apps/v1",
            "metadata": self._meta(w, generation=w.generation, annotations=w.annotations),
            "spec": {
                "replicas": w.replicas,
                "selector": {"matchLabels": dict(w.selector)},
                "template": self._template(w.template_labels, w.containers),
                "serviceName": w.name,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain",
                    "whenScaled": "Retain",
                },
            },
            "status": status,
        }

    def _render_daemonset(self, w: _Workload) -> JsonDict:
        update = w.current
        assert update is not None
        desired = len(self.nodes)
        scheduled = ready = updated = desired
        if w.materialized:
            placed = [p for p in w.pods if p.node is not None]
            scheduled = len(placed)
            ready = sum(p.ready for p in w.pods)
            updated = sum(1 for p in placed if p.revision is update)
        status: JsonDict = {
            "currentNumberScheduled": scheduled,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "observedGeneration": w.observed,
        }
        if updated:
            status["updatedNumberScheduled"] = updated
        if ready:
            status["numberAvailable"] = ready
        if desired - ready > 0:
            status["numberUnavailable"] = desired - ready
        annotations = {
            **w.annotations,
            "deprecated.daemonset.template.generation": str(w.template_generation),
        }
        return {
            "kind": "DaemonSet",
            "apiVersion": "apps/v1",
            "metadata": self._meta(w, generation=w.generation, annotations=annotations),
            "spec": {
                "selector": {"matchLabels": dict(w.selector)},
                "template": self._template(w.template_labels, w.containers),
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                },
                "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            },
            "status": status,
        }

    @staticmethod
    def _owner(w: _Workload) -> JsonDict:
        return {
            "apiVersion": "apps/v1",
            "kind": w.kind,
            "name": w.name,
            "uid": w.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _render_pod(self, w: _Workload, pod: _Pod) -> JsonDict:
        revision = pod.revision
        labels = dict(revision.labels)
        meta: JsonDict = {"name": pod.name}
        if w.kind == "Deployment":
            meta["generateName"] = f"{revision.name}-"
            labels["pod-template-hash"] = revision.hash
            owner: JsonDict = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": revision.name,
                "uid": revision.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        elif w.kind == "StatefulSet":
            meta["generateName"] = f"{w.name}-"
            labels["apps.kubernetes.io/pod-index"] = str(pod.ordinal)
            labels["controller-revision-hash"] = w.revision_name(revision.hash)
            labels["statefulset.kubernetes.io/pod-name"] = pod.name
            owner = self._owner(w)
        else:
            meta["generateName"] = f"{w.name}-"
            labels["controller-revision-hash"] = revision.hash
            labels["pod-template-generation"] = str(revision.number)
            owner = self._owner(w)
        meta.update(
            {
                "namespace": w.namespace,
                "uid": pod.uid,
                "resourceVersion": "",
                "creationTimestamp": _ts(pod.created),
                "labels": labels,
                "ownerReferences": [owner],
            }
        )
        spec = self._template(labels, revision.containers)["spec"]
        spec["serviceAccountName"] = "default"
        spec["serviceAccount"] = "default"
        if pod.node is not None:
            spec["nodeName"] = pod.node
        if w.kind == "StatefulSet":
            spec["hostname"] = pod.name
            spec["subdomain"] = w.name
        spec["tolerations"] = [
            {
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
            for taint in ("not-ready", "unreachable")
        ]
        spec["priority"] = 0
        spec["enableServiceLinks"] = True
        spec["preemptionPolicy"] = "PreemptLowerPriority"
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": spec,
            "status": self._pod_status(w, pod),
        }

    def _pod_status(self, w: _Workload, pod: _Pod) -> JsonDict:
        created = _ts(pod.created)
        if pod.phase == "unschedulable":
            return {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "lastProbeTime": None,
                        "lastTransitionTime": created,
                        "reason": "Unschedulable",
                        "message": self._unschedulable(w.faults.get(pod.revision.hash)),
                    }
                ],
                "qosClass": "BestEffort",
            }
        fault = None if pod.ready else w.faults.get(pod.revision.hash)
        statuses = [
            self._container_status(w, pod, name, image, fault)
            for name, image in pod.revision.containers.items()
        ]
        unready = [s["name"] for s in statuses if not s["ready"]]
        sandbox_up = pod.phase != "creating"
        changed = _ts(pod.changed)

        def condition(kind: str, ok: bool, since: str) -> JsonDict:
            body: JsonDict = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": since,
            }
            if not ok and kind in ("Ready", "ContainersReady"):
                body["reason"] = "ContainersNotReady"
                body["message"] = f"containers with unready status: [{' '.join(unready)}]"
            return body

        status: JsonDict = {
            "phase": "Pending" if pod.phase in ("creating", "pulling") else "Running",
            "conditions": [
                condition("PodReadyToStartContainers", sandbox_up, changed),
                condition("Initialized", True, created),
                condition("Ready", not unready, changed),
                condition("ContainersReady", not unready, changed),
                condition("PodScheduled", True, created),
            ],
            "hostIP": self._host_ip(pod),
            "hostIPs": [{"ip": self._host_ip(pod)}],
        }
        if sandbox_up:
            status["podIP"] = pod.ip
            status["podIPs"] = [{"ip": pod.ip}]
        status["startTime"] = created
        status["containerStatuses"] = statuses
        status["qosClass"] = "BestEffort"
        return status

    def _host_ip(self, pod: _Pod) -> str:
        return f"10.0.0.{10 + self.nodes.index(pod.home) + 1}"

    def _container_status(
        self, w: _Workload, pod: _Pod, name: str, image: str, fault: _Fault | None
    ) -> JsonDict:
        """One ``containerStatuses`` entry; only the containers named by the fault misbehave."""
        faulty = fault is not None and name in fault.containers
        container_id = f"containerd://{self._digest(f'{pod.uid}/{name}/{pod.restarts}').hex()}"
        pulled = _normalized_image(image)
        repository = pulled.split("@")[0].rsplit(":", 1)[0]
        image_id = f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
        started_at = _ts(pod.started if pod.started is not None else pod.created)
        waiting: JsonDict | None = None
        if pod.phase == "creating":
            waiting = {"reason": "ContainerCreating"}
        elif faulty and fault is not None and pod.phase == "pulling":
            error = self._pull_error(image, fault)
            if pod.waiting == "ImagePullBackOff":
                error = f'Back-off pulling image "{image}": ErrImagePull: {error}'
            waiting = {"reason": pod.waiting, "message": error}
        if waiting is not None:
            return {
                "name": name,
                "state": {"waiting": waiting},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": image,
                "imageID": "",
                "started": False,
            }
        if faulty and fault is not None and pod.phase == "crashing":
            oom = fault.reason == "OOMKilled"
            terminated: JsonDict = {
                "exitCode": 137 if oom else 1,
                "reason": "OOMKilled" if oom else "Error",
            }
            message: str | None = fault.message
            if message is None and not oom:
                message = "panic: dial tcp 10.96.0.15:5432: connect: connection refused"
            if message:
                terminated["message"] = message
            terminated["startedAt"] = started_at
            terminated["finishedAt"] = _ts(pod.terminated_at or pod.created)
            terminated["containerID"] = container_id
            back_off = _go_duration(self._backoff(pod))
            return {
                "name": name,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": (
                            f"back-off {back_off} restarting failed container={name} "
                            f"pod={pod.name}_{w.namespace}({pod.uid})"
                        ),
                    }
                },
                "lastState": {"terminated": terminated},
                "ready": False,
                "restartCount": pod.restarts,
                "image": pulled,
                "imageID": image_id,
                "containerID": container_id,
                "started": False,
            }
        return {
            "name": name,
            "state": {"running": {"startedAt": started_at}},
            "lastState": {},
            "ready": not faulty,  # a faulty running container is failing its readiness probe
            "restartCount": pod.restarts if faulty else 0,
            "image": pulled,
            "imageID": image_id,
            "containerID": container_id,
            "started": True,
        }

    # ------------------------------------------------------------------ HTTP

    def _guarded(self, handler: _Handler) -> _Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path_qs}")
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return _json_response(_status(401, "Unauthorized", "Unauthorized"), 401)
            if request.method not in ("GET", "HEAD"):
                verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
                message = (
                    f"the sandbox grants read-only access: cannot "
                    f"{verb.get(request.method, request.method.lower())} {request.path}"
                )
                return _json_response(_status(403, "Forbidden", message, {}), 403)
            try:
                return await handler(request)
            except _ApiError as exc:
                return _json_response(exc.body, exc.code)

        return guarded

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return _json_response(VERSION_INFO)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="404 page not found\n")

    def _route(self, request: web.Request) -> _Resource:
        info = request.match_info
        group, version = info.get("group", ""), info.get("version", "v1")
        resource = _RESOURCES.get(info["resource"])
        if resource is None or resource.group != group or resource.version != version:
            raise _ApiError.not_found()
        if "namespace" in info and not resource.namespaced:
            raise _ApiError.not_found()
        return resource

    async def _item(self, request: web.Request) -> web.StreamResponse:
        resource = self._route(request)
        namespace = request.match_info.get("namespace")
        name = request.match_info["name"]
        if resource.namespaced and namespace is None:
            raise _ApiError.not_found()
        with self._lock:
            obj = self._objects[resource.plural].get(_key(namespace, name))
        if obj is None:
            details: JsonDict = {"name": name, "kind": resource.plural}
            if resource.group:
                details = {"name": name, "group": resource.group, "kind": resource.plural}
            raise _ApiError(
                _status(404, "NotFound", f'{resource.qualified} "{name}" not found', details)
            )
        return _json_response(obj)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource = self._route(request)
        query = request.query
        flt = _Filter(
            resource,
            request.match_info.get("namespace"),
            _parse_label_selector(query.get("labelSelector", "")),
            _parse_field_selector(query.get("fieldSelector", ""), resource),
        )
        if _parse_bool(query.get("watch", "")):
            return await self._watch(request, flt)
        response = _json_response(self._list(flt, query))
        if self.after_list_page is not None:
            self.after_list_page(resource.plural, query)
        return response

    @staticmethod
    def _int(value: str, name: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise _ApiError.bad_request(f"invalid {name}: {value!r}") from None

    def _too_large(self, rv: int) -> _ApiError:
        return _ApiError(
            _status(
                504,
                "Timeout",
                f"Timeout: Too large resource version: {rv}, current: {self._rv}",
                {
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        )

    def _list(self, flt: _Filter, query: Mapping[str, str]) -> JsonDict:
        resource = flt.resource
        limit = self._int(query["limit"], "limit") if query.get("limit") else 0
        token = query.get("continue", "")
        rv_text = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        with self._lock:
            if token:
                if rv_text:
                    raise _ApiError.bad_request(
                        "specifying resource version is not allowed when using continue"
                    )
                snapshot_rv, start = _decode_continue(token)
                if snapshot_rv < self._compacted:
                    fresh = _encode_continue(self._rv, start)
                    body = _status(410, "Expired", _CONTINUE_EXPIRED)
                    body["metadata"] = {"continue": fresh}
                    raise _ApiError(body)
            else:
                start = ""
                snapshot_rv = self._rv
                if rv_text and rv_text != "0":
                    requested = self._int(rv_text, "resourceVersion")
                    if requested > self._rv:
                        raise self._too_large(requested)
                    if match == "Exact":
                        if requested < self._compacted:
                            raise _ApiError(
                                _status(
                                    410,
                                    "Expired",
                                    "The resourceVersion for the provided list is too old.",
                                )
                            )
                        snapshot_rv = requested
                elif match == "Exact":
                    raise _ApiError(
                        _status(
                            422,
                            "Invalid",
                            'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
                            'forbidden for resourceVersion "0"',
                        )
                    )
            objects, keys = self._snapshot(resource.plural, snapshot_rv)
            lo, hi = 0, len(keys)
            if flt.namespace is not None:
                lo = bisect.bisect_left(keys, f"{flt.namespace}/")
                hi = bisect.bisect_left(keys, f"{flt.namespace}0")  # "0" sorts right after "/"
            lo = max(lo, bisect.bisect_left(keys, start))
            items: list[JsonDict] = []
            index = lo
            while index < hi and (not limit or len(items) < limit):
                obj = objects[keys[index]]
                index += 1
                if not flt.selective or flt.matches(obj):
                    items.append(obj)
            metadata: JsonDict = {"resourceVersion": str(snapshot_rv)}
            if index < hi and limit:
                metadata["continue"] = _encode_continue(snapshot_rv, keys[index - 1] + "\x00")
                if not flt.selective:
                    metadata["remainingItemCount"] = hi - index
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": [
                {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in items
            ],
        }

    def _translate(self, watcher: _Watcher, change: _Change) -> tuple[str, JsonDict] | None:
        """The event a watcher with a selector sees for a change, like the watch cache."""
        flt = watcher.filter
        if change.resource != flt.resource.plural:
            return None
        if change.type == "DELETED":
            return ("DELETED", change.obj) if flt.matches(change.obj) else None
        now = flt.matches(change.obj)
        before = change.prev is not None and flt.matches(change.prev)
        if now:
            return ("MODIFIED" if before else "ADDED", change.obj)
        if before and change.prev is not None:
            meta = {**change.prev["metadata"], "resourceVersion": str(change.rv)}
            return ("DELETED", {**change.prev, "metadata": meta})
        return None

    def _collect(self, watcher: _Watcher) -> tuple[list[tuple[str, JsonDict]], JsonDict | None]:
        with self._lock:
            if watcher.cursor < self._compacted:
                return [], self._expired(watcher.cursor)
            events = [
                event
                for change in self._changes_after(watcher.cursor)
                if (event := self._translate(watcher, change)) is not None
            ]
            watcher.cursor = max(watcher.cursor, self._rv)
        return events, None

    def _expired(self, rv: int) -> JsonDict:
        return _status(410, "Expired", f"too old resource version: {rv} ({self._compacted + 1})")

    def _bookmark(self, resource: _Resource, rv: int, *, initial_end: bool = False) -> bytes:
        meta: JsonDict = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
        return _json_bytes({"type": "BOOKMARK", "object": obj}) + b"\n"

    async def _watch(self, request: web.Request, flt: _Filter) -> web.StreamResponse:
        query = request.query
        rv_text = query.get("resourceVersion", "")
        bookmarks = _parse_bool(query.get("allowWatchBookmarks", ""))
        timeout = (
            self._int(query["timeoutSeconds"], "timeoutSeconds")
            if query.get("timeoutSeconds")
            else DEFAULT_WATCH_TIMEOUT
        )
        initial_flag = query.get("sendInitialEvents")
        send_initial = (
            _parse_bool(initial_flag) if initial_flag is not None else rv_text in ("", "0")
        )
        match = query.get("resourceVersionMatch")
        if initial_flag is not None and send_initial and match != "NotOlderThan":
            raise _ApiError(
                _status(
                    422,
                    "Invalid",
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                    "resourceVersionMatch to NotOlderThan",
                )
            )
        initial: list[JsonDict] = []
        expired: JsonDict | None = None
        with self._lock:
            if send_initial:
                store = self._objects[flt.resource.plural]
                initial = [
                    store[key]
                    for key in self._sorted_keys(flt.resource.plural)
                    if flt.matches(store[key])
                ]
                cursor = self._rv
            elif rv_text in ("", "0"):
                cursor = self._rv
            else:
                cursor = self._int(rv_text, "resourceVersion")
                if cursor < self._compacted:
                    expired = self._expired(cursor)
        watcher = _Watcher(flt, cursor, bookmarks, request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired is not None:
            await response.write(_json_bytes({"type": "ERROR", "object": expired}) + b"\n")
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        self._watchers.add(watcher)
        self._watch_opened.set()
        try:
            for obj in initial:
                await response.write(_json_bytes({"type": "ADDED", "object": obj}) + b"\n")
            if initial_flag is not None and send_initial and bookmarks:
                await response.write(self._bookmark(flt.resource, cursor, initial_end=True))
            while True:
                watcher.wake.clear()
                if watcher.ending == "cut":
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError  # what aiohttp sees when a peer vanishes
                if watcher.ending == "close":
                    break
                events, gone = self._collect(watcher)
                if gone is not None:
                    await response.write(_json_bytes({"type": "ERROR", "object": gone}) + b"\n")
                    break
                if events:
                    await response.write(
                        b"".join(
                            _json_bytes({"type": kind, "object": obj}) + b"\n"
                            for kind, obj in events
                        )
                    )
                now = loop.time()
                if now >= deadline:
                    break
                if bookmarks and (watcher.bookmark_due or now >= next_bookmark):
                    watcher.bookmark_due = False
                    next_bookmark = now + self.bookmark_interval
                    await response.write(self._bookmark(flt.resource, watcher.cursor))
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, next_bookmark - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wake.wait(), timeout=max(0.0, min(wait, 1.0)))
        except ConnectionResetError:
            pass
        finally:
            self._watchers.discard(watcher)
        return response
