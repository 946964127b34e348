"""The sandbox simulators of Slack, GitLab and Kubernetes (SPEC section 9)."""

from typing import Final

# How long a stopping simulator waits for a request still in flight before it cancels it.
# aiohttp's default is 60 s: a test whose bot left one call behind (a thread still waiting
# on a watch or a merge when the bot stopped) would wait a minute per simulator.
SHUTDOWN_TIMEOUT: Final = 2.0
