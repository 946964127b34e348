"""tests/integration/test_locks.py on a Redis Cluster (see conftest.py)."""

from tests.integration.test_locks import *  # noqa: F403
