"""Offline schema checks of edited manifests, with ``kubernetes-validate``.

A release's edited file is checked before any branch exists: every document that is a
Kubernetes resource (``apiVersion`` and ``kind``) is validated against the JSON schema of the
cluster's Kubernetes version (``KUBERNETES_VERSION``, default: the newest the library ships).
Kinds the schemas do not know (custom resources, a ``Kustomization``) are not guessed at; Helm
values files are not resources and are left to the ground rules and the chart.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from kubernetes_validate.utils import (
    SchemaNotFoundError,
    VersionNotSupportedError,
    all_versions,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot import logs
from bot.domain.errors import PitcrewError

log = logs.get(__name__)


class UnsupportedKubernetesVersion(PitcrewError):
    """``KUBERNETES_VERSION`` names a version whose schemas are not shipped."""


def supported_versions() -> list[str]:
    return list(all_versions())


class KubeSchemaValidator:
    def __init__(self, version: str | None = None) -> None:
        versions = supported_versions()
        if version is None:
            version = versions[-1]
        wanted = version.removeprefix("v")
        matching = [v for v in versions if v == wanted or v.startswith(f"{wanted}.")]
        if not matching:
            raise UnsupportedKubernetesVersion(
                f"KUBERNETES_VERSION {version} has no schemas here; known: {versions[0]} to"
                f" {versions[-1]}"
            )
        self.version = matching[-1]

    def problems(self, text: str) -> list[str]:
        """One line per schema problem, naming the document and the field."""
        try:
            documents = list(YAML(typ="safe").load_all(text))
        except YAMLError as exc:
            return [f"not valid YAML: {str(exc).splitlines()[0]}"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return [f"not valid YAML: a value cannot be read ({exc})"]
        problems: list[str] = []
        for index, document in enumerate(documents):
            if not _is_resource(document):
                continue
            name = f"{document['kind']} {(document.get('metadata') or {}).get('name', '')}".strip()
            try:
                kubernetes_validate.validate(document, self.version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(top level)"
                problems.append(
                    f"document {index + 1} ({name}): {where}: {exc.message.splitlines()[0]}"
                )
            except (SchemaNotFoundError, VersionNotSupportedError):
                log.debug("no schema for resource; not checked", kind=document.get("kind"))
        return problems


def _is_resource(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("apiVersion"), str)
        and isinstance(document.get("kind"), str)
    )
