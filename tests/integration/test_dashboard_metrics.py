"""The Grafana dashboard of manifests/monitoring asks only for metrics the bot really exports:
checked against the ``/metrics`` of a real ``pitcrew serve``, after some traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.sandbox.slack import SlackSandbox
from tests.unit.test_deploy_options import dashboard_metrics

from .conftest import bot_environment, eventually

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def exported(text: str) -> set[str]:
    """Every series name a scrape of ``text`` gives Prometheus."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


async def test_every_metric_of_the_dashboard_is_on_a_live_metrics_page(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"{url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, within=60, interval=0.1)
            async with http.post(  # some traffic: a refused webhook, counted
                f"{url}/webhooks/gitlab", data=b"{}", headers={"X-Gitlab-Token": "wrong"}
            ) as response:
                assert response.status == 401
            async with http.get(f"{url}/metrics") as response:
                assert response.status == 200
                page = await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)

    names = exported(page)
    wanted = dashboard_metrics()
    assert len(wanted) >= 15
    assert wanted - names == set(), "the dashboard asks for metrics the bot does not export"
    assert 'pitcrew_events_total{outcome="rejected",source="gitlab"} 1.0' in page
