"""A GitOps controller in a box, like Argo CD or Flux: what was merged into the GitOps repo's
branch reaches the cluster (the Kubernetes sandbox) promptly, late, or never.

``GitOpsController(gitlab, kube, project=..., branch="main", paths=..., mode=..., lag=...)``
hears every push to ``branch`` of ``project`` in the GitLab sandbox the moment it happens (the
in-process equivalent of Argo CD's webhook) and notes when it did on ``clock`` (default: the
cluster's clock, ``kube.now``, which moves with ``kube.step()``, ``kube.advance()`` or the
cluster's ticker). :meth:`GitOpsController.sync` then applies, in one go, the files that changed
between the commit last applied and the newest push that is due:

* ``mode="sync"``: a push is due ``lag`` seconds (of ``clock``) after it happened; with
  ``lag=0`` at once. Several pushes due together are applied as one sync of the newest, as a
  controller that catches up does.
* ``mode="never"``: a controller that is not syncing (suspended, broken, out of sync forever):
  pushes are heard but nothing is ever applied. Setting ``mode = "sync"`` later applies them,
  like a controller that was repaired.

Nothing moves unless :meth:`~GitOpsController.sync` is called: by the test, as it calls
``kube.step()`` and ``gitlab.run_pipelines()``, or every ``interval`` seconds by the polling task
:meth:`~GitOpsController.start` runs (``async with`` does both), for ``pitcrew demo``.

What is applied, to workloads that already exist in the cluster (no workload is created; a
workload or container the cluster does not have is noted in ``missing``):

* a Deployment, StatefulSet or DaemonSet manifest (any ``*.yaml``/``*.yml`` document of those
  kinds): each container's image, by container name, on the workload of that kind, namespace
  (default: ``namespace``, else ``default``) and name;
* a ``kustomization.yaml`` ``images:`` entry (``name`` with ``newTag``, ``newName`` and/or
  ``digest``): on the workload named like the image's last path segment (``.../shop/invoices``
  → ``invoices``) in the kustomization's ``namespace`` (default: ``namespace``, else every
  namespace), every container whose image is that repository gets the new reference; its
  ``resources`` are not read;
* a Helm values file (``values*.yaml``) with ``image.repository`` and ``image.tag``: the same,
  as Argo CD rendering the chart would.

Two more things follow git, as Argo CD with pruning or Flux (``prune: true``, its default) do:

* a ``RoleBinding`` document added or changed is applied (``kube.apply_rolebinding``), and one
  whose file is deleted is removed (``kube.delete_rolebinding``): break-glass access;
* with ``prune=True`` (the default), a deleted file's workloads are deleted from the cluster
  (``kube.delete``): the Deployment, StatefulSet or DaemonSet it named, or for a kustomization
  or Helm values file, the workload named like its image. ``prune=False`` leaves them running.

What it did to RoleBindings and pruned workloads is noted, oldest first, in ``changes``
(``"applied RoleBinding orders/pitcrew-access-bob"``, ``"deleted Deployment orders/orders"``).

Each image change is one ``kube.set_image`` (a new generation): the rollout then follows in the
cluster with ``kube.step()`` like any other. ``paths`` are globs of the repo's directories this
controller syncs (an Argo CD Application's ``path``): ``("apps/*/production",)`` keeps a
production cluster from applying staging's manifests; the default ``("",)`` is the whole repo.

Deliberately not simulated: rendering (kustomize bases, overlays' ``resources``, patches, Helm
charts), fields other than container images (replicas, env, labels...), creating workloads,
kinds other than these, self-heal (a change made in the cluster by hand stays until git changes
that file again), health checks and sync waves, several clusters per controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import posixpath
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.kube import KubeSandbox

log = logging.getLogger(__name__)

Mode = Literal["sync", "never"]
MODES: tuple[Mode, ...] = ("sync", "never")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Push:
    """A push to the synced branch, as the controller heard it."""

    sha: str
    seen_at: float  # on the controller's clock


@dataclass(frozen=True)
class Applied:
    """One image the controller set in the cluster."""

    kind: str  # Deployment, StatefulSet or DaemonSet
    namespace: str
    name: str
    container: str
    image: str
    path: str  # the file in git that asked for it
    commit: str  # the commit that sync applied


@dataclass(frozen=True)
class _Containers:
    """A workload manifest: these containers' images on that exact workload."""

    kind: str
    namespace: str | None
    name: str
    images: dict[str, str]


@dataclass(frozen=True)
class _Override:
    """A kustomization ``images:`` entry or Helm ``image:``: every container running
    ``repository`` on the workload named like it gets a new reference."""

    namespace: str | None
    repository: str
    new_name: str | None
    new_tag: str | None
    digest: str | None

    @property
    def workload(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    def image_for(self, current: str) -> str:
        _, tag = split_image(current)
        name = self.new_name or self.repository
        if self.digest:
            return f"{name}@{self.digest}"
        tag = self.new_tag if self.new_tag is not None else tag
        return f"{name}:{tag}" if tag else name


_Want = _Containers | _Override


def split_image(image: str) -> tuple[str, str | None]:
    """``registry:5000/shop/orders:1.4.2@sha256:…`` → (``registry:5000/shop/orders``, ``1.4.2``)."""
    name = image.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        return f"{head}{slash}{last}", tag
    return name, None


class GitOpsController:
    """Argo CD / Flux for the sandboxes: applies ``branch`` of ``project`` to ``kube``."""

    def __init__(
        self,
        gitlab: GitLabSandbox,
        kube: KubeSandbox,
        *,
        project: int | str,
        branch: str = "main",
        paths: Sequence[str] = ("",),
        mode: Mode = "sync",
        lag: float = 0.0,
        namespace: str | None = None,
        clock: Callable[[], float] | None = None,
        prune: bool = True,
    ) -> None:
        """The cluster is taken to run what ``branch`` holds now (``synced``); every later push
        is heard. ``lag`` is in seconds of ``clock`` (default: ``kube.now``)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if lag < 0:
            raise ValueError("lag must be >= 0")
        self.gitlab = gitlab
        self.kube = kube
        self.project = project
        self.branch = branch
        self.paths = tuple(p.strip("/") for p in paths)
        self.mode: Mode = mode
        self.lag = lag
        self.namespace = namespace
        self.prune = prune
        self.changes: list[str] = []  # RoleBindings applied or removed, workloads pruned
        self.synced: str | None = gitlab.head(project, branch)
        self.applied: list[Applied] = []  # everything set in the cluster, oldest first
        self.missing: list[str] = []  # what git asked for that the cluster does not have
        self._clock = clock or (lambda: kube.now)
        self._project_id = gitlab.project_id(project)
        self._ref = f"refs/heads/{branch}"
        self._pending: list[Push] = []
        self._lock = threading.Lock()  # guards _pending; never held while calling a sandbox
        self._sync_lock = threading.Lock()  # one sync at a time
        self._poller: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = gitlab.listen(self._heard)

    # ------------------------------------------------------------------ what it heard

    @property
    def pending(self) -> list[Push]:
        """Pushes heard and not applied yet, oldest first."""
        with self._lock:
            return list(self._pending)

    def _heard(self, kind: str, payload: dict[str, Any]) -> None:
        if kind != "push" or payload.get("project_id") != self._project_id:
            return
        after = payload.get("after")
        if payload.get("ref") != self._ref or not after or after == _ZERO_SHA:
            return
        with self._lock:
            self._pending.append(Push(sha=str(after), seen_at=self._clock()))

    # ------------------------------------------------------------------ syncing

    def sync(self) -> list[Applied]:
        """Apply what changed up to the newest push that is due; returns what it set.

        Reads git and writes to the cluster synchronously: from async code, call it with
        ``asyncio.to_thread``."""
        with self._sync_lock:
            with self._lock:
                if self.mode != "sync":
                    return []
                now = self._clock()
                due = [p for p in self._pending if p.seen_at + self.lag <= now]
                if not due:
                    return []
                target = due[-1]
            applied = self._apply(self.synced, target.sha)
            self.synced = target.sha
            self.applied.extend(applied)
            with self._lock:
                del self._pending[: self._pending.index(target) + 1]
            return applied

    def _apply(self, base: str | None, head: str) -> list[Applied]:
        before = self.gitlab.files(self.project, ref=base) if base else {}
        after = self.gitlab.files(self.project, ref=head)
        changed = sorted(
            path
            for path, blob in after.items()
            if before.get(path) != blob and _manifest(path) and self._ours(path)
        )
        deleted = sorted(
            path for path in before if path not in after and _manifest(path) and self._ours(path)
        )
        applied: list[Applied] = []
        for path in changed:
            data = self.gitlab.blob(self.project, after[path])
            if data is None:
                continue
            for want in self._wanted(path, data):
                applied.extend(self._set(want, path=path, commit=head))
            for binding in _rolebindings(data):
                self.kube.apply_rolebinding(binding)
                self.changes.append(f"applied RoleBinding {_where(binding)}")
        for path in deleted:
            data = self.gitlab.blob(self.project, before[path])
            if data is None:
                continue
            for binding in _rolebindings(data):
                meta = binding.get("metadata") or {}
                namespace = str(meta.get("namespace") or self.namespace or "default")
                if self.kube.delete_rolebinding(namespace, str(meta.get("name"))):
                    self.changes.append(f"deleted RoleBinding {_where(binding)}")
            if self.prune:
                for want in self._wanted(path, data):
                    self._prune(want)
        return applied

    def _prune(self, want: _Want) -> None:
        """A deleted file's workload leaves the cluster (and its pods with it)."""
        if isinstance(want, _Containers):
            targets = [(want.kind, want.namespace or "default", want.name)]
        else:
            targets = [
                (kind, obj["metadata"]["namespace"], want.workload)
                for kind, obj in self._named(want.workload, want.namespace)
            ]
        for kind, namespace, name in targets:
            if self.kube.get(kind, namespace, name) is not None:
                self.kube.delete(kind, namespace, name)
                self.changes.append(f"deleted {kind} {namespace}/{name}")

    def _ours(self, path: str) -> bool:
        parts = path.split("/")[:-1]
        directories = ["/".join(parts[:i]) for i in range(len(parts) + 1)]
        return any(fnmatch.fnmatchcase(d, glob) for glob in self.paths for d in directories)

    def _wanted(self, path: str, data: bytes) -> list[_Want]:
        try:
            documents = [d for d in YAML(typ="safe", pure=True).load_all(data) if d is not None]
        except YAMLError as exc:
            self.missing.append(f"{path}: not YAML ({exc.__class__.__name__})")
            return []
        base = posixpath.basename(path)
        wants: list[_Want] = []
        for document in documents:
            if not isinstance(document, dict):
                continue
            if base in ("kustomization.yaml", "kustomization.yml") or (
                document.get("kind") == "Kustomization"
            ):
                wants.extend(_kustomization(document, self.namespace))
            elif document.get("kind") in WORKLOAD_KINDS:
                wants.extend(_workload(document, self.namespace))
            elif base.startswith("values"):
                wants.extend(_helm_values(document, self.namespace))
        return wants

    def _set(self, want: _Want, *, path: str, commit: str) -> list[Applied]:
        done: list[Applied] = []
        if isinstance(want, _Containers):
            namespace = want.namespace or "default"
            obj = self.kube.get(want.kind, namespace, want.name)
            if obj is None:
                self.missing.append(f"{path}: no {want.kind} {namespace}/{want.name}")
                return done
            running = _containers(obj)
            for container, image in want.images.items():
                if container not in running:
                    self.missing.append(
                        f"{path}: {want.kind} {namespace}/{want.name} has no container "
                        f"{container!r}"
                    )
                elif running[container] != image:
                    self.kube.set_image(want.kind, namespace, want.name, container, image)
                    done.append(
                        Applied(want.kind, namespace, want.name, container, image, path, commit)
                    )
            return done
        targets = list(self._named(want.workload, want.namespace))
        if not targets:
            where = want.namespace or "any namespace"
            self.missing.append(f"{path}: no workload {want.workload} in {where}")
        for kind, obj in targets:
            namespace = obj["metadata"]["namespace"]
            for container, current in _containers(obj).items():
                if split_image(current)[0] != want.repository:
                    continue
                image = want.image_for(current)
                if image != current:
                    self.kube.set_image(kind, namespace, want.workload, container, image)
                    done.append(
                        Applied(kind, namespace, want.workload, container, image, path, commit)
                    )
        return done

    def _named(self, name: str, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        for kind in WORKLOAD_KINDS:
            if namespace is not None:
                obj = self.kube.get(kind, namespace, name)
                if obj is not None:
                    yield kind, obj
            else:
                for obj in self.kube.objects(kind):
                    if obj["metadata"]["name"] == name:
                        yield kind, obj

    # ------------------------------------------------------------------ polling

    async def start(self, *, interval: float = 1.0) -> None:
        """Call :meth:`sync` every ``interval`` seconds (real time) until :meth:`stop`."""
        if self._poller is not None:
            raise RuntimeError("the GitOps controller is already polling")
        self._poller = asyncio.create_task(self._poll(interval))

    async def stop(self) -> None:
        """Stop polling (a sync under way finishes first)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def close(self) -> None:
        """Stop hearing pushes (pushes already heard can still be synced)."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    async def __aenter__(self) -> GitOpsController:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        self.close()

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.sync)
            except Exception:
                log.exception("the GitOps controller failed to sync")


# ---------------------------------------------------------------------- reading manifests


def _manifest(path: str) -> bool:
    return path.endswith((".yaml", ".yml")) or posixpath.basename(path) == "Kustomization"


def _rolebindings(data: bytes) -> list[dict[str, Any]]:
    try:
        documents = list(YAML(typ="safe", pure=True).load_all(data))
    except YAMLError:
        return []
    return [
        d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == "RoleBinding"
        and isinstance(d.get("metadata"), dict)
        and d["metadata"].get("name")
    ]


def _where(binding: dict[str, Any]) -> str:
    meta = binding.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _workload(document: dict[str, Any], namespace: str | None) -> list[_Want]:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return []
    template = _dig(document, "spec", "template", "spec", "containers")
    images = {
        str(c["name"]): str(c["image"])
        for c in (template if isinstance(template, list) else [])
        if isinstance(c, dict) and c.get("name") and c.get("image")
    }
    if not images:
        return []
    assert isinstance(metadata, dict)
    explicit = metadata.get("namespace")
    return [
        _Containers(
            kind=str(document["kind"]),
            namespace=str(explicit) if explicit else namespace,
            name=name,
            images=images,
        )
    ]


def _kustomization(document: dict[str, Any], namespace: str | None) -> list[_Want]:
    explicit = document.get("namespace")
    entries = document.get("images")
    wants: list[_Want] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        new_name, new_tag, digest = entry.get("newName"), entry.get("newTag"), entry.get("digest")
        if new_name is None and new_tag is None and digest is None:
            continue
        wants.append(
            _Override(
                namespace=str(explicit) if explicit else namespace,
                repository=str(entry["name"]),
                new_name=str(new_name) if new_name is not None else None,
                new_tag=str(new_tag) if new_tag is not None else None,
                digest=str(digest) if digest is not None else None,
            )
        )
    return wants


def _helm_values(document: dict[str, Any], namespace: str | None) -> list[_Want]:
    image = document.get("image")
    if not isinstance(image, dict) or not image.get("repository") or image.get("tag") is None:
        return []
    return [
        _Override(
            namespace=namespace,
            repository=str(image["repository"]),
            new_name=None,
            new_tag=str(image["tag"]),
            digest=None,
        )
    ]


def _containers(obj: dict[str, Any]) -> dict[str, str]:
    found = _dig(obj, "spec", "template", "spec", "containers")
    return {
        str(c["name"]): str(c["image"])
        for c in (found if isinstance(found, list) else [])
        if isinstance(c, dict) and "name" in c and "image" in c
    }


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
