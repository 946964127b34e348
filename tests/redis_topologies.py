"""Real Redis topologies on loopback, for the high-availability tests and benchmarks.

Every server is the ``valkey-server`` binary the embedded store ships (the lock file installs it;
nothing else is needed): a primary with two replicas watched by three sentinels, and a Redis
Cluster of three primaries (each with a replica, or none), built with ``CLUSTER ADDSLOTSRANGE``,
``MEET`` and ``REPLICATE`` since there is no ``valkey-cli`` to do it. A small TCP proxy stands
between a primary and whoever must lose sight of it, to cut the network without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as syncredis

from bot.adapters.store.embedded import _binary

MASTER = "pitcrew"
PASSWORD = "s3cret-of-the-store"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait(check: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (syncredis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within} s (last: {last!r})")


@dataclass
class Server:
    """One ``valkey-server`` process (a data node or a sentinel)."""

    name: str
    port: int
    workdir: Path
    config: list[str]
    host: str = "127.0.0.1"
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / f"{self.name}.conf"
        if not conf.exists() or not self.sentinel:
            # A sentinel rewrites its own file (the primary it follows); keep it on restart.
            conf.write_text("\n".join(self.config) + "\n")
        args = [str(_binary()), str(conf)]
        if self.sentinel:
            args.append("--sentinel")
        self.process = subprocess.Popen(
            args,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.alive, within=10, what=f"{self.name} answering")

    def client(self, **kwargs: Any) -> syncredis.Redis:
        if not self.sentinel:
            kwargs.setdefault("password", PASSWORD)
        return syncredis.Redis(host=self.host, port=self.port, socket_timeout=2, **kwargs)

    def alive(self) -> bool:
        try:
            with self.client(socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except (syncredis.RedisError, OSError):
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no flush, no goodbye to the replicas."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _node_config(name: str, port: int, *, host: str = "127.0.0.1") -> list[str]:
    return [
        f"port {port}",
        f"bind {host}",
        f"bind-source-addr {host}",
        "protected-mode no",
        f"requirepass {PASSWORD}",
        f"masterauth {PASSWORD}",
        "appendonly no",
        'save ""',
        f"logfile {name}.log",
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "repl-timeout 5",
        "repl-ping-replica-period 1",
    ]


@dataclass
class SentinelSetup:
    """A primary, two replicas and three sentinels (quorum 2), all with one password.

    The sentinels decide a primary is down after ``down_after`` ms; ``url`` is what an operator
    puts in ``REDIS_URL``. The primary listens on 127.0.0.1, the replicas on 127.0.0.3 and the
    sentinels on 127.0.0.2 (their connections come from there too), so that a ``TcpProxy`` in
    front of the primary can tell them apart (a partition).
    """

    workdir: Path
    primary: Server
    replicas: list[Server]
    sentinels: list[Server]
    down_after: int
    proxy: TcpProxy | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{hosts}/{MASTER}/0"

    @property
    def data_nodes(self) -> list[Server]:
        return [self.primary, *self.replicas]

    def current_primary(self) -> tuple[str, int]:
        """Where the sentinels say the primary is now (a majority of those that answer)."""
        seen: dict[tuple[str, int], int] = {}
        for sentinel in self.sentinels:
            with (
                contextlib.suppress(syncredis.RedisError, OSError),
                sentinel.client(socket_connect_timeout=0.5) as client,
            ):
                host, port = client.sentinel_get_master_addr_by_name(MASTER)
                address = (host.decode() if isinstance(host, bytes) else host, int(port))
                seen[address] = seen.get(address, 0) + 1
        return max(seen, key=lambda k: seen[k])

    def node_at(self, address: tuple[str, int]) -> Server:
        if self.proxy is not None and address == ("127.0.0.1", self.proxy.port):
            return self.primary
        return next(n for n in self.data_nodes if (n.host, n.port) == address)

    def client_of_primary(self) -> syncredis.Redis:
        """A client of the primary the sentinels name now."""
        return self.node_at(self.current_primary()).client()

    def wait_replicated(self, *, replicas: int = 2, within: float = 20) -> None:
        """Until the current primary has ``replicas`` replicas online and every sentinel
        agrees on it and knows them."""

        def settled() -> bool:
            host, port = self.current_primary()
            with syncredis.Redis(host=host, port=port, password=PASSWORD) as client:
                info = client.info("replication")
            if info["role"] != "master" or int(info["connected_slaves"]) < replicas:
                return False
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    master = client.sentinel_master(MASTER)
                    if (master["ip"], int(master["port"])) != (host, port):
                        return False
                    if int(master["num-slaves"]) < replicas:
                        return False
            return True

        _wait(settled, within=within, what="a primary with its replicas, known to every sentinel")

    def stop(self) -> None:
        for server in [*self.sentinels, *self.data_nodes]:
            server.stop()
        if self.proxy is not None:
            self.proxy.stop()


def start_sentinel_setup(
    workdir: Path, *, down_after: int = 2000, behind_proxy: bool = False
) -> SentinelSetup:
    """``down_after``: milliseconds without an answer before a sentinel thinks a server is down
    (below about 2 s, a sentinel that has just switched may judge the new primary down before
    its first answer and fail over a second time). ``behind_proxy``: the sentinels, the
    replicas and the bot reach the primary through a ``TcpProxy`` (``setup.proxy``), which can
    cut the sentinels (127.0.0.2) and the replicas (127.0.0.3) off from it while the bot
    (127.0.0.1) still reaches it."""
    primary_port = free_port()
    primary = Server("primary", primary_port, workdir / "primary",
                     _node_config("primary", primary_port))  # fmt: skip
    replicas = []
    for name in ("replica-1", "replica-2"):
        port = free_port("127.0.0.3")
        config = _node_config(name, port, host="127.0.0.3")
        replicas.append(Server(name, port, workdir / name, config, host="127.0.0.3"))
    primary.start()
    proxy = None
    if behind_proxy:
        proxy = TcpProxy(primary.port)
        proxy.start()
    reach = proxy.port if proxy is not None else primary.port
    for replica in replicas:
        replica.config += [
            f"replicaof 127.0.0.1 {reach}",
            f"replica-announce-ip {replica.host}",
        ]
        replica.start()
    sentinels = []
    for i in range(3):
        port = free_port("127.0.0.2")
        name = f"sentinel-{i + 1}"
        config = [
            f"port {port}",
            "bind 127.0.0.2",
            "bind-source-addr 127.0.0.2",
            "protected-mode no",
            f"logfile {name}.log",
            f"sentinel monitor {MASTER} 127.0.0.1 {reach} 2",
            f"sentinel auth-pass {MASTER} {PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER} {down_after}",
            f"sentinel failover-timeout {MASTER} 4000",
            f"sentinel parallel-syncs {MASTER} 2",
            "sentinel resolve-hostnames no",
        ]
        sentinels.append(
            Server(name, port, workdir / name, config, host="127.0.0.2", sentinel=True)
        )
    setup = SentinelSetup(workdir, primary, replicas, sentinels, down_after, proxy)
    try:
        for sentinel in sentinels:
            sentinel.start()
        setup.wait_replicated()
    except BaseException:
        setup.stop()
        raise
    return setup


@dataclass
class ClusterSetup:
    """A Redis Cluster: ``primaries`` primaries owning equal slot ranges, ``replicas`` each."""

    workdir: Path
    primaries: list[Server]
    replicas: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://:{PASSWORD}@" + ",".join(
            f"{s.host}:{s.port}" for s in self.primaries
        )

    @property
    def nodes(self) -> list[Server]:
        return [*self.primaries, *self.replicas]

    def node_ids(self) -> dict[int, str]:
        ids = {}
        for server in self.nodes:
            with server.client() as client:
                ids[server.port] = str(client.execute_command("CLUSTER", "MYID").decode())
        return ids

    def owner_of(self, slot: int) -> Server:
        with self.primaries[0].client() as client:
            for start, end, owner, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(s for s in self.primaries if s.port == int(owner[1]))
        raise AssertionError(f"no primary owns slot {slot}")

    def migrate_slot(self, slot: int, target: Server, *, pace: float = 0.0) -> int:
        """Move ``slot`` and its keys to ``target`` as ``valkey-cli --cluster reshard`` would:
        IMPORTING/MIGRATING, ``MIGRATE`` in batches, then ``SETSLOT NODE`` everywhere. Returns
        how many keys moved."""
        source = self.owner_of(slot)
        if source.port == target.port:
            return 0
        ids = self.node_ids()
        moved = 0
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 20)
                if not keys:
                    break
                src.execute_command(
                    "MIGRATE", target.host, target.port, "", 0, 5000,
                    "AUTH", PASSWORD, "KEYS", *keys,
                )  # fmt: skip
                moved += len(keys)
                if pace:
                    time.sleep(pace)
            for server in self.primaries:
                with server.client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
        return moved

    def wait_agreed(self, *, within: float = 20) -> None:
        def agreed() -> bool:
            views = set()
            for server in self.nodes:
                with server.client() as client:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    if "cluster_state:ok" not in info:
                        return False
                    slots = client.execute_command("CLUSTER", "SLOTS")
                    views.add(tuple(sorted((s[0], s[1], int(s[2][1])) for s in slots)))
            return len(views) == 1

        _wait(agreed, within=within, what="every node agreeing on the slots")

    def stop(self) -> None:
        for server in self.nodes:
            server.stop()


def start_cluster(workdir: Path, *, primaries: int = 3, replicas: int = 0) -> ClusterSetup:
    servers = []
    bus: dict[int, int] = {}
    for i in range(primaries * (1 + replicas)):
        port = free_port()
        bus[port] = free_port()  # not port + 10000: ephemeral ports can be above 55535
        name = f"node-{i + 1}"
        config = [
            *_node_config(name, port),
            "cluster-enabled yes",
            f"cluster-port {bus[port]}",
            f"cluster-config-file {name}-nodes.conf",
            "cluster-node-timeout 2000",
            "cluster-require-full-coverage yes",
        ]
        servers.append(Server(name, port, workdir / name, config))
    setup = ClusterSetup(workdir, servers[:primaries], servers[primaries:])
    try:
        for server in servers:
            server.start()
        first = servers[0]
        with first.client() as client:
            for other in servers[1:]:
                client.execute_command("CLUSTER", "MEET", other.host, other.port, bus[other.port])
        per = 16384 // primaries
        for i, server in enumerate(setup.primaries):
            start, end = i * per, (16383 if i == primaries - 1 else (i + 1) * per - 1)
            with server.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)

        def everyone_met() -> bool:
            for server in servers:
                with server.client() as client:
                    if len(client.execute_command("CLUSTER", "NODES").decode().splitlines()) < len(
                        servers
                    ):
                        return False
            return True

        _wait(everyone_met, within=20, what="every node meeting the others")
        ids = setup.node_ids()
        for i, replica in enumerate(setup.replicas):
            primary = setup.primaries[i % primaries]
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", ids[primary.port])
        setup.wait_agreed()
    except BaseException:
        setup.stop()
        raise
    return setup


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of one server, in a thread of its own, that can cut
    the connections coming from some addresses (a network partition on loopback).

    ``cut({"127.0.0.2"})`` drops every connection from those source addresses and refuses new
    ones until ``heal()``; everyone else keeps talking to the server."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._cut: set[str] = set()
        self._links: list[tuple[str, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        import threading

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "0.0.0.0", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        if peer in self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (peer, writer, up_writer)
        self._links.append(link)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        with contextlib.suppress(ValueError):
            self._links.remove(link)

    def _call(self, fn: Any) -> None:
        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    def cut(self, sources: set[str]) -> None:
        def apply() -> None:
            self._cut |= sources
            for peer, down, up in list(self._links):
                if peer in sources:
                    down.transport.abort()
                    up.transport.abort()

        self._call(apply)

    def heal(self) -> None:
        self._call(self._cut.clear)

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            for _, down, up in self._links:
                down.transport.abort()
                up.transport.abort()

        self._call(close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@contextlib.contextmanager
def sentinel_setup(workdir: Path, **kwargs: Any) -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(workdir, **kwargs)
    try:
        yield setup
    finally:
        setup.stop()


@contextlib.contextmanager
def cluster_setup(workdir: Path, **kwargs: Any) -> Iterator[ClusterSetup]:
    setup = start_cluster(workdir, **kwargs)
    try:
        yield setup
    finally:
        setup.stop()
