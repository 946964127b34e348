"""Opening the store: the configured ``REDIS_URL``, or the embedded server in ``STATE_DIR``.

``REDIS_URL`` (read by ``bot.redis_url``) names one of three topologies (SPEC section 15):

- ``redis://``, ``rediss://``, ``unix://``: one server (or an endpoint that follows failovers).
- ``redis+sentinel://[:password@]host:port[,host:port…]/<master>[/db]``: the sentinels, asked
  where the primary of ``<master>`` is. Connections follow a failover: ``Store.follow`` asks the
  sentinels every second and moves every connection to the primary they name, so that writes
  stop going to a primary the sentinels have replaced even while it is still up on the far side
  of a partition. The password is the data nodes'; it is sent to the sentinels too (set theirs
  to the same, as the usual charts do).
- ``redis+cluster://[:password@]host:port[,host:port…]``: Redis Cluster, any nodes of it to start
  from. Every script and multi-key command keeps to one hash slot (``bot.adapters.redis_keys``).

Timeouts are short and retries few: a webhook must get its 503 quickly when Redis is down, so that
GitLab retries later, instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from bot import logs
from bot.adapters.store.embedded import EmbeddedRedis
from bot.adapters.store.replication import Replication
from bot.errors import PitcrewError, StoreUnavailable
from bot.redis_url import RedisLocation, RedisTopology, parse_redis_url

log = logs.get(__name__)

Redis = aioredis.Redis
"""The client type store code is written against. On a cluster it is a ``RedisCluster``, which
has the same commands; code that needs to tell them apart asks ``is_cluster``."""

FOLLOW_EVERY = 1.0
"""Seconds between two questions to the sentinels: where is the primary now?"""

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
MAX_CONNECTIONS = 1000
"""Per Redis server. redis-py caps a pool at 100 connections by default and *fails* the next
command ("Too many connections") rather than waiting; under a burst of webhooks the intake
(one connection per request in flight), the outbox (one task per channel with work) and the
workers together need more, and a failed command there is a 503 or a lost lease. Redis itself
takes 10,000 clients."""


class StoreUnsupported(PitcrewError):
    """``REDIS_URL`` is not one the store can connect to."""


def check_redis_url(redis_url: str) -> RedisLocation:
    """Raise ``StoreUnsupported`` (one line) unless the store can connect to ``redis_url``."""
    try:
        return parse_redis_url(redis_url)
    except ValueError as exc:  # settings check it first; a direct caller gets the same line
        raise StoreUnsupported(f"setting REDIS_URL is invalid: {exc}") from None


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def credentials(url: str) -> Credentials:
    """The ``[user]:password@`` of a ``redis+sentinel://`` or ``redis+cluster://`` URL
    (``bot.redis_url`` leaves them in the URL, which stays a secret)."""
    authority = url.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo, at, _ = authority.rpartition("@")
    if not at:
        return Credentials()
    user, colon, secret = userinfo.partition(":")
    return Credentials(unquote(user) or None, unquote(secret) if colon else None)


def _address(host: str, port: int) -> tuple[str, int]:
    return host.strip("[]"), port  # an IPv6 literal keeps its brackets in REDIS_URL only


class _PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary ``Store.follow`` last heard of from the sentinels.

    redis-py asks the sentinels whenever a connection is taken from the pool, and a connection
    dropped while in use reconnects from inside the command to the address it had. Either way
    connections could end up on two primaries at once during a failover (the old one may still
    be up on the far side of a partition), and ``Replication`` could not vouch for a write.
    Here every connection goes to the one address ``follow`` sets (the sentinels are asked
    directly only before it first did)."""

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        pool: Any = self.connection_pool
        address = pool.master_address or await pool.get_master_address()
        await self.connect_to(address)  # type: ignore[no-untyped-call]

    async def _connect(self) -> None:
        pool: Any = self.connection_pool
        if pool.master_address is not None:
            self.host, self.port = pool.master_address
        await super()._connect()  # type: ignore[no-untyped-call]


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2)


def client_for(url: str) -> Redis:
    """A client for any form of ``REDIS_URL`` (a ``RedisCluster`` for ``redis+cluster://``)."""
    return _connect(url, check_redis_url(url))[0]


def _connect(url: str, target: RedisLocation) -> tuple[Redis, Sentinel | None]:
    if target.topology in ("server", "socket"):
        client: Redis = aioredis.from_url(
            url,
            retry=_retry(),
            health_check_interval=15,
            max_connections=MAX_CONNECTIONS,
            **_TIMEOUTS,
        )
        return client, None
    secret = credentials(url)
    auth: dict[str, Any] = {"username": secret.username, "password": secret.password}
    nodes = [_address(host, port) for host, port in target.hosts]
    if target.topology == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            nodes,
            sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 0.5, **auth},
            **_TIMEOUTS,
        )
        primary: Redis = sentinel.master_for(
            target.master or "",
            connection_class=_PrimaryConnection,
            db=target.db,
            retry=_retry(),
            health_check_interval=15,
            max_connections=MAX_CONNECTIONS,
            **auth,
            **_TIMEOUTS,
        )
        return primary, sentinel
    cluster: Any = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        # On every 5th MOVED (a slot migration sends many) redis-py would otherwise close every
        # connection, in use or not, breaking the commands of every other task; patching the
        # slot map from each MOVED is enough.
        reinitialize_steps=0,
        username=secret.username,
        password=secret.password,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        max_connections=MAX_CONNECTIONS,
    )
    return cluster, None


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, RedisCluster)


@dataclass
class Store:
    redis: Redis
    url_for_display: str
    embedded: EmbeddedRedis | None = None
    topology: RedisTopology = "server"
    sentinel: Sentinel | None = None
    replication: Replication = field(default_factory=lambda: Replication(None, replicas=0))

    async def ping(self) -> bool:
        try:
            if is_cluster(self.redis):
                return bool(await self.redis.ping(target_nodes=RedisCluster.PRIMARIES))
            return bool(await self.redis.ping())
        except Exception:  # RedisError, OSError, RedisClusterException (no node answers)...
            return False

    async def replicas_online(self) -> int | None:
        """The fewest replicas any primary has now (None when Redis cannot tell)."""
        try:
            if is_cluster(self.redis):
                infos: Any = await self.redis.info(
                    "replication", target_nodes=RedisCluster.PRIMARIES
                )
                return min(int(i.get("connected_slaves", 0)) for i in infos.values())
            info: Any = await self.redis.info("replication")
            return int(info.get("connected_slaves", 0))
        except Exception:  # as in ping
            return None

    async def follow(self) -> None:
        """With Sentinel: ask the sentinels every second where the primary is, and drop every
        connection to the old one as soon as they name another. Without this, a primary cut
        off from the sentinels but not from us keeps taking writes it will lose when the
        partition heals. Runs until cancelled; elsewhere it only idles."""
        pool = getattr(self.redis, "connection_pool", None)
        if self.sentinel is None or not isinstance(pool, SentinelConnectionPool):
            await asyncio.Event().wait()
            return
        while True:
            try:
                address = await self.sentinel.discover_master(pool.service_name)
            except Exception as exc:  # RedisError, OSError or worse: this loop must not die
                log.warning("no sentinel names a primary", error=repr(exc))
            else:
                address = (str(address[0]), int(address[1]))
                if pool.master_address is None:
                    pool.master_address = address
                elif tuple(pool.master_address) != address:
                    log.warning(
                        "Redis primary changed; reconnecting",
                        was=f"{pool.master_address[0]}:{pool.master_address[1]}",
                        now=f"{address[0]}:{address[1]}",
                    )
                    # Nothing is confirmed from here until every connection is on the new one,
                    # and nothing written before (it may have gone to the old one).
                    self.replication.switching()
                    pool.master_address = address
                    try:
                        with contextlib.suppress(RedisError, OSError):
                            await pool.disconnect(inuse_connections=True)
                    finally:
                        self.replication.switched()
            await asyncio.sleep(FOLLOW_EVERY)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.sentinel is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.sentinel.aclose()
        if self.embedded is not None:
            self.embedded.stop()


def open_store(*, redis_url: str | None, state_dir: Path, min_replicas: int = 0) -> Store:
    """Open the store (blocking: it may start the embedded server; run it in a thread)."""
    if redis_url:
        target = check_redis_url(redis_url)
        redis, sentinel = _connect(redis_url, target)
        return Store(
            redis=redis,
            url_for_display=target.display,
            topology=target.topology,
            sentinel=sentinel,
            replication=Replication(redis, replicas=min_replicas),
        )
    if min_replicas:
        raise StoreUnavailable(
            f"REDIS_MIN_REPLICAS={min_replicas} needs a Redis with replicas (REDIS_URL); "
            "the embedded server has none"
        )
    embedded = EmbeddedRedis(state_dir)
    url = embedded.start()
    return Store(
        redis=client_for(url), url_for_display=f"embedded ({state_dir})", embedded=embedded
    )
