"""Reading one RoleBinding, to confirm that break-glass access is in the cluster (or gone).

A GET of the grant's RoleBinding by name, in a thread, only while the access sweep has something
to confirm: Pitcrew never writes RBAC (the GitOps controller applies what the merge request put
in git); its ClusterRole allows get/list/watch on rolebindings and nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.adapters.kube.contexts import api_client
from bot.domain.errors import Unavailable

TIMEOUT = 10


class RoleBindingReader:
    def __init__(self, *, contexts: Mapping[str, str], kubeconfig: str | None) -> None:
        self._contexts = dict(contexts)
        """environment → kube context."""
        self._kubeconfig = kubeconfig

    async def present(self, *, env: str, namespace: str, name: str) -> bool:
        context = self._contexts.get(env)
        if context is None:
            raise Unavailable(f"{env}'s cluster is not watched (KUBE_CONTEXTS)")
        return await asyncio.to_thread(self._read, context, namespace, name)

    def _read(self, context: str, namespace: str, name: str) -> bool:
        try:
            api = api_client(context, kubeconfig=self._kubeconfig)
        except (ConfigException, OSError) as exc:
            raise Unavailable(f"context {context}: {exc}") from exc
        try:
            client.RbacAuthorizationV1Api(api).read_namespaced_role_binding(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise Unavailable(
                f"context {context}: reading RoleBinding {namespace}/{name} failed ({exc.status})"
            ) from exc
        except Exception as exc:  # urllib3 and socket errors alike: the API server is not usable
            raise Unavailable(
                f"context {context}: API server unreachable ({type(exc).__name__})"
            ) from exc
        finally:
            api.close()
