"""tests/integration/test_whatsinprod.py on a Redis Cluster (see conftest.py)."""

from tests.integration.test_whatsinprod import *  # noqa: F403
