"""GitLab webhook intake: 20,000 realistic pipeline and job hooks for 2,000 pipelines, 50 clients.

Each pipeline tells its story in 9 hooks (pipeline created, pending, running, success|failed and
its jobs' progress), shuffled within a window of about 3 (GitLab delivers concurrently), with
pipelines overlapping as on a busy instance; 10 % of the deliveries are GitLab retries (same
``X-Gitlab-Event-UUID``, same body, a little later). 10 % of the pipelines fail. The payloads are
GitLab's documented examples (``tests/integration/gitlab_payloads.py``) for 400 apps
``shop/app-NNNN`` owned by 100 teams (one Slack channel each).

Three rounds of 2,000 pipelines each (other pipeline ids every time), after a warm-up of one
pipeline per channel:

1. offered at 500 events/s (the ack latency), to a bot whose outbox paces each channel at 1 s
   as in production;
2. as fast as 50 clients go (the sustained rate), same bot;
3. as fast as 50 clients go, to a second bot (same Redis and Slack) whose outbox paces at
   0.02 s: its "last event → final" is the bot's own pipeline (inbox → worker → outbox →
   Slack), not Slack's one message per second per channel.

After each round the bench waits until every pipeline's Slack message shows its final state
(nothing lost), and counts the Slack calls per pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

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
    get_json,
    idle,
    ms,
    percentile,
    redis_commands,
    redis_pid,
    rss_peak_mb,
    scaled,
    start_redis,
    write_catalog,
)
from tests.integration import gitlab_payloads
from tests.integration.conftest import WEBHOOK_SECRET
from tests.integration.gitlab_payloads import T0, job_hook, pipeline_hook

PIPELINES = 2000
EVENTS_PER_PIPELINE = 10  # 9 distinct hooks + on average 1 GitLab retry
APPS = 400
TEAMS = 100
FAIL_RATIO = 0.10
OFFERED_RATE = 500.0
PRODUCTION_PACING = 1.0
FAST_PACING = 0.02
FINAL_WORDS = {"success": "passed", "failed": "failed"}
FINAL_WAIT = 300.0


@dataclass(frozen=True)
class Delivery:
    event_id: str
    kind: str
    body: bytes


def _story(pipeline_id: int, project: str, started: Any, *, failed: bool) -> list[tuple[str, Any]]:
    """The 9 hooks GitLab sends for one pipeline, in the order things happen."""
    end = "failed" if failed else "success"
    sha = format(pipeline_id, "040x")

    def pipeline(status: str) -> tuple[str, Any]:
        return "Pipeline Hook", pipeline_hook(
            project=project,
            pipeline_id=pipeline_id,
            status=status,
            sha=sha,
            started=started,
            failed_job="unit" if status == "failed" else None,
        )

    def job(name: str, status: str) -> tuple[str, Any]:
        return "Job Hook", job_hook(
            project=project, pipeline_id=pipeline_id, name=name, status=status, started=started
        )

    return [
        pipeline("created"),
        pipeline("pending"),
        job("compile", "running"),
        pipeline("running"),
        job("compile", "success"),
        job("unit", "running"),
        job("unit", end),
        job("lint", "success"),
        pipeline(end),
    ]


@contextlib.contextmanager
def _fixtures_read_once() -> Iterator[None]:
    """The payload builders read GitLab's example from disk at every call (fine for tests);
    60,000 payloads read it once. They deep-copy what ``fixture`` returns, so sharing is safe."""
    read = gitlab_payloads.fixture
    gitlab_payloads.fixture = functools.cache(read)
    try:
        yield
    finally:
        gitlab_payloads.fixture = read


def dataset(
    *, first_id: int, pipelines: int, day: int, rng: random.Random
) -> tuple[list[Delivery], dict[int, str]]:
    """The deliveries in sending order, and each pipeline's final status word."""
    with _fixtures_read_once():
        return _dataset(first_id=first_id, pipelines=pipelines, day=day, rng=rng)


def _dataset(
    *, first_id: int, pipelines: int, day: int, rng: random.Random
) -> tuple[list[Delivery], dict[int, str]]:
    timeline: list[tuple[float, Delivery]] = []
    expected: dict[int, str] = {}
    gap = 20.0  # a pipeline's hooks are ~20 pipeline starts apart: ~180 pipelines in flight
    for j in range(pipelines):
        pipeline_id = first_id + j
        project = f"shop/{app_name(j % APPS)}"
        failed = rng.random() < FAIL_RATIO
        expected[pipeline_id] = FINAL_WORDS["failed" if failed else "success"]
        started = T0 + timedelta(days=day, minutes=j)
        story = _story(pipeline_id, project, started, failed=failed)
        order = sorted(range(len(story)), key=lambda i: i + rng.uniform(0, 2.5))
        for k, i in enumerate(order):
            kind, payload = story[i]
            body = json.dumps(payload).encode()
            timeline.append((j + k * gap, Delivery(str(uuid.uuid4()), kind, body)))
    retries = rng.sample(range(len(timeline)), k=pipelines * EVENTS_PER_PIPELINE - len(timeline))
    for index in retries:
        at, delivery = timeline[index]
        timeline.append((at + rng.uniform(gap, 10 * gap), delivery))
    timeline.sort(key=lambda item: item[0])
    return [delivery for _, delivery in timeline], expected


@dataclass
class Fired:
    latencies: list[float]
    elapsed: float
    failures: int
    statuses: dict[str, int]
    first_sent: float
    last_sent: float
    """Wall-clock times at which the first and the last delivery were sent."""
    timeline: list[tuple[float, float]]
    """(seconds since the start, latency) of every delivery, for a look at where slow ones are."""


async def fire(
    http: aiohttp.ClientSession,
    url: str | list[str],
    deliveries: list[Delivery],
    *,
    rate: float | None,
) -> Fired:
    """Send from CLIENTS concurrent clients, at ``rate`` per second in total (None: flat out);
    with several URLs, deliveries alternate between them (a Service in front of replicas)."""
    urls = [url] if isinstance(url, str) else url
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    failures = 0
    last_sent = 0.0
    timeline: list[tuple[float, float]] = []
    queue: asyncio.Queue[tuple[int, Delivery]] = asyncio.Queue()
    for item in enumerate(deliveries):
        queue.put_nowait(item)
    started = time.perf_counter()

    async def client() -> None:
        nonlocal failures, last_sent
        while not queue.empty():
            index, delivery = queue.get_nowait()
            if rate is not None:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": delivery.kind,
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event-UUID": delivery.event_id,
            }
            last_sent = max(last_sent, time.time())
            sent = time.perf_counter()
            target = urls[index % len(urls)]
            try:
                async with http.post(target, data=delivery.body, headers=headers) as response:
                    answer = await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok, answer = False, b"{}"
            latencies.append(time.perf_counter() - sent)
            timeline.append((sent - started, latencies[-1]))
            if not ok:
                failures += 1
                continue
            status = str(json.loads(answer).get("status"))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    first_sent = time.time() - elapsed
    return Fired(latencies, elapsed, failures, statuses, first_sent, last_sent, sorted(timeline))


async def wait_final(
    http: aiohttp.ClientSession, slack: Helper, *, first_id: int, expected: dict[int, str]
) -> dict[str, Any]:
    """Wait until every pipeline's message shows its final state; then until Slack is quiet."""
    control = slack.info["control_url"]
    digit = str(first_id)[0]
    match = rf"pipeline #{digit}\d{{{len(str(first_id)) - 1}}} (passed|failed) on "
    deadline = time.monotonic() + FINAL_WAIT
    while time.monotonic() < deadline:
        found = await get_json(http, f"{control}/bench/count", prefix="pipeline:", match=match)
        if found["count"] >= len(expected):
            break
        await asyncio.sleep(0.25)
    quiet_since, calls = time.monotonic(), None
    while time.monotonic() - quiet_since < 1.5 and time.monotonic() < deadline:
        stats = await get_json(http, f"{control}/bench/stats")
        if stats != calls:
            calls, quiet_since = stats, time.monotonic()
        await asyncio.sleep(0.25)
    keys: dict[str, dict[str, Any]] = await get_json(
        http, f"{control}/bench/keys", prefix="pipeline:"
    )
    own: dict[int, dict[str, Any]] = {}
    replies: list[dict[str, Any]] = []
    for key, seen in keys.items():
        _, _, rest = key.partition(":")
        parts = rest.split(":")
        pipeline_id = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        if pipeline_id not in expected:
            continue
        if len(parts) == 2 and not seen["thread"]:
            own[pipeline_id] = seen
        else:
            replies.append(seen)
    final = [
        pid for pid, word in expected.items() if pid in own and f" {word} on " in own[pid]["text"]
    ]
    final_at = max((own[pid]["since"] for pid in final), default=None)
    return {
        "final": len(final),
        "final_at": final_at,
        "messages": len(own),
        "posts_max": max((s["posts"] for s in own.values()), default=0),
        "posts": sum(s["posts"] for s in own.values()),
        "updates": sum(s["updates"] for s in own.values()),
        "replies": len(replies),
        "reply_posts": sum(s["posts"] for s in replies),
        "reply_updates": sum(s["updates"] for s in replies),
    }


def _round(section: Section, label: str, played: Round, pipelines: int, retries: int) -> None:
    """What one round left in Slack: nothing lost, how fast, how many calls."""
    fired, seen = played.fired, played.seen
    duplicates = fired.statuses.get("duplicate", 0)
    section.add(
        f"{label}: GitLab retries answered 'duplicate'",
        duplicates,
        "",
        f"= {retries}",
        duplicates == retries,
    )
    section.check(
        f"{label}: pipelines whose message shows their final state",
        seen["final"],
        f"of {pipelines}",
        at_least=pipelines,
    )
    final_at = seen["final_at"]
    section.add(
        f"{label}: last event sent → every message final",
        None if final_at is None else final_at - fired.last_sent,
        "s",
    )
    unique = len(fired.latencies) - duplicates
    section.add(
        f"{label}: end-to-end rate (first event sent → every message final)",
        None if final_at is None else unique / (final_at - fired.first_sent),
        "events/s",
        note="distinct events",
    )
    section.check(
        f"{label}: chat.postMessage per pipeline, its own message (max)",
        seen["posts_max"],
        "",
        at_most=1,
    )
    section.add(f"{label}: chat.update per pipeline (mean)", seen["updates"] / pipelines, "")
    section.add(
        f"{label}: thread replies (failure, fixed) per pipeline (mean)",
        seen["reply_posts"] / pipelines,
        "",
        note=f"{seen['reply_posts']} chat.postMessage, {seen['reply_updates']} chat.update: "
        "by design one reply per failure and one per fix",
    )


@dataclass
class Round:
    fired: Fired
    seen: dict[str, Any]
    cpu: dict[str, float]
    """Cores used by each process while the round was sent."""
    bot_cpu_per_event: float
    """Bot CPU seconds from the round's first event until its last message was final, per
    event sent: all the work (intake, worker, outbox)."""
    redis_per_event: dict[str, float]
    """Redis commands per event sent, by command, over the same span."""


async def play(
    http: aiohttp.ClientSession,
    bot: Bot,
    slack: Helper,
    meter: CpuMeter,
    redis_url: str,
    data: tuple[list[Delivery], dict[int, str]],
    *,
    first_id: int,
    rate: float | None,
) -> Round:
    deliveries, expected = data
    meter.pids["bot"] = bot.pid
    commands = await redis_commands(redis_url)
    before = cpu_seconds(bot.pid) or 0.0
    meter.start()
    spy = Spy(bot.pid, f"intake-{first_id}-send")
    fired = await fire(http, f"{bot.url}/webhooks/gitlab", deliveries, rate=rate)
    cpu = meter.read()
    spy.stop()
    spy = Spy(bot.pid, f"intake-{first_id}-drain")
    seen = await wait_final(http, slack, first_id=first_id, expected=expected)
    spy.stop()
    used = (cpu_seconds(bot.pid) or 0.0) - before
    n = max(len(deliveries), 1)
    ran = count_delta(await redis_commands(redis_url), commands)
    per_event = {k: round(v / n, 2) for k, v in sorted(ran.items(), key=lambda kv: -kv[1])}
    return Round(
        fired, seen, cpu, used / n, {"total": round(sum(ran.values()) / n, 1), **per_event}
    )


async def start_bot(
    http: aiohttp.ClientSession, env: dict[str, str], *, log: Path, name: str
) -> tuple[Bot, float]:
    """Start the bot; wait until its start-up work is done (the inventory refresh, which fails
    here: GitLab is not simulated); the seconds that took."""
    started = time.monotonic()
    bot = Bot(env, log=log, profile_as=name)
    await bot.ready(http)
    await bot.logged("inventory refresh", within=60)
    await idle(bot.pid)
    return bot, time.monotonic() - started


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


async def run() -> Section:
    section = Section("intake")
    pipelines = scaled(PIPELINES, 20)
    rng = random.Random(8)
    warm = dataset(first_id=900_000, pipelines=min(TEAMS, pipelines), day=-3, rng=rng)
    paced_data = dataset(first_id=100_000, pipelines=pipelines, day=0, rng=rng)
    flat_data = dataset(first_id=200_000, pipelines=pipelines, day=1, rng=rng)
    fast_data = dataset(first_id=300_000, pipelines=pipelines, day=2, rng=rng)
    retries = pipelines * EVENTS_PER_PIPELINE - pipelines * 9
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalog = tmp / "catalog.yaml"
        channels = write_catalog(catalog, apps=APPS, teams=TEAMS, envs=["staging", "production"])
        redis, redis_url = start_redis(tmp / "redis")
        slack = Helper(
            "tests.benchmarks.slack_server",
            json.dumps({"channels": channels}),
            log=tmp / "slack.log",
        )
        meter = CpuMeter({"bot": 0, "redis": redis_pid(redis), "slack sandbox": slack.pid})
        bots: list[Bot] = []
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as http:
                env = bot_env(
                    slack=slack,
                    redis_url=redis_url,
                    state_dir=tmp / "var",
                    catalog=catalog,
                    pacing=PRODUCTION_PACING,
                )
                bot, settled = await start_bot(http, env, log=tmp / "bot.log", name="intake")
                bots.append(bot)
                # Warm-up: one pipeline per channel (the bot looks each channel up once).
                await play(http, bot, slack, meter, redis_url, warm, first_id=900_000, rate=200)
                paced = await play(
                    http,
                    bot,
                    slack,
                    meter,
                    redis_url,
                    paced_data,
                    first_id=100_000,
                    rate=OFFERED_RATE,
                )
                flat = await play(
                    http, bot, slack, meter, redis_url, flat_data, first_id=200_000, rate=None
                )
                rss = rss_peak_mb(bot.pid)
                bot.stop()
                env = {**env, "PITCREW_TEST_PACING": repr(FAST_PACING)}
                fast_bot, _ = await start_bot(
                    http, env, log=tmp / "bot-fast.log", name="intake-fast"
                )
                bots.append(fast_bot)
                fast = await play(
                    http, fast_bot, slack, meter, redis_url, fast_data, first_id=300_000, rate=None
                )
                fast_rss = rss_peak_mb(fast_bot.pid)
        finally:
            for each in bots:
                each.stop()
            slack.stop()
            redis.stop()
        levels = {b.log.name: b.log_levels() for b in bots}
        problems = [line for b in bots for line in b.log_lines("warning", "error", "critical")]

    offered = f"offered {OFFERED_RATE:g}/s"
    p, f = paced.fired, flat.fired
    section.add(f"ack p50, {offered}", ms(percentile(p.latencies, 50)), "ms")
    section.check(f"ack p99, {offered}", ms(percentile(p.latencies, 99)), "ms", at_most=25)
    section.add(f"achieved rate, {offered}", len(p.latencies) / p.elapsed, "events/s")
    rate = len(f.latencies) / f.elapsed
    section.check(
        f"sustained rate, flat out from {CLIENTS} clients", rate, "events/s", at_least=2000
    )
    section.add(
        "bot CPU while sending flat out",
        flat.cpu["bot"],
        "cores",
        note="one event loop: one core is its ceiling",
    )
    section.add("ack p50, flat out", ms(percentile(f.latencies, 50)), "ms")
    section.add("ack p99, flat out", ms(percentile(f.latencies, 99)), "ms")
    failures = p.failures + f.failures + fast.fired.failures
    section.check("errors (non-200 or connection), all rounds", failures, "", at_most=0)
    section.check("bot peak RSS (VmHWM)", rss, "MB", at_most=150)
    _round(section, "500/s, pacing 1 s", paced, pipelines, retries)
    _round(section, "flat out, pacing 1 s", flat, pipelines, retries)
    fast_label = f"flat out, pacing {FAST_PACING:g} s"
    _round(section, fast_label, fast, pipelines, retries)
    section.add(f"{fast_label}: ack p99", ms(percentile(fast.fired.latencies, 99)), "ms")
    section.add(f"{fast_label}: bot peak RSS (VmHWM)", fast_rss, "MB")
    section.conditions = {
        "pipelines per round": pipelines,
        "events per round": pipelines * EVENTS_PER_PIPELINE,
        "GitLab retries per round": retries,
        "failed pipelines": f"{FAIL_RATIO:.0%}",
        "apps / teams (channels)": f"{APPS} / {TEAMS}",
        "clients": CLIENTS,
        "outbox pacing": f"the first bot paces each channel at {PRODUCTION_PACING:g} s as in "
        "production: its 'final' times are bounded by that (>= one write per second per "
        f"channel, {pipelines // TEAMS} pipelines per channel per round). A second bot, on the "
        f"same Redis, paces at {FAST_PACING:g} s for the last round, whose 'final' time "
        "measures the bot's own pipeline (inbox → worker → outbox → Slack). The Slack sandbox "
        "does not rate-limit",
        "CPU used while sending, 500/s (cores)": paced.cpu,
        "CPU used while sending, flat out (cores)": flat.cpu,
        f"CPU used while sending, flat out, pacing {FAST_PACING:g} s (cores)": fast.cpu,
        "bot CPU per event, all its work (ms)": {
            "500/s": round(paced.bot_cpu_per_event * 1000, 2),
            "flat out": round(flat.bot_cpu_per_event * 1000, 2),
            f"flat out, pacing {FAST_PACING:g} s": round(fast.bot_cpu_per_event * 1000, 2),
        },
        "Redis commands per event (500/s round)": paced.redis_per_event,
        "Redis commands per event (flat out, fast pacing)": fast.redis_per_event,
        "bot start → ready and idle (s)": round(settled, 1),
        "bot log lines by level": levels,
    }
    debug = os.environ.get("BENCH_DEBUG")
    if debug:
        _dump(Path(debug), {"paced": p.timeline, "flat": f.timeline, "fast": fast.fired.timeline})
    if problems:
        section.conditions["bot warnings/errors (first 5 per bot)"] = problems
    return section
