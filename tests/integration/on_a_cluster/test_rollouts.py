"""tests/integration/test_rollouts.py on a Redis Cluster (see conftest.py)."""

from tests.integration.test_rollouts import *  # noqa: F403
