"""Watching a second cluster as docs/getting-started.md shows it: each cluster's kubeconfig in its
own file (a mounted Secret), the files joined in ``KUBECONFIG``, both contexts in
``KUBE_CONTEXTS``; ``pitcrew check`` reaches both, and a rollout in either is reported."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import SlackSandbox

from .conftest import bot_environment, eventually
from .test_cli import _pitcrew

IMAGE = "registry.example.com/shop/orders"


def _cluster(sandbox: KubeSandbox) -> None:
    sandbox.add_namespace("orders", {"appId": "orders"})
    sandbox.add_deployment(
        "orders", "orders", image=f"{IMAGE}:1.4.1", replicas=2, labels={"appId": "orders"}
    )


async def test_two_clusters_from_two_kubeconfig_files(
    slack: SlackSandbox, redis_url: str, tmp_path: Path, make_bot
) -> None:
    async with KubeSandbox() as production, KubeSandbox() as staging:
        _cluster(production)
        _cluster(staging)
        for secret in ("production", "staging"):  # where each Secret is mounted
            (tmp_path / secret).mkdir()
        mounted = [
            production.kubeconfig(tmp_path / "production" / "config", context="prod"),
            staging.kubeconfig(tmp_path / "staging" / "config", context="staging"),
        ]
        kubeconfig = ":".join(str(p) for p in mounted)
        contexts = "production=prod,staging=staging"
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "KUBECONFIG": kubeconfig,
            "KUBE_CONTEXTS": contexts,
        }
        _, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
        rows = [line for line in out.splitlines() if line.startswith("ok    kubernetes")]
        assert [row.split()[2] for row in rows] == ["production", "staging"]

        bot = make_bot(KUBE_CONTEXTS=contexts, KUBECONFIG=kubeconfig, lease_ttl=1.0)
        await bot.start()
        try:
            await eventually(lambda: production.open_watches == 3 and staging.open_watches == 3)
            staging.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
            for _ in range(40):
                if not staging.step():
                    break
            await eventually(
                lambda: any(
                    "rolled out in *staging*" in slack.read(m)
                    for m in slack.messages("payments-deploys")
                ),
                within=20,
            )
        finally:
            await bot.stop()
