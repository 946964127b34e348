"""Slash commands: ``/whatsinprod`` over 500 apps x 4 environments, and bursts of 50 at once.

Slack POSTs a signed command and waits for the HTTP answer (the *ack*, which Bolt sends after the
listener's ``ack()``); the answer people read then arrives through the command's response_url.
The Slack sandbox runs in its own process and stamps each response_url call with wall-clock
time, so "answer" latency is: command sent (bench) → answer received (Slack).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.store.connection import client_for
from bot.adapters.store.inventory import RedisInventoryCache
from bot.domain.inventory import Deployed
from tests.benchmarks.common import (
    Bot,
    CpuMeter,
    Helper,
    Section,
    app_name,
    bot_env,
    get_json,
    idle,
    ms,
    percentile,
    post_json,
    redis_pid,
    rss_peak_mb,
    scaled,
    start_redis,
    write_catalog,
)

APPS = 500
TEAMS = 20
ENVS = ["dev", "staging", "preprod", "production"]
SEQUENTIAL = 100
BURST = 50
BURSTS = 5
QUERIES = ["", "all staging", "team-003", "app-0042", "team-011 dev"]


async def _seed(redis_url: str, apps: int) -> None:
    """The inventory cache as the refresher leaves it: every app's version in every env."""
    client = client_for(redis_url)
    now = datetime.now(UTC)
    await RedisInventoryCache(client).save(
        [
            Deployed(
                app=app_name(a),
                env=env,
                version=f"1.{a}.{i}",
                changed_at=now,
                changed_by="Alice Martin",
                mr_iid=a,
                mr_url=f"https://gitlab.example.com/mr/{a}",
            )
            for a in range(apps)
            for i, env in enumerate(ENVS)
        ],
        refreshed_at=now,
    )
    await client.aclose()


async def _signed(
    http: aiohttp.ClientSession, slack: Helper, count: int, *, user: str, channel: str
) -> list[dict[str, Any]]:
    commands = [
        {
            "command": "/whatsinprod",
            "text": QUERIES[i % len(QUERIES)],
            "user": user,
            "channel": channel,
        }
        for i in range(count)
    ]
    made = await post_json(http, f"{slack.info['control_url']}/bench/slash", {"commands": commands})
    signed: list[dict[str, Any]] = made["commands"]
    return signed


async def _post(http: aiohttp.ClientSession, bot: Bot, command: dict[str, Any]) -> float:
    """POST one signed command; the seconds until the ack."""
    sent = time.perf_counter()
    async with http.post(
        f"{bot.url}/slack/events", data=command["body"].encode(), headers=command["headers"]
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"slash command answered {response.status}")
    return time.perf_counter() - sent


async def _answers(http: aiohttp.ClientSession, slack: Helper, count: int) -> list[float]:
    """Wait until Slack got ``count`` response_url calls in all; their wall-clock times."""
    found = await get_json(
        http,
        f"{slack.info['control_url']}/bench/wait",
        method="response_url",
        count=count,
        timeout=30,
    )
    times: list[float] = found["times"]
    return times


async def run() -> Section:
    section = Section("commands")
    apps = scaled(APPS, 20)
    sequential = scaled(SEQUENTIAL, 10)
    bursts = scaled(BURSTS, 1)
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalog = tmp / "catalog.yaml"
        channels = write_catalog(catalog, apps=apps, teams=TEAMS, envs=ENVS)
        redis, redis_url = start_redis(tmp / "redis")
        await _seed(redis_url, apps)
        slack = Helper(
            "tests.benchmarks.slack_server",
            json.dumps({"channels": channels}),
            log=tmp / "slack.log",
        )
        env = bot_env(
            slack=slack, redis_url=redis_url, state_dir=tmp / "var", catalog=catalog, pacing=1.0
        )
        bot = Bot(env, log=tmp / "bot.log", profile_as="commands")
        answers: list[float] = []
        answer_acks: list[float] = []
        acks: list[float] = []
        burst_answers: list[float] = []
        arrived = 0
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=BURST)) as http:
                await bot.ready(http)
                await bot.logged("inventory refresh", within=60)  # start-up work: done
                await idle(bot.pid)
                # Warm-up: a few commands, then a burst, not measured.
                for command in await _signed(http, slack, 3, user="carol", channel="team-002"):
                    await _post(http, bot, command)
                warm = await _signed(http, slack, BURST, user="carol", channel="team-002")
                await asyncio.gather(*(_post(http, bot, c) for c in warm))
                arrived = len(await _answers(http, slack, 3 + BURST))
                for command in await _signed(
                    http, slack, sequential, user="alice", channel="team-000"
                ):
                    sent = time.time()
                    answer_acks.append(await _post(http, bot, command))
                    times = await _answers(http, slack, arrived + 1)
                    arrived = len(times)
                    answers.append(times[-1] - sent)
                meter = CpuMeter(
                    {"bot": bot.pid, "redis": redis_pid(redis), "slack sandbox": slack.pid}
                )
                meter.start()
                for _ in range(bursts):
                    signed = await _signed(http, slack, BURST, user="bob", channel="team-001")
                    await asyncio.sleep(0.5)
                    sent = time.time()
                    acks += await asyncio.gather(*(_post(http, bot, c) for c in signed))
                    times = await _answers(http, slack, arrived + BURST)
                    burst_answers += [t - sent for t in times[arrived:]]
                    arrived = len(times)
                cpu = meter.read()
                stats = await get_json(http, f"{slack.info['control_url']}/bench/stats")
                base = slack.info["api_url"].removesuffix("/api/")
                shown = await get_json(http, f"{base}/_sandbox/ephemerals", channel="team-000")
            rss = rss_peak_mb(bot.pid)
        finally:
            bot.stop()
            slack.stop()
            redis.stop()
        levels = bot.log_levels()
        problems = bot.log_lines("warning", "error", "critical")

    section.check(
        f"/whatsinprod {apps} apps x {len(ENVS)} envs, answer p95 (one at a time)",
        ms(percentile(answers, 95)),
        "ms",
        at_most=300,
    )
    section.add("/whatsinprod answer p50 (one at a time)", ms(percentile(answers, 50)), "ms")
    section.add("/whatsinprod ack p99 (one at a time)", ms(percentile(answer_acks, 99)), "ms")
    section.check(
        f"slash command ack p99, {BURST} concurrent ({bursts} bursts)",
        ms(percentile(acks, 99)),
        "ms",
        at_most=100,
    )
    section.add(f"slash command ack max, {BURST} concurrent", ms(max(acks)), "ms")
    section.check(
        f"answers arrived, {BURST} concurrent ({bursts} bursts)",
        len(burst_answers),
        f"of {BURST * bursts}",
        at_least=BURST * bursts,
    )
    section.add(
        f"answer p99, {BURST} concurrent (last of a burst)",
        ms(percentile(burst_answers, 99)),
        "ms",
    )
    section.add("bot peak RSS (VmHWM)", rss, "MB")
    response_calls = stats["calls"].get("response_url", {})
    sizes: dict[str, list[int]] = {}
    for index, answer in enumerate(shown["ephemerals"]):
        query = QUERIES[index % len(QUERIES)] or "(empty)"
        size = len(answer["text"]) + len(json.dumps(answer["blocks"]))
        sizes.setdefault(query, []).append(size)
    section.conditions = {
        "apps x envs": f"{apps} x {len(ENVS)} (inventory cache seeded in Redis)",
        "queries": QUERIES,
        "sequential commands": sequential,
        "bursts": f"{bursts} x {BURST} at once",
        "response_url calls by outcome": response_calls,
        "CPU used during the bursts (cores)": cpu,
        "answer size by query (characters of text and blocks)": {
            q: max(v) for q, v in sizes.items()
        },
        "bot log lines by level": levels,
    }
    if problems:
        section.conditions["bot warnings/errors (first 5)"] = problems
    return section
