"""Reading the pods of a rollout's *new* revision, to say why it fails.

Deployment: the ReplicaSet it owns with the highest ``deployment.kubernetes.io/revision``, then
the pods carrying that ReplicaSet's ``pod-template-hash``. StatefulSet: the pods labelled with
its ``updateRevision``. DaemonSet: the pods it owns (the status names no revision). Raw JSON,
read in a thread, only when a rollout fails: a watch of every pod in the cluster is not needed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes import client

from bot.adapters.kube.contexts import api_client
from bot.adapters.kube.mapping import pod_problems
from bot.domain.rollouts import PodProblem

Json = dict[str, Any]


def _owned_by(item: Json, uid: str) -> bool:
    return any(o.get("uid") == uid for o in item["metadata"].get("ownerReferences") or [])


def _items(response: Any) -> list[Json]:
    items: list[Json] = json.loads(response.data).get("items") or []
    return items


class PodReader:
    def __init__(self, *, context: str, kubeconfig: str | None) -> None:
        self._context = context
        self._kubeconfig = kubeconfig

    async def problems(self, *, kind: str, namespace: str, name: str) -> list[PodProblem]:
        pods = await asyncio.to_thread(self._new_pods, kind, namespace, name)
        return [problem for pod in pods for problem in pod_problems(pod)]

    def _new_pods(self, kind: str, namespace: str, name: str) -> list[Json]:
        api = api_client(self._context, kubeconfig=self._kubeconfig)
        try:
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            read = {
                "Deployment": apps.read_namespaced_deployment,
                "StatefulSet": apps.read_namespaced_stateful_set,
                "DaemonSet": apps.read_namespaced_daemon_set,
            }[kind]
            response: Any = read(name, namespace, _preload_content=False)
            workload: Json = json.loads(response.data)
            meta = workload["metadata"]
            namespace, uid = meta["namespace"], meta["uid"]
            if kind == "Deployment":
                owned = [
                    rs
                    for rs in _items(
                        apps.list_namespaced_replica_set(namespace, _preload_content=False)
                    )
                    if _owned_by(rs, uid)
                ]
                if not owned:
                    return []
                newest = max(
                    owned,
                    key=lambda rs: int(
                        (rs["metadata"].get("annotations") or {}).get(
                            "deployment.kubernetes.io/revision", "0"
                        )
                    ),
                )
                template_hash = (newest["metadata"].get("labels") or {}).get("pod-template-hash")
                selector = f"pod-template-hash={template_hash}"
                pods = _items(
                    core.list_namespaced_pod(
                        namespace, label_selector=selector, _preload_content=False
                    )
                )
                return [p for p in pods if _owned_by(p, newest["metadata"]["uid"])]
            pods = [
                p
                for p in _items(core.list_namespaced_pod(namespace, _preload_content=False))
                if _owned_by(p, uid)
            ]
            if kind == "StatefulSet":
                revision = (workload.get("status") or {}).get("updateRevision")
                pods = [
                    p
                    for p in pods
                    if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                    == revision
                ]
            return pods
        finally:
            api.close()
