"""The real bot and the Slack sandbox, as the integration tests start them."""

from tests.integration.conftest import *  # noqa: F403
