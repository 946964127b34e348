"""Settings: the only place that reads the environment (SPEC section 2).

Names are part of the contract; keep them as written. Secrets are ``SecretStr`` so that they
never reach a log line, a repr or Sentry by accident.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]


def _default_log_format() -> LogFormat:
    return "console" if sys.stderr.isatty() else "json"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _parse_contexts(value: object) -> object:
    """``staging=stg,production=prod`` → ``{"staging": "stg", "production": "prod"}``."""
    if not isinstance(value, str):
        return value
    contexts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        env, sep, context = part.partition("=")
        if not sep or not env.strip() or not context.strip():
            raise ValueError(
                f"expected env=context pairs like staging=stg,production=prod, got {part!r}"
            )
        contexts[env.strip()] = context.strip()
    return contexts


class CoreSettings(BaseSettings):
    """What every command needs: the store, logs and error reporting."""

    # An empty variable (``SENTRY_DSN=`` in a Secret) counts as unset.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    state_dir: Path = Field(default=Path("./var"), validation_alias="STATE_DIR")
    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = Field(
        default="info", validation_alias="LOG_LEVEL"
    )
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = Field(
        default_factory=_default_log_format, validation_alias="LOG_FORMAT"
    )

    @field_validator("redis_url", "sentry_dsn", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class Settings(CoreSettings):
    """Everything ``pitcrew serve`` and ``pitcrew check`` need."""

    slack_bot_token: SecretStr = Field(validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://slack.com/api/"), validation_alias="SLACK_API_URL"
    )
    gitlab_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://gitlab.com"), validation_alias="GITLAB_URL"
    )
    gitlab_token: SecretStr = Field(validation_alias="GITLAB_TOKEN")
    gitlab_webhook_secret: SecretStr = Field(validation_alias="GITLAB_WEBHOOK_SECRET")
    gitops_project: str = Field(min_length=1, validation_alias="GITOPS_PROJECT")
    gitops_branch: str | None = Field(default=None, validation_alias="GITOPS_BRANCH")
    catalog_path: Path | None = Field(default=None, validation_alias="CATALOG_PATH")
    kube_contexts: Annotated[dict[str, str], NoDecode, BeforeValidator(_parse_contexts)] = Field(
        default_factory=dict, validation_alias="KUBE_CONTEXTS"
    )
    kubeconfig: str | None = Field(default=None, validation_alias="KUBECONFIG")
    kube_label_selector: str | None = Field(default=None, validation_alias="KUBE_LABEL_SELECTOR")
    """Watch only workloads with these labels (``appId``, ``team=payments``); unset: all."""
    kubernetes_version: str | None = Field(
        default=None, pattern=r"^v?\d+\.\d+(\.\d+)?$", validation_alias="KUBERNETES_VERSION"
    )
    """The clusters' Kubernetes version, for schema checks of edited manifests (``1.31``);
    unset: the newest version whose schemas Pitcrew ships."""
    release_expiry_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, validation_alias="RELEASE_EXPIRY_HOURS"
    )
    """Hours an unapproved release (or an ``auto`` one whose MR pipeline never finishes) waits
    before its MR is closed."""
    release_pipeline_wait: float = Field(
        default=600.0, gt=0, le=7 * 86400, validation_alias="RELEASE_PIPELINE_WAIT"
    )
    """Seconds to wait for a pipeline GitLab has not started (the merge commit's, or an
    ``auto`` MR's); none by then: go on as if the GitOps repo had none."""
    release_rollout_wait: float = Field(
        default=1800.0, gt=0, le=7 * 86400, validation_alias="RELEASE_ROLLOUT_WAIT"
    )
    """Seconds after the merge by which a watched env must be seen running the new version;
    else the release ends ``not_seen``."""
    port: int = Field(default=3000, ge=0, le=65535, validation_alias="PORT")  # 0: any free port

    @field_validator(
        "slack_signing_secret",
        "slack_app_token",
        "gitops_branch",
        "catalog_path",
        "kubeconfig",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("expected a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("expected an app-level token starting with xapp-")
        return value

    @model_validator(mode="after")
    def _signing_secret_unless_socket_mode(self) -> Settings:
        if self.slack_app_token is None and self.slack_signing_secret is None:
            raise ValueError(
                "setting SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set"
            )
        return self

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def secrets(self) -> list[str]:
        """Every secret value, so that logs and Sentry can scrub them wherever they appear."""
        values = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.gitlab_token,
            self.gitlab_webhook_secret,
            self.redis_url,
            self.sentry_dsn,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


def describe(error: ValidationError) -> str:
    """Turn pydantic's report into one line a person can act on."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    name = loc[0].upper() if loc else ""
    if first["type"] == "missing":
        return f"setting {name} is required"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if not name:
        return message
    return f"setting {name} is invalid: {message}"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def load_core_settings() -> CoreSettings:
    try:
        return CoreSettings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
