"""Kubernetes objects (raw API JSON) → the rollout domain's observations.

Field by field as ``bot.domain.rollouts.WorkloadSnapshot`` documents it; API defaults are applied
where the API server would have (``spec.replicas`` 1, ``progressDeadlineSeconds`` 600).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from bot.domain.rollouts import Condition, Container, PodProblem, WorkloadSnapshot

Json = dict[str, Any]

_WAITING_PROBLEMS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "RunContainerError",
    }
)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def template_hash(template: Json) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def to_snapshot(
    obj: Json, *, kind: str, context: str, observed_at: datetime, deadline: int | None
) -> WorkloadSnapshot:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    template = spec.get("template") or {}
    containers = tuple(
        Container(name=str(c.get("name", "")), image=str(c.get("image", "")))
        for c in (template.get("spec") or {}).get("containers") or []
    )
    conditions = tuple(
        Condition(
            type=str(c.get("type")),
            status=str(c.get("status")),
            reason=c.get("reason"),
            message=c.get("message"),
            last_update=_time(c.get("lastUpdateTime") or c.get("lastTransitionTime")),
        )
        for c in status.get("conditions") or []
    )
    common: dict[str, Any] = {
        "kind": kind,
        "context": context,
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "labels": dict(meta.get("labels") or {}),
        "generation": int(meta.get("generation") or 0),
        "observed_generation": int(status.get("observedGeneration") or 0),
        "resource_version": str(meta.get("resourceVersion") or "0"),
        "template_hash": template_hash(template),
        "containers": containers,
        "conditions": conditions,
        "observed_at": observed_at,
    }
    strategy = spec.get("updateStrategy") or spec.get("strategy") or {}
    if kind == "DaemonSet":
        return WorkloadSnapshot(
            **common,
            replicas=int(status.get("desiredNumberScheduled") or 0),
            status_replicas=int(status.get("currentNumberScheduled") or 0),
            updated=int(status.get("updatedNumberScheduled") or 0),
            ready=int(status.get("numberReady") or 0),
            available=int(status.get("numberAvailable") or 0),
            unavailable=int(status.get("numberUnavailable") or 0),
            update_strategy=strategy.get("type") or "RollingUpdate",
            progress_deadline_seconds=deadline,
        )
    snapshot: dict[str, Any] = {
        **common,
        "replicas": int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        "status_replicas": int(status.get("replicas") or 0),
        "updated": int(status.get("updatedReplicas") or 0),
        "ready": int(status.get("readyReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
        "unavailable": int(status.get("unavailableReplicas") or 0),
    }
    if kind == "StatefulSet":
        rolling = strategy.get("rollingUpdate")
        return WorkloadSnapshot(
            **snapshot,
            current_replicas=int(status.get("currentReplicas") or 0),
            current_revision=status.get("currentRevision"),
            update_revision=status.get("updateRevision"),
            update_strategy=strategy.get("type") or "RollingUpdate",
            partition=int(rolling.get("partition") or 0) if rolling is not None else None,
            progress_deadline_seconds=deadline,
        )
    return WorkloadSnapshot(
        **snapshot,
        update_strategy=strategy.get("type") or "RollingUpdate",
        progress_deadline_seconds=int(spec.get("progressDeadlineSeconds") or 600),
    )


def pod_problems(pod: Json) -> list[PodProblem]:
    """Why this pod is not becoming ready, from its status (nothing when it is fine)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    problems: list[PodProblem] = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            problems.append(
                PodProblem(pod=name, reason="Unschedulable", message=condition.get("message") or "")
            )
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        last = (c.get("lastState") or {}).get("terminated") or {}
        restarts = int(c.get("restartCount") or 0)
        reason = waiting.get("reason")
        if reason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
            reason = "OOMKilled"
        if reason in _WAITING_PROBLEMS or reason == "OOMKilled":
            message = last.get("message") or waiting.get("message") or ""
            if reason == "OOMKilled" and not message:
                message = f"killed: out of memory (exit code {last.get('exitCode', 137)})"
            problems.append(
                PodProblem(
                    pod=name,
                    container=c.get("name"),
                    reason=str(reason),
                    message=str(message),
                    restarts=restarts,
                )
            )
    return problems
