"""``make bench``: measure the running bot the way its users load it. Not part of ``make test``.

Runs the real bot in its own process (its own event loop and memory, as in production) with a
real Redis and the Slack sandbox, loads it from 50 concurrent HTTP clients, prints a table and
writes ``bench-results.json``. Targets are those of SPEC/issue 8 for this 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bot.adapters.store.embedded import EmbeddedRedis
from bot.sandbox.slack import SlackSandbox
from tests.integration.conftest import WEBHOOK_SECRET, bot_environment

ROOT = Path(__file__).parents[2]
CLIENTS = 50


@dataclass
class Result:
    name: str
    value: float
    unit: str
    target: str
    met: bool


def _pipeline_event(pipeline: int, status: str) -> bytes:
    return json.dumps(
        {
            "object_kind": "pipeline",
            "object_attributes": {"id": pipeline, "status": status, "ref": "main"},
            "project": {"path_with_namespace": "shop/orders"},
        }
    ).encode()


def _events(n: int) -> list[tuple[str, bytes]]:
    """``n`` deliveries: 10 per pipeline, 10 % of them GitLab retries of an earlier one."""
    deliveries: list[tuple[str, bytes]] = []
    for i in range(n):
        if deliveries and random.random() < 0.10:
            deliveries.append(random.choice(deliveries))
        else:
            status = ("created", "pending", "running", "success")[i % 4]
            deliveries.append((str(uuid.uuid4()), _pipeline_event(i // 10, status)))
    return deliveries


async def _fire(
    http: aiohttp.ClientSession,
    url: str,
    deliveries: list[tuple[str, bytes]],
    *,
    rate: float | None,
) -> tuple[list[float], float, int]:
    """Send from CLIENTS concurrent clients, at ``rate`` per second in total (None: flat out)."""
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[tuple[int, tuple[str, bytes]]] = asyncio.Queue()
    for item in enumerate(deliveries):
        queue.put_nowait(item)
    started = time.perf_counter()

    async def client() -> None:
        nonlocal failures
        while not queue.empty():
            index, (event_id, body) = queue.get_nowait()
            if rate is not None:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": "Pipeline Hook",
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event-UUID": event_id,
            }
            sent = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return latencies, time.perf_counter() - started, failures


def _start_bot(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.bot_process"], cwd=ROOT, env=env
    )


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def webhook_intake() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = redis.start()
        async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=False) as slack:
            port = 38000 + os.getpid() % 1000
            env = {
                **os.environ,
                **bot_environment(slack=slack, redis_url=redis_url, state_dir=Path(tmp) / "var"),
                "PORT": str(port),
                "LOG_LEVEL": "warning",
            }
            bot = _start_bot(env)
            url = f"http://127.0.0.1:{port}"
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=CLIENTS)
                ) as http:
                    for _ in range(200):
                        try:
                            async with http.get(f"{url}/readyz") as response:
                                if response.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.05)
                    await _fire(http, f"{url}/webhooks/gitlab", _events(500), rate=None)  # warm-up
                    paced, _, paced_failures = await _fire(
                        http, f"{url}/webhooks/gitlab", _events(5000), rate=500
                    )
                    flat, elapsed, flat_failures = await _fire(
                        http, f"{url}/webhooks/gitlab", _events(20000), rate=None
                    )
                rss = _rss_peak_mb(bot.pid)
            finally:
                bot.terminate()
                bot.wait(timeout=15)
                redis.stop()
    rate = len(flat) / elapsed
    return [
        Result("intake ack p50 at 500 events/s", _pct(paced, 50), "ms", "", True),
        Result(
            "intake ack p99 at 500 events/s", _pct(paced, 99), "ms", "≤ 25", _pct(paced, 99) <= 25
        ),
        Result("intake sustained rate (50 clients)", rate, "events/s", "≥ 2000", rate >= 2000),
        Result(
            "intake errors",
            paced_failures + flat_failures,
            "responses",
            "0",
            paced_failures + flat_failures == 0,
        ),
        Result("bot peak RSS", rss, "MB", "≤ 150", rss <= 150),
    ]


def main() -> int:
    results = asyncio.run(webhook_intake())
    width = max(len(r.name) for r in results)
    print(f"{'benchmark'.ljust(width)}  {'value':>10}  unit        target    met")
    for r in results:
        print(
            f"{r.name.ljust(width)}  {r.value:>10.1f}  {r.unit:<10}  {r.target:<8}  "
            f"{'yes' if r.met else 'NO'}"
        )
    Path("bench-results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print("written: bench-results.json")
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
