"""Settings as the contract names them: defaults, parsing, every problem at once, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import CoreSettings, Settings, describe, describe_all

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
            "setting SLACK_API_URL is invalid: expected a URL with its scheme, like "
            "https://slack.com/api/",
        ),
        (
            {"GITLAB_URL": "gitlab.example.com"},
            "setting GITLAB_URL is invalid: expected a URL with its scheme, like "
            "https://gitlab.example.com",
        ),
        (
            {"GITLAB_URL": "ftp://gitlab.example.com"},
            "setting GITLAB_URL is invalid: expected an http:// or https:// URL, like "
            "https://gitlab.example.com, got ftp://",
        ),
        (
            {"REDIS_URL": "localhost:6379"},
            "setting REDIS_URL is invalid: expected a URL with its scheme, like "
            "redis://host:6379/0, rediss://:password@host:6379/0 or unix:///path/redis.sock",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1:26379"},
            "setting REDIS_URL is invalid: no master name: "
            "redis+sentinel://host:26379[,host:26379…]/<master>[/db]",
        ),
        (
            {"SENTRY_DSN": "o0.ingest.sentry.io/0"},
            "setting SENTRY_DSN is invalid: expected a URL with its scheme, like "
            "https://<key>@o0.ingest.sentry.io/<project>",
        ),
        (
            {"SENTRY_DSN": "https://o0.ingest.sentry.io/0"},
            "setting SENTRY_DSN is invalid: a Sentry DSN carries its key before '@', like "
            "https://<key>@o0.ingest.sentry.io/<project>",
        ),
        (
            {"GITLAB_TOKEN": "glpat-REPLACE-ME"},
            "setting GITLAB_TOKEN is invalid: still holds the placeholder REPLACE-ME from "
            ".env.example",
        ),
        (
            {"CATALOG_PATH": "/nonexistent/catalog.yaml"},
            "setting CATALOG_PATH is invalid: /nonexistent/catalog.yaml: no such file (a "
            "catalog.yaml, or unset to read the GitOps repo's)",
        ),
        (
            {"KUBERNETES_VERSION": "1.2"},
            "setting KUBERNETES_VERSION is invalid: 1.2 has no schemas here; known: ",
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
    assert describe(error.value).startswith(line)
    assert "\n" not in describe(error.value)


def test_every_problem_is_listed_at_once_in_the_order_of_the_env_example() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-REPLACE-ME",
        "SLACK_SIGNING_SECRET": "REPLACE-ME",
        "GITLAB_URL": "gitlab.example.com",
        "REDIS_URL": "localhost:6379",
        "PORT": "http",
    }
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, **env)  # type: ignore[arg-type]
    lines = describe_all(error.value)
    placeholder = "is invalid: still holds the placeholder REPLACE-ME from .env.example"
    assert lines[:2] == [
        f"setting SLACK_BOT_TOKEN {placeholder}",
        f"setting SLACK_SIGNING_SECRET {placeholder}",
    ]
    assert [" ".join(line.split()[:2]) for line in lines] == [
        "setting SLACK_BOT_TOKEN",
        "setting SLACK_SIGNING_SECRET",
        "setting GITLAB_URL",
        "setting GITLAB_TOKEN",
        "setting GITLAB_WEBHOOK_SECRET",
        "setting GITOPS_PROJECT",
        "setting REDIS_URL",
        "setting PORT",
    ]


def test_an_invalid_app_token_is_not_also_reported_as_a_missing_signing_secret() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "SLACK_SIGNING_SECRET"}
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, SLACK_APP_TOKEN="xoxb-1", **env)  # type: ignore[arg-type]
    assert describe_all(error.value) == [
        "setting SLACK_APP_TOKEN is invalid: expected an app-level token starting with xapp-"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis:6379/0",
        "rediss://:pw@redis:6380/1",
        "unix:///run/redis.sock?db=0",
        "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0",
        "redis+cluster://:pw@n1:7000,n2:7001",
    ],
)
def test_redis_urls_of_every_topology_are_accepted_as_settings(url: str) -> None:
    assert CoreSettings(_env_file=None, REDIS_URL=url).redis_url is not None  # type: ignore[call-arg]
