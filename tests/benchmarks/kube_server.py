"""The Kubernetes sandbox in its own process: a cluster of 10,000 Deployments is real work to
serve, and the bench's own loop must not slow the watch it measures.

``python -m tests.benchmarks.kube_server`` starts ``KubeSandbox`` and a small bench server, prints
one JSON line (``control_url``) and serves until SIGTERM. Bench endpoints (JSON bodies):

* ``POST /bench/bulk``: ``{"batches": [{count, namespaces, name_prefix, replicas}]}``.
* ``POST /bench/kubeconfig``: ``{"path", "context"}`` writes a kubeconfig pointing here.
* ``GET /bench/watches``: how many watch connections are open.
* ``POST /bench/set_image``: ``{"items": [[namespace, name, image]], "rate": per_second}`` changes
  each Deployment's (only) container image, at that rate; answers the wall-clock time of each
  change, which is the moment its watch event is emitted.
* ``POST /bench/step``: ``{"count": n}`` runs the controller ``n`` times; answers the writes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from aiohttp import web

from bot.sandbox.kube import KubeSandbox


def control_app(kube: KubeSandbox) -> web.Application:
    async def bulk(request: web.Request) -> web.Response:
        spec = await request.json()
        made: list[tuple[str, str]] = []
        for batch in spec["batches"]:
            made += kube.bulk_add_deployments(
                int(batch["count"]),
                namespaces=batch.get("namespaces"),
                name_prefix=batch.get("name_prefix", "svc"),
                replicas=int(batch.get("replicas", 2)),
            )
        return web.json_response({"made": made})

    async def kubeconfig(request: web.Request) -> web.Response:
        spec = await request.json()
        kube.kubeconfig(spec["path"], context=spec.get("context", "sandbox"))
        return web.json_response({"ok": True})

    async def watches(request: web.Request) -> web.Response:
        return web.json_response({"open": kube.open_watches})

    async def set_image(request: web.Request) -> web.Response:
        spec = await request.json()
        interval = 1.0 / float(spec.get("rate") or 1e9)
        times: list[float] = []
        started = time.monotonic()
        for index, (namespace, name, image) in enumerate(spec["items"]):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            times.append(time.time())
            kube.set_image("Deployment", namespace, name, name, image)
        return web.json_response({"times": times})

    async def step(request: web.Request) -> web.Response:
        spec = await request.json()
        writes = sum(kube.step() for _ in range(int(spec.get("count", 1))))
        return web.json_response({"writes": writes})

    app = web.Application()
    app.router.add_post("/bench/bulk", bulk)
    app.router.add_post("/bench/kubeconfig", kubeconfig)
    app.router.add_get("/bench/watches", watches)
    app.router.add_post("/bench/set_image", set_image)
    app.router.add_post("/bench/step", step)
    return app


async def main() -> None:
    kube = KubeSandbox(bookmark_interval=30.0)
    await kube.start()
    runner = web.AppRunner(control_app(kube), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"control_url": f"http://127.0.0.1:{port}"}), flush=True)
    await stop.wait()
    await runner.cleanup()
    await kube.stop()


if __name__ == "__main__":
    asyncio.run(main())
