"""The real bot against the sandboxes, with the integration suite's fixtures.

``start`` (and the ``gitops_gitlab`` and ``orders_cluster`` it needs) drives releases end to
end: a GitLab sandbox with the ``orders`` app tagged and its manifests in the GitOps repo, a
Kubernetes sandbox, and ``World`` (tests/integration/release_world.py), the gestures of the
people in the story.
"""

from tests.integration.conftest import *  # noqa: F403
