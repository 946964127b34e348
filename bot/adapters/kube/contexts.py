"""Checking Kubernetes contexts for ``pitcrew check``."""

from __future__ import annotations

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
