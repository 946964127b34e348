"""``REDIS_URL``: which Redis, read once and checked before anything connects.

Five schemes are accepted, so that a typo is told apart from a topology:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://…`` (TLS): one server, or an
  endpoint that follows failovers for you;
- ``unix:///path/to/redis.sock[?db=N]``: a local socket;
- ``redis+sentinel://[:password@]host:port[,host:port…]/<master>[/db]``: Sentinels that name the
  primary of ``master`` and follow its failovers;
- ``redis+cluster://[:password@]host:port[,host:port…]``: a Redis Cluster (database 0 only).

This module only reads the URL; the store decides what it can connect to. A URL without a
scheme (``localhost:6379``) is the commonest mistake, so it gets its own answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote

__all__ = ["SCHEMES", "RedisLocation", "RedisTopology", "parse_redis_url"]

RedisTopology = Literal["server", "socket", "sentinel", "cluster"]

SCHEMES: dict[str, RedisTopology] = {
    "redis": "server",
    "rediss": "server",
    "unix": "socket",
    "redis+sentinel": "sentinel",
    "redis+cluster": "cluster",
}
_DEFAULT_PORTS = {"server": 6379, "sentinel": 26379, "cluster": 6379}
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_MASTER = re.compile(r"[A-Za-z0-9_.-]+")
_EXAMPLES = "redis://host:6379/0, rediss://:password@host:6379/0 or unix:///path/redis.sock"


@dataclass(frozen=True, kw_only=True)
class RedisLocation:
    """What a ``REDIS_URL`` names. The password is left in the URL, which stays a secret."""

    topology: RedisTopology
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()
    """``(host, port)`` pairs: one for a server, the Sentinels, or the cluster's seed nodes."""
    path: str | None = None
    """The socket's path (``unix://``)."""
    master: str | None = None
    """The Sentinel service name of the primary."""
    db: int = 0
    tls: bool = False

    @property
    def display(self) -> str:
        """Where, without credentials: for messages and ``pitcrew check``."""
        if self.topology == "socket":
            return f"unix://{self.path}"
        nodes = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.topology == "sentinel":
            return f"{self.scheme}://{nodes}/{self.master}/{self.db}"
        if self.topology == "cluster":
            return f"{self.scheme}://{nodes}"
        return f"{self.scheme}://{nodes}/{self.db}"


def parse_redis_url(url: str) -> RedisLocation:
    """Read ``url``; raises ``ValueError`` with a message a person can act on."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"expected a URL with its scheme, like {_EXAMPLES}")
    scheme = scheme.lower()
    topology = SCHEMES.get(scheme)
    if topology is None:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unknown scheme {scheme}:// (expected one of {known})")
    rest, _, query = rest.partition("?")
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise ValueError("a '#' in the URL: percent-encode it (%23) if it is in the password")
    if topology == "socket":
        return _socket(rest, query)
    userinfo, at, address = rest.rpartition("@")
    if at and not userinfo:
        raise ValueError("nothing before '@': give a password (':password@') or none")
    netloc, _, path = address.partition("/")
    hosts = _hosts(netloc, topology=topology)
    db, master = _path(path, topology=topology)
    db = _query_db(query, default=db)
    if topology == "server" and len(hosts) > 1:
        raise ValueError(
            "several hosts: use redis+sentinel:// for Sentinels or redis+cluster:// for a cluster"
        )
    if topology == "cluster" and db != 0:
        raise ValueError("Redis Cluster has only database 0")
    return RedisLocation(
        topology=topology,
        scheme=scheme,
        hosts=hosts,
        master=master,
        db=db,
        tls=scheme == "rediss",
    )


def _socket(rest: str, query: str) -> RedisLocation:
    path = unquote(rest)
    if "@" in path.split("/", 1)[0]:
        path = path.split("@", 1)[1]
    if not path.startswith("/"):
        raise ValueError("unix:// needs an absolute path, like unix:///run/redis/redis.sock")
    return RedisLocation(
        topology="socket", scheme="unix", path=path, db=_query_db(query, default=0)
    )


def _hosts(netloc: str, *, topology: RedisTopology) -> tuple[tuple[str, int], ...]:
    if not netloc:
        raise ValueError("no host: give one, like redis://redis.example.internal:6379/0")
    hosts = []
    for part in netloc.split(","):
        if not part:
            raise ValueError("an empty host in the list: separate host:port pairs with ','")
        host, port = _host_port(part, default=_DEFAULT_PORTS[topology])
        hosts.append((host, port))
    return tuple(hosts)


def _host_port(part: str, *, default: int) -> tuple[str, int]:
    if part.startswith("["):
        end = part.find("]")
        host, tail = part[: end + 1], part[end + 1 :]
    else:
        host, _, port_text = part.partition(":")
        tail = f":{port_text}" if port_text or part.endswith(":") else ""
    if not _HOST.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or address")
    if not tail:
        return host, default
    port_text = tail.removeprefix(":")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} of {host} is not a number from 1 to 65535")
    return host, int(port_text)


def _path(path: str, *, topology: RedisTopology) -> tuple[int, str | None]:
    parts = [p for p in path.split("/")] if path else []
    if parts and parts[-1] == "":
        parts.pop()
    if topology == "sentinel":
        if not parts or not parts[0]:
            raise ValueError(
                "no master name: redis+sentinel://host:26379[,host:26379…]/<master>[/db]"
            )
        if not _MASTER.fullmatch(parts[0]):
            raise ValueError(f"{parts[0]!r} is not a Sentinel master name")
        if len(parts) > 2:
            raise ValueError("expected /<master>[/db] after the Sentinels")
        return (_db(parts[1]) if len(parts) == 2 else 0), parts[0]
    if len(parts) > 1:
        raise ValueError("expected at most a database number after the host, like /0")
    return (_db(parts[0]) if parts else 0), None


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)


def _query_db(query: str, *, default: int) -> int:
    values = parse_qs(query).get("db")
    return _db(values[-1]) if values else default
