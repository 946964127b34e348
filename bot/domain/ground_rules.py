"""The ground rules a release must keep (SPEC 5), checked on the manifest it would commit.

Pitcrew routes rollouts, locks and alerts by namespace and by the ``appId`` label, so a
manifest that puts a resource in the default namespace, in another team's namespace, or labels
it as another app, would make Pitcrew (and the people reading its messages) lose track of it.
The rules: every namespaced resource names its namespace; that namespace is ``<appId>`` or
``<appId>-<suffix>``; a Namespace object in the file carries the label ``appId: <appId>``; and an
``appId`` label, wherever one is set, names this app.

Only what the file itself says is checked: a Helm values file holds no resources (the chart's
templates do), and a kustomization's resources live in other files, so for those only the
kustomization's own ``namespace`` and common labels are checked. Schema validation is a
separate step (``kubernetes-validate``, outside the domain).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase
from ruamel.yaml.error import YAMLError

from bot.domain.catalog import App, ManifestKind
from bot.domain.manifests import ManifestError, compose_documents

__all__ = ["CLUSTER_SCOPED_KINDS", "check_ground_rules"]

APP_LABEL = "appId"

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)
"""Kinds that live outside namespaces; any other kind, custom ones included, needs one."""


def check_ground_rules(text: str, *, app: App, kind: ManifestKind | None = None) -> list[str]:
    """Every broken rule, one line each, in file order; empty when the file keeps them all.

    ``kind`` is how to read the file, by default as the app's manifest is read; a file of
    resources that is not the app's manifest (a break-glass RoleBinding) says ``"workload"``.
    Malformed YAML raises ``ManifestError`` (the same one ``read_version`` gives), since
    nothing can be said about the rules of a file that cannot be read.
    """
    documents = _load(text)
    kind = kind or app.manifest_kind
    if kind == "helm_values":
        return []
    problems: list[str] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if kind == "kustomization":
            problems.extend(_kustomization_problems(document, app=app))
        else:
            problems.extend(_document_problems(document, index=index, app=app))
    return problems


def _load(text: str) -> list[Any]:
    compose_documents(text)  # malformed YAML: the same message, with its line, as elsewhere
    yaml = YAML(typ="rt")
    yaml.composer.warn_double_anchors = False
    try:
        return list(yaml.load_all(text))
    except YAMLError as exc:  # e.g. a duplicate key, which composing alone does not see
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}" if line is not None else ""
        raise ManifestError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # a value YAML cannot build (an unquoted 2020-02-30, ``!!int x``): ruamel raises these
        raise ManifestError(f"invalid YAML: a value cannot be read ({exc})") from exc


def _document_problems(document: object, *, index: int, app: App) -> Iterator[str]:
    if not isinstance(document, Mapping):
        yield f"document {index + 1} is not a Kubernetes resource (it is not a mapping)"
        return
    kind = document.get("kind")
    if kind == "List" and isinstance(document.get("items"), list):
        for item in document["items"]:
            yield from _resource_problems(item, app=app)
        return
    yield from _resource_problems(document, app=app)


def _resource_problems(resource: object, *, app: App) -> Iterator[str]:
    if not isinstance(resource, Mapping):
        yield "a list item is not a Kubernetes resource (it is not a mapping)"
        return
    where = f"line {_line(resource)}"
    kind = resource.get("kind")
    if not isinstance(kind, str) or not kind:
        yield f"{where}: not a Kubernetes resource (no kind)"
        return
    metadata = resource.get("metadata")
    if not isinstance(metadata, Mapping):
        yield f"{where}: {kind} has no metadata"
        return
    name = metadata.get("name")
    what = f"{where}: {kind} {name}" if isinstance(name, str) else f"{where}: {kind}"
    rule = _rule(app)

    if kind == "Namespace":
        if not isinstance(name, str) or not _follows_rule(name, app=app):
            yield f"{what}: breaks the ground rule: {rule}"
        labels = metadata.get("labels")
        label = labels.get(APP_LABEL) if isinstance(labels, Mapping) else None
        if label != app.name:
            found = "it has none" if label is None else f'it has "{label}"'
            yield f"{what}: must be labelled {APP_LABEL}: {app.name} ({found})"
    elif kind not in CLUSTER_SCOPED_KINDS:
        namespace = metadata.get("namespace")
        if namespace is None or namespace == "":
            yield f"{what}: metadata.namespace is missing: {rule}"
        elif not isinstance(namespace, str) or not _follows_rule(namespace, app=app):
            yield f'{what}: namespace "{namespace}" breaks the ground rule: {rule}'

    for path, label in _app_labels(resource):
        if label != app.name:
            yield f'{what}: {path}.{APP_LABEL} is "{label}", but this file belongs to {app.name}'


def _app_labels(resource: Mapping[Any, Any]) -> Iterator[tuple[str, object]]:
    """``appId`` labels on the resource and on the pod templates inside it, at any depth."""
    stack: list[tuple[str, object]] = [("", resource)]
    while stack:
        prefix, node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        metadata = node.get("metadata")
        if isinstance(metadata, Mapping):
            labels = metadata.get("labels")
            if isinstance(labels, Mapping) and APP_LABEL in labels:
                yield f"{prefix}metadata.labels", labels[APP_LABEL]
        children = [(k, v) for k, v in node.items() if k != "metadata" and isinstance(v, Mapping)]
        stack.extend((f"{prefix}{k}.", v) for k, v in reversed(children))


def _kustomization_problems(document: object, *, app: App) -> Iterator[str]:
    if not isinstance(document, Mapping):
        return
    namespace = document.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or not _follows_rule(namespace, app=app)
    ):
        where = f"line {_key_line(document, 'namespace')}"
        yield f'{where}: namespace "{namespace}" breaks the ground rule: {_rule(app)}'
    common = document.get("commonLabels")
    if isinstance(common, Mapping) and APP_LABEL in common and common[APP_LABEL] != app.name:
        yield (
            f'commonLabels.{APP_LABEL} is "{common[APP_LABEL]}", but this file belongs to '
            f"{app.name}"
        )
    labels = document.get("labels")
    for entry in labels if isinstance(labels, list) else []:
        pairs = entry.get("pairs") if isinstance(entry, Mapping) else None
        if isinstance(pairs, Mapping) and APP_LABEL in pairs and pairs[APP_LABEL] != app.name:
            yield (
                f'labels pairs {APP_LABEL} is "{pairs[APP_LABEL]}", but this file belongs to '
                f"{app.name}"
            )


def _follows_rule(namespace: str, *, app: App) -> bool:
    return namespace == app.name or (
        namespace.startswith(f"{app.name}-") and len(namespace) > len(app.name) + 1
    )


def _rule(app: App) -> str:
    return f'app {app.name} lives in namespace "{app.name}" or "{app.name}-<suffix>"'


def _key_line(node: Mapping[Any, Any], key: str) -> int:
    if isinstance(node, CommentedBase):
        try:
            line: int = node.lc.key(key)[0]
        except (KeyError, TypeError):
            return _line(node)
        return line + 1
    return 1


def _line(node: object) -> int:
    if isinstance(node, CommentedBase):
        line: int = node.lc.line
        return line + 1
    return 1
