"""What a platform engineer relies on when deploying Pitcrew: the image, the kustomize base, the
Slack app manifest and the settings template agree with the contract (SPEC sections 1, 2, 7, 10).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
NAMESPACE = "pitcrew"
LABELS = {"app.kubernetes.io/name": "pitcrew", "appId": "pitcrew"}
PORT = 3000
SLACK_URL = "https://pitcrew.example.com/slack/events"

# SPEC section 2, in order.
SETTINGS = [
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "GITLAB_URL",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "GITOPS_PROJECT",
    "GITOPS_BRANCH",
    "CATALOG_PATH",
    "REDIS_URL",
    "STATE_DIR",
    "KUBE_CONTEXTS",
    "KUBECONFIG",
    "SENTRY_DSN",
    "PORT",
    "LOG_LEVEL",
    "LOG_FORMAT",
]
SECRET_SETTINGS = {
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "REDIS_URL",
    "SENTRY_DSN",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
READ_ONLY_RULES = {
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("", "pods"),
    ("", "events"),
    ("rbac.authorization.k8s.io", "rolebindings"),  # break-glass access, confirmed
}
COMMANDS = {
    "/whatsinprod",
    "/deploy",
    "/rollback",
    "/undeploy",
    "/access",
    "/lock",
    "/unlock",
    "/dora",
    "/pitcrew",
}
BOT_SCOPES = {
    "commands",
    "chat:write",
    "chat:write.public",
    "channels:read",
    "groups:read",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "im:write",
    "files:write",  # the weekly digest's chart
}
HISTORY_SCOPES = {
    # Optional, commented out in the manifest: the outbox's look-up of a post whose answer was
    # lost (conversations.history/replies, by metadata, as a member of public channels).
    "channels:history",
    "groups:history",
    "channels:join",
    "metadata.message:read",
}


def load_all(path: Path) -> list[Any]:
    return [doc for doc in YAML(typ="safe", pure=True).load_all(path.read_text()) if doc]


def all_yaml_files() -> list[Path]:
    """Every YAML file but the Helm chart's templates, which are Go templates until rendered
    (tests/unit/test_deploy_options.py renders and checks them)."""
    templates = MANIFESTS / "helm" / "pitcrew" / "templates"
    return sorted(
        p
        for p in MANIFESTS.rglob("*")
        if p.suffix in {".yaml", ".yml"} and templates not in p.parents
    )


def kube_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all(path)
    ]


def only(kind: str) -> dict[str, Any]:
    found = [obj for obj in kube_objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = only("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (main,) = pod_spec()["containers"]
    return dict(main)


def container_port(port: int | str) -> int:
    """Resolve a probe's or Service's port, which may name a container port."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container()["ports"]}
    return int(by_name[port])


@pytest.mark.parametrize("path", all_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_file_parses(path: Path) -> None:
    assert load_all(path), f"{path} holds no document"


@pytest.mark.parametrize(
    "obj", kube_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}"
)
def test_every_object_is_valid_and_owned(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    metadata = obj["metadata"]
    assert LABELS.items() <= metadata.get("labels", {}).items()
    if obj["kind"] in CLUSTER_SCOPED:
        assert "namespace" not in metadata
    else:
        assert metadata.get("namespace") == NAMESPACE


def test_namespace_follows_the_ground_rule() -> None:
    namespace = only("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["appId"] == NAMESPACE


def test_kustomization_lists_every_resource_file_but_the_secret_example() -> None:
    (kustomization,) = load_all(BASE / "kustomization.yaml")
    listed = kustomization["resources"]
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk - {"secret.example.yaml"}


def test_rbac_is_read_only_on_workloads_pods_events_and_rolebindings() -> None:
    role = only("ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no resourceNames/URLs"
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == READ_ONLY_RULES

    binding = only("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = only("ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]
    assert pod_spec()["serviceAccountName"] == account["name"]
    assert not [o for o in kube_objects() if o["kind"] in {"Role", "RoleBinding"}]


def test_deployment_runs_two_replicas_without_downtime() -> None:
    spec = only("Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert LABELS.items() <= spec["template"]["metadata"]["labels"].items()
    assert pod_spec()["terminationGracePeriodSeconds"] == 30
    assert pod_spec()["topologySpreadConstraints"]


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_deployment_probes(probe: str, path: str) -> None:
    http = container()[probe]["httpGet"]
    assert http["path"] == path
    assert container_port(http["port"]) == PORT


def test_deployment_is_non_root_with_a_read_only_root_filesystem() -> None:
    pod, main = pod_spec(), container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    state_dir = {e["name"]: e.get("value") for e in main["env"]}["STATE_DIR"]
    for path in ("/tmp", state_dir):
        assert "emptyDir" in volumes[mounts[path]], f"{path} must be a writable emptyDir"


def test_deployment_has_resources_and_its_settings() -> None:
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]

    sources = container()["envFrom"]
    config = only("ConfigMap")
    secret = only("Secret")
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources
    assert set(config["data"]) <= set(SETTINGS) - SECRET_SETTINGS, "secrets in the ConfigMap"
    assert set(secret["stringData"]) <= SECRET_SETTINGS
    required = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "GITLAB_TOKEN", "GITLAB_WEBHOOK_SECRET"}
    assert required | {"REDIS_URL"} <= set(secret["stringData"])
    assert "GITOPS_PROJECT" in config["data"]


def test_service_pdb_and_network_policy_select_the_pods() -> None:
    pod_labels = only("Deployment")["spec"]["template"]["metadata"]["labels"].items()

    service = only("Service")["spec"]
    assert service["selector"].items() <= pod_labels
    (port,) = service["ports"]
    assert port["port"] == 80
    assert container_port(port["targetPort"]) == PORT

    pdb = only("PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= pod_labels

    policy = only("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {PORT}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6379, 443}


def test_slack_app_manifest_declares_commands_scopes_and_interactivity() -> None:
    from bot.adapters.slack.blocks.help import COMMANDS as LISTED

    (app,) = load_all(MANIFESTS / "slack-app.yaml")
    commands = app["features"]["slash_commands"]
    assert {c["command"] for c in commands} == COMMANDS
    # every command the bot answers, as /pitcrew help lists them
    assert {c["command"] for c in commands} == {c.name for c in LISTED}
    for command in commands:
        assert command["url"] == SLACK_URL
        assert command["should_escape"] is False
        assert command["description"]
        assert "usage_hint" in command
    # Exactly these: a new scope is a security review, not a drive-by change.
    assert set(app["oauth_config"]["scopes"]["bot"]) == BOT_SCOPES
    optional = re.findall(r"^ +# - ([a-z.:]+)$", (MANIFESTS / "slack-app.yaml").read_text(), re.M)
    assert set(optional) == HISTORY_SCOPES
    settings = app["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": SLACK_URL}
    # the App Home: its tab, and the event that draws it
    assert app["features"]["app_home"]["home_tab_enabled"] is True
    assert settings["event_subscriptions"] == {
        "request_url": SLACK_URL,
        "bot_events": ["app_home_opened"],
    }
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def _settings_the_code_reads() -> list[str]:
    from bot.settings import Settings

    return sorted(str(field.validation_alias) for field in Settings.model_fields.values())


def test_the_code_reads_every_setting_of_the_spec() -> None:
    assert not set(SETTINGS) - set(_settings_the_code_reads())


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    assigned = re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)
    assert sorted(assigned) == _settings_the_code_reads()


def test_configuration_doc_lists_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert not [name for name in _settings_the_code_reads() if f"| `{name}`" not in text]


def test_dockerfile_is_non_root_and_built_from_the_lock_file() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines)
    assert "uv sync --frozen" in text
    assert "--no-dev" in text

    makefile = (ROOT / "Makefile").read_text()
    (uv_version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, flags=re.MULTILINE)
    assert f"uv=={uv_version}" in text, "the image must use the Makefile's uv"

    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    runtime = lines[last_from:]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "the runtime stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric so that runAsNonRoot can check it"
    assert int(uid) != 0
    assert int(uid) == pod_spec()["securityContext"]["runAsUser"]
    assert f"EXPOSE {PORT}" in runtime
    assert 'ENTRYPOINT ["pitcrew"]' in runtime
