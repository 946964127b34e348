"""The ground rules a release must keep (SPEC 5): namespaces and appId labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.catalog import App
from bot.domain.ground_rules import check_ground_rules
from bot.domain.manifests import ManifestError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "manifests"


def make_app(*, manifests: str = "apps/orders/{env}/deployment.yaml", **extra: str) -> App:
    return App(
        name="orders",
        team="payments",
        source="shop/orders",
        image="registry.example.com/shop/orders",
        manifests=manifests,
        **extra,
    )


WORKLOAD = make_app()

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  namespace: {namespace}
  labels: {{appId: {label}}}
spec:
  template:
    metadata:
      labels:
        appId: {template_label}
    spec:
      containers:
        - name: api
          image: registry.example.com/shop/orders:1.4.1
"""


def deployment(
    *, namespace: str = "orders", label: str = "orders", template_label: str = "orders"
) -> str:
    return DEPLOYMENT.format(namespace=namespace, label=label, template_label=template_label)


def test_the_fixture_keeps_every_rule() -> None:
    text = (FIXTURES / "orders-deployment.yaml").read_text()

    assert check_ground_rules(text, app=WORKLOAD) == []


@pytest.mark.parametrize("namespace", ["orders", "orders-jobs", "orders-canary-2"])
def test_namespace_is_the_app_id_or_has_a_suffix(namespace: str) -> None:
    assert check_ground_rules(deployment(namespace=namespace), app=WORKLOAD) == []


RULE = 'app orders lives in namespace "orders" or "orders-<suffix>"'


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            deployment(namespace="payments"),
            [f'line 1: Deployment orders: namespace "payments" breaks the ground rule: {RULE}'],
        ),
        (
            deployment(namespace="orders-"),
            [f'line 1: Deployment orders: namespace "orders-" breaks the ground rule: {RULE}'],
        ),
        (
            deployment(namespace="ordersx"),
            [f'line 1: Deployment orders: namespace "ordersx" breaks the ground rule: {RULE}'],
        ),
        (
            deployment().replace("  namespace: orders\n", ""),
            [f"line 1: Deployment orders: metadata.namespace is missing: {RULE}"],
        ),
        (
            deployment(namespace='""'),
            [f"line 1: Deployment orders: metadata.namespace is missing: {RULE}"],
        ),
        (
            deployment(label="refunds", template_label="refunds"),
            [
                'line 1: Deployment orders: metadata.labels.appId is "refunds", '
                "but this file belongs to orders",
                'line 1: Deployment orders: spec.template.metadata.labels.appId is "refunds", '
                "but this file belongs to orders",
            ],
        ),
        (
            "---\nkind: Namespace\napiVersion: v1\nmetadata:\n  name: orders\n",
            ["line 2: Namespace orders: must be labelled appId: orders (it has none)"],
        ),
        (
            "kind: Namespace\nmetadata:\n  name: payments\n  labels: {appId: payments}\n",
            [
                f"line 1: Namespace payments: breaks the ground rule: {RULE}",
                'line 1: Namespace payments: must be labelled appId: orders (it has "payments")',
                'line 1: Namespace payments: metadata.labels.appId is "payments", '
                "but this file belongs to orders",
            ],
        ),
        (
            "kind: Service\nmetadata: {name: orders, namespace: orders}\n"
            "---\n"
            "kind: ConfigMap\nmetadata: {name: orders-config}\n",
            [f"line 4: ConfigMap orders-config: metadata.namespace is missing: {RULE}"],
        ),
        (
            "kind: List\nitems:\n- kind: Secret\n  metadata: {name: s, namespace: default}\n",
            [f'line 3: Secret s: namespace "default" breaks the ground rule: {RULE}'],
        ),
        (
            "kind: ClusterRole\nmetadata: {name: orders-reader}\n"
            "---\nkind: Role\nmetadata: {name: orders-reader}\n",
            [f"line 4: Role orders-reader: metadata.namespace is missing: {RULE}"],
        ),
        (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
            [f"line 1: Widget w: metadata.namespace is missing: {RULE}"],
        ),
        ("name: not-a-resource\n", ["line 1: not a Kubernetes resource (no kind)"]),
        ("kind: Service\n", ["line 1: Service has no metadata"]),
        ("- a\n- b\n", ["document 1 is not a Kubernetes resource (it is not a mapping)"]),
        ("---\n---\n", []),
    ],
)
def test_problems_are_named_with_their_line(text: str, problems: list[str]) -> None:
    assert check_ground_rules(text, app=WORKLOAD) == problems


def test_cronjob_pod_template_label_is_checked() -> None:
    text = """\
kind: CronJob
metadata: {name: nightly, namespace: orders-jobs}
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          labels: {appId: refunds}
"""
    assert check_ground_rules(text, app=WORKLOAD) == [
        "line 1: CronJob nightly: spec.jobTemplate.spec.template.metadata.labels.appId is "
        '"refunds", but this file belongs to orders'
    ]


def test_helm_values_hold_no_resources_to_check() -> None:
    app = make_app(manifests="apps/orders/{env}/values.yaml", version_key="image.tag")

    assert check_ground_rules("image:\n  tag: 1.4.1\nnamespace: default\n", app=app) == []


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ((FIXTURES / "kustomization.yaml").read_text(), []),
        ("resources: [deployment.yaml]\n", []),
        (
            "resources: [deployment.yaml]\nnamespace: payments\n",
            [f'line 2: namespace "payments" breaks the ground rule: {RULE}'],
        ),
        (
            "commonLabels:\n  appId: refunds\n",
            ['commonLabels.appId is "refunds", but this file belongs to orders'],
        ),
        (
            "labels:\n- pairs: {appId: refunds}\n",
            ['labels pairs appId is "refunds", but this file belongs to orders'],
        ),
    ],
)
def test_kustomization_namespace_and_labels(text: str, problems: list[str]) -> None:
    app = make_app(manifests="apps/orders/{env}/kustomization.yaml")

    assert check_ground_rules(text, app=app) == problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [\n", "invalid YAML at line 2"),
        ("kind: Service\nkind: Pod\n", "invalid YAML at line 2"),
    ],
)
def test_malformed_yaml_is_a_manifest_error(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        check_ground_rules(text, app=WORKLOAD)
