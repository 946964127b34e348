"""Redis keys and Redis Cluster hash slots: the one rule for every module that stores in Redis.

Redis Cluster spreads keys over 16,384 hash slots, and refuses (``CROSSSLOT``) a Lua script, a
``MULTI`` or a multi-key command whose keys live in different slots. Pitcrew keeps one naming
scheme on every topology (one server, Sentinel, Cluster), so the rule holds everywhere:

1. **All the keys of one script or multi-key command hash on the same string, their anchor.**
   Redis hashes a key on its hash tag, the text between its first ``{`` and the next ``}``, or on
   the whole name when it has none. ``beside(anchor, "prefix", ...)`` names a key that hashes
   with ``anchor``: ``beside("events:gitlab", "dedup", uuid)`` is ``dedup:{events:gitlab}:<uuid>``,
   in the slot of the stream ``events:gitlab``, whose own name did not have to change.
2. **Anchors spread the load.** One per pipeline project (``pipelines:{shop/orders}:…``), per
   Slack channel (the outbox), per stream, per record: never one anchor for everything busy, or
   one node of the cluster takes all the traffic.
3. **Global indexes stay out of per-item scripts.** A set of every environment, channel or
   open release is written by its own command, in an order that makes a crash in between
   harmless: add to the index *before* the item's script, remove *after* it, and let readers
   skip index entries whose item is gone.
4. **Scripts are made with ``script(redis, source)``**, never ``register_script``: a call whose
   keys hash on different strings raises ``CrossSlot`` on every server, so the tests on the
   embedded server catch what only a cluster would refuse. For the same reason there is no
   ``pipeline(transaction=True)`` (``MULTI``): write a script instead (a unit test checks both).

A plain ``pipeline(transaction=False)`` may mix keys of any slots: the cluster client splits it
by node. Such a pipeline is a batch, not a transaction: ``run_scripts`` sends many script calls
(each on its one anchor) in one round trip. On one server the calls run in the order given; on a
cluster, in that order on each node, which keeps every anchor's calls in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import NoScriptError

__all__ = [
    "CrossSlot",
    "Script",
    "ScriptCall",
    "beside",
    "hashed",
    "run_scripts",
    "script",
    "slot",
]


class CrossSlot(Exception):
    """A script was called with keys that do not hash on one string: a bug in the caller."""


def hashed(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: its hash tag, or the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def beside(anchor: str, prefix: str, *rest: str) -> str:
    """A key ``prefix:{…}:rest…`` in the hash slot of ``anchor`` (rule 1)."""
    tag = f"{prefix}:{{{hashed(anchor)}}}"
    return ":".join((tag, *rest)) if rest else tag


def slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (0 to 16383), as Redis Cluster computes it."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def same_hash(keys: Sequence[str]) -> None:
    """Raise ``CrossSlot`` unless every key hashes on the same string."""
    if len(keys) < 2:
        return
    first = hashed(keys[0])
    for key in keys[1:]:
        if hashed(key) != first:
            raise CrossSlot(
                f"keys of one script must hash on one string (see bot/adapters/redis_keys.py): "
                f"{keys[0]!r} hashes on {first!r}, {key!r} on {hashed(key)!r}"
            )


class Script:
    """A Lua script of the store, checked at every call against rule 1."""

    def __init__(self, redis: Any, source: str) -> None:
        self._script = redis.register_script(source)
        self.source = source

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    @property
    def client(self) -> Any:
        """The client the script was made with."""
        return self._script.registered_client

    async def __call__(self, *, keys: Sequence[str], args: Iterable[Any] = ()) -> Any:
        same_hash(keys)
        return await self._script(keys=list(keys), args=list(args))

    def queue(
        self, pipe: Any, *, keys: Sequence[str], args: Iterable[Any] = (), **options: Any
    ) -> None:
        """Add a call to a pipeline (a batch). A server that does not know the script answers
        that call with an error (``is_missing_script``): ``load`` it, then run the batch again.
        ``options``: for the cluster client (``target_nodes``)."""
        same_hash(keys)
        pipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, *args, **options)

    async def load(self, redis: Any) -> None:
        """Load the script on every primary (so that a pipeline may call it by its SHA)."""
        self._script.sha = await redis.script_load(self.source)


def script(redis: Any, source: str) -> Script:
    """The only way store code makes a Lua script (rule 4)."""
    return Script(redis, source)


def is_missing_script(error: BaseException) -> bool:
    """Whether a pipeline failed because a server did not know a script (after a failover or a
    restart): load it, then run the batch again."""
    return isinstance(error, NoScriptError) or "NOSCRIPT" in str(error)


ScriptCall = tuple[Script, Sequence[str], Sequence[Any]]
"""A script, its keys, its arguments."""


async def run_scripts(redis: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run many script calls in one round trip (a pipeline, not a transaction); their results
    in order. A server that did not know a script (after a restart or a failover) gets it, and
    the calls it refused run again, after the others: a caller whose calls depend on each other
    (compare-and-set on a version) sees the later ones fail and tries them again, as for any
    lost race. A call that failed otherwise raises its error (``RedisError``)."""
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        if not todo:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for index in todo:
                source, keys, args = calls[index]
                source.queue(pipe, keys=keys, args=args)
            answers = await pipe.execute(raise_on_error=False)
        missing: dict[int, Script] = {}
        for index, answer in zip(todo, answers, strict=True):
            results[index] = answer
            if isinstance(answer, Exception) and attempt == 0 and is_missing_script(answer):
                missing[index] = calls[index][0]
        for source in {id(s): s for s in missing.values()}.values():
            await source.load(redis)
        todo = list(missing)
    for answer in results:
        if isinstance(answer, Exception):
            raise answer
    return results
