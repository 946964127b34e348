"""``/dora all 90d`` over 500 apps x 4 environments x 90 days of daily deployments.

Redis is seeded with the records the bot would have written over 90 days (in the store's own
format: the month strings and their ``seen`` hashes, as the recording script leaves them):
every app deploys once a day in every environment, each deployment bringing three commits
(5 h, 20 h and 2 days old); every 15th day's deployment fails and is rolled back 30 minutes
later. Then the real bot (its own process) answers signed ``/dora`` commands; an answer's time
runs from the command sent to its ``response_url`` call received by the Slack sandbox (its own
process). The records' size is Redis's own ``MEMORY USAGE`` of their keys.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.store.connection import client_for
from bot.adapters.store.dora import _expiry, _month, _name, encode, month_key
from bot.domain.dora import Deployment
from tests.benchmarks.common import (
    Bot,
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
DAYS = 90
SEQUENTIAL = 30
QUERIES = ["all 90d", "team-003 90d", "app-0042 90d"]
HOUR = 3600.0
DAY = 86400.0


def _records(app: str, env: str, now: float) -> list[Deployment]:
    found = []
    for day in range(DAYS):
        at = now - (DAYS - day) * DAY + (hash(app) % 3600)
        version, previous = f"1.{day}.0", f"1.{day - 1}.0"
        commits = (at - 5 * HOUR, at - 20 * HOUR, at - 2 * DAY)
        ident = f"{abs(hash((app, env))) % 16**6:06x}{day:06d}"
        if day % 15 == 7:
            found.append(
                Deployment(
                    ident, app, env, "deploy", version, previous, at - 600, None, at, commits
                )
            )
            found.append(
                Deployment(
                    ident[:6] + f"r{day:05d}",
                    app,
                    env,
                    "rollback",
                    previous,
                    version,
                    at + 600,
                    at + 1800,
                    None,
                    (),
                )
            )
        else:
            found.append(
                Deployment(
                    ident, app, env, "deploy", version, previous, at - 600, at, None, commits
                )
            )
    return found


async def _seed(redis_url: str, apps: int, now: float) -> dict[str, Any]:
    """Write the records as the recording script does; the bytes Redis holds for them."""
    client = client_for(redis_url)
    before = int((await client.info("memory"))["used_memory"])
    records = 0
    keys: set[str] = set()
    for a in range(apps):
        async with client.pipeline(transaction=False) as pipe:
            for env in ENVS:
                for d in _records(app_name(a), env, now):
                    event, line, at = encode(d)
                    year, month = _month(at)
                    key = month_key(d.app, d.env, _name(year, month))
                    pipe.hsetnx(f"{key}:seen", event, "1")
                    pipe.append(key, line)
                    pipe.expireat(key, _expiry(year, month))
                    pipe.expireat(f"{key}:seen", _expiry(year, month))
                    keys |= {key, f"{key}:seen"}
                    records += 1
            await pipe.execute()
    after = int((await client.info("memory"))["used_memory"])
    usage = 0
    for key in keys:
        usage += int(await client.memory_usage(key, samples=0) or 0)
    await client.aclose()
    return {"records": records, "keys": len(keys), "memory_usage": usage, "delta": after - before}


async def _signed(
    http: aiohttp.ClientSession, slack: Helper, texts: list[str], *, channel: str
) -> list[dict[str, Any]]:
    commands = [
        {"command": "/dora", "text": text, "user": "alice", "channel": channel} for text in texts
    ]
    made = await post_json(http, f"{slack.info['control_url']}/bench/slash", {"commands": commands})
    signed: list[dict[str, Any]] = made["commands"]
    return signed


async def _ask(
    http: aiohttp.ClientSession, bot: Bot, slack: Helper, command: dict[str, Any], arrived: int
) -> tuple[float, int]:
    """Send one command; (seconds to its answer, answers so far)."""
    sent = time.time()
    async with http.post(
        f"{bot.url}/slack/events", data=command["body"].encode(), headers=command["headers"]
    ) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"/dora answered {response.status}")
    found = await get_json(
        http,
        f"{slack.info['control_url']}/bench/wait",
        method="response_url",
        count=arrived + 1,
        timeout=60,
    )
    times: list[float] = found["times"]
    return times[-1] - sent, len(times)


async def run() -> Section:
    section = Section("dora")
    apps = scaled(APPS, 20)
    sequential = scaled(SEQUENTIAL, 10)
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalog = tmp / "catalog.yaml"
        channels = write_catalog(catalog, apps=apps, teams=TEAMS, envs=ENVS)
        # no weekly digest in the middle of the measure
        text = catalog.read_text()
        catalog.write_text(text.replace('"\n', '"\n    digest: off\n', TEAMS))
        redis, redis_url = start_redis(tmp / "redis")
        seeded = await _seed(redis_url, apps, now)
        slack = Helper(
            "tests.benchmarks.slack_server",
            json.dumps({"channels": channels}),
            log=tmp / "slack.log",
        )
        env = bot_env(
            slack=slack, redis_url=redis_url, state_dir=tmp / "var", catalog=catalog, pacing=1.0
        )
        bot = Bot(env, log=tmp / "bot.log", profile_as="dora")
        times: dict[str, list[float]] = {q: [] for q in QUERIES}
        first = 0.0
        try:
            async with aiohttp.ClientSession() as http:
                await bot.ready(http)
                await bot.logged("inventory refresh", within=60)
                await idle(bot.pid)
                signed = await _signed(
                    http,
                    slack,
                    [q for q in QUERIES for _ in range(sequential + 1)],
                    channel="team-000",
                )
                arrived = 0
                for index, command in enumerate(signed):
                    took, arrived = await _ask(http, bot, slack, command, arrived)
                    query = QUERIES[index // (sequential + 1)]
                    if index == 0:
                        first = took  # the first after start: every month decoded
                    elif index % (sequential + 1):
                        times[query].append(took)
                base = slack.info["api_url"].removesuffix("/api/")
                shown = await get_json(http, f"{base}/_sandbox/ephemerals", channel="team-000")
            rss = rss_peak_mb(bot.pid)
            redis_rss = rss_peak_mb(redis_pid(redis))
        finally:
            bot.stop()
            slack.stop()
            redis.stop()
        problems = bot.log_lines("warning", "error", "critical")

    records_mb = seeded["memory_usage"] / 1e6
    section.check(
        f"/dora all 90d over {apps} apps x {len(ENVS)} envs x {DAYS} days, answer p95",
        ms(percentile(times["all 90d"], 95)),
        "ms",
        at_most=300,
    )
    section.add("/dora all 90d answer p50", ms(percentile(times["all 90d"], 50)), "ms")
    section.add("/dora all 90d, the first answer after start", ms(first), "ms")
    section.add("/dora team-003 90d answer p95", ms(percentile(times["team-003 90d"], 95)), "ms")
    section.add("/dora app-0042 90d answer p95", ms(percentile(times["app-0042 90d"], 95)), "ms")
    section.check(
        f"records in Redis ({seeded['records']:,} records, {seeded['keys']:,} keys)",
        records_mb,
        "MB",
        at_most=50,
    )
    section.add("Redis used_memory grown by the records", seeded["delta"] / 1e6, "MB")
    section.add("bot peak RSS (VmHWM)", rss, "MB")
    answer = next((e for e in shown["ephemerals"] if e["text"].startswith("DORA: all apps")), None)
    section.conditions = {
        "records": f"{apps} apps x {len(ENVS)} envs x {DAYS} days, daily deployments of 3"
        " commits; every 15th day fails and is rolled back (a failed change and a rollback)",
        "answers measured per query": sequential,
        "queries": QUERIES,
        "Redis peak RSS (MB)": redis_rss,
        "the answer to /dora all 90d": answer["text"] if answer else None,
        "its figures": [
            b["text"]["text"] for b in (answer or {}).get("blocks", []) if b.get("text")
        ][:1],
    }
    if problems:
        section.conditions["bot warnings/errors (first 5)"] = problems
    return section
