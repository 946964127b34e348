"""Settings: the only place that reads the environment.

Names are part of the contract; keep them as written. Secrets are ``SecretStr`` so that they
never reach a log line, a repr or Sentry by accident.

Every setting is checked before anything starts, and every problem is reported at once, one line
each (``SettingsError.problems``): a person fixing a ``.env`` learns everything in one run, not
one variable per run. Values still holding ``.env.example``'s ``REPLACE-ME`` are refused, URLs
need their scheme, and ``REDIS_URL`` is read by ``bot.redis_url``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.redis_url import parse_redis_url

ORDER = [
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "GITLAB_URL",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "GITOPS_PROJECT",
    "GITOPS_BRANCH",
    "CATALOG_PATH",
    "REDIS_URL",
    "STATE_DIR",
    "KUBE_CONTEXTS",
    "KUBECONFIG",
    "KUBE_LABEL_SELECTOR",
    "KUBERNETES_VERSION",
]
"""Problems are listed in the order of ``.env.example``; settings not named here come after."""

PLACEHOLDER = "REPLACE-ME"
"""What ``.env.example`` and ``secret.example.yaml`` put where a real value must go."""

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]


def _default_log_format() -> LogFormat:
    return "console" if sys.stderr.isatty() else "json"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _problem(message: str) -> PydanticCustomError:
    # Our own error type, so that the message reaches people without "Value error, ".
    return PydanticCustomError("setting", message)


def _no_placeholder(value: object) -> object:
    if isinstance(value, str) and PLACEHOLDER.lower() in value.lower():
        raise _problem(f"still holds the placeholder {PLACEHOLDER} from .env.example")
    return value


_HTTP_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def _http_url(value: object, *, example: str) -> object:
    """``AnyHttpUrl``, with answers for the usual mistakes instead of pydantic's."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "://" not in text:
        raise _problem(f"expected a URL with its scheme, like {example}")
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise _problem(f"expected an http:// or https:// URL, like {example}, got {scheme}://")
    try:
        return _HTTP_URL.validate_python(text)
    except ValidationError:
        raise _problem(f"not a valid URL, expected one like {example}") from None


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
    redis_min_replicas: int = Field(default=0, ge=0, le=16, validation_alias="REDIS_MIN_REPLICAS")
    """Replicas that must have a write (``WAIT``) before a webhook, command or click is
    acknowledged; 0: acknowledge once the primary has it."""
    state_dir: Path = Field(default=Path("./var"), validation_alias="STATE_DIR")
    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = Field(
        default="info", validation_alias="LOG_LEVEL"
    )
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = Field(
        default_factory=_default_log_format, validation_alias="LOG_FORMAT"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_placeholder(cls, value: object) -> object:
        return _no_placeholder(value)

    @field_validator("redis_url", "sentry_dsn", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_redis_url(value.get_secret_value())
            except ValueError as exc:
                raise _problem(str(exc)) from None
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        example = "https://<key>@o0.ingest.sentry.io/<project>"
        url = _http_url(value.get_secret_value(), example=example)
        if isinstance(url, AnyHttpUrl) and not url.username:
            raise _problem(f"a Sentry DSN carries its key before '@', like {example}")
        return value


class Settings(CoreSettings):
    """Everything ``pitcrew serve`` and ``pitcrew check`` need."""

    slack_bot_token: SecretStr = Field(validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    # Checked even when unset (validate_default): required unless SLACK_APP_TOKEN is set.
    slack_signing_secret: SecretStr | None = Field(
        default=None, validate_default=True, validation_alias="SLACK_SIGNING_SECRET"
    )
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
    autopilot_interval: float = Field(
        default=3600.0, gt=0, le=7 * 86400, validation_alias="AUTOPILOT_INTERVAL"
    )
    """Seconds between two reconciles of the autopilot (also run at start): each app's newest
    version tag against each ``auto_deploy`` env, for lost webhooks and tags pushed while
    Pitcrew was down."""
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

    @field_validator("slack_api_url", mode="before")
    @classmethod
    def _slack_api_url(cls, value: object) -> object:
        return _http_url(value, example="https://slack.com/api/")

    @field_validator("gitlab_url", mode="before")
    @classmethod
    def _gitlab_url(cls, value: object) -> object:
        return _http_url(value, example="https://gitlab.example.com")

    @field_validator("catalog_path")
    @classmethod
    def _catalog_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            what = "a directory" if value.is_dir() else "no such file"
            raise _problem(f"{value}: {what} (a catalog.yaml, or unset to read the GitOps repo's)")
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _known_kubernetes(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from kubernetes_validate.utils import all_versions

        versions = list(all_versions())
        wanted = value.removeprefix("v")
        if not any(v == wanted or v.startswith(f"{wanted}.") for v in versions):
            raise _problem(f"{value} has no schemas here; known: {versions[0]} to {versions[-1]}")
        return value

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

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret_unless_socket_mode(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # An invalid SLACK_APP_TOKEN is reported on its own line, not as a missing secret too.
        app_token_valid = "slack_app_token" in info.data
        if value is None and app_token_valid and info.data["slack_app_token"] is None:
            raise _problem("required unless SLACK_APP_TOKEN is set")
        return value

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
    """Settings are missing or malformed: ``problems`` has one line per variable, in the order
    of ``.env.example``, each naming the variable (never its value)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def describe_all(error: ValidationError) -> list[str]:
    """Turn pydantic's report into lines a person can act on, one per variable."""
    lines: dict[str, str] = {}
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item.get("loc", ())]
        name = loc[0].upper() if loc else ""
        if name in lines:
            continue  # one line per variable: the first thing wrong with it
        lines[name] = _line(name, item)
    ranked = sorted(lines, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    return [lines[name] for name in ranked]


def describe(error: ValidationError) -> str:
    """The first problem only, for callers that have room for one line."""
    return describe_all(error)[0]


def _line(name: str, item: Any) -> str:
    if item["type"] == "missing":
        return f"setting {name} is required"
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    if item["type"] == "setting" and message.startswith("required"):
        return f"setting {name} is {message}"
    return f"setting {name} is invalid: {message}" if name else message


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_all(exc)) from None


def load_core_settings() -> CoreSettings:
    try:
        return CoreSettings()
    except ValidationError as exc:
        raise SettingsError(describe_all(exc)) from None
