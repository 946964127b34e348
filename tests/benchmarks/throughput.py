"""End to end (SPEC 15): GitLab webhooks in → every pipeline's Slack message state in the outbox.

The intake benchmark measures how fast webhooks are *acknowledged*; this one how fast they are
*handled*: each stored event parsed, folded into its pipeline's state, committed, and the
pipeline's message queued in the outbox (the worker acknowledges a stream entry only after
that). Delivery to Slack is not part of it: Slack takes one message a second per channel.

The same data as the intake benchmark (``intake.dataset``: 2,000 pipelines of 400 apps and 100
teams, 9 hooks each shuffled as GitLab delivers them, plus 10 % GitLab retries), flat out from
50 clients, in two rounds on one Redis:

1. one bot;
2. two bots, the clients alternating between them as a Service in front of two replicas would.

A round ends when the consumer group has read every event stored in the round and has nothing
pending. The rate is distinct events (deliveries answered ``queued``) over the time from the
first delivery sent to that moment. Then every pipeline's record must show its final status and
its messages must have been handed to the outbox (``announced``); the Slack messages themselves
follow at Slack's pace (the intake benchmark waits for them).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.store.connection import client_for
from tests.benchmarks.common import (
    CLIENTS,
    Bot,
    CpuMeter,
    Helper,
    Section,
    Spy,
    app_name,
    bot_env,
    count_delta,
    cpu_seconds,
    ms,
    percentile,
    redis_commands,
    redis_pid,
    rss_peak_mb,
    scaled,
    scrape,
    start_redis,
    write_catalog,
)
from tests.benchmarks.intake import (
    APPS,
    EVENTS_PER_PIPELINE,
    PIPELINES,
    PRODUCTION_PACING,
    TEAMS,
    Delivery,
    dataset,
    fire,
    start_bot,
)

ONE_BOT_TARGET = 2000.0
TWO_BOTS_FACTOR = 1.7
DRAIN_WAIT = 300.0
FINAL = {"success", "failed"}


@dataclass
class Played:
    distinct: int
    sent: int
    failures: int
    elapsed_sending: float
    drained_after: float | None
    """Seconds from the first delivery sent until every event of the round was handled."""
    cpu: dict[str, float]
    bot_cpu_per_event_ms: float
    redis_per_event: dict[str, float]
    observations: dict[str, float]
    """The bots' ``pitcrew_pipeline_observations_total`` by effect during the round: events that
    advanced a pipeline, that changed nothing (GitLab's retries of distinct deliveries, stale
    hooks), and commits lost to another replica (then folded again)."""
    final: int
    announced: int
    latencies: list[float]


async def _group(redis: Any) -> dict[str, int]:
    for group in await redis.xinfo_groups("events:gitlab"):
        if group["name"] in (b"notifications", "notifications"):
            return {
                "read": int(group.get("entries-read") or 0),
                "pending": int(group.get("pending") or 0),
            }
    return {"read": 0, "pending": 0}


async def _observations(http: aiohttp.ClientSession, bots: list[Bot]) -> dict[str, float]:
    total: dict[str, float] = {}
    for bot in bots:
        for name, value in (await scrape(http, bot)).items():
            if name.startswith("pitcrew_pipeline_observations_total{"):
                effect = name.split('effect="', 1)[1].split('"', 1)[0]
                total[effect] = total.get(effect, 0.0) + value
    return total


async def play(
    http: aiohttp.ClientSession,
    bots: list[Bot],
    meter: CpuMeter,
    redis_url: str,
    data: tuple[list[Delivery], dict[int, str]],
    *,
    first_id: int,
) -> Played:
    deliveries, expected = data
    redis = client_for(redis_url)
    try:
        seen_before = await _observations(http, bots)
        before = await _group(redis)
        commands = await redis_commands(redis_url)
        cpu_before = sum(cpu_seconds(b.pid) or 0.0 for b in bots)
        meter.start()
        spies = [Spy(b.pid, f"throughput-{first_id}-{b.name}") for b in bots]
        started = time.perf_counter()
        sending = asyncio.create_task(
            fire(http, [f"{b.url}/webhooks/gitlab" for b in bots], deliveries, rate=None)
        )
        drained_after: float | None = None
        while time.perf_counter() - started < DRAIN_WAIT:
            await asyncio.sleep(0.05)
            if not sending.done():
                continue
            fired = sending.result()
            distinct = fired.statuses.get("queued", 0)
            now = await _group(redis)
            if now["read"] - before["read"] >= distinct and now["pending"] == 0:
                drained_after = time.perf_counter() - started
                break
        fired = await sending
        cpu = meter.read()
        for spy in spies:
            spy.stop()
        used = sum(cpu_seconds(b.pid) or 0.0 for b in bots) - cpu_before
        ran = count_delta(await redis_commands(redis_url), commands)
        distinct = fired.statuses.get("queued", 0)
        n = max(distinct, 1)
        per_event = {k: round(v / n, 2) for k, v in sorted(ran.items(), key=lambda kv: -kv[1])}
        seen = await _observations(http, bots)
        observations = {k: v - seen_before.get(k, 0.0) for k, v in seen.items()}
        final = announced = 0
        for pipeline_id in sorted(expected):
            project = f"shop/{app_name((pipeline_id - first_id) % APPS)}"
            raw = await redis.hgetall(f"pipelines:{{{project}}}:{pipeline_id}")
            if not raw.get(b"data"):
                continue
            state = json.loads(raw[b"data"])["state"]
            final += state["status"] in FINAL
            announced += int(raw.get(b"announced") or 0) == int(raw.get(b"v") or -1)
        return Played(
            distinct=distinct,
            sent=len(deliveries),
            failures=fired.failures,
            elapsed_sending=fired.elapsed,
            drained_after=drained_after,
            cpu=cpu,
            bot_cpu_per_event_ms=round(used / n * 1000, 3),
            redis_per_event={"total": round(sum(ran.values()) / n, 1), **per_event},
            observations=observations,
            final=final,
            announced=announced,
            latencies=fired.latencies,
        )
    finally:
        await redis.aclose()


def _report(section: Section, label: str, played: Played, pipelines: int) -> float | None:
    rate = None
    if played.drained_after:
        rate = played.distinct / played.drained_after
    section.add(f"{label}: acknowledged (all deliveries)", played.sent / played.elapsed_sending,
                "deliveries/s")  # fmt: skip
    section.add(f"{label}: ack p99", ms(percentile(played.latencies, 99)), "ms")
    section.add(
        f"{label}: first event sent → every event handled",
        played.drained_after,
        "s",
        note=f"{played.distinct} distinct events",
    )
    section.check(
        f"{label}: pipelines whose final state is stored and handed to the outbox",
        min(played.final, played.announced),
        f"of {pipelines}",
        at_least=pipelines,
    )
    section.check(f"{label}: errors (non-200 or connection)", played.failures, "", at_most=0)
    return rate


async def run() -> Section:
    section = Section("throughput")
    pipelines = scaled(PIPELINES, 20)
    rng = random.Random(15)
    warm = dataset(first_id=800_000, pipelines=min(TEAMS, pipelines), day=-3, rng=rng)
    one_data = dataset(first_id=400_000, pipelines=pipelines, day=3, rng=rng)
    two_data = dataset(first_id=500_000, pipelines=pipelines, day=4, rng=rng)
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalog = tmp / "catalog.yaml"
        channels = write_catalog(catalog, apps=APPS, teams=TEAMS, envs=["staging", "production"])
        redis, redis_url = start_redis(tmp / "redis")
        channels_json = json.dumps({"channels": channels})
        slack = Helper("tests.benchmarks.slack_server", channels_json, log=tmp / "slack.log")
        meter = CpuMeter({"redis": redis_pid(redis), "slack sandbox": slack.pid})
        bots: list[Bot] = []
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as http:

                def env_for(name: str) -> dict[str, str]:
                    return bot_env(
                        slack=slack,
                        redis_url=redis_url,
                        state_dir=tmp / name,
                        catalog=catalog,
                        pacing=PRODUCTION_PACING,
                    )

                first, _ = await start_bot(http, env_for("a"), log=tmp / "a.log", name="e2e-a")
                bots.append(first)
                meter.pids["bot a"] = first.pid
                await play(http, [first], meter, redis_url, warm, first_id=800_000)
                one = await play(http, [first], meter, redis_url, one_data, first_id=400_000)
                second, _ = await start_bot(http, env_for("b"), log=tmp / "b.log", name="e2e-b")
                bots.append(second)
                meter.pids["bot b"] = second.pid
                two = await play(http, bots, meter, redis_url, two_data, first_id=500_000)
                rss = {b.name: rss_peak_mb(b.pid) for b in bots}
        finally:
            for bot in bots:
                bot.stop()
            slack.stop()
            redis.stop()
        problems = [line for b in bots for line in b.log_lines("warning", "error", "critical")]

    one_rate = _report(section, "one bot", one, pipelines)
    two_rate = _report(section, "two bots, one Redis", two, pipelines)
    section.check(
        "one bot: end-to-end rate (first event sent → every event handled)",
        one_rate,
        "events/s",
        at_least=ONE_BOT_TARGET,
        note="distinct events",
    )
    section.check(
        "two bots, one Redis: end-to-end rate",
        two_rate,
        "events/s",
        at_least=TWO_BOTS_FACTOR * (one_rate or 0),
        note=f"target: {TWO_BOTS_FACTOR:g} times one bot's",
    )
    section.conditions = {
        "pipelines per round": pipelines,
        "deliveries per round": pipelines * EVENTS_PER_PIPELINE,
        "apps / teams (channels)": f"{APPS} / {TEAMS}",
        "clients": CLIENTS,
        "outbox pacing": f"{PRODUCTION_PACING:g} s per channel, as in production (delivery to "
        "Slack goes on meanwhile, but is not waited for)",
        "CPU used, one bot round (cores)": one.cpu,
        "CPU used, two bots round (cores)": two.cpu,
        "bot CPU per distinct event, all its work (ms)": {
            "one bot": one.bot_cpu_per_event_ms,
            "two bots": two.bot_cpu_per_event_ms,
        },
        "Redis commands per distinct event (one bot)": one.redis_per_event,
        "Redis commands per distinct event (two bots)": two.redis_per_event,
        "pipeline observations by effect (one bot)": one.observations,
        "pipeline observations by effect (two bots)": two.observations,
        "bots' peak RSS (MB)": rss,
    }
    if problems:
        section.conditions["bot warnings/errors (first 5 per bot)"] = problems
    return section
