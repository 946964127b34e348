"""tests/integration/test_release_store.py on a Redis Cluster (see conftest.py)."""

from tests.integration.test_release_store import *  # noqa: F403
