"""Watching a second cluster as docs/getting-started.md shows it: each cluster's kubeconfig in its
own file (a mounted Secret), the files joined in ``KUBECONFIG``, both contexts in
``KUBE_CONTEXTS``; ``pitcrew check`` reaches both, and a rollout in either is reported."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import SlackSandbox

from .conftest import bot_environment, drained, eventually
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


async def test_a_workload_deleted_in_one_cluster_while_every_replica_was_down_is_told_once(
    slack: SlackSandbox, redis_url: str, tmp_path: Path, make_bot
) -> None:
    """Two clusters, two replicas: the one deleted in staging while nobody watched is said
    once, by the lease holder; production's, still listed, is not; the replica that takes
    the watch over later lists again and says nothing more."""
    async with KubeSandbox() as production, KubeSandbox() as staging:
        _cluster(production)
        _cluster(staging)
        kubeconfig = ":".join(
            str(sandbox.kubeconfig(tmp_path / f"{context}.config", context=context))
            for sandbox, context in ((production, "prod"), (staging, "staging"))
        )
        settings = {
            "KUBE_CONTEXTS": "production=prod,staging=staging",
            "KUBECONFIG": kubeconfig,
            "lease_ttl": 1.0,
        }

        def watched() -> bool:
            return production.open_watches == 3 and staging.open_watches == 3

        def removed() -> list[str]:
            texts = [slack.read(m) for m in slack.messages("payments-deploys")]
            return [t for t in texts if ":wastebasket:" in t]

        first = make_bot(**settings)
        await first.start()
        try:
            await eventually(watched)
            assert first.store is not None
            redis = first.store.redis
            for context in ("prod", "staging"):  # both remembered before the bot stops
                await eventually(
                    lambda c=context: redis.exists(f"rollouts:{c}/Deployment/orders/orders")
                )
        finally:
            await first.stop()
        await eventually(lambda: production.open_watches == 0 and staging.open_watches == 0)
        staging.delete("deploy", "orders", "orders")

        bots = [make_bot(**settings) for _ in range(2)]
        try:
            for bot in bots:
                await bot.start()
            await eventually(watched)
            await eventually(lambda: len(removed()) == 1)
            for bot in bots:
                await eventually(lambda b=bot: drained(b))
            assert removed() == [
                ":wastebasket: *orders* removed from *staging*: Deployment orders/orders was"
                " deleted (it ran orders:1.4.1)\ncontext staging"
            ]
            # The lease holder goes; the other lists both clusters again and says nothing.
            (leader,) = [b for b in bots if any(w.listed for w in b.watchers)]
            (other,) = [b for b in bots if b is not leader]
            await leader.stop()
            await eventually(lambda: all(w.listed for w in other.watchers), within=15)
            await eventually(watched)
            await eventually(lambda: drained(other))
            assert len(removed()) == 1
        finally:
            for bot in bots:
                await bot.stop()
