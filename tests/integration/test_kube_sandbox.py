"""The Kubernetes sandbox, driven by the official ``kubernetes`` client over HTTP.

What the rollout watcher's integration tests rely on is pinned here: objects deserialize into the
client's models with the fields a real API server fills in, list+watch keep resourceVersion
semantics (ordered replay, bookmarks, 410 Gone the way ``Watch.stream`` reports it, dropped
connections), and the controller moves rollouts through the states ``kubectl rollout status``
distinguishes. The client is synchronous, so it runs in threads while the test's loop serves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import KubeSandbox

ORDERS_141 = "registry.example.com/orders:1.4.1"
ORDERS_142 = "registry.example.com/orders:1.4.2"
ORDERS_143 = "registry.example.com/orders:1.4.3"
REVISION = "deployment.kubernetes.io/revision"
Event = dict[str, Any]


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox() as sb:
        sb.add_namespace("orders", {"appId": "orders"})
        sb.add_deployment(
            "orders", "orders", image=ORDERS_141, replicas=3, labels={"appId": "orders"}
        )
        yield sb


@pytest.fixture
def api(sandbox: KubeSandbox, tmp_path: Path) -> Iterator[client.ApiClient]:
    path = sandbox.kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(path), context="sandbox")
    yield api_client
    api_client.close()


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def collect(
    func: Callable[..., Any],
    *,
    until: Callable[[Event], bool],
    timeout: int | None = 5,
    **kwargs: Any,
) -> list[Event]:
    """Run ``Watch.stream`` (in a thread) until ``until`` holds or the server ends the watch.

    Without a timeout, ``Watch.stream`` reconnects by itself when the server ends the watch."""
    stream = watch.Watch()
    events: list[Event] = []
    if timeout is not None:
        kwargs["timeout_seconds"] = timeout
    for event in stream.stream(func, **kwargs):
        events.append(event)
        if until(event):
            stream.stop()
    return events


def rolled_out(d: client.V1Deployment) -> bool:
    """kubectl's ``rollout status`` for a Deployment."""
    s = d.status
    return (
        d.metadata.generation <= (s.observed_generation or 0)
        and (s.updated_replicas or 0) == d.spec.replicas
        and (s.replicas or 0) == (s.updated_replicas or 0)
        and (s.available_replicas or 0) == (s.updated_replicas or 0)
    )


def condition(d: client.V1Deployment, kind: str) -> client.V1DeploymentCondition:
    return next(c for c in d.status.conditions if c.type == kind)


# ---------------------------------------------------------------------------- shapes


async def test_lists_have_the_real_shape_and_deserialize(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    raw = await asyncio.to_thread(apps.list_namespaced_deployment, "orders", _preload_content=False)
    body = json.loads(raw.data)
    assert body["kind"] == "DeploymentList"
    assert body["apiVersion"] == "apps/v1"
    assert body["metadata"] == {"resourceVersion": sandbox.resource_version}
    assert "kind" not in body["items"][0]
    assert "apiVersion" not in body["items"][0]

    deployments = await asyncio.to_thread(apps.list_deployment_for_all_namespaces)
    assert isinstance(deployments, client.V1DeploymentList)
    d = deployments.items[0]
    assert d.metadata.name == "orders"
    assert d.metadata.labels == {"app": "orders", "appId": "orders"}
    assert d.metadata.generation == 1
    assert d.metadata.uid
    assert d.metadata.creation_timestamp.tzinfo is not None
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert d.spec.replicas == 3
    assert d.spec.progress_deadline_seconds == 600
    assert d.spec.revision_history_limit == 10
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.selector.match_labels == {"app": "orders"}
    assert d.spec.template.spec.containers[0].image == ORDERS_141
    assert d.spec.template.spec.containers[0].name == "orders"
    status = d.status
    assert (status.observed_generation, status.replicas, status.updated_replicas) == (1, 3, 3)
    assert (status.ready_replicas, status.available_replicas) == (3, 3)
    assert status.unavailable_replicas is None  # omitempty, like the real API
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Available", "True", "MinimumReplicasAvailable"),
        ("Progressing", "True", "NewReplicaSetAvailable"),
    ]
    rs = (await asyncio.to_thread(apps.list_namespaced_replica_set, "orders")).items[0]
    assert condition(d, "Progressing").message == (
        f'ReplicaSet "{rs.metadata.name}" has successfully progressed.'
    )
    template_hash = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"orders-{template_hash}"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert [(o.kind, o.name, o.uid, o.controller) for o in rs.metadata.owner_references] == [
        ("Deployment", "orders", d.metadata.uid, True)
    ]
    assert rs.spec.selector.match_labels == {"app": "orders", "pod-template-hash": template_hash}
    assert (rs.status.replicas, rs.status.ready_replicas) == (3, 3)

    pods = (await asyncio.to_thread(core.list_namespaced_pod, "orders")).items
    assert len(pods) == 3
    pod = pods[0]
    assert pod.metadata.name.startswith(f"{rs.metadata.name}-")
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert pod.metadata.owner_references[0].uid == rs.metadata.uid
    assert pod.metadata.owner_references[0].controller is True
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    container = pod.status.container_statuses[0]
    assert (container.ready, container.restart_count, container.image) == (True, 0, ORDERS_141)
    assert container.state.running is not None


async def test_statefulset_and_daemonset_shapes(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    sandbox.add_statefulset("orders", "db", image="postgres:16.2", replicas=2)
    sandbox.add_daemonset("kube-system", "agent", image="registry.example.com/agent:7")

    sts = await asyncio.to_thread(apps.read_namespaced_stateful_set, "db", "orders")
    assert sts.kind == "StatefulSet"
    assert sts.status.replicas == sts.status.ready_replicas == sts.status.current_replicas == 2
    assert sts.status.updated_replicas == sts.status.available_replicas == 2
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.update_revision.startswith("db-")
    pods = await asyncio.to_thread(core.list_namespaced_pod, "orders", label_selector="app=db")
    assert sorted(p.metadata.name for p in pods.items) == ["db-0", "db-1"]
    assert pods.items[0].metadata.owner_references[0].kind == "StatefulSet"
    assert pods.items[0].metadata.labels["controller-revision-hash"] == sts.status.update_revision
    assert pods.items[0].status.container_statuses[0].image == "docker.io/library/postgres:16.2"

    ds = await asyncio.to_thread(apps.read_namespaced_daemon_set, "agent", "kube-system")
    assert ds.status.desired_number_scheduled == len(sandbox.nodes)
    assert ds.status.updated_number_scheduled == ds.status.number_available == len(sandbox.nodes)
    assert ds.status.number_ready == ds.status.current_number_scheduled == len(sandbox.nodes)
    assert ds.status.observed_generation == 1
    pods = await asyncio.to_thread(core.list_namespaced_pod, "kube-system")
    assert sorted(p.spec.node_name for p in pods.items) == sorted(sandbox.nodes)
    assert {p.metadata.owner_references[0].kind for p in pods.items} == {"DaemonSet"}


async def test_single_objects_version_and_errors(
    sandbox: KubeSandbox, api: client.ApiClient, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    version = await asyncio.to_thread(client.VersionApi(api).get_code)
    assert version.major == "1"

    namespace = await asyncio.to_thread(core.read_namespace, "orders")
    assert namespace.metadata.labels == {"kubernetes.io/metadata.name": "orders", "appId": "orders"}
    assert namespace.status.phase == "Active"

    with pytest.raises(ApiException) as missing:
        await asyncio.to_thread(apps.read_namespaced_deployment, "payments", "orders")
    assert missing.value.status == 404
    assert json.loads(missing.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "payments" not found',
        "reason": "NotFound",
        "details": {"name": "payments", "group": "apps", "kind": "deployments"},
        "code": 404,
    }

    with pytest.raises(ApiException) as forbidden:
        await asyncio.to_thread(
            apps.patch_namespaced_deployment, "orders", "orders", {"spec": {"replicas": 1}}
        )
    assert forbidden.value.status == 403

    sandbox.token = "rotated"
    with pytest.raises(ApiException) as unauthorized:
        await asyncio.to_thread(apps.list_deployment_for_all_namespaces)
    assert unauthorized.value.status == 401


async def test_label_and_field_selectors(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    sandbox.add_deployment("orders", "worker", image=ORDERS_141, replicas=1)
    sandbox.add_deployment("payments", "api", image="registry.example.com/payments:2.0")

    async def names(**kwargs: Any) -> list[str]:
        found = await asyncio.to_thread(apps.list_deployment_for_all_namespaces, **kwargs)
        return [d.metadata.name for d in found.items]

    assert await names(label_selector="app=worker") == ["worker"]
    assert await names(label_selector="app in (orders, api)") == ["orders", "api"]
    assert await names(label_selector="app notin (orders),appId") == []
    assert await names(label_selector="appId,app!=worker") == ["orders"]
    assert await names(field_selector="metadata.namespace=payments") == ["api"]
    assert await names(field_selector="metadata.name!=orders") == ["worker", "api"]

    rs = (await asyncio.to_thread(apps.list_namespaced_replica_set, "orders")).items
    orders_hash = next(r for r in rs if r.metadata.name.startswith("orders-")).metadata.labels[
        "pod-template-hash"
    ]
    pods = await asyncio.to_thread(
        core.list_namespaced_pod, "orders", label_selector=f"pod-template-hash={orders_hash}"
    )
    assert len(pods.items) == 3
    running = await asyncio.to_thread(
        core.list_pod_for_all_namespaces, field_selector="status.phase=Running"
    )
    assert len(running.items) == 5

    with pytest.raises(ApiException) as bad_field:
        await asyncio.to_thread(
            apps.list_deployment_for_all_namespaces, field_selector="spec.replicas=3"
        )
    assert bad_field.value.status == 400
    assert "field label not supported: spec.replicas" in bad_field.value.body


# ---------------------------------------------------------------------------- pagination


async def test_pages_are_a_consistent_snapshot(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    sandbox.bulk_add_deployments(25, namespaces=["shop"], replicas=1)
    first = await asyncio.to_thread(apps.list_namespaced_deployment, "shop", limit=10)
    assert len(first.items) == 10
    assert first.metadata.remaining_item_count == 15
    snapshot = first.metadata.resource_version
    token = first.metadata._continue
    assert json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == {
        "v": "meta.k8s.io/v1",
        "rv": int(snapshot),
        "start": "shop/svc-00009\x00",
    }

    sandbox.delete("deploy", "shop", "svc-00024")
    sandbox.add_deployment("shop", "svc-00099", image=ORDERS_141)
    sandbox.scale("deploy", "shop", "svc-00015", 5)

    second = await asyncio.to_thread(
        apps.list_namespaced_deployment, "shop", limit=10, _continue=first.metadata._continue
    )
    third = await asyncio.to_thread(
        apps.list_namespaced_deployment, "shop", limit=10, _continue=second.metadata._continue
    )
    assert second.metadata.resource_version == third.metadata.resource_version == snapshot
    assert third.metadata._continue is None
    names = [d.metadata.name for d in first.items + second.items + third.items]
    assert names == [f"svc-{i:05d}" for i in range(25)]  # as at the first page
    svc15 = next(d for d in second.items if d.metadata.name == "svc-00015")
    assert svc15.spec.replicas == 1

    fresh = await asyncio.to_thread(apps.list_namespaced_deployment, "shop")
    assert len(fresh.items) == 25
    assert "svc-00099" in {d.metadata.name for d in fresh.items}


async def test_an_expired_continue_token_is_410(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    sandbox.bulk_add_deployments(6, namespaces=["shop"])
    first = await asyncio.to_thread(apps.list_deployment_for_all_namespaces, limit=2)
    sandbox.add_namespace("later")
    sandbox.expire()
    with pytest.raises(ApiException) as gone:
        await asyncio.to_thread(
            apps.list_deployment_for_all_namespaces, limit=2, _continue=first.metadata._continue
        )
    assert gone.value.status == 410
    status = json.loads(gone.value.body)
    assert status["reason"] == "Expired"
    assert status["metadata"]["continue"]  # to go on inconsistently, as the real server offers

    with pytest.raises(ApiException) as too_old:
        await asyncio.to_thread(
            apps.list_deployment_for_all_namespaces,
            resource_version=first.metadata.resource_version,
            resource_version_match="Exact",
        )
    assert too_old.value.status == 410


async def test_five_thousand_deployments_list_quickly(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    started = time.monotonic()
    sandbox.bulk_add_deployments(5000)

    def list_all() -> list[client.V1Deployment]:
        items: list[client.V1Deployment] = []
        token = None
        while True:
            page = apps.list_deployment_for_all_namespaces(limit=500, _continue=token)
            items.extend(page.items)
            token = page.metadata._continue
            if not token:
                return items

    items = await asyncio.to_thread(list_all)
    assert len(items) == 5001
    assert len({(d.metadata.namespace, d.metadata.name) for d in items}) == 5001
    assert all(rolled_out(d) for d in items)
    assert time.monotonic() - started < 8
    bulk_pods = await asyncio.to_thread(core.list_namespaced_pod, "bulk-000")
    assert bulk_pods.items == []  # bulk deployments get pods only once the controller acts


# ---------------------------------------------------------------------------- watch


async def test_watch_from_a_resource_version_follows_a_rollout_to_completion(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    listed = await asyncio.to_thread(apps.list_namespaced_deployment, "orders")
    watching = asyncio.create_task(
        asyncio.to_thread(
            collect,
            apps.list_namespaced_deployment,
            namespace="orders",
            resource_version=listed.metadata.resource_version,
            until=lambda e: e["object"].metadata.generation == 2 and rolled_out(e["object"]),
        )
    )
    async with asyncio.timeout(5):
        await sandbox.wait_for_watches()
    sandbox.set_image("Deployment", "orders", "orders", "orders", ORDERS_142)
    for _ in range(20):
        if not sandbox.step():
            break
        await asyncio.sleep(0)
    events = await watching

    assert {e["type"] for e in events} == {"MODIFIED"}
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    deployments = [e["object"] for e in events]
    assert (deployments[0].metadata.generation, deployments[0].status.observed_generation) == (2, 1)
    assert deployments[0].spec.template.spec.containers[0].image == ORDERS_142
    assert condition(deployments[1], "Progressing").reason == "NewReplicaSetCreated"
    assert [d.status.updated_replicas for d in deployments[1:]] == [1, 2, 3, 3]
    assert not any(rolled_out(d) for d in deployments[:-1])
    last = deployments[-1]
    assert (last.status.replicas, last.status.ready_replicas) == (3, 3)
    assert condition(last, "Progressing").reason == "NewReplicaSetAvailable"
    assert last.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


async def test_watch_without_resource_version_starts_with_the_current_state(
    sandbox: KubeSandbox, core: client.CoreV1Api
) -> None:
    events = await asyncio.to_thread(
        collect, core.list_namespaced_pod, namespace="orders", until=lambda e: True
    )
    assert events[0]["type"] == "ADDED"
    assert isinstance(events[0]["object"], client.V1Pod)


async def test_a_selector_watch_sees_objects_enter_and_leave_the_selection(
    sandbox: KubeSandbox, core: client.CoreV1Api
) -> None:
    rv = sandbox.resource_version
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_142)
    sandbox.step()  # a new pod: Pending
    sandbox.step()  # it runs: no longer Pending
    events = await asyncio.to_thread(
        collect,
        core.list_namespaced_pod,
        namespace="orders",
        resource_version=rv,
        field_selector="status.phase=Pending",
        until=lambda e: e["type"] == "DELETED",
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    added, left = (e["object"] for e in events)
    assert added.metadata.name == left.metadata.name
    assert left.status.phase == "Pending"  # the last state it had in the selection...
    assert int(left.metadata.resource_version) > int(added.metadata.resource_version)  # ...now


async def test_bookmarks_arrive_only_when_requested(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    stream = watch.Watch()

    def first_bookmark() -> Event:
        for event in stream.stream(
            apps.list_deployment_for_all_namespaces,
            resource_version=sandbox.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        ):
            stream.stop()
            return dict(event)
        raise AssertionError("the watch ended without a bookmark")

    waiting = asyncio.create_task(asyncio.to_thread(first_bookmark))
    async with asyncio.timeout(5):
        await sandbox.wait_for_watches()
    sandbox.add_namespace("quiet")  # a change the deployment watch does not see...
    sandbox.send_bookmarks()
    bookmark = await waiting
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["raw_object"] == {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"resourceVersion": sandbox.resource_version},  # ...but its version moves
    }
    assert stream.resource_version == sandbox.resource_version

    plain = asyncio.create_task(
        asyncio.to_thread(
            collect,
            apps.list_deployment_for_all_namespaces,
            resource_version=sandbox.resource_version,
            until=lambda e: True,
        )
    )
    async with asyncio.timeout(5):
        await sandbox.wait_for_watches()
    sandbox.send_bookmarks()
    sandbox.scale("deploy", "orders", "orders", 4)
    events = await plain
    assert [e["type"] for e in events] == ["MODIFIED"]


async def test_periodic_bookmarks(apps: client.AppsV1Api, sandbox: KubeSandbox) -> None:
    sandbox.bookmark_interval = 0.05
    events = await asyncio.to_thread(
        collect,
        apps.list_deployment_for_all_namespaces,
        resource_version=sandbox.resource_version,
        allow_watch_bookmarks=True,
        until=lambda e: e["type"] == "BOOKMARK",
    )
    assert [e["type"] for e in events] == ["BOOKMARK"]


async def test_send_initial_events_ends_with_an_annotated_bookmark(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    events = await asyncio.to_thread(
        collect,
        apps.list_deployment_for_all_namespaces,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        until=lambda e: e["type"] == "BOOKMARK",
    )
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["raw_object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"
    }


async def test_an_expired_resource_version_raises_410_from_watch_stream(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    old = sandbox.resource_version
    sandbox.scale("deploy", "orders", "orders", 2)
    sandbox.expire(sandbox.resource_version)

    for kwargs in ({"timeout_seconds": 5}, {}):
        with pytest.raises(ApiException) as gone:
            await asyncio.to_thread(
                collect,
                apps.list_deployment_for_all_namespaces,
                resource_version=old,
                until=lambda e: True,
                **kwargs,
            )
        assert gone.value.status == 410
        assert gone.value.reason.startswith("Expired: too old resource version")

    # On the wire: HTTP 200 and a single ERROR event holding a 410 Status, like the real server.
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {sandbox.token}"}) as http,
        http.get(
            f"{sandbox.base_url}/apis/apps/v1/deployments",
            params={"watch": "true", "resourceVersion": old},
        ) as response,
    ):
        assert response.status == 200
        lines = (await response.read()).decode().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert {k: event["object"][k] for k in ("kind", "code", "reason")} == {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
    }


async def test_a_short_history_window_expires_old_versions() -> None:
    async with KubeSandbox(history_size=5) as small:
        start = small.resource_version
        for i in range(6):
            small.add_namespace(f"team-{i}")
        url = f"{small.base_url}/api/v1/namespaces"
        headers = {"Authorization": f"Bearer {small.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            params = {"watch": "1", "resourceVersion": start}
            async with http.get(url, params=params) as response:
                expired = json.loads(await response.content.readline())
            params["resourceVersion"] = str(int(small.resource_version) - 5)
            async with http.get(url, params=params) as response:
                replayed = [json.loads(await response.content.readline()) for _ in range(5)]
        assert expired["type"] == "ERROR"
        assert [e["object"]["metadata"]["name"] for e in replayed] == [
            f"team-{i}" for i in range(1, 6)
        ]


async def test_cut_watches_drops_open_streams(sandbox: KubeSandbox, apps: client.AppsV1Api) -> None:
    watching = asyncio.create_task(
        asyncio.to_thread(
            collect,
            apps.list_deployment_for_all_namespaces,
            resource_version=sandbox.resource_version,
            until=lambda e: False,
        )
    )
    async with asyncio.timeout(5):
        await sandbox.wait_for_watches()
    sandbox.cut_watches()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        await watching
    assert sandbox.open_watches == 0


async def test_a_clean_end_of_watch_makes_the_client_resume_where_it_was(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    rv = sandbox.resource_version
    sandbox.scale("deploy", "orders", "orders", 2)
    resumed_from = sandbox.resource_version
    watching = asyncio.create_task(
        asyncio.to_thread(
            collect,
            apps.list_deployment_for_all_namespaces,
            resource_version=rv,
            timeout=None,
            until=lambda e: e["object"].spec.replicas == 4,
        )
    )
    async with asyncio.timeout(5):
        await sandbox.wait_for_watches()
    sandbox.cut_watches(abrupt=False)
    sandbox.scale("deploy", "orders", "orders", 4)  # after the cut: only the new watch sees it
    events = await watching
    assert [e["object"].spec.replicas for e in events] == [2, 4]
    watches = [r for r in sandbox.requests if "watch=true" in r]
    assert len(watches) == 2
    assert f"resourceVersion={resumed_from}&" in watches[1]


# ---------------------------------------------------------------------------- the controller


async def test_a_crash_looping_rollout_exceeds_its_progress_deadline(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_143)
    sandbox.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff")
    sandbox.advance(300)
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert condition(d, "Progressing").reason == "ReplicaSetUpdated"  # the new RS got a pod
    assert (d.status.updated_replicas, d.status.ready_replicas, d.status.replicas) == (1, 3, 4)
    assert d.status.unavailable_replicas == 1

    sandbox.advance(d.spec.progress_deadline_seconds)
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    progressing = condition(d, "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    assert progressing.message.endswith("has timed out progressing.")
    assert condition(d, "Available").status == "True"  # the old pods still serve
    assert not rolled_out(d)

    rs = await asyncio.to_thread(apps.list_namespaced_replica_set, "orders")
    newest = max(rs.items, key=lambda r: int(r.metadata.annotations[REVISION]))
    pods = await asyncio.to_thread(
        core.list_namespaced_pod,
        "orders",
        label_selector=f"pod-template-hash={newest.metadata.labels['pod-template-hash']}",
    )
    [pod] = pods.items
    [status] = pod.status.container_statuses
    assert pod.status.phase == "Running"
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated.reason == "Error"
    assert status.last_state.terminated.exit_code == 1
    assert status.last_state.terminated.message
    assert status.restart_count > 3
    assert status.image == ORDERS_143
    events = await asyncio.to_thread(
        core.list_namespaced_event,
        "orders",
        field_selector=f"involvedObject.name={pod.metadata.name},reason=BackOff",
    )
    assert events.items[0].type == "Warning"
    assert events.items[0].count == status.restart_count


@pytest.mark.parametrize(
    ("reason", "check"),
    [
        (
            "ImagePullBackOff",
            lambda pod, c: (
                pod.status.phase == "Pending"
                and c.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
                and ORDERS_143 in c.state.waiting.message
            ),
        ),
        (
            "OOMKilled",
            lambda pod, c: (
                c.state.waiting.reason == "CrashLoopBackOff"
                and c.last_state.terminated.reason == "OOMKilled"
                and c.last_state.terminated.exit_code == 137
            ),
        ),
        (
            "Unschedulable",
            lambda pod, c: (
                pod.status.phase == "Pending"
                and pod.spec.node_name is None
                and [(x.type, x.status, x.reason) for x in pod.status.conditions]
                == [("PodScheduled", "False", "Unschedulable")]
                and "Insufficient memory" in pod.status.conditions[0].message
            ),
        ),
        (
            "ProgressDeadlineExceeded",
            lambda pod, c: (
                pod.status.phase == "Running" and c.state.running is not None and c.ready is False
            ),
        ),
    ],
)
async def test_failing_pods_show_their_reason(
    sandbox: KubeSandbox,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    reason: Any,
    check: Callable[[client.V1Pod, client.V1ContainerStatus | None], bool],
) -> None:
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_143)
    sandbox.fail_rollout("deploy", "orders", "orders", reason)
    sandbox.advance(60)
    pods = await asyncio.to_thread(core.list_namespaced_pod, "orders")
    broken = [p for p in pods.items if p.spec.containers[0].image == ORDERS_143]
    assert len(broken) == 1
    statuses = broken[0].status.container_statuses
    assert check(broken[0], statuses[0] if statuses else None)
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert not rolled_out(d)


async def test_a_new_image_after_a_failure_rolls_out_and_rollback_reuses_the_replicaset(
    sandbox: KubeSandbox, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    first_rs = sandbox.objects("replicasets", "orders")[0]["metadata"]["name"]
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_143)
    sandbox.fail_rollout("deploy", "orders", "orders", "ImagePullBackOff")
    sandbox.advance(30)
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_141)  # roll back
    assert sandbox.settle() < 20
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert rolled_out(d)
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"
    assert d.metadata.annotations[REVISION] == "3"
    rs = await asyncio.to_thread(apps.read_namespaced_replica_set, first_rs, "orders")
    assert (rs.spec.replicas, rs.metadata.annotations[REVISION]) == (3, "3")
    pods = await asyncio.to_thread(core.list_namespaced_pod, "orders")
    assert {p.status.container_statuses[0].image for p in pods.items} == {ORDERS_141}
    assert all(p.status.container_statuses[0].ready for p in pods.items)


async def test_statefulset_and_daemonset_roll_out_pod_by_pod(
    sandbox: KubeSandbox, apps: client.AppsV1Api
) -> None:
    sandbox.add_statefulset("orders", "db", image="postgres:16.2", replicas=3)
    sandbox.add_daemonset("orders", "agent", image="registry.example.com/agent:7")
    sandbox.set_image("sts", "orders", "db", "db", "postgres:16.3")
    sandbox.set_image("ds", "orders", "agent", "agent", "registry.example.com/agent:8")
    sandbox.step()
    sts = await asyncio.to_thread(apps.read_namespaced_stateful_set, "db", "orders")
    ds = await asyncio.to_thread(apps.read_namespaced_daemon_set, "agent", "orders")
    assert sts.status.observed_generation == 2
    assert sts.status.current_revision != sts.status.update_revision
    assert sts.status.updated_replicas == 1
    assert ds.status.updated_number_scheduled == 1
    assert ds.metadata.annotations["deprecated.daemonset.template.generation"] == "2"

    sandbox.settle()
    sts = await asyncio.to_thread(apps.read_namespaced_stateful_set, "db", "orders")
    ds = await asyncio.to_thread(apps.read_namespaced_daemon_set, "agent", "orders")
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.updated_replicas == sts.status.ready_replicas == 3
    assert ds.status.updated_number_scheduled == ds.status.number_available == 3
    assert ds.status.number_unavailable is None


async def test_delete_removes_the_workload_and_what_it_owns(
    sandbox: KubeSandbox, core: client.CoreV1Api
) -> None:
    rv = sandbox.resource_version
    sandbox.delete("deploy", "orders", "orders")
    assert sandbox.get("deploy", "orders", "orders") is None
    assert sandbox.objects("replicasets", "orders") == []
    pods = await asyncio.to_thread(core.list_namespaced_pod, "orders")
    assert pods.items == []
    seen: list[str] = []

    def third_pod_gone(event: Event) -> bool:
        seen.append(event["type"])
        return len(seen) == 3

    await asyncio.to_thread(
        collect,
        core.list_namespaced_pod,
        namespace="orders",
        resource_version=rv,
        until=third_pod_gone,
    )
    assert seen == ["DELETED"] * 3


async def test_kubeconfig_holds_one_context_per_sandbox(
    sandbox: KubeSandbox, tmp_path: Path
) -> None:
    async with KubeSandbox(token="other") as other:
        other.add_deployment("payments", "api", image="registry.example.com/payments:2.0")
        path = tmp_path / "kubeconfig"
        sandbox.kubeconfig(path, context="prod")
        other.kubeconfig(path, context="staging")
        contexts, active = config.list_kube_config_contexts(config_file=str(path))
        assert [c["name"] for c in contexts] == ["prod", "staging"]
        assert active["name"] == "prod"

        def names(context: str) -> list[str]:
            api_client = config.new_client_from_config(config_file=str(path), context=context)
            try:
                listed = client.AppsV1Api(api_client).list_deployment_for_all_namespaces()
            finally:
                api_client.close()
            return [d.metadata.name for d in listed.items]

        assert await asyncio.to_thread(names, "prod") == ["orders"]
        assert await asyncio.to_thread(names, "staging") == ["api"]


async def test_a_background_ticker_drives_rollouts(tmp_path: Path) -> None:
    async with KubeSandbox(tick_interval=0.01) as ticking:
        ticking.add_deployment("orders", "orders", image=ORDERS_141, replicas=2)
        api_client = config.new_client_from_config(
            config_file=str(ticking.kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            apps = client.AppsV1Api(api_client)
            rv = ticking.resource_version
            ticking.set_image("deploy", "orders", "orders", "orders", ORDERS_142)
            events = await asyncio.to_thread(
                collect,
                apps.list_deployment_for_all_namespaces,
                resource_version=rv,
                until=lambda e: rolled_out(e["object"]),
            )
        finally:
            api_client.close()
    assert events[-1]["object"].metadata.generation == 2


def test_time_comes_from_an_injected_clock() -> None:
    now = [1_750_000_000.0]
    sandbox = KubeSandbox(clock=lambda: now[0])
    sandbox.add_deployment("orders", "orders", image=ORDERS_141, progress_deadline_seconds=60)
    sandbox.set_image("deploy", "orders", "orders", "orders", ORDERS_142)
    sandbox.fail_rollout("deploy", "orders", "orders")
    sandbox.step()  # the new ReplicaSet
    sandbox.step()  # its pod, failing its readiness probe; time stands still until...
    now[0] += 61
    sandbox.step()
    d = sandbox.get("deploy", "orders", "orders")
    assert d is not None
    progressing = d["status"]["conditions"][-1]
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert progressing["lastTransitionTime"] == "2025-06-15T15:07:41Z"
    with pytest.raises(RuntimeError):
        sandbox.advance(5)
