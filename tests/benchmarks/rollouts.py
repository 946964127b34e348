"""Rollouts: a cluster of 10,000 Deployments listed at start, then 200 rollouts stepped through.

The cluster (the Kubernetes sandbox, in its own process) holds 8,000 Deployments in the
namespaces of 1,000 catalog apps (8 each: the catalog routes them by namespace) and 2,000 in 20
``infra-NN`` namespaces no app claims (quiet, unrouted). The bot lists them all with the official
client, then watches. 200 Deployments of 200 apps (100 teams, one channel each) then get a new
image, 20 per second, while the controller steps every 0.5 s until every rollout is done.

"Watch event → Slack" is measured end to end across processes, on one wall clock: from the
``set_image`` call in the sandbox (which emits the watch event at once) to Slack receiving that
rollout's ``chat.postMessage``. It includes the outbox (queued in Redis, then delivered), so it
is an upper bound of "watch event → queued in the outbox".
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.benchmarks.common import (
    Bot,
    CpuMeter,
    Helper,
    Section,
    Spy,
    app_name,
    bot_env,
    cpu_seconds,
    free_port,
    get_json,
    ms,
    percentile,
    post_json,
    redis_pid,
    rss_peak_mb,
    scaled,
    start_redis,
    write_catalog,
)

WORKLOADS = 10_000
ROUTED_SHARE = 0.8
PER_APP = 8
UNROUTED_NAMESPACES = 20
ROLLOUTS = 200
RATE = 20.0
TEAMS = 100
PACING = 1.0
CONTEXT = "prod"
STEP_EVERY = 0.5


def _key(namespace: str, name: str) -> str:
    return f"rollout:{CONTEXT}/Deployment/{namespace}/{name}/2"


async def _wait_key(
    http: aiohttp.ClientSession, slack: Helper, key: str, *, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await get_json(http, f"{slack.info['control_url']}/bench/keys", prefix=key)
        if key in found:
            seen: dict[str, Any] = found[key]
            return seen
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no Slack message for {key} within {within} s")


async def run() -> Section:
    section = Section("rollouts")
    workloads = scaled(WORKLOADS, 100)
    routed = round(workloads * ROUTED_SHARE)
    apps = max(1, routed // PER_APP)
    rollouts = min(scaled(ROLLOUTS, 10), apps - 1)
    app_namespaces = [app_name(a) for a in range(apps)]
    infra = [f"infra-{n:02d}" for n in range(UNROUTED_NAMESPACES)]
    with tempfile.TemporaryDirectory(prefix="pitcrew-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalog = tmp / "catalog.yaml"
        channels = write_catalog(catalog, apps=apps, teams=TEAMS, envs=["staging", "production"])
        redis, redis_url = start_redis(tmp / "redis")
        slack = Helper(
            "tests.benchmarks.slack_server",
            json.dumps({"channels": channels}),
            log=tmp / "slack.log",
        )
        kube = Helper("tests.benchmarks.kube_server", log=tmp / "kube.log")
        kube_url = kube.info["control_url"]
        kubeconfig = tmp / "kubeconfig"
        bot: Bot | None = None
        levels: dict[str, int] = {}
        problems: list[str] = []
        try:
            async with aiohttp.ClientSession() as http:
                made = await post_json(
                    http,
                    f"{kube_url}/bench/bulk",
                    {
                        "batches": [
                            {"count": routed, "namespaces": app_namespaces, "name_prefix": "svc"},
                            {
                                "count": workloads - routed,
                                "namespaces": infra,
                                "name_prefix": "infra",
                            },
                        ]
                    },
                )
                deployments: list[list[str]] = made["made"]
                await post_json(
                    http,
                    f"{kube_url}/bench/kubeconfig",
                    {"path": str(kubeconfig), "context": CONTEXT},
                )
                env = bot_env(
                    slack=slack,
                    redis_url=redis_url,
                    state_dir=tmp / "var",
                    catalog=catalog,
                    pacing=PACING,
                    KUBE_CONTEXTS=f"production={CONTEXT}",
                    KUBECONFIG=str(kubeconfig),
                )
                started = time.monotonic()
                bot = Bot(env, log=tmp / "bot.log", profile_as="rollouts")
                start_meter = CpuMeter(
                    {"bot": bot.pid, "redis": redis_pid(redis), "kubernetes sandbox": kube.pid}
                )
                start_meter.start()
                spy = Spy(bot.pid, "rollouts-start")
                await bot.ready(http)
                for _ in range(6000):  # the watcher lists each kind, then watches it
                    if (await get_json(http, f"{kube_url}/bench/watches"))["open"] >= 3:
                        break
                    await asyncio.sleep(0.05)
                listed = time.monotonic() - started
                # A probe rollout: once it is in Slack, every listed workload before it was
                # handled (one queue, in order).
                probe_ns, probe_name = deployments[routed - 1]
                await post_json(
                    http,
                    f"{kube_url}/bench/set_image",
                    {"items": [[probe_ns, probe_name, f"registry.example.com/{probe_name}:9"]]},
                )
                await _wait_key(http, slack, _key(probe_ns, probe_name), within=300)
                handled = time.monotonic() - started
                handled_cpu = cpu_seconds(bot.pid)
                start_cpu = start_meter.read()
                spy.stop()
                rss_after_list = rss_peak_mb(bot.pid)

                control = slack.info["control_url"]

                async def step_until_quiet() -> None:
                    """The controller, every STEP_EVERY s, until 3 steps in a row change nothing."""
                    quiet = 0
                    while quiet < 3:
                        await asyncio.sleep(STEP_EVERY)
                        answer = await post_json(http, f"{kube_url}/bench/step", {"count": 1})
                        quiet = quiet + 1 if answer["writes"] == 0 else 0

                async def wait_count(match: str, count: int, within: float = 120) -> None:
                    deadline = time.monotonic() + within
                    while time.monotonic() < deadline:
                        found = await get_json(
                            http, f"{control}/bench/count", prefix="rollout:", match=match
                        )
                        if found["count"] >= count:
                            return
                        await asyncio.sleep(0.1)

                # Warm-up, not measured: one rollout per team (the bot looks each channel up
                # once, as a bot that has been running a while has), through to the end.
                per_team: dict[int, list[str]] = {}
                for index in range(rollouts, routed - 1):
                    per_team.setdefault(index % apps % TEAMS, deployments[index])
                warm = [
                    [ns, name, f"registry.example.com/{name}:1.9.0"]
                    for ns, name in per_team.values()
                ]
                await post_json(http, f"{kube_url}/bench/set_image", {"items": warm, "rate": 50})
                await step_until_quiet()
                await wait_count(" rolled out in ", len(warm) + 1)

                # Measured: rollouts start at RATE per second; then the controller steps them.
                chosen = deployments[:rollouts]
                items = [[ns, name, f"registry.example.com/{name}:2.0.0"] for ns, name in chosen]
                meter = CpuMeter(
                    {
                        "bot": bot.pid,
                        "redis": redis_pid(redis),
                        "slack sandbox": slack.pid,
                        "kubernetes sandbox": kube.pid,
                    }
                )
                meter.start()
                rolling = time.monotonic()
                answer = await post_json(
                    http, f"{kube_url}/bench/set_image", {"items": items, "rate": RATE}
                )
                set_at: list[float] = answer["times"]
                await wait_count(" rolling out in | rolled out in ", len(warm) + 1 + rollouts)
                cpu = meter.read()
                await step_until_quiet()
                await wait_count(" rolled out in ", len(warm) + 1 + rollouts)
                rolled_for = time.monotonic() - rolling
                keys = await get_json(
                    http, f"{slack.info['control_url']}/bench/keys", prefix="rollout:"
                )
                stats = await get_json(http, f"{slack.info['control_url']}/bench/stats")
                rss = rss_peak_mb(bot.pid)

                # A restart on the same Redis: every workload is known, nothing is to be said.
                bot.stop()
                levels = bot.log_levels()
                problems = bot.log_lines("warning", "error", "critical")
                env = {**env, "PORT": str(free_port())}
                started = time.monotonic()
                bot = Bot(env, log=tmp / "bot-again.log", profile_as="rollouts-restart")
                start_meter = CpuMeter(
                    {"bot": bot.pid, "redis": redis_pid(redis), "kubernetes sandbox": kube.pid}
                )
                start_meter.start()
                await bot.ready(http)
                again_ns, again_name = deployments[routed - 2]
                for _ in range(6000):
                    if (await get_json(http, f"{kube_url}/bench/watches"))["open"] >= 3:
                        break
                    await asyncio.sleep(0.05)
                await post_json(
                    http,
                    f"{kube_url}/bench/set_image",
                    {"items": [[again_ns, again_name, f"registry.example.com/{again_name}:9"]]},
                )
                await _wait_key(http, slack, _key(again_ns, again_name), within=300)
                restarted = time.monotonic() - started
                restarted_cpu = cpu_seconds(bot.pid)
                restarted_rss = rss_peak_mb(bot.pid)
                restart_cpu = start_meter.read()
                after_restart = await get_json(http, f"{control}/bench/stats")
        finally:
            if bot is not None:
                bot.stop()
            kube.stop()
            slack.stop()
            redis.stop()
        if bot is not None:
            problems += bot.log_lines("warning", "error", "critical")

    latencies: list[float] = []
    missing = 0
    own = []
    for (namespace, name), at in zip(chosen, set_at, strict=True):
        seen = keys.get(_key(namespace, name))
        if seen is None:
            missing += 1
            continue
        own.append(seen)
        latencies.append(seen["first_post"] - at)
    rolled = sum(1 for s in own if " rolled out in " in s["text"])
    section.check(
        f"start → {workloads} workloads listed and judged",
        handled,
        "s",
        at_most=5,
        note="process start → a rollout made once the list is in reaches Slack",
    )
    section.add(f"start → {workloads} workloads listed (3 watches open)", listed, "s")
    section.add("bot CPU time until judged", handled_cpu, "s")
    section.check("bot peak RSS (VmHWM)", rss, "MB", at_most=150)
    section.add("bot peak RSS after the initial list", rss_after_list, "MB")
    section.check(
        "watch event → Slack chat.postMessage, p99",
        ms(percentile(latencies, 99)),
        "ms",
        at_most=100,
        note="set_image in the sandbox → Slack got the rollout's post; includes the outbox",
    )
    section.add("watch event → Slack chat.postMessage, p50", ms(percentile(latencies, 50)), "ms")
    section.add(
        "watch event → Slack chat.postMessage, max",
        ms(max(latencies) if latencies else None),
        "ms",
    )
    section.check("rollouts announced", len(latencies), f"of {rollouts}", at_least=rollouts)
    section.check(
        "rollouts whose message says 'rolled out'", rolled, f"of {rollouts}", at_least=rollouts
    )
    section.check(
        "chat.postMessage per rollout (max)",
        max((s["posts"] for s in own), default=0),
        "posts",
        at_most=1,
    )
    section.add(
        "chat.update per rollout (mean)", sum(s["updates"] for s in own) / max(len(own), 1), ""
    )
    section.add(
        f"restart → {workloads} workloads listed and judged",
        restarted,
        "s",
        note="same Redis: every workload known, nothing to say",
    )
    section.add("bot CPU time until judged, restart", restarted_cpu, "s")
    section.add("bot peak RSS, restart", restarted_rss, "MB")
    reposted = after_restart["calls"].get("chat.postMessage", {}).get("ok", 0) - stats["calls"].get(
        "chat.postMessage", {}
    ).get("ok", 0)
    section.check(
        "posts after the restart besides its probe rollout", reposted - 1, "posts", at_most=0
    )
    section.conditions = {
        "workloads": f"{workloads} Deployments: {routed} in {apps} app namespaces, "
        f"{workloads - routed} in {UNROUTED_NAMESPACES} unrouted namespaces",
        "rollouts": f"{rollouts} (apps of {min(TEAMS, rollouts)} teams, 2 replicas each): "
        f"set_image at {RATE:g}/s, then the controller steps every {STEP_EVERY} s until done",
        "outbox pacing": f"{PACING:g} s per channel, as in production; a channel's two measured "
        f"rollouts start {TEAMS / RATE:g} s apart, so no start waits for the pacing",
        "latency clock": "wall clock (time.time) of the sandbox processes, same machine",
        "CPU used while the measured rollouts started (cores)": cpu,
        "warm-up": f"{len(warm)} rollouts (one per team), stepped to the end, before",
        "set_image of the first → every rollout 'rolled out' in Slack (s)": round(rolled_for, 1),
        "Slack calls": stats["calls"],
        "bot log lines by level": levels,
        "CPU used from start until judged (cores)": start_cpu,
        "the same, restart (cores)": restart_cpu,
        "restart": "the bot stopped after the rollouts and started again on the same Redis; "
        "its probe is another Deployment's rollout",
        "GitLab": "unreachable (the inventory refresh at start fails after its first read)",
    }
    if missing:
        section.conditions["rollouts never announced"] = missing
    if problems:
        section.conditions["bot warnings/errors (first 5)"] = problems
    return section
