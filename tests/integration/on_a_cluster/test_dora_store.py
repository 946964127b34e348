"""tests/integration/test_dora_store.py on a Redis Cluster (see conftest.py): the months of an
app and env share a slot, their scripts and MGETs keep to it."""

from tests.integration.test_dora_store import *  # noqa: F403
