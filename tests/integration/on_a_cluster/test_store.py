"""The Redis-backed parts of tests/integration/test_store.py on a Redis Cluster (conftest.py):
the inbox, the consumer group (claims, dead letters, trimming) and leases."""

from tests.integration.test_store import (  # noqa: F401
    test_a_leader_stops_its_work_when_the_lease_is_taken,
    test_a_poison_entry_goes_to_the_dead_letter_stream,
    test_consumer_group_delivers_each_entry_once_across_consumers,
    test_entries_of_a_dead_consumer_are_claimed,
    test_inbox_stores_once_per_dedup_key,
    test_only_one_leader_and_a_takeover_when_it_dies,
    test_trim_keeps_unacknowledged_entries,
)
