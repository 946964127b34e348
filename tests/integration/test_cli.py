"""The ``pitcrew`` command as an operator runs it: one-line errors, exit codes, the check table."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.sandbox.slack import SlackSandbox

from .conftest import bot_environment


async def _pitcrew(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**base, "PYTHONPATH": str(Path(__file__).parents[2]), **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_serve_without_the_bot_token_names_it_and_exits_2(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    del env["SLACK_BOT_TOKEN"]
    code, out, err = await _pitcrew("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert err == "pitcrew: setting SLACK_BOT_TOKEN is required\n"
    assert out == ""


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "http", "pitcrew: setting PORT is invalid: Input should be a valid integer"),
        (
            "KUBE_CONTEXTS",
            "production",
            "pitcrew: setting KUBE_CONTEXTS is invalid: expected env=context pairs like "
            "staging=stg,production=prod, got 'production'",
        ),
        (
            "SLACK_BOT_TOKEN",
            "xoxp-user-token",
            "pitcrew: setting SLACK_BOT_TOKEN is invalid: expected a bot token starting with xoxb-",
        ),
        ("LOG_LEVEL", "loud", "pitcrew: setting LOG_LEVEL is invalid: Input should be"),
    ],
)
async def test_a_malformed_setting_is_named_in_one_line(
    slack: SlackSandbox, redis_url: str, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    code, _, err = await _pitcrew("serve", env={**env, variable: value}, cwd=tmp_path)
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1


async def test_settings_are_read_from_a_dot_env_file(slack: SlackSandbox, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-dot-env\n")
    code, _, err = await _pitcrew("serve", env={}, cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [  # the token itself was found
        "pitcrew: setting SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set",
        "pitcrew: setting GITLAB_TOKEN is required",
        "pitcrew: setting GITLAB_WEBHOOK_SECRET is required",
        "pitcrew: setting GITOPS_PROJECT is required",
    ]


async def test_an_invalid_catalog_stops_start_up_with_file_and_line(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "teams:\n  payments:\n    channel: '#payments'\n"
        "environments:\n  - name: staging\n    policy: auto\n"
        "apps:\n  orders:\n    team: paymnts\n    source: shop/orders\n"
        "    image: registry.example.com/shop/orders\n"
        "    manifests: apps/orders/{env}/deployment.yaml\n"
    )
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    code, _, err = await _pitcrew("serve", env={**env, "CATALOG_PATH": str(catalog)}, cwd=tmp_path)
    assert code == 2
    assert err.startswith("pitcrew: catalog: ")
    assert f"{catalog}:9: apps.orders.team: unknown team" in err
    assert "Traceback" not in err


async def test_check_prints_a_table_and_fails_on_an_unreachable_gitlab(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    code, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("ok    settings")
    assert any(line.startswith("ok    catalog") and "3 apps" in line for line in lines)
    assert any(line.startswith("ok    redis") for line in lines)
    assert any(line.startswith("ok    slack") and "pitcrew" in line for line in lines)
    assert any(line.startswith("FAIL  gitlab") and "unreachable" in line for line in lines)
    assert any(line.startswith("ok    kubernetes") and "off" in line for line in lines)
    assert lines[-1] == "1 check(s) failed"
    assert slack.bot_token not in out


async def test_check_reports_a_refused_slack_token(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    env["SLACK_BOT_TOKEN"] = "xoxb-revoked"
    code, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    assert code == 1
    assert "FAIL  slack       auth.test: invalid_auth" in out


async def test_check_passes_when_every_connection_works(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    from bot.sandbox.gitlab import GitLabSandbox
    from bot.sandbox.kube import KubeSandbox

    async with GitLabSandbox(tmp_path / "gitlab") as gitlab, KubeSandbox() as kube:
        gitlab.add_project("platform/deployments")
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", context="prod")
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "GITLAB_URL": gitlab.url,
            "KUBE_CONTEXTS": "production=prod",
            "KUBECONFIG": str(kubeconfig),
        }
        code, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    assert code == 0, out
    lines = out.splitlines()
    assert any(
        line.startswith("ok    gitlab") and "platform/deployments readable" in line
        for line in lines
    )
    assert any(line.startswith("ok    kubernetes production") for line in lines)
    assert lines[-1] == "all checks passed"
