"""The Redis store: streams, leases, locks, releases, rollouts, pipelines, inventory, audit.

Every module here (and the Slack outbox, which keeps its state in Redis too) follows one rule so
that it runs on one server, Sentinel and Redis Cluster alike (``bot.adapters.redis_keys`` says
it at length, with the helpers):

1. All the keys of one Lua script or multi-key command hash on the same string, their anchor:
   build them with ``beside(anchor, "prefix", ...)`` (``dedup:{events:gitlab}:<id>`` sits in
   the slot of the stream ``events:gitlab``).
2. Anchors spread the load: per project, channel, stream or record, never one for all.
3. Global indexes (a set of every env, channel, open release) are written outside per-item
   scripts, added to before and removed from after, and readers skip entries whose item is gone.
4. Scripts are made with ``redis_keys.script(redis, source)``, never ``register_script``; no
   ``pipeline(transaction=True)``. A script called across slots raises ``CrossSlot`` in every
   test, and ``tests/unit/adapters/test_redis_keys.py`` checks the source.

What a person or GitLab is told is done goes through ``replication.Replication`` (``run`` for a
script and its ``WAIT`` on one connection, ``confirm`` otherwise) when ``REDIS_MIN_REPLICAS`` is
set.
"""
