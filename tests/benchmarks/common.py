"""What every benchmark shares: results, processes (bot, Redis, sandboxes), catalogs, statistics.

Every party runs in its own process, as in production: the bot (``tests.integration.bot_process``,
the same wiring as ``pitcrew serve``), Redis (Valkey), the Slack sandbox and the Kubernetes
sandbox (``slack_server``/``kube_server`` here). The bench process only generates load and reads
clocks, so the figures are the bot's, not the load generator's event loop's.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.store.embedded import EmbeddedRedis
from tests.integration.conftest import WEBHOOK_SECRET

ROOT = Path(__file__).parents[2]
CLIENTS = 50
SCALE = float(os.environ.get("BENCH_SCALE") or "1")
PROFILE_DIR = os.environ.get("BENCH_PROFILE")
"""``BENCH_PROFILE=dir``: the bot runs under cProfile, into ``dir/<benchmark>.prof``."""
PY_SPY = os.environ.get("BENCH_PY_SPY")
"""``BENCH_PY_SPY=path/to/py-spy`` (with ``BENCH_PROFILE``): sample the bot during each measured
phase instead, into ``BENCH_PROFILE/<phase>.txt`` (collapsed stacks, every thread)."""


PYCACHE = Path(tempfile.gettempdir()) / "pitcrew-bench-pycache"
"""Compiled bytecode for the child processes, as the image has it (``UV_COMPILE_BYTECODE=1``).
The development venv has none and ``PYTHONDONTWRITEBYTECODE`` may be set: the bot would then
compile the kubernetes client (a 4.5 MB ``core_v1_api.py``...) at every start, which costs
about 60 MB of RSS production never pays."""


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the processes the bench starts: with compiled bytecode."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(PYCACHE), **extra}


def prepare_bytecode() -> float:
    """Compile the venv, ``bot`` and ``tests`` into ``PYCACHE`` (once: later runs only check
    timestamps); the seconds it took."""
    started = time.monotonic()
    site = Path(sysconfig.get_paths()["purelib"])
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", str(site), "bot", "tests"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # a few files of some packages do not compile (Python 2 leftovers): fine
    )
    return time.monotonic() - started


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * SCALE))


@dataclass
class Result:
    bench: str
    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    """None: a figure reported without a target."""
    note: str = ""


@dataclass
class Section:
    """One benchmark's results and the conditions they were measured under."""

    name: str
    results: list[Result] = field(default_factory=list)
    conditions: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        target: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> None:
        self.results.append(Result(self.name, name, value, unit, target, met, note))

    def check(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        at_most: float | None = None,
        at_least: float | None = None,
        note: str = "",
    ) -> None:
        """A figure with a target: ``≤ at_most`` or ``≥ at_least``."""
        if at_most is not None:
            target, met = f"≤ {at_most:g}", value is not None and value <= at_most
        elif at_least is not None:
            target, met = f"≥ {at_least:g}", value is not None and value >= at_least
        else:
            raise ValueError("a check needs at_most or at_least")
        self.add(name, value, unit, target, met, note)


# ------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank on sorted values), or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


# ------------------------------------------------------------------ processes


def rss_peak_mb(pid: int) -> float | None:
    """VmHWM: the highest resident set size the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Helper:
    """A child Python process that prints one JSON line when it is ready, and stops on SIGTERM."""

    def __init__(self, module: str, *args: str, log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=self._log_file,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=5)
            raise RuntimeError(f"{module} did not start; see {log}: {log.read_text()[-2000:]}")
        self.info: dict[str, Any] = json.loads(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


class Bot:
    """The real bot in its own process; its log lines go to a file, as a container runtime's do."""

    def __init__(self, env: dict[str, str], *, log: Path, profile_as: str) -> None:
        self.log = log
        self.name = profile_as
        self._log_file = log.open("wb")
        command = [sys.executable]
        self.profile: Path | None = None
        if PROFILE_DIR and not PY_SPY:
            Path(PROFILE_DIR).mkdir(parents=True, exist_ok=True)
            self.profile = Path(PROFILE_DIR).resolve() / f"{profile_as}.prof"
            command += ["-m", "cProfile", "-o", str(self.profile)]
        command += ["-m", "tests.integration.bot_process"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{env['PORT']}"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self, http: aiohttp.ClientSession, *, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bot exited at start; see {self.log}")
            try:
                async with http.get(f"{self.url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the bot was not ready within {within} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        keep = os.environ.get("BENCH_LOGS")  # a directory to keep the bots' logs in
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / f"{self.name}.log").write_bytes(self.log.read_bytes())

    async def logged(self, text: str, *, within: float) -> bool:
        """Wait until the bot logged a line containing ``text``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return True
            await asyncio.sleep(0.2)
        return False

    def log_levels(self) -> dict[str, int]:
        """How many log lines of each level the bot wrote (JSON lines)."""
        counts: dict[str, int] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                level = str(json.loads(line).get("level", "?"))
            except ValueError:
                level = "non-json"
            counts[level] = counts.get(level, 0) + 1
        return counts

    def log_lines(self, *levels: str, limit: int = 5) -> list[str]:
        found: list[str] = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                level = str(json.loads(line).get("level", "?"))
            except ValueError:
                level = "non-json"
            if level in levels:
                found.append(line[:400])
                if len(found) >= limit:
                    break
        return found


def _machine_busy() -> float:
    """CPU seconds all processes of the machine used so far (every core)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle_time = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle_time) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each named process between ``start()`` and ``read()``, in cores (1.0: one
    core busy all along), with "others": what the rest of the machine used meanwhile."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "load generator": os.getpid()}
        self._start: dict[str, float] = {}
        self._at = 0.0

    def start(self) -> None:
        self._at = time.monotonic()
        self._start = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        self._start["machine"] = _machine_busy()

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self._at, 1e-9)
        used = {
            name: ((cpu_seconds(pid) or 0.0) - self._start[name]) / elapsed
            for name, pid in self.pids.items()
        }
        machine = (_machine_busy() - self._start["machine"]) / elapsed
        used["others"] = max(0.0, machine - sum(used.values()))
        return {name: round(value, 2) for name, value in used.items()}


async def idle(pid: int, *, within: float = 120.0) -> float:
    """Wait until the process uses less than 10 % of a core (its start-up work is done: the
    inventory refresh, channel look-ups...); returns the seconds waited."""
    started = time.monotonic()
    quiet = 0
    last = cpu_seconds(pid) or 0.0
    while quiet < 2 and time.monotonic() - started < within:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid) or 0.0
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now
    return time.monotonic() - started


class Spy:
    """py-spy sampling one process for a while (``BENCH_PY_SPY`` and ``BENCH_PROFILE`` set):
    collapsed stacks of every thread in ``BENCH_PROFILE/<name>.txt``. Off otherwise."""

    def __init__(self, pid: int, name: str) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if PY_SPY and PROFILE_DIR:
            out = Path(PROFILE_DIR).resolve() / f"{name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            command = [PY_SPY, "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
            command += ["--format", "raw", "--threads", "--output", str(out)]
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(state_dir: Path) -> tuple[EmbeddedRedis, str]:
    redis = EmbeddedRedis(state_dir)
    return redis, redis.start()


def redis_pid(redis: EmbeddedRedis) -> int:
    process = getattr(redis, "_process", None)
    return process.pid if process is not None else 0


async def redis_commands(redis_url: str) -> dict[str, int]:
    """How many times each command ran on the Redis server so far (INFO commandstats)."""
    from bot.adapters.store.connection import client_for

    client = client_for(redis_url)
    try:
        info: dict[str, Any] = await client.info("commandstats")
    finally:
        await client.aclose()
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if isinstance(stats, dict)
    }


def count_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def bot_env(
    *,
    slack: Helper,
    redis_url: str,
    state_dir: Path,
    catalog: Path,
    pacing: float,
    **extra: str,
) -> dict[str, str]:
    """The environment of a bot talking to the sandboxes: what an operator would set
    (``tests.integration.conftest.bot_environment`` for a sandbox in another process)."""
    return {
        **child_env(),
        "SLACK_BOT_TOKEN": slack.info["bot_token"],
        "SLACK_SIGNING_SECRET": slack.info["signing_secret"],
        "SLACK_API_URL": slack.info["api_url"],
        "GITLAB_URL": "http://127.0.0.1:9",
        "GITLAB_TOKEN": "glpat-sandbox",
        "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITOPS_PROJECT": "platform/deployments",
        "CATALOG_PATH": str(catalog),
        "REDIS_URL": redis_url,
        "STATE_DIR": str(state_dir),
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "PORT": str(free_port()),
        "PITCREW_TEST_PACING": repr(pacing),
        **extra,
    }


async def get_json(http: aiohttp.ClientSession, url: str, **params: Any) -> Any:
    async with http.get(url, params={k: str(v) for k, v in params.items()}) as response:
        response.raise_for_status()
        return await response.json()


async def post_json(http: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        return await response.json()


async def scrape(http: aiohttp.ClientSession, bot: Bot) -> dict[str, float]:
    """The bot's /metrics as {"name{labels}": value}."""
    async with http.get(f"{bot.url}/metrics") as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


# ------------------------------------------------------------------ catalogs


def team_name(t: int) -> str:
    return f"team-{t:03d}"


def app_name(a: int) -> str:
    return f"app-{a:04d}"


def write_catalog(path: Path, *, apps: int, teams: int, envs: Sequence[str]) -> list[str]:
    """A catalog of ``apps`` apps (``shop/app-NNNN``, namespace ``app-NNNN``) owned round-robin by
    ``teams`` teams, each with its channel ``#team-NNN``. Returns the channels."""
    lines = ["teams:"]
    for t in range(teams):
        lines += [f"  {team_name(t)}:", f'    channel: "#{team_name(t)}"']
    lines.append("environments:")
    for env in envs:
        lines += [f"  - name: {env}", "    policy: auto"]
    lines.append("apps:")
    for a in range(apps):
        name = app_name(a)
        lines += [
            f"  {name}:",
            f"    team: {team_name(a % teams)}",
            f"    source: shop/{name}",
            f"    image: registry.example.com/shop/{name}",
            f'    manifests: "apps/{name}/{{env}}/deployment.yaml"',
            f"    namespace: {name}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return [team_name(t) for t in range(teams)]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "scale": SCALE,
    }
