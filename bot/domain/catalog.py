"""The catalog: who owns which app, where its notifications go, how each environment releases.

People write it in the GitOps repo and the bot re-reads it every few minutes, so it is validated
strictly (an unknown key is an error, not a silently ignored typo) and every problem is named by
file, line and field: ``catalog.yaml:12: apps.orders.team: unknown team "paymnts" (...)``.

Two layers, for two audiences:

- the models (``Team``, ``Environment``, ``App``, ``Catalog``) are what the rest of the bot uses;
  built directly, they still refuse inconsistent data (with pydantic's ``ValidationError``);
- ``parse_catalog`` reads YAML text and reports *every* problem at once as a ``CatalogError``,
  with lines taken from ruamel.yaml's round-trip node positions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from bot.domain import durations
from bot.domain.errors import PitcrewError
from bot.domain.pipelines import PipelineStatus
from bot.domain.schedules import (
    MAX_FREEZE,
    Schedule,
    ScheduleError,
    check_cron,
    check_zone,
    format_duration,
    parse_duration,
)
from bot.domain.versions import DEFAULT_VERSIONS

__all__ = [
    "DEFAULT_BRANCH",
    "TAGS",
    "Access",
    "App",
    "Catalog",
    "CatalogError",
    "CatalogProblem",
    "Digest",
    "Environment",
    "Freeze",
    "ManifestKind",
    "NotInCatalogError",
    "NotifyFilter",
    "People",
    "PipelineSource",
    "Policy",
    "Promotion",
    "Team",
    "parse_catalog",
]

# --------------------------------------------------------------------------------------------
# Vocabulary

Policy = Literal["auto", "manual"]

PipelineSource = Literal[
    "push",
    "web",
    "api",
    "trigger",
    "schedule",
    "pipeline",
    "parent_pipeline",
    "merge_request_event",
    "external",
    "external_pull_request_event",
    "chat",
    "webide",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
    "security_orchestration_policy",
    "container_registry_push",
]

ManifestKind = Literal["workload", "kustomization", "helm_values"]
"""How the version is written in an app's manifest file (SPEC section 3, cases a, b, c)."""

DEFAULT_BRANCH = "$default"
"""In ``notify.refs``: the project's default branch, whatever it is called."""
TAGS = "$tags"
"""In ``notify.refs``: any tag."""

_REF_KEYWORDS = (DEFAULT_BRANCH, TAGS)
_KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
_TOP_KEYS = ("teams", "environments", "apps", "access")
_EXTENSION_PREFIX = "x-"  # top-level keys that only hold YAML anchors, as in compose files
_MAX_LISTED = 10
_MAX_VALUES = 100_000
"""Aliases can make a small file expand to billions of values; real catalogs stay far below."""

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CHANNEL_NAME = re.compile(r"#[^\sA-Z#,.@]{1,80}")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]*")
_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
_PROJECT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+")
_IMAGE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*")
_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*)" with value')
_VERSION_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def _unknown(what: str, value: str, known: Sequence[str], *, plural: str | None = None) -> str:
    """One wording for every "no such thing", so that people learn to read it once."""
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    if close:
        hint = f'did you mean "{close[0]}"?'
    elif not known:
        hint = f"no {plural or what + 's'} are defined"
    else:
        listed = ", ".join(known[:_MAX_LISTED]) + (", …" if len(known) > _MAX_LISTED else "")
        hint = f"{plural or what + 's'}: {listed}"
    return f'unknown {what} "{value}" ({hint})'


def _invalid(message: str) -> PydanticCustomError:
    # Our own error type, so the message reaches people without pydantic's "Value error, ".
    return PydanticCustomError("catalog", message)


def _choice(what: str, plural: str, choices: Sequence[str]) -> BeforeValidator:
    """A Literal check that answers a typo with a did-you-mean rather than pydantic's list."""

    def check(value: object) -> object:
        if isinstance(value, str) and value not in choices:
            raise _invalid(_unknown(what, value, choices, plural=plural))
        return value

    return BeforeValidator(check)


# --------------------------------------------------------------------------------------------
# Field types


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _invalid(
            f'"{value}" is not a valid name: use lowercase letters, digits and "-", '
            "start and end with a letter or digit, at most 63 characters"
        )
    return value


def _check_channel(value: str) -> str:
    if _CHANNEL_NAME.fullmatch(value) or _CHANNEL_ID.fullmatch(value):
        return value
    if _CHANNEL_NAME.fullmatch("#" + value):
        raise _invalid(f'channel names start with "#": write "#{value}", in quotes')
    raise _invalid(
        f'"{value}" is neither a channel name ("#payments-deploys") nor a channel ID ("C0123ABCD")'
    )


def _check_person(value: str) -> str:
    if _HANDLE.fullmatch(value) or _SLACK_ID.fullmatch(value):
        return value
    raise _invalid(
        f'"{value}" is neither a Slack user group handle ("@sre-oncall") '
        'nor a user or user group ID ("U0123ABCD")'
    )


def _one_or_many(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _one_mapping_or_many(value: object) -> object:
    return (value,) if isinstance(value, Mapping) else value


def _check_cron(value: str) -> str:
    try:
        return check_cron(value)
    except ScheduleError as exc:
        raise _invalid(str(exc)) from None


def _check_zone(value: str) -> str:
    try:
        return check_zone(value)
    except ScheduleError as exc:
        raise _invalid(str(exc)) from None


def _check_duration(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return value  # pydantic says what it expected
    if isinstance(value, int):
        raise _invalid(f'{value} has no unit: write the duration like "63h", "2d" or "90m"')
    try:
        duration = parse_duration(value)
    except ScheduleError as exc:
        raise _invalid(str(exc)) from None
    if duration > MAX_FREEZE:
        raise _invalid(
            f'"{value}" is longer than a week ({format_duration(MAX_FREEZE)}): a freeze that'
            " long is a lock someone should hold by hand"
        )
    return duration


def _check_versions(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise _invalid(f'"{value}" is not a regular expression that compiles: {exc}') from None
    return value


def _check_ref(value: str) -> str:
    if value.startswith("$"):
        if value not in _REF_KEYWORDS:
            raise _invalid(_unknown("ref keyword", value, _REF_KEYWORDS, plural="keywords"))
    elif not value or any(c.isspace() for c in value):
        raise _invalid(f'"{value}" is not a branch or tag glob ("release/*")')
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Channel = Annotated[str, AfterValidator(_check_channel)]
Person = Annotated[str, AfterValidator(_check_person)]
People = Annotated[tuple[Person, ...], BeforeValidator(_one_or_many), Field(min_length=1)]
"""User group handles (``@sre-oncall``) and user or group IDs; a single string is one entry."""
RefPattern = Annotated[str, AfterValidator(_check_ref)]
Status = Annotated[PipelineStatus, _choice("status", "statuses", get_args(PipelineStatus))]
CronText = Annotated[str, AfterValidator(_check_cron)]
"""Five fields (minute hour day month weekday), read in the schedule's ``timezone``."""
TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
FreezeDuration = Annotated[timedelta, BeforeValidator(_check_duration)]
Source = Annotated[PipelineSource, _choice("source", "sources", get_args(PipelineSource))]


def _countable_people(people: Sequence[str]) -> set[str] | None:
    """The distinct users listed, or None when a group makes their number unknowable offline."""
    if all(_SLACK_ID.fullmatch(p) and not p.startswith("S") for p in people):
        return set(people)
    return None


def _people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


# --------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NotifyFilter(_Model):
    """Which of a team's GitLab pipelines get a Slack message.

    A pipeline is reported when its source is allowed and either its ref is one of ``refs``
    (every pipeline there is worth seeing) or its status is one of ``statuses`` (worth seeing
    wherever it happens). The defaults say: the default branch, tags, and failures anywhere.
    The filter decides when a pipeline's message *starts*; once posted, it follows the pipeline.
    """

    refs: Annotated[tuple[RefPattern, ...], BeforeValidator(_one_or_many)] = (
        DEFAULT_BRANCH,
        TAGS,
    )
    statuses: Annotated[tuple[Status, ...], BeforeValidator(_one_or_many)] = ("failed",)
    sources: Annotated[tuple[Source, ...], BeforeValidator(_one_or_many)] | None = None
    """``None``: pipelines of every source."""

    def wants(
        self, *, ref: str, tag: bool, default_branch: str | None, status: str, source: str
    ) -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        return status in self.statuses or self.covers_ref(
            ref=ref, tag=tag, default_branch=default_branch
        )

    def covers_ref(self, *, ref: str, tag: bool, default_branch: str | None) -> bool:
        for pattern in self.refs:
            if pattern == DEFAULT_BRANCH:
                hit = not tag and ref == default_branch
            elif pattern == TAGS:
                hit = tag
            else:
                hit = fnmatchcase(ref, pattern)
            if hit:
                return True
        return False


class Digest(_Model):
    """When the team's weekly delivery digest (DORA figures, the week's deployments, a chart)
    is posted in its channel: a cron schedule in a time zone."""

    schedule: CronText = "0 9 * * 1"
    timezone: TimeZoneName = "UTC"

    @property
    def slots(self) -> Schedule:
        return Schedule(cron=self.schedule, timezone=self.timezone)


def _digest_off(value: object) -> object:
    """``digest: off`` (or ``false``, as YAML 1.1 reads ``off``) turns the digest off."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false")):
        return None
    if value is None:
        raise _invalid('write "off" to turn the digest off, or give it a schedule')
    return value


class Team(_Model):
    name: Name
    channel: Channel
    oncall: People | None = None
    """Mentioned when things break, and the approvers of environments that name none."""
    notify: NotifyFilter = Field(default_factory=NotifyFilter)
    digest: Annotated[Digest | None, BeforeValidator(_digest_off)] = Field(default_factory=Digest)
    """``None``: ``digest: off``."""


def _require_manual(info: ValidationInfo) -> None:
    """Approval settings on an ``auto`` environment would be silently ignored: say so instead."""
    if info.data.get("policy") == "auto":
        raise _invalid("only applies to manual environments (this one has policy auto)")


class Promotion(_Model):
    """A scheduled promotion into an environment: at each slot, every app whose version in
    ``from`` is newer gets a release, as ``/deploy <app> from <from> to <env>`` would."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    source: Name = Field(alias="from")
    """The environment promoted from; it comes earlier in promotion order."""
    schedule: CronText
    timezone: TimeZoneName = "UTC"

    @property
    def slots(self) -> Schedule:
        return Schedule(cron=self.schedule, timezone=self.timezone)


class Freeze(_Model):
    """A scheduled freeze: at each slot the environment is locked for ``duration``."""

    schedule: CronText
    duration: FreezeDuration
    reason: str = "scheduled freeze"
    timezone: TimeZoneName = "UTC"

    @property
    def slots(self) -> Schedule:
        return Schedule(cron=self.schedule, timezone=self.timezone)


class Environment(_Model):
    name: Name
    policy: Annotated[Policy, _choice("policy", "policies", get_args(Policy))]
    approvals: int = Field(default=1, ge=1)
    """Distinct approvers needed before the bot merges (``manual`` only)."""
    approvers: People | None = None
    """``None``: the oncall of the team that owns the app."""
    self_approval: bool = False
    channel: Channel | None = None
    """Also announce releases and locks here."""
    auto_deploy: bool = False
    """New versions of every app (that did not opt out) open a release here by themselves."""
    promote: Promotion | None = None
    freeze: Annotated[tuple[Freeze, ...], BeforeValidator(_one_mapping_or_many)] = ()

    @field_validator("approvals", "self_approval")
    @classmethod
    def _manual_only(cls, value: Any, info: ValidationInfo) -> Any:
        _require_manual(info)
        return value

    @field_validator("approvers")
    @classmethod
    def _enough_approvers(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        _require_manual(info)
        needed = info.data.get("approvals", 1)
        listed = _countable_people(value or ())
        if value is not None and listed is not None and len(listed) < needed:
            raise _invalid(
                f"needs {needed} distinct approvals but lists only {_people(len(listed))}"
            )
        return value


class App(_Model):
    name: Name
    """The appId: workloads carry the label ``appId: <name>``."""
    team: str
    source: str
    """GitLab project path of the app's code: pipelines, tags, changelog."""
    image: str
    """Image repository without tag; the tag is the version that Pitcrew changes."""
    manifests: str
    """Path in the GitOps repo of the file holding the version; ``{env}`` is the environment."""
    namespace: str
    """``<name>`` or ``<name>-<suffix>`` (the ground rule); defaults to the name."""
    version_key: str | None = None
    """Dotted key of the version in a Helm values file, e.g. ``image.tag``."""
    versions: Annotated[str, AfterValidator(_check_versions)] = DEFAULT_VERSIONS
    """Which of the source's tags are versions (a regular expression, searched)."""
    auto_deploy: bool = True
    """``false`` opts the app out of every environment's ``auto_deploy``."""

    @model_validator(mode="before")
    @classmethod
    def _namespace_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "namespace" not in data and "name" in data:
            return {**data, "namespace": data["name"]}
        return data

    @field_validator("source")
    @classmethod
    def _project_path(cls, value: str) -> str:
        if "://" in value or value.startswith("git@"):
            raise _invalid(f'use the project path ("shop/orders"), not a URL: "{value}"')
        if value.endswith(".git"):
            raise _invalid(f'use the project path without ".git": "{value.removesuffix(".git")}"')
        if not _PROJECT.fullmatch(value):
            raise _invalid(f'"{value}" is not a GitLab project path like "shop/orders"')
        return value

    @field_validator("image")
    @classmethod
    def _image_without_version(cls, value: str) -> str:
        if "@" in value or ":" in value.rsplit("/", 1)[-1]:
            raise _invalid(
                f'"{value}": give the image without tag or digest '
                '("registry.example.com/shop/orders"); the version is what Pitcrew changes'
            )
        if not _IMAGE.fullmatch(value):
            raise _invalid(
                f'"{value}" is not an image repository like "registry.example.com/shop/orders"'
            )
        return value

    @field_validator("manifests")
    @classmethod
    def _manifest_template(cls, value: str) -> str:
        example = '("apps/orders/{env}/deployment.yaml")'
        if "{env}" not in value:
            raise _invalid(
                f'must contain "{{env}}", replaced by each environment\'s name {example}'
            )
        rest = value.replace("{env}", "")
        if "{" in rest or "}" in rest:
            raise _invalid(f'only "{{env}}" may be substituted in "{value}"')
        path = PurePosixPath(value)
        if value.startswith("/") or "\\" in value or ".." in path.parts:
            raise _invalid(f"must be a path relative to the GitOps repo's root {example}")
        if path.suffix not in (".yaml", ".yml") and path.name not in _KUSTOMIZATION_FILES:
            raise _invalid(f'must name a YAML file (".yaml" or ".yml"): "{value}"')
        return value

    @field_validator("namespace")
    @classmethod
    def _ground_rule(cls, value: str, info: ValidationInfo) -> str:
        name = info.data.get("name")
        if name is None or value == name:
            return value
        if not value.startswith(name + "-"):
            raise _invalid(
                f'"{value}" breaks the ground rule: the namespace of app {name} '
                f'is "{name}" or "{name}-<suffix>"'
            )
        if not _NAME.fullmatch(value):
            raise _invalid(
                f'"{value}" is not a valid namespace: lowercase letters, digits and "-", '
                "at most 63 characters"
            )
        return value

    @field_validator("version_key")
    @classmethod
    def _helm_values_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        manifests = info.data.get("manifests")
        if manifests is not None and PurePosixPath(manifests).name in _KUSTOMIZATION_FILES:
            raise _invalid(
                'only applies to Helm values files; a kustomization names its image in "images:"'
            )
        if not _VERSION_KEY.fullmatch(value):
            raise _invalid(f'"{value}" is not a dotted key like "image.tag"')
        return value

    @property
    def manifest_kind(self) -> ManifestKind:
        if self.version_key is not None:
            return "helm_values"
        if PurePosixPath(self.manifests).name in _KUSTOMIZATION_FILES:
            return "kustomization"
        return "workload"


_ACCESS_PATH_KEYS = frozenset({"env", "namespace", "user", "app"})
_SUBJECT_KEYS = frozenset({"email", "user"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ROLE = re.compile(r"[a-z0-9](?:[a-z0-9.:-]{0,251}[a-z0-9])?")
MAX_ACCESS = timedelta(days=30)
"""The longest ``access.max`` accepted: break-glass access is for hours, not for good."""


def _placeholders(value: str) -> set[str]:
    return set(_PLACEHOLDER.findall(value))


def _duration(value: object) -> object:
    """``8h``, written as the catalog writes every duration (a freeze's too); a bare number
    would be read as seconds by pydantic, so only words are durations."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise _invalid(f'expected a duration like "8h" or "1h30m", got {_describe(value)}')
    try:
        return parse_duration(value)
    except ScheduleError as exc:
        raise _invalid(str(exc)) from None


class Access(_Model):
    """Break-glass access (the top-level ``access`` key): who gets which role where, for how
    long, through a RoleBinding file that a merge request adds and another one removes."""

    path: str = "access/{env}/{namespace}-{user}.yaml"
    """Where the RoleBinding file lives in the GitOps repo: ``{env}``, ``{namespace}``,
    ``{user}`` (from the person's email) and ``{app}`` are substituted."""
    role: str = "admin"
    """The ClusterRole bound in the app's namespace."""
    subject: str
    """The Kubernetes user name of a Slack user: ``{email}`` (Slack's) or ``{user}``."""
    max: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(hours=8)
    """The longest access one request may ask for."""

    @field_validator("path")
    @classmethod
    def _path_template(cls, value: str) -> str:
        example = '("access/{env}/{namespace}-{user}.yaml")'
        used = _placeholders(value)
        unknown = sorted(used - _ACCESS_PATH_KEYS)
        if unknown:
            raise _invalid(
                f'unknown placeholder "{{{unknown[0]}}}": use {{env}}, {{namespace}}, {{user}}'
                f" and {{app}} {example}"
            )
        rest = _PLACEHOLDER.sub("", value)
        if "{" in rest or "}" in rest:
            raise _invalid(f'unbalanced braces in "{value}"')
        missing = [p for p in ("env", "user") if p not in used]
        if missing:
            raise _invalid(
                f'must contain "{{{missing[0]}}}": each person\'s access in each environment'
                f" is a file of its own {example}"
            )
        if "namespace" not in used and "app" not in used:
            raise _invalid(f'must contain "{{namespace}}" or "{{app}}" {example}')
        path = PurePosixPath(value)
        if value.startswith("/") or "\\" in value or ".." in path.parts:
            raise _invalid(f"must be a path relative to the GitOps repo's root {example}")
        if path.suffix not in (".yaml", ".yml"):
            raise _invalid(f'must name a YAML file (".yaml" or ".yml"): "{value}"')
        return value

    @field_validator("role")
    @classmethod
    def _role_name(cls, value: str) -> str:
        if not _ROLE.fullmatch(value):
            raise _invalid(f'"{value}" is not a ClusterRole name like "admin" or "edit"')
        return value

    @field_validator("subject")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        used = _placeholders(value)
        unknown = sorted(used - _SUBJECT_KEYS)
        if unknown:
            raise _invalid(
                f'unknown placeholder "{{{unknown[0]}}}": use {{email}} (from Slack) or {{user}}'
            )
        if not used:
            raise _invalid(
                'must contain "{email}" (or "{user}"): each person binds as themselves,'
                ' e.g. "oidc:{email}"'
            )
        rest = _PLACEHOLDER.sub("", value)
        if any(c.isspace() for c in value) or "{" in rest or "}" in rest:
            raise _invalid(f'"{value}" is not a user name template like "oidc:{{email}}"')
        return value

    @field_validator("max")
    @classmethod
    def _reasonable(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise _invalid("must be at least a minute")
        if value > MAX_ACCESS:
            raise _invalid(
                f"{durations.format_duration(value)} is too long for break-glass access: at most"
                " 30 days"
            )
        return value

    def path_for(self, *, env: str, namespace: str, user: str, app: str) -> str:
        return (
            self.path.replace("{env}", env)
            .replace("{namespace}", namespace)
            .replace("{user}", user)
            .replace("{app}", app)
        )

    def subject_for(self, *, email: str, user: str) -> str:
        return self.subject.replace("{email}", email).replace("{user}", user)


class NotInCatalogError(PitcrewError, LookupError):
    """A name from a person (a command, a button) that the catalog does not know."""

    def __init__(self, *, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(difflib.get_close_matches(name, known, n=3, cutoff=0.6))
        super().__init__(_unknown(kind, name, known))


_Path = tuple[str | int, ...]


class Catalog(_Model):
    """The whole catalog, indexed once so that each webhook's lookups cost nothing.

    Names that people type (commands, buttons) go through ``app``/``team``/``environment``,
    which raise ``NotInCatalogError`` with a did-you-mean; routing of machine events goes
    through ``app_for_source``/``app_for_namespace``, which answer ``None`` for strangers.
    """

    teams: tuple[Team, ...] = ()
    environments: tuple[Environment, ...] = Field(min_length=1)
    """In promotion order: the last one is "prod" for ``/whatsinprod``."""
    apps: tuple[App, ...] = ()
    access: Access | None = None
    """Break-glass access by merge request; ``None``: ``/access`` is not offered."""

    _teams: dict[str, Team] = PrivateAttr(default_factory=dict)
    _environments: dict[str, Environment] = PrivateAttr(default_factory=dict)
    _apps: dict[str, App] = PrivateAttr(default_factory=dict)
    _by_source: dict[str, App] = PrivateAttr(default_factory=dict)
    _by_namespace: dict[str, App] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        problems = _cross_problems(
            teams=self.teams,
            team_names=[t.name for t in self.teams],
            environments=list(enumerate(self.environments)),
            apps=self.apps,
        )
        if problems:
            raise _invalid("; ".join(f"{_dotted(path)}: {message}" for path, message in problems))
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._teams = {t.name: t for t in self.teams}
        self._environments = {e.name: e for e in self.environments}
        self._apps = {a.name: a for a in self.apps}
        self._by_source = {a.source.lower(): a for a in self.apps}
        self._by_namespace = {a.namespace: a for a in self.apps}

    @property
    def team_names(self) -> tuple[str, ...]:
        return tuple(self._teams)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(self._environments)

    @property
    def app_names(self) -> tuple[str, ...]:
        return tuple(self._apps)

    def team(self, name: str) -> Team:
        try:
            return self._teams[name]
        except KeyError:
            raise NotInCatalogError(kind="team", name=name, known=self.team_names) from None

    def environment(self, name: str) -> Environment:
        try:
            return self._environments[name]
        except KeyError:
            raise NotInCatalogError(kind="environment", name=name, known=self.env_names) from None

    def app(self, name: str) -> App:
        try:
            return self._apps[name]
        except KeyError:
            raise NotInCatalogError(kind="app", name=name, known=self.app_names) from None

    def apps_of_team(self, team: str | Team) -> tuple[App, ...]:
        name = team.name if isinstance(team, Team) else self.team(team).name
        return tuple(a for a in self.apps if a.team == name)

    def app_for_source(self, project_path: str) -> App | None:
        """The app built from a GitLab project; GitLab paths are case-insensitive."""
        return self._by_source.get(project_path.lower())

    def app_for_namespace(self, namespace: str) -> App | None:
        """The app a workload belongs to when it lacks the ``appId`` label."""
        return self._by_namespace.get(namespace)

    def app_named(self, name: str) -> App | None:
        """The app called ``name``, or ``None``: for machine events (an ``appId`` label), which
        need no did-you-mean."""
        return self._apps.get(name)

    def app_named_in(self, namespace: str) -> App | None:
        """The app whose name is ``namespace`` or ``<name>-<suffix>`` of it, the longest name
        first (``orders-api-eu`` is orders-api's, not orders'): one dictionary look-up per
        ``-`` in the namespace, so that routing 10,000 workloads never scans the apps."""
        candidate = namespace
        while True:
            app = self._apps.get(candidate)
            if app is not None:
                return app
            cut = candidate.rfind("-")
            if cut <= 0:
                return None
            candidate = candidate[:cut]

    def channel_for_app(self, app: str | App) -> str:
        return self.team(self._app(app).team).channel

    def release_channels(self, app: str | App, env: str | Environment) -> tuple[str, ...]:
        """Where a release is announced: the team's channel, then the environment's if set."""
        channels = [self.channel_for_app(app)]
        extra = self._environment(env).channel
        if extra is not None and extra not in channels:
            channels.append(extra)
        return tuple(channels)

    def approvers_for(self, app: str | App, env: str | Environment) -> tuple[str, ...]:
        """Who may approve a release of ``app`` to ``env``: its approvers, else the oncall."""
        environment = self._environment(env)
        if environment.approvers is not None:
            return environment.approvers
        return self.team(self._app(app).team).oncall or ()

    def manifest_path(self, app: str | App, env: str | Environment) -> str:
        return self._app(app).manifests.replace("{env}", self._environment(env).name)

    def suggest(
        self, name: str, *, among: Literal["app", "team", "environment"] | None = None
    ) -> tuple[str, ...]:
        """Did-you-mean candidates for a name someone typed, best first."""
        pools = {"app": self.app_names, "team": self.team_names, "environment": self.env_names}
        names = pools[among] if among else [n for pool in pools.values() for n in pool]
        return tuple(dict.fromkeys(difflib.get_close_matches(name, names, n=3, cutoff=0.6)))

    def _app(self, app: str | App) -> App:
        return app if isinstance(app, App) else self.app(app)

    def _environment(self, env: str | Environment) -> Environment:
        return env if isinstance(env, Environment) else self.environment(env)


def _cross_problems(
    *,
    teams: Sequence[Team],
    team_names: Sequence[str],
    environments: Sequence[tuple[int, Environment]],
    apps: Sequence[App],
    env_names: Sequence[str] | None = None,
) -> list[tuple[_Path, str]]:
    """The rules that span entries. ``team_names`` (and ``env_names``, in promotion order) may
    list teams (environments) that failed validation themselves, so that what names them is not
    also reported."""
    problems: list[tuple[_Path, str]] = []
    seen_teams: set[str] = set()
    for team in teams:
        if team.name in seen_teams:
            problems.append((("teams", team.name), f'duplicate team "{team.name}"'))
        seen_teams.add(team.name)

    env_index: dict[str, int] = {}
    for index, env in environments:
        if env.name in env_index:
            first = env_index[env.name]
            message = f'duplicate environment "{env.name}" (also environments[{first}])'
            problems.append((("environments", index, "name"), message))
        else:
            env_index[env.name] = index

    order = list(env_names) if env_names is not None else [env.name for _, env in environments]
    for index, env in environments:
        promote = env.promote
        if promote is None:
            continue
        where: _Path = ("environments", index, "promote", "from")
        if promote.source == env.name:
            problems.append((where, f'"{env.name}" cannot promote from itself'))
        elif promote.source not in order:
            problems.append((where, _unknown("environment", promote.source, order)))
        elif order.index(promote.source) > order.index(env.name):
            problems.append(
                (
                    where,
                    f'"{promote.source}" comes after "{env.name}" in promotion order'
                    f" ({' → '.join(order)}): promotions go forward",
                )
            )

    names: set[str] = set()
    sources: dict[str, str] = {}
    namespaces: dict[str, str] = {}
    for app in apps:
        path: _Path = ("apps", app.name)
        if app.name in names:
            problems.append((path, f'duplicate app "{app.name}"'))
        names.add(app.name)
        if app.team not in team_names:
            problems.append(((*path, "team"), _unknown("team", app.team, team_names)))
        owner = sources.setdefault(app.source.lower(), app.name)
        if owner != app.name:
            problems.append(
                (
                    (*path, "source"),
                    f'project "{app.source}" is already the source of app "{owner}" '
                    "(one app per project)",
                )
            )
        owner = namespaces.setdefault(app.namespace, app.name)
        if owner != app.name:
            problems.append(
                (
                    (*path, "namespace"),
                    f'namespace "{app.namespace}" already belongs to app "{owner}"',
                )
            )

    flagged: set[str] = set()
    for _, env in environments:
        if env.policy != "manual" or env.approvers is not None:
            continue
        for team in teams:
            if team.name in flagged or not any(a.team == team.name for a in apps):
                continue
            oncall_path: _Path = ("teams", team.name, "oncall")
            listed = _countable_people(team.oncall or ())
            if team.oncall is None:
                flagged.add(team.name)
                problems.append(
                    (
                        oncall_path,
                        f'required: environment "{env.name}" names no approvers, '
                        "so this team's oncall approves its releases there",
                    )
                )
            elif listed is not None and len(listed) < env.approvals:
                flagged.add(team.name)
                problems.append(
                    (
                        oncall_path,
                        f'environment "{env.name}" needs {env.approvals} distinct approvals '
                        f"but this oncall lists only {_people(len(listed))}",
                    )
                )
    return problems


# --------------------------------------------------------------------------------------------
# Parsing with positions


@dataclass(frozen=True, kw_only=True)
class CatalogProblem:
    source: str
    """The file, as the reader knows it (``catalog.yaml``, ``/etc/pitcrew/catalog.yaml``)."""
    line: int
    """1-based."""
    field: str
    """Dotted path such as ``apps.orders.team`` or ``environments[1].approvals``; may be empty."""
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class CatalogError(PitcrewError):
    """The catalog text cannot be used; ``problems`` says everything that is wrong, in order."""

    def __init__(self, problems: Sequence[CatalogProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.field)))
        super().__init__("\n".join(str(p) for p in self.problems))


_M = TypeVar("_M", Team, App)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    # Redefining an anchor is valid YAML (later aliases see the new one): not worth a warning.
    yaml.composer.warn_double_anchors = False
    return yaml


def parse_catalog(text: str, *, source: str) -> Catalog:
    try:
        root = _yaml().load(text)
    except MarkedYAMLError as exc:
        raise CatalogError([_syntax_problem(exc, source=source)]) from exc
    except (YAMLError, RecursionError) as exc:  # a forbidden character; nesting past the stack
        raise CatalogError([_unreadable(exc, text=text, source=source)]) from exc
    except Exception as exc:  # unmarked, from ruamel's constructors: 2025-02-30, !!int x, !!set
        raise CatalogError([_unconstructible(exc, text=text, source=source)]) from exc
    if not isinstance(root, CommentedMap):
        what = "empty" if root is None else f"{_describe(root)}, not a mapping"
        raise CatalogError(
            [
                CatalogProblem(
                    source=source,
                    line=1,
                    field="",
                    message=f"the catalog is {what}: it needs teams, environments and apps",
                )
            ]
        )

    report = _Report(source=source, root=root)
    for section in _TOP_KEYS:
        if _expands_too_far(root.get(section)):
            message = f"expands to more than {_MAX_VALUES} values through YAML aliases"
            report.add((section,), message)
    if report.problems:
        raise CatalogError(report.problems)  # before anything walks the expanded values
    for key in root:
        name = str(key)
        if name not in _TOP_KEYS and not name.startswith(_EXTENSION_PREFIX):
            report.add((name,), _unknown("key", name, _TOP_KEYS, plural="keys"), at_key=True)
    teams = _parse_named(report, section="teams", model=Team)
    environments = _parse_environments(report)
    apps = _parse_named(report, section="apps", model=App)
    access = _parse_access(report)
    declared_teams = root.get("teams")
    team_names = [str(k) for k in declared_teams] if isinstance(declared_teams, Mapping) else []
    declared_envs = root.get("environments")
    env_names = [
        str(item["name"])
        for item in (declared_envs if isinstance(declared_envs, CommentedSeq) else ())
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    ]
    for path, message in _cross_problems(
        teams=teams,
        team_names=team_names,
        environments=environments,
        apps=apps,
        env_names=env_names,
    ):
        report.add(path, message)
    for path, message in _unparsed_problems(
        report.root, teams=teams, team_names=team_names, environments=environments, apps=apps
    ):
        report.add(path, message)
    if report.problems:
        raise CatalogError(report.problems)
    return Catalog(
        teams=tuple(teams),
        environments=tuple(e for _, e in environments),
        apps=tuple(apps),
        access=access,
    )


def _unparsed_problems(
    root: CommentedMap,
    *,
    teams: Sequence[Team],
    team_names: Sequence[str],
    environments: Sequence[tuple[int, Environment]],
    apps: Sequence[App],
) -> list[tuple[_Path, str]]:
    """The rules that span entries, for entries that failed their own validation.

    ``_cross_problems`` sees only entries that validated, so an app with a bad image and a
    misspelt team would hide the team until the image was fixed: one problem per run. Here the
    raw values of the others are checked too, so that one pass reports everything.
    """
    problems: list[tuple[_Path, str]] = []
    raw_apps = root.get("apps")
    raw_apps = raw_apps if isinstance(raw_apps, Mapping) else {}
    parsed_apps = {a.name for a in apps}
    app_teams = {a.team for a in apps}
    for key, value in raw_apps.items():
        if not isinstance(value, Mapping):
            continue
        team = value.get("team")
        if not isinstance(team, str):
            continue
        app_teams.add(team)
        if str(key) not in parsed_apps and team not in team_names:
            problems.append((("apps", str(key), "team"), _unknown("team", team, team_names)))

    raw_teams = root.get("teams")
    raw_teams = raw_teams if isinstance(raw_teams, Mapping) else {}
    parsed_teams = {t.name for t in teams}
    needing = [env for _, env in environments if env.policy == "manual" and env.approvers is None]
    # Teams whose oncall must approve, where _cross_problems could not tell: the team itself
    # failed validation, or only apps that failed validation belong to it.
    seen_owners = {a.team for a in apps}
    for key, value in raw_teams.items():
        name = str(key)
        if not needing or name not in app_teams:
            continue
        if name in parsed_teams:
            unseen = name not in seen_owners
            lacking = unseen and all(t.oncall is None for t in teams if t.name == name)
        else:
            lacking = isinstance(value, Mapping) and "oncall" not in value
        if lacking:
            problems.append(
                (
                    ("teams", name, "oncall"),
                    f'required: environment "{needing[0].name}" names no approvers, '
                    "so this team's oncall approves its releases there",
                )
            )
    return problems


def _parse_named(report: _Report, *, section: str, model: type[_M]) -> list[_M]:
    """``teams`` and ``apps`` are mappings keyed by name; the models carry the name inside."""
    node = report.root.get(section)
    singular = section.removesuffix("s")
    if node is None:
        return []
    if not isinstance(node, CommentedMap):
        report.add(
            (section,),
            f"expected a mapping of {singular} names to {section}, got {_describe(node)}",
        )
        return []
    parsed: list[_M] = []
    for key, value in node.items():
        path: _Path = (section, str(key))
        if not isinstance(value, CommentedMap):
            report.add(path, f"expected a mapping, got {_describe(value)}")
            continue
        if "name" in value:
            message = f'unknown key "name": the {singular}\'s name is its key'
            report.add((*path, "name"), message, at_key=True)
            continue
        if report.check_nulls(value, path):
            continue
        try:
            parsed.append(model.model_validate({"name": str(key), **_plain_mapping(value)}))
        except ValidationError as exc:
            report.add_validation(exc, base=path, model=model, named_by_key=True)
    return parsed


def _parse_access(report: _Report) -> Access | None:
    node = report.root.get("access")
    if node is None:
        return None
    if not isinstance(node, CommentedMap):
        report.add(("access",), f"expected a mapping, got {_describe(node)}")
        return None
    if report.check_nulls(node, ("access",)):
        return None
    try:
        return Access.model_validate(_plain_mapping(node))
    except ValidationError as exc:
        report.add_validation(exc, base=("access",), model=Access, named_by_key=False)
        return None


def _parse_environments(report: _Report) -> list[tuple[int, Environment]]:
    node = report.root.get("environments")
    if node is None:
        report.add(
            ("environments",), "missing required key: list the environments in promotion order"
        )
        return []
    if not isinstance(node, CommentedSeq):
        report.add(
            ("environments",),
            f"expected a list of environments in promotion order, got {_describe(node)}",
        )
        return []
    if not node:
        report.add(("environments",), "needs at least one environment")
    parsed: list[tuple[int, Environment]] = []
    for index, item in enumerate(node):
        path: _Path = ("environments", index)
        if not isinstance(item, CommentedMap):
            report.add(path, f"expected a mapping, got {_describe(item)}")
            continue
        if report.check_nulls(item, path):
            continue
        try:
            parsed.append((index, Environment.model_validate(_plain_mapping(item))))
        except ValidationError as exc:
            report.add_validation(exc, base=path, model=Environment, named_by_key=False)
    return parsed


@dataclass
class _Report:
    """Collects problems and finds their lines in the round-trip YAML tree."""

    source: str
    root: CommentedMap
    problems: list[CatalogProblem] = field(default_factory=list)

    def add(self, path: _Path, message: str, *, at_key: bool = False) -> None:
        line, depth = self._locate(path, at_key=at_key)
        shown = list(path)
        # A single string stands for a one-item list: do not show an index the file lacks.
        while len(shown) > depth and isinstance(shown[-1], int):
            shown.pop()
        self.problems.append(
            CatalogProblem(source=self.source, line=line + 1, field=_dotted(shown), message=message)
        )

    def check_nulls(self, node: CommentedMap | CommentedSeq, path: _Path) -> bool:
        """Report keys left without a value: in YAML, ``channel: #deploys`` is a comment."""
        found = False
        for null_path in _nulls(node, path):
            found = True
            hint = (
                'a bare "#" starts a YAML comment, so quote channel names ("#payments-deploys")'
                if "channel" in null_path
                else "give one or remove the key"
            )
            self.add(null_path, f"no value: {hint}")
        return found

    def add_validation(
        self, exc: ValidationError, *, base: _Path, model: type[BaseModel], named_by_key: bool
    ) -> None:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if named_by_key and loc[:1] == ("name",):
                self.add(base, error["msg"], at_key=True)
                continue
            message = _message(error, model=model, named_by_key=named_by_key)
            self.add((*base, *loc), message, at_key=error["type"] == "extra_forbidden")

    def _locate(self, path: _Path, *, at_key: bool) -> tuple[int, int]:
        """The 0-based line of the deepest node of ``path`` present in the file, and its depth."""
        node: object = self.root
        line = 0
        for depth, step in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, CommentedMap):
                key = next((k for k in node if str(k) == step), _ABSENT)
                if key is _ABSENT:
                    return line, depth
                child = node[key]
                # Collections and nulls are best shown by their key: a null's own position is
                # wherever the next token happens to be.
                whole = (
                    (at_key and last)
                    or child is None
                    or isinstance(child, CommentedMap | CommentedSeq)
                )
                line = _position(node.lc.key if whole else node.lc.value, key, default=line)
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                line = _position(node.lc.item, step, default=line)
                node = node[step]
            else:
                return line, depth
        return line, len(path)


_ABSENT = object()


def _position(lookup: Any, key: object, *, default: int) -> int:
    # Keys brought in by a YAML merge (``<<: *defaults``) have no position of their own.
    try:
        line: int = lookup(key)[0]
    except (KeyError, IndexError, TypeError):
        return default
    return line


def _nulls(node: object, path: _Path) -> Iterator[_Path]:
    if isinstance(node, CommentedMap):
        children: Sequence[tuple[str | int, object]] = [(str(k), v) for k, v in node.items()]
    elif isinstance(node, CommentedSeq):
        children = list(enumerate(node))
    else:
        return
    for step, child in children:
        if child is None:
            yield (*path, step)
        else:
            yield from _nulls(child, (*path, step))


def _plain(node: object) -> object:
    """Plain Python values, so that pydantic sees no ruamel subclasses."""
    if isinstance(node, Mapping):
        return _plain_mapping(node)
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _plain_mapping(node: Mapping[Any, Any]) -> dict[str, object]:
    return {str(k): _plain(v) for k, v in node.items()}


def _expands_too_far(node: object) -> bool:
    budget = _MAX_VALUES
    stack = [node]
    while stack:
        current = stack.pop()
        budget -= 1
        if budget < 0:
            return True
        if isinstance(current, Mapping):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return False


def _unreadable(exc: YAMLError | RecursionError, *, text: str, source: str) -> CatalogProblem:
    line, message = 1, f"invalid YAML: {exc}"
    if isinstance(exc, RecursionError):
        message = "invalid YAML: nested too deeply"
    elif isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        message = f"invalid YAML: character U+{code:04X} is not allowed"
    return CatalogProblem(source=source, line=line, field="", message=message)


def _unconstructible(exc: Exception, *, text: str, source: str) -> CatalogProblem:
    """ruamel.yaml raises these unmarked: find the first value it cannot build, for its line."""
    line, what = 1, "a value"
    stack: list[Node | None] = [_yaml().compose(text)]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                YAML(typ="rt").constructor.construct_object(node, deep=True)
            except Exception:
                tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
                line, what = node.start_mark.line + 1, f'"{node.value}" as {tag}'
                break
        elif isinstance(node, MappingNode):
            stack.extend(reversed([item for pair in node.value for item in pair]))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    message = f"invalid YAML: cannot read {what} ({exc}); quote it if it is a string"
    return CatalogProblem(source=source, line=line, field="", message=message)


def _syntax_problem(exc: MarkedYAMLError, *, source: str) -> CatalogProblem:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    duplicate = _DUPLICATE_KEY.match(exc.problem or "")
    if duplicate and exc.context_mark:
        first = exc.context_mark.line + 1
        message = f'invalid YAML: duplicate key "{duplicate[1]}" (first on line {first})'
    elif exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
        message += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    if "'@'" in message:
        message += ' (quote Slack handles: "@payments-oncall")'
    elif "'\\t'" in message:
        message += " (indent with spaces, not tabs)"
    return CatalogProblem(
        source=source, line=mark.line + 1 if mark else 1, field="", message=message
    )


def _message(error: ErrorDetails, *, model: type[BaseModel], named_by_key: bool) -> str:
    """pydantic's messages speak Python; these speak YAML."""
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    got = _describe(value)
    match kind:
        case "missing":
            return "missing required key"
        case "extra_forbidden":
            keys = _keys_at(model, loc[:-1])
            if named_by_key and len(loc) == 1:
                keys = [k for k in keys if k != "name"]
            return _unknown("key", str(loc[-1]), keys, plural="keys")
        case "string_type":
            return f"expected a string, got {got}"
        case "int_type" | "int_parsing" | "int_from_float":
            return f"expected a whole number, got {got}"
        case "bool_type" | "bool_parsing":
            return f"expected true or false, got {got}"
        case "greater_than_equal":
            return f"must be at least {error.get('ctx', {}).get('ge')}, got {got}"
        case "tuple_type" | "list_type":
            return f"expected a list, got {got}"
        case "too_short":
            return "must not be empty"
        case "model_type" | "model_attributes_type" | "dict_type":
            return f"expected a mapping, got {got}"
        case "literal_error":  # strings were checked by _choice, with a did-you-mean
            return f"expected a string, got {got}"
    return error["msg"]


def _keys_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    current = model
    for step in loc:
        if isinstance(step, int):
            continue  # an item of a list of models: the model is already known
        info = next(
            (f for name, f in current.model_fields.items() if step in (name, f.alias)), None
        )
        found = _model_in(info.annotation) if info else None
        if found is None:
            return []
        current = found
    return [f.alias or name for name, f in current.model_fields.items()]


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model an annotation holds: itself, or inside ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for inner in get_args(annotation):
        found = _model_in(inner)
        if found is not None:
            return found
    return None


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out
