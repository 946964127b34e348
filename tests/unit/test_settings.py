"""Settings as SPEC section 2 names them: defaults, parsing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, describe

REQUIRED = {
    "SLACK_BOT_TOKEN": "xoxb-1-2-3",
    "SLACK_SIGNING_SECRET": "s3cr3t-signing",
    "GITLAB_TOKEN": "glpat-s3cr3t",
    "GITLAB_WEBHOOK_SECRET": "s3cr3t-hook",
    "GITOPS_PROJECT": "platform/deployments",
}


def _settings(**env: str) -> Settings:
    return Settings(_env_file=None, **{**REQUIRED, **env})  # type: ignore[arg-type]


def test_defaults_follow_the_spec() -> None:
    settings = _settings(LOG_FORMAT="json")
    assert str(settings.slack_api_url) == "https://slack.com/api/"
    assert str(settings.gitlab_url) == "https://gitlab.com/"
    assert settings.port == 3000
    assert settings.state_dir == Path("./var")
    assert settings.redis_url is None
    assert settings.kube_contexts == {}
    assert settings.log_level == "info"
    assert settings.gitops_branch is None
    assert settings.catalog_path is None
    assert not settings.socket_mode


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("staging=stg,production=prod", {"staging": "stg", "production": "prod"}),
        (" staging = stg , ", {"staging": "stg"}),
        ("production=in-cluster", {"production": "in-cluster"}),
        ("", {}),
    ],
)
def test_kube_contexts_map_environments_to_contexts(raw: str, parsed: dict[str, str]) -> None:
    assert _settings(KUBE_CONTEXTS=raw).kube_contexts == parsed


def test_secrets_never_show_in_a_repr() -> None:
    settings = _settings(REDIS_URL="redis://:hunter2@redis:6379/0")
    shown = repr(settings) + str(settings.model_dump())
    for secret in (*REQUIRED.values(), "hunter2"):
        if secret in ("platform/deployments",):
            continue
        assert secret not in shown
    assert "hunter2" in " ".join(settings.secrets)


def test_socket_mode_needs_no_signing_secret() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "SLACK_SIGNING_SECRET"}
    settings = Settings(_env_file=None, SLACK_APP_TOKEN="xapp-1", **env)  # type: ignore[arg-type]
    assert settings.socket_mode


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"SLACK_BOT_TOKEN": None}, "setting SLACK_BOT_TOKEN is required"),
        ({"GITOPS_PROJECT": None}, "setting GITOPS_PROJECT is required"),
        (
            {"SLACK_SIGNING_SECRET": None},
            "setting SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set",
        ),
        (
            {"SLACK_APP_TOKEN": "xoxb-wrong"},
            "setting SLACK_APP_TOKEN is invalid: expected an app-level token starting with xapp-",
        ),
        ({"PORT": "70000"}, "setting PORT is invalid: Input should be less than or equal to 65535"),
        (
            {"SLACK_API_URL": "not a url"},
            "setting SLACK_API_URL is invalid: Input should be a "
            "valid URL, relative URL without a base",
        ),
        (
            {"LOG_FORMAT": "xml"},
            "setting LOG_FORMAT is invalid: Input should be 'json' or 'console'",
        ),
    ],
)
def test_a_bad_setting_is_described_in_one_line(env: dict[str, str | None], line: str) -> None:
    values = {**REQUIRED, **env}
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, **{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]
    assert describe(error.value) == line
