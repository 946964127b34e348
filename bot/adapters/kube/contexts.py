"""Checking Kubernetes contexts for ``pitcrew check``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from bot.errors import PitcrewError


class KubeUnavailable(PitcrewError):
    """A context is missing from the kubeconfig, or its API server cannot be reached."""


def api_client(context: str, *, kubeconfig: str | None) -> client.ApiClient:
    if context == "in-cluster":
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def missing_contexts(contexts: Mapping[str, str], *, kubeconfig: str | None) -> list[str]:
    """One line per context of ``KUBE_CONTEXTS`` that cannot be used, found without a network:
    a context the kubeconfig lacks, an unreadable kubeconfig, ``in-cluster`` outside a pod."""
    problems = []
    named = {env: ctx for env, ctx in contexts.items() if ctx != "in-cluster"}
    if len(named) < len(contexts):
        try:
            config.incluster_config.InClusterConfigLoader(
                token_filename=config.incluster_config.SERVICE_TOKEN_FILENAME,
                cert_filename=config.incluster_config.SERVICE_CERT_FILENAME,
            ).load_and_set(client.Configuration())
        except (ConfigException, OSError):
            envs = ", ".join(env for env, ctx in contexts.items() if ctx == "in-cluster")
            problems.append(
                f"setting KUBE_CONTEXTS: {envs}=in-cluster, but this process runs in no"
                " Kubernetes pod (no service account token): name a kubeconfig context instead"
            )
    if not named:
        return problems
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        available, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        problems.append(f"setting KUBECONFIG: cannot read the kubeconfig at {where}: {reason}")
        return problems
    known = [str(c.get("name")) for c in available or []]
    for env, context in named.items():
        if context not in known:
            listed = ", ".join(known) if known else "none"
            problems.append(
                f"setting KUBE_CONTEXTS: {env}={context}, but the kubeconfig ({where}) has no"
                f" context {context} (it has: {listed})"
            )
    return problems


def check_context(context: str, *, kubeconfig: str | None) -> str:
    try:
        api = api_client(context, kubeconfig=kubeconfig)
    except (ConfigException, OSError) as exc:
        raise KubeUnavailable(f"context {context}: {exc}") from exc
    try:
        version = client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:  # urllib3 and ApiException alike: the API server is not usable
        raise KubeUnavailable(
            f"context {context}: API server unreachable ({type(exc).__name__})"
        ) from exc
    finally:
        api.close()
    return f"context {context}: Kubernetes {version.git_version}"
