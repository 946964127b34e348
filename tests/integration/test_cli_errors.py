"""A first hour without surprises: every mistake an operator makes with ``pitcrew serve``,
``check``, ``audit`` and ``demo`` is answered with exit code 2 and one line per problem, all of
them at once, and never a traceback."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from bot.demo import SCENES
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import SlackSandbox

from .conftest import bot_environment
from .test_cli import _pitcrew

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "still holds the placeholder REPLACE-ME from .env.example"


def _one_line_each(err: str) -> list[str]:
    """stderr as its lines, after checking that each is a ``pitcrew:`` line, not a trace."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "no error at all"
    assert all(line.startswith("pitcrew: ") for line in lines), err
    return [line.removeprefix("pitcrew: ") for line in lines]


async def test_serve_with_nothing_set_names_every_required_setting_at_once(
    tmp_path: Path,
) -> None:
    code, out, err = await _pitcrew("serve", env={}, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert _one_line_each(err) == [
        "setting SLACK_BOT_TOKEN is required",
        "setting SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set",
        "setting GITLAB_TOKEN is required",
        "setting GITLAB_WEBHOOK_SECRET is required",
        "setting GITOPS_PROJECT is required",
    ]


@pytest.mark.parametrize("command", ["serve", "check"])
async def test_the_env_example_as_copied_is_refused_for_its_placeholders(
    tmp_path: Path, command: str
) -> None:
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    code, out, err = await _pitcrew(command, env={}, cwd=tmp_path)
    assert code == 2
    expected = [
        f"setting SLACK_BOT_TOKEN is invalid: {PLACEHOLDER}",
        f"setting SLACK_SIGNING_SECRET is invalid: {PLACEHOLDER}",
        f"setting GITLAB_TOKEN is invalid: {PLACEHOLDER}",
        f"setting GITLAB_WEBHOOK_SECRET is invalid: {PLACEHOLDER}",
    ]
    if command == "serve":
        assert _one_line_each(err) == expected
    else:  # check prints its table, one FAIL row per problem
        assert err == ""
        assert out.splitlines() == [
            *(f"FAIL  settings  {line}" for line in expected),
            "4 check(s) failed",
        ]
    assert not (tmp_path / "var").exists(), "nothing is started before the settings are right"


@pytest.mark.parametrize("command", ["serve", "check"])
async def test_urls_without_a_scheme_are_named_together(
    slack: SlackSandbox, redis_url: str, tmp_path: Path, command: str
) -> None:
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "REDIS_URL": "localhost:6379",
        "GITLAB_URL": "gitlab.example.com",
        "SENTRY_DSN": "https://o0.ingest.sentry.io/0",
    }
    code, out, err = await _pitcrew(command, env=env, cwd=tmp_path)
    assert code == 2
    problems = (
        _one_line_each(err)
        if command == "serve"
        else [line.removeprefix("FAIL  settings  ") for line in out.splitlines()[:-1]]
    )
    assert problems == [
        "setting GITLAB_URL is invalid: expected a URL with its scheme, like "
        "https://gitlab.example.com",
        "setting REDIS_URL is invalid: expected a URL with its scheme, like "
        "redis://host:6379/0, rediss://:password@host:6379/0 or unix:///path/redis.sock",
        "setting SENTRY_DSN is invalid: a Sentry DSN carries its key before '@', like "
        "https://<key>@o0.ingest.sentry.io/<project>",
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+sentinel://:pw@127.0.0.1:9,127.0.0.1:10/mymaster/0",
         "redis+sentinel://127.0.0.1:9,127.0.0.1:10/mymaster/0"),
        ("redis+cluster://:pw@127.0.0.1:9,127.0.0.1:10", "redis+cluster://127.0.0.1:9,127.0.0.1:10"),
    ],
)  # fmt: skip
async def test_sentinels_or_a_cluster_nobody_answers_for_are_named_without_the_password(
    slack: SlackSandbox, redis_url: str, tmp_path: Path, url: str, shown: str
) -> None:
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "REDIS_URL": url,
    }
    code, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("FAIL  redis")]
    assert shown in line
    assert "pw" not in out


async def test_replicas_to_wait_for_need_a_redis_with_replicas(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "REDIS_URL": "",
        "REDIS_MIN_REPLICAS": "1",
    }
    code, _, err = await _pitcrew("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert _one_line_each(err) == [
        "setting REDIS_MIN_REPLICAS=1 needs REDIS_URL: the embedded Redis has no replicas"
    ]


async def test_kubernetes_contexts_are_checked_against_the_kubeconfig_before_start(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    async with KubeSandbox() as kube:
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", context="prod")
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "KUBECONFIG": str(kubeconfig),
            "KUBE_CONTEXTS": "production=prod,staging=stg,dev=in-cluster",
        }
        code, _, err = await _pitcrew("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert _one_line_each(err) == [
        "setting KUBE_CONTEXTS: dev=in-cluster, but this process runs in no Kubernetes pod (no"
        " service account token): name a kubeconfig context instead",
        f"setting KUBE_CONTEXTS: staging=stg, but the kubeconfig ({kubeconfig}) has no context"
        " stg (it has: prod)",
    ]


async def test_a_port_already_taken_is_one_line(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "PORT": str(port),
            "LOG_LEVEL": "warning",
        }
        code, _, err = await _pitcrew("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert _one_line_each(err) == [
        f"cannot listen on port {port}: Address already in use (setting PORT)"
    ]


async def test_check_lists_each_catalog_problem_on_its_own_row_and_no_library_noise(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "teams:\n  payments:\n    channel: payments\n"
        "environments:\n  - name: staging\n    policy: auto\n    approvals: 2\n"
        "apps:\n  orders:\n    team: paymnts\n    source: https://gitlab.com/shop/orders\n"
        "    image: registry.example.com/shop/orders:1.0\n"
        "    manifests: apps/orders/deployment.yaml\n"
    )
    async with KubeSandbox() as kube:
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", context="prod")
    # The sandbox is gone: its API server refuses connections, as a cluster that is down.
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "CATALOG_PATH": str(catalog),
        "KUBECONFIG": str(kubeconfig),
        "KUBE_CONTEXTS": "production=prod",
    }
    code, out, err = await _pitcrew("check", env=env, cwd=tmp_path)
    assert code == 1
    assert err == "", "urllib3's retry warnings and other library noise stay off the terminal"
    rows = [line for line in out.splitlines() if line.startswith("FAIL  catalog")]
    assert [row.split(": ", 2)[1] for row in rows] == [
        "teams.payments.channel",
        "environments[0].approvals",
        "apps.orders.team",
        "apps.orders.source",
        "apps.orders.image",
        "apps.orders.manifests",
    ]
    assert f"{catalog}:10: apps.orders.team: unknown team" in out
    assert any(
        line.startswith("FAIL  kubernetes production") and "unreachable" in line
        for line in out.splitlines()
    )


async def test_serve_lists_every_catalog_problem_on_its_own_line(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "teams:\n  payments:\n    channel: payments\n"
        "environments:\n  - name: staging\n    policy: auto\n"
        "apps:\n  orders:\n    team: paymnts\n    source: shop/orders\n"
        "    image: registry.example.com/shop/orders:1.0\n"
        "    manifests: apps/orders/{env}/deployment.yaml\n"
    )
    env = {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "CATALOG_PATH": str(catalog),
        "LOG_LEVEL": "warning",
    }
    code, _, err = await _pitcrew("serve", env=env, cwd=tmp_path)
    assert code == 2
    problems = _one_line_each(err)
    assert [p.split(": ")[1] for p in problems] == [f"{catalog}:3", f"{catalog}:9", f"{catalog}:11"]
    assert all(p.startswith("catalog: ") for p in problems)
    assert 'apps.orders.team: unknown team "paymnts"' in problems[1]


async def test_audit_never_starts_an_empty_store_of_its_own(tmp_path: Path) -> None:
    code, out, err = await _pitcrew("audit", env={}, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert _one_line_each(err) == [
        "no audit log here: REDIS_URL is unset and STATE_DIR (var) holds no Pitcrew data; run"
        " this with the same REDIS_URL or STATE_DIR as pitcrew serve"
    ]
    assert not (tmp_path / "var").exists()


async def test_audit_reads_the_embedded_store_a_bot_left_in_state_dir(tmp_path: Path) -> None:
    from bot.adapters.store.audit import RedisAuditLog
    from bot.adapters.store.connection import open_store
    from bot.services.ports import AuditEntry

    state_dir = tmp_path / "state"
    store = open_store(redis_url=None, state_dir=state_dir)
    await RedisAuditLog(store.redis).record(
        AuditEntry(at=1.0e9, actor="U0ALICE", action="lock", env="production", detail="freeze")
    )
    await store.close()  # as a bot that stopped: its data stays in STATE_DIR
    code, out, err = await _pitcrew("audit", env={"STATE_DIR": str(state_dir)}, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert "U0ALICE" in out.splitlines()[1]


async def test_audit_with_redis_unreachable_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {"REDIS_URL": f"redis://:s3cr3t@127.0.0.1:{port}/0"}
    code, out, err = await _pitcrew("audit", env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert _one_line_each(err) == [f"Redis at redis://127.0.0.1:{port}/0 is not reachable"]


async def test_audit_lists_a_bad_setting_and_a_bad_since_together(tmp_path: Path) -> None:
    env = {"REDIS_URL": "localhost:6379", "LOG_LEVEL": "loud"}
    code, _, err = await _pitcrew("audit", "--since", "soon", env=env, cwd=tmp_path)
    assert code == 2
    problems = _one_line_each(err)
    assert [p.split(":")[0] for p in problems] == [
        "setting REDIS_URL is invalid",
        "setting LOG_LEVEL is invalid",
        "--since 'soon'",
    ]


async def test_demo_names_every_unknown_scene(tmp_path: Path) -> None:
    code, out, err = await _pitcrew("demo", "locks", "lokcs", "deploy", env={}, cwd=tmp_path)
    assert (code, out) == (2, "")
    problems = _one_line_each(err)
    assert [p.split(";")[0] for p in problems] == ["no scene 'lokcs'", "no scene 'deploy'"]
    assert problems[0].endswith(f"scenes are: {', '.join(SCENES)}")
