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


def _big_catalog(path: Path, *, apps: int, teams: int) -> list[str]:
    envs = ["dev", "staging", "preprod", "production"]
    lines = ["teams:"]
    for t in range(teams):
        lines += [f"  team-{t:02d}:", f'    channel: "#team-{t:02d}"']
    lines.append("environments:")
    for env in envs:
        lines += [f"  - name: {env}", "    policy: auto"]
    lines.append("apps:")
    for a in range(apps):
        lines += [
            f"  app-{a:03d}:",
            f"    team: team-{a % teams:02d}",
            f"    source: shop/app-{a:03d}",
            f"    image: registry.example.com/shop/app-{a:03d}",
            f'    manifests: "apps/app-{a:03d}/{{env}}/deployment.yaml"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return envs


async def whatsinprod() -> list[Result]:
    """/whatsinprod for 500 apps x 4 environments, answered from the inventory cache."""
    from datetime import UTC, datetime

    from bot.adapters.store.connection import client_for
    from bot.adapters.store.inventory import RedisInventoryCache
    from bot.domain.inventory import Deployed

    apps, teams = 500, 20
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp:
        catalog = Path(tmp) / "catalog.yaml"
        envs = _big_catalog(catalog, apps=apps, teams=teams)
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = redis.start()
        client = client_for(redis_url)
        now = datetime.now(UTC)
        await RedisInventoryCache(client).save(
            [
                Deployed(
                    app=f"app-{a:03d}",
                    env=env,
                    version=f"1.{a}.{i}",
                    changed_at=now,
                    changed_by="Alice Martin",
                    mr_iid=a,
                    mr_url=f"https://gitlab/mr/{a}",
                )
                for a in range(apps)
                for i, env in enumerate(envs)
            ],
            refreshed_at=now,
        )
        await client.aclose()
        channels = [f"team-{t:02d}" for t in range(teams)]
        async with SlackSandbox(channels=channels, enforce_pacing=False) as slack:
            port = 39000 + os.getpid() % 1000
            env = {
                **os.environ,
                **bot_environment(slack=slack, redis_url=redis_url, state_dir=Path(tmp) / "var"),
                "PORT": str(port),
                "LOG_LEVEL": "error",
                "CATALOG_PATH": str(catalog),
            }
            bot = _start_bot(env)
            url = f"http://127.0.0.1:{port}"
            answers: list[float] = []
            acks: list[float] = []
            try:
                async with aiohttp.ClientSession() as http:
                    for _ in range(200):
                        try:
                            async with http.get(f"{url}/readyz") as response:
                                if response.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.05)
                    queries = ["", "all staging", "team-03", "app-042", "team-11 dev"]
                    for i in range(100):
                        before = len(slack.ephemerals())
                        body, headers = slack.slash_command(
                            command="/whatsinprod",
                            text=queries[i % len(queries)],
                            user="alice",
                            channel="team-00",
                        )
                        sent = time.perf_counter()
                        async with http.post(
                            f"{url}/slack/events", data=body, headers=headers
                        ) as response:
                            await response.read()
                        for _ in range(5000):  # the answer arrives through response_url
                            if len(slack.ephemerals()) > before:
                                break
                            await asyncio.sleep(0.002)
                        answers.append(time.perf_counter() - sent)

                    async def one(i: int) -> None:
                        body, headers = slack.slash_command(
                            command="/whatsinprod",
                            text=queries[i % len(queries)],
                            user="bob",
                            channel="team-01",
                        )
                        sent = time.perf_counter()
                        async with http.post(
                            f"{url}/slack/events", data=body, headers=headers
                        ) as response:
                            await response.read()
                        acks.append(time.perf_counter() - sent)

                    answered = len(slack.ephemerals())
                    await asyncio.gather(*(one(i) for i in range(50)))
                    for _ in range(5000):  # the answers finish before the bot is stopped
                        if len(slack.ephemerals()) >= answered + 50:
                            break
                        await asyncio.sleep(0.002)
            finally:
                bot.terminate()
                bot.wait(timeout=15)
                redis.stop()
    p95 = _pct(answers, 95)
    p99 = _pct(acks, 99)
    return [
        Result("/whatsinprod 500 apps x 4 envs, answer p95", p95, "ms", "≤ 300", p95 <= 300),
        Result("slash command ack p99, 50 concurrent", p99, "ms", "≤ 100", p99 <= 100),
    ]


def main() -> int:
    results = asyncio.run(webhook_intake()) + asyncio.run(whatsinprod())
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
