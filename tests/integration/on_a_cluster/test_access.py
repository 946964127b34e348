"""tests/integration/test_access.py on a Redis Cluster (see conftest.py): grants, their places
and indexes live in different hash slots."""

from tests.integration.test_access import *  # noqa: F403
