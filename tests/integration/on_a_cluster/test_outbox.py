"""tests/integration/test_outbox.py on a Redis Cluster (see conftest.py): the outbox's scripts
and keys. Its tests of Slack's answers (throttling, server errors, pacing) say nothing more
about the store and stay on one server."""

from tests.integration.test_outbox import (  # noqa: F401
    test_a_keyed_message_is_posted_once_then_updated_in_place,
    test_a_lost_thread_reply_is_found_in_its_thread,
    test_a_post_whose_answer_was_lost_is_found_not_posted_again,
    test_an_older_version_never_overwrites_a_newer_one,
    test_an_undeliverable_message_is_dropped_without_blocking_the_channel,
    test_recovery_finds_the_post_however_long_the_bot_was_down,
    test_thread_replies_are_keyed_and_follow_their_parent,
    test_updates_waiting_for_one_key_collapse_into_the_newest,
)
