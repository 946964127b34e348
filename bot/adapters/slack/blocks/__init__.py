"""Block Kit renderers: pure functions from domain objects to Slack message payloads.

They take no client and do no I/O, so tests compare their output with exact expected dicts,
and every renderer keeps within Slack's limits itself rather than leaving Slack to refuse.
"""
