"""The GitOps controller simulator between the GitLab and Kubernetes sandboxes.

A change is merged through python-gitlab, as the bot merges it; what the cluster then runs is
read back with the official ``kubernetes`` client, as the bot's watcher reads it. The
controller syncs when told (``sync()``), against the cluster's simulated clock, so a lag is
deterministic: nothing here waits on wall-clock time but the polling test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import gitlab
import pytest
from kubernetes import client, config

from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.gitops import Applied, GitOpsController
from bot.sandbox.kube import KubeSandbox

from .conftest import eventually

GITOPS = "platform/deployments"
REGISTRY = "registry.example.com/shop"
ORDERS = f"{REGISTRY}/orders"
PRODUCTION = "apps/orders/production/deployment.yaml"
STAGING = "apps/orders/staging/deployment.yaml"
INVOICES = "apps/invoices/production/kustomization.yaml"
SEARCH = "apps/search-api/production/values.yaml"
CART = "apps/cart/production/deployment.yaml"


def deployment(version: str, *, name: str = "orders", namespace: str = "orders") -> str:
    return f"""# {name}: edited by Pitcrew
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: "{REGISTRY}/{name}:{version}"
        - name: envoy
          image: envoyproxy/envoy:v1.30.1
"""


def kustomization(version: str) -> str:
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: invoices\nimages:\n  - name: {REGISTRY}/invoices\n"
        f'    newTag: "{version}"\n'
    )


def values(version: str) -> str:
    return f"image:\n  repository: {REGISTRY}/search-api\n  tag: '{version}'\n"


@pytest.fixture
async def gitlab_sandbox(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    async with GitLabSandbox(tmp_path / "gitlab") as sandbox:
        sandbox.add_user("alice", name="Alice Martin", email="alice@example.com")
        # the usual GitOps repo: CI on merge requests only, so nothing runs after a merge
        sandbox.add_project(GITOPS, ci="merge_requests")
        await asyncio.to_thread(
            sandbox.commit,
            GITOPS,
            {
                PRODUCTION: deployment("1.4.1"),
                STAGING: deployment("1.4.1"),  # same namespace and name: only paths tell apart
                INVOICES: kustomization("2.0.0"),
                SEARCH: values("3.2.0"),
            },
            message="The shop",
            author="alice",
        )
        yield sandbox


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox() as cluster:
        for app in ("orders", "invoices", "search-api"):
            cluster.add_namespace(app, {"appId": app})
        cluster.add_deployment(
            "orders",
            "orders",
            images={"orders": f"{ORDERS}:1.4.1", "envoy": "envoyproxy/envoy:v1.30.1"},
            replicas=2,
        )
        cluster.add_deployment("invoices", "invoices", image=f"{REGISTRY}/invoices:2.0.0")
        cluster.add_statefulset(
            "search-api", "search-api", image=f"{REGISTRY}/search-api:3.2.0", replicas=2
        )
        yield cluster


@pytest.fixture
def apps(kube: KubeSandbox, tmp_path: Path) -> Iterator[client.AppsV1Api]:
    path = kube.kubeconfig(tmp_path / "kubeconfig", context="prod")
    api = config.new_client_from_config(config_file=str(path), context="prod")
    yield client.AppsV1Api(api)
    api.close()


def production(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, **options: Any
) -> GitOpsController:
    """The production cluster's controller: it syncs the production directories only."""
    return GitOpsController(
        gitlab_sandbox, kube, project=GITOPS, paths=("apps/*/production",), **options
    )


async def merge(sandbox: GitLabSandbox, files: Mapping[str, str], *, branch: str) -> str:
    """Open an MR changing ``files``, merge it when its pipeline passes; the merge commit."""

    def run() -> str:
        with gitlab.Gitlab(sandbox.url, private_token="glpat-sandbox") as gl:
            project = gl.projects.get(GITOPS)
            project.commits.create(
                {
                    "branch": branch,
                    "start_branch": "main",
                    "commit_message": f"{branch}",
                    "actions": [
                        {"action": "update", "file_path": path, "content": content}
                        for path, content in files.items()
                    ],
                }
            )
            mr = project.mergerequests.create(
                {"source_branch": branch, "target_branch": "main", "title": branch}
            )
            mr.merge(merge_when_pipeline_succeeds=True)
            sandbox.run_pipelines(GITOPS)
            merged = project.mergerequests.get(mr.iid)
            assert merged.state == "merged"
            return str(merged.merge_commit_sha)

    return await asyncio.to_thread(run)


def images(apps: client.AppsV1Api, namespace: str, name: str) -> dict[str, str]:
    d = apps.read_namespaced_deployment(name, namespace)
    return {c.name: c.image for c in d.spec.template.spec.containers}


async def test_sync_applies_a_merged_image_change_and_the_cluster_rolls_it_out(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, apps: client.AppsV1Api
) -> None:
    controller = production(gitlab_sandbox, kube)
    before = controller.synced
    sha = await merge(
        gitlab_sandbox,
        {PRODUCTION: deployment("1.4.2"), STAGING: deployment("9.9.9")},
        branch="deploy/orders-1.4.2",
    )
    assert [p.sha for p in controller.pending] == [sha]
    assert await asyncio.to_thread(images, apps, "orders", "orders") == {
        "orders": f"{ORDERS}:1.4.1",
        "envoy": "envoyproxy/envoy:v1.30.1",
    }  # nothing happens in the cluster until the controller syncs

    applied = await asyncio.to_thread(controller.sync)

    assert applied == [
        Applied("Deployment", "orders", "orders", "orders", f"{ORDERS}:1.4.2", PRODUCTION, sha)
    ]  # staging's 9.9.9 is not this controller's path, envoy did not change
    assert before != sha
    assert (controller.synced, controller.pending) == (sha, [])
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert d.spec.template.spec.containers[0].image == f"{ORDERS}:1.4.2"
    assert (d.metadata.generation, d.status.observed_generation) == (2, 1)
    kube.step()
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert d.status.observed_generation == 2
    progressing = {c.type: c.reason for c in d.status.conditions}["Progressing"]
    assert progressing in ("NewReplicaSetCreated", "ReplicaSetUpdated")
    kube.settle()
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert (d.status.updated_replicas, d.status.ready_replicas) == (2, 2)
    assert await asyncio.to_thread(controller.sync) == []  # nothing new to apply


async def test_kustomization_images_and_helm_values_set_the_workload_named_like_the_image(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, apps: client.AppsV1Api
) -> None:
    controller = production(gitlab_sandbox, kube)
    await asyncio.to_thread(
        gitlab_sandbox.commit,
        GITOPS,
        {CART: deployment("0.1.0", name="cart", namespace="cart")},
        message="A new app, not in the cluster yet",
        author="alice",
    )
    sha = await merge(
        gitlab_sandbox,
        {INVOICES: kustomization("2.1.0"), SEARCH: values("3.3.0")},
        branch="deploy/invoices-and-search",
    )

    applied = await asyncio.to_thread(controller.sync)

    assert [(a.kind, a.namespace, a.name, a.image, a.path) for a in applied] == [
        ("Deployment", "invoices", "invoices", f"{REGISTRY}/invoices:2.1.0", INVOICES),
        ("StatefulSet", "search-api", "search-api", f"{REGISTRY}/search-api:3.3.0", SEARCH),
    ]
    assert {a.commit for a in applied} == {sha}
    assert await asyncio.to_thread(images, apps, "invoices", "invoices") == {
        "invoices": f"{REGISTRY}/invoices:2.1.0"
    }
    sts = await asyncio.to_thread(apps.read_namespaced_stateful_set, "search-api", "search-api")
    assert sts.spec.template.spec.containers[0].image == f"{REGISTRY}/search-api:3.3.0"
    # nothing is created: the new app waits for its namespace and workload
    assert controller.missing == [f"{CART}: no Deployment cart/cart"]
    assert kube.get("Deployment", "cart", "cart") is None


async def test_a_lagging_controller_applies_each_push_lag_seconds_after_it(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, apps: client.AppsV1Api
) -> None:
    controller = production(gitlab_sandbox, kube, lag=120)
    first = await merge(gitlab_sandbox, {PRODUCTION: deployment("1.4.2")}, branch="deploy/a")
    assert await asyncio.to_thread(controller.sync) == []
    kube.advance(60)
    second = await merge(gitlab_sandbox, {PRODUCTION: deployment("1.4.3")}, branch="deploy/b")
    assert await asyncio.to_thread(controller.sync) == []
    assert (await asyncio.to_thread(images, apps, "orders", "orders"))["orders"] == (
        f"{ORDERS}:1.4.1"
    )

    kube.advance(60)  # 120 s after the first merge, 60 s after the second
    [applied] = await asyncio.to_thread(controller.sync)
    assert (applied.image, applied.commit) == (f"{ORDERS}:1.4.2", first)
    assert [p.sha for p in controller.pending] == [second]

    kube.advance(60)
    [applied] = await asyncio.to_thread(controller.sync)
    assert (applied.image, applied.commit) == (f"{ORDERS}:1.4.3", second)
    assert (await asyncio.to_thread(images, apps, "orders", "orders"))["orders"] == (
        f"{ORDERS}:1.4.3"
    )


async def test_a_controller_that_is_not_syncing_never_applies_until_repaired(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, apps: client.AppsV1Api
) -> None:
    controller = production(gitlab_sandbox, kube, mode="never")
    sha = await merge(gitlab_sandbox, {PRODUCTION: deployment("1.5.0")}, branch="deploy/c")
    kube.advance(3600)
    assert await asyncio.to_thread(controller.sync) == []
    d = await asyncio.to_thread(apps.read_namespaced_deployment, "orders", "orders")
    assert d.spec.template.spec.containers[0].image == f"{ORDERS}:1.4.1"
    assert d.metadata.generation == 1  # no rollout ever started
    assert [p.sha for p in controller.pending] == [sha]

    controller.mode = "sync"  # someone fixed Argo CD
    [applied] = await asyncio.to_thread(controller.sync)
    assert (applied.image, controller.synced) == (f"{ORDERS}:1.5.0", sha)


async def test_polling_applies_merges_on_its_own(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, apps: client.AppsV1Api
) -> None:
    controller = production(gitlab_sandbox, kube)
    await controller.start(interval=0.02)
    try:
        await merge(gitlab_sandbox, {PRODUCTION: deployment("1.4.2")}, branch="deploy/d")
        await eventually(
            lambda: kube.get("Deployment", "orders", "orders")["metadata"]["generation"] == 2
        )
        assert (await asyncio.to_thread(images, apps, "orders", "orders"))["orders"] == (
            f"{ORDERS}:1.4.2"
        )
    finally:
        await controller.stop()
        controller.close()
    await merge(gitlab_sandbox, {PRODUCTION: deployment("1.4.3")}, branch="deploy/e")
    assert controller.pending == []  # closed: it no longer hears pushes


def test_modes_and_lag_are_checked() -> None:
    with pytest.raises(ValueError, match="sync, never"):
        GitOpsController(None, None, project=GITOPS, mode="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lag"):
        GitOpsController(None, None, project=GITOPS, lag=-1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# RoleBindings and pruning

BINDING_FILE = "access/production/orders-bob.yaml"
BINDING = """apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pitcrew-access-bob
  namespace: orders
  labels: {appId: orders}
  annotations: {pitcrew.io/expires: "2026-03-02T11:00:00Z"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "oidc:bob@example.com"}
"""


def rbac(kube: KubeSandbox, tmp_path: Path) -> client.RbacAuthorizationV1Api:
    path = kube.kubeconfig(tmp_path / "rbac-kubeconfig", context="prod")
    return client.RbacAuthorizationV1Api(
        config.new_client_from_config(config_file=str(path), context="prod")
    )


async def test_a_rolebinding_file_is_applied_and_its_deletion_removes_it(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox, tmp_path: Path
) -> None:
    controller = GitOpsController(
        gitlab_sandbox, kube, project=GITOPS, paths=("access/production", "apps/*/production")
    )
    api = rbac(kube, tmp_path)
    await asyncio.to_thread(
        gitlab_sandbox.commit, GITOPS, {BINDING_FILE: BINDING}, message="access", author="alice"
    )
    await asyncio.to_thread(controller.sync)
    found = await asyncio.to_thread(
        api.read_namespaced_role_binding, "pitcrew-access-bob", "orders"
    )
    assert found.role_ref.name == "admin"
    assert [s.name for s in found.subjects] == ["oidc:bob@example.com"]
    assert found.metadata.annotations == {"pitcrew.io/expires": "2026-03-02T11:00:00Z"}
    listed = await asyncio.to_thread(api.list_namespaced_role_binding, "orders")
    assert [b.metadata.name for b in listed.items] == ["pitcrew-access-bob"]

    await asyncio.to_thread(
        gitlab_sandbox.commit, GITOPS, {BINDING_FILE: None}, message="revoke", author="alice"
    )
    await asyncio.to_thread(controller.sync)
    assert controller.changes == [
        "applied RoleBinding orders/pitcrew-access-bob",
        "deleted RoleBinding orders/pitcrew-access-bob",
    ]
    with pytest.raises(client.ApiException) as missing:
        await asyncio.to_thread(api.read_namespaced_role_binding, "pitcrew-access-bob", "orders")
    assert missing.value.status == 404
    assert kube.get("Deployment", "orders", "orders") is not None  # nothing else moved


async def test_a_deleted_manifest_prunes_its_workload_unless_pruning_is_off(
    gitlab_sandbox: GitLabSandbox, kube: KubeSandbox
) -> None:
    keeper = production(gitlab_sandbox, kube, prune=False)
    pruner = production(gitlab_sandbox, kube)
    await asyncio.to_thread(
        gitlab_sandbox.commit,
        GITOPS,
        {PRODUCTION: None, INVOICES: None, STAGING: None},
        message="undeploy",
        author="alice",
    )
    await asyncio.to_thread(keeper.sync)
    assert keeper.changes == []
    assert kube.get("Deployment", "orders", "orders") is not None
    await asyncio.to_thread(pruner.sync)
    # the Deployment it named, the workload named like a kustomization's image; not staging's
    assert pruner.changes == [
        "deleted Deployment invoices/invoices",
        "deleted Deployment orders/orders",
    ]
    assert kube.get("Deployment", "orders", "orders") is None
    assert kube.objects("Pod", "orders") == []
