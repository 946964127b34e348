"""The real bot against the sandboxes, with the integration suite's fixtures.

``start`` (and the ``gitlab`` and ``cluster`` it needs) drives releases end to end: a GitLab
sandbox with the ``orders`` app tagged and its manifests in the GitOps repo, a Kubernetes sandbox,
and ``World``, the gestures of the people in the story.
"""

from tests.integration.conftest import *  # noqa: F403
from tests.integration.test_releases import cluster, gitlab, start  # noqa: F401
