"""GitLab webhook payloads: typed models, and their translation into domain observations.

The models follow GitLab's webhook events documentation (``tests/fixtures/gitlab`` holds its
examples) but accept what GitLab actually sends across versions: unknown fields are ignored,
anything GitLab has added over the years or sends as ``null`` is optional, and timestamps come in
both of GitLab's formats (``2016-08-12 15:23:28 UTC`` in pipeline hooks, ISO 8601 in job hooks,
``2021-04-28 21:50:00 +0200`` in deployment hooks). Ids are the exception to that leniency: they
must be what GitLab hands out (``GitLabId``). A body that still does not fit raises
``PayloadError`` with a one-line reason for the log; the worker drops it and moves on.

Statuses are plain strings in the models, so that a status a newer GitLab invents does not make
the whole payload unreadable; the translation decides what an unknown status means.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, TypeGuard
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from bot.domain.errors import PitcrewError
from bot.domain.pipelines import (
    STATUSES,
    Job,
    JobObserved,
    MergeRequestRef,
    PipelineObserved,
    PipelineStatus,
    latest,
)

__all__ = [
    "DeploymentHook",
    "GitLabEvent",
    "JobHook",
    "MergeRequestHook",
    "PayloadError",
    "PipelineHook",
    "PushHook",
    "job_observed",
    "observed",
    "parse_event",
    "parse_timestamp",
    "pipeline_observed",
]


class PayloadError(PitcrewError):
    """A webhook body that cannot be read as the event its ``X-Gitlab-Event`` names."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Field types

_UTC_SUFFIX = re.compile(r"\s+UTC$")
_SPACED_OFFSET = re.compile(r"\s+([+-]\d{2}:?\d{2})$")


def parse_timestamp(value: object) -> object:
    """GitLab's timestamps as aware UTC datetimes; anything else is left for pydantic to judge."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.endswith("UTC") or text[-6:-5].isspace() or text[-7:-6].isspace():
        # " UTC", " +0200", " +02:00": the regular expressions are for these only (a webhook
        # carries dozens of timestamps, and ISO 8601 ones need neither)
        text = _SPACED_OFFSET.sub(r"\1", _UTC_SUFFIX.sub("+00:00", text))
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        raise ValueError(f"not a GitLab timestamp: {value[:40]!r}") from None


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]

GitLabId = Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]
"""An id or iid as GitLab hands them out: a positive 64-bit integer (database ids are bigint).
Strict, because pydantic would otherwise read ``true`` as 1 and ``"7"`` or ``7.0`` as 7: a body
with an id GitLab cannot have is not GitLab's, and a ``#-1`` or ``#1`` must not reach Slack."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_REDACTED = "[REDACTED]"


def _email(value: str | None) -> str | None:
    """GitLab writes ``[REDACTED]`` (or nothing) for people without a public email."""
    if not value or value == _REDACTED or "@" not in value:
        return None
    return value.strip()


def _title(title: str | None, message: str | None) -> str | None:
    if title and title.strip():
        return title.strip()
    if message and message.strip():
        return message.strip().splitlines()[0].strip()
    return None


# --------------------------------------------------------------------------------------------
# Shared parts


class User(_Model):
    id: GitLabId | None = None
    name: str | None = None
    username: str | None = None
    email: str | None = None
    """Absent in older GitLab, ``[REDACTED]`` for people without a public email."""


class Project(_Model):
    id: GitLabId | None = None
    name: str | None = None
    path_with_namespace: str | None = None
    web_url: str | None = None
    default_branch: str | None = None


class Repository(_Model):
    name: str | None = None
    homepage: str | None = None


class CommitAuthor(_Model):
    name: str | None = None
    email: str | None = None


# --------------------------------------------------------------------------------------------
# Pipeline Hook


class PipelineCommit(_Model):
    id: str | None = None
    message: str | None = None
    title: str | None = None
    timestamp: Timestamp | None = None
    url: str | None = None
    author: CommitAuthor | None = None


class PipelineMergeRequest(_Model):
    id: GitLabId | None = None
    iid: GitLabId
    title: str | None = None
    source_branch: str | None = None
    target_branch: str | None = None
    state: str | None = None
    url: str | None = None


class Build(_Model):
    id: GitLabId
    stage: str
    name: str
    status: str
    created_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    duration: float | None = None
    queued_duration: float | None = None
    failure_reason: str | None = None
    when: str | None = None
    manual: bool | None = None
    allow_failure: bool | None = None
    user: User | None = None


class PipelineAttributes(_Model):
    id: GitLabId
    iid: GitLabId | None = None
    name: str | None = None
    ref: str
    tag: bool | None = None
    sha: str
    before_sha: str | None = None
    source: str | None = None
    status: str
    detailed_status: str | None = None
    stages: list[str] | None = None
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    duration: float | None = None
    queued_duration: float | None = None
    url: str | None = None


class PipelineHook(_Model):
    object_kind: str | None = None
    object_attributes: PipelineAttributes
    merge_request: PipelineMergeRequest | None = None
    user: User | None = None
    project: Project
    commit: PipelineCommit | None = None
    builds: list[Build] | None = None


# --------------------------------------------------------------------------------------------
# Job Hook


class JobCommit(_Model):
    id: GitLabId | None = None
    """The pipeline's id, not a commit's (GitLab documents it so)."""
    name: str | None = None
    sha: str | None = None
    message: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    status: str | None = None
    """The pipeline's status when the job changed; it lags behind the pipeline."""


class JobHook(_Model):
    object_kind: str | None = None
    ref: str
    tag: bool | None = None
    sha: str
    build_id: GitLabId
    build_name: str
    build_stage: str
    build_status: str
    build_created_at: Timestamp | None = None
    build_created_at_iso: Timestamp | None = None
    build_started_at: Timestamp | None = None
    build_started_at_iso: Timestamp | None = None
    build_finished_at: Timestamp | None = None
    build_finished_at_iso: Timestamp | None = None
    build_duration: float | None = None
    build_queued_duration: float | None = None
    build_allow_failure: bool | None = None
    build_failure_reason: str | None = None
    retries_count: int | None = None
    pipeline_id: GitLabId
    project_id: GitLabId | None = None
    project_name: str | None = None
    user: User | None = None
    commit: JobCommit | None = None
    repository: Repository | None = None
    project: Project | None = None
    """Added in GitLab 16.3; older job hooks only have ``repository``."""


# --------------------------------------------------------------------------------------------
# Deployment Hook, Push Hook, Merge Request Hook


class DeploymentHook(_Model):
    object_kind: str | None = None
    status: str
    status_changed_at: Timestamp | None = None
    deployment_id: GitLabId
    deployable_id: GitLabId | None = None
    deployable_url: str | None = None
    """``null`` for deployments made through the API or by trigger jobs."""
    environment: str
    environment_tier: str | None = None
    environment_slug: str | None = None
    environment_external_url: str | None = None
    project: Project
    ref: str | None = None
    short_sha: str | None = None
    user: User | None = None
    user_url: str | None = None
    commit_url: str | None = None
    commit_title: str | None = None


class PushCommit(_Model):
    id: str
    message: str | None = None
    title: str | None = None
    timestamp: Timestamp | None = None
    url: str | None = None
    author: CommitAuthor | None = None
    added: list[str] | None = None
    modified: list[str] | None = None
    removed: list[str] | None = None


class PushHook(_Model):
    """A push (``Push Hook``) or a tag push (``Tag Push Hook``), which share one shape."""

    object_kind: str | None = None
    before: str
    after: str
    ref: str
    checkout_sha: str | None = None
    user_name: str | None = None
    user_email: str | None = None
    project: Project
    commits: list[PushCommit] | None = None
    total_commits_count: int | None = None

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def tag(self) -> str | None:
        """The tag a tag push created or moved; ``None`` for a branch, or a deleted tag."""
        if not self.is_tag or set(self.after) == {"0"}:
            return None
        return self.ref.removeprefix("refs/tags/")

    @property
    def changed_paths(self) -> frozenset[str]:
        """Files added, modified or removed by the commits the payload lists."""
        return frozenset(
            path
            for c in self.commits or ()
            for paths in (c.added, c.modified, c.removed)
            for path in paths or ()
        )

    @property
    def lists_every_commit(self) -> bool:
        """GitLab lists at most 20 commits; past that, ``changed_paths`` is incomplete."""
        return self.total_commits_count is None or self.total_commits_count <= len(
            self.commits or ()
        )


class MergeRequestCommit(_Model):
    id: str | None = None
    title: str | None = None
    message: str | None = None


class MergeRequestAttributes(_Model):
    id: GitLabId | None = None
    iid: GitLabId
    title: str | None = None
    state: str | None = None
    action: str | None = None
    source_branch: str | None = None
    target_branch: str | None = None
    url: str | None = None
    merge_commit_sha: str | None = None
    detailed_merge_status: str | None = None
    last_commit: MergeRequestCommit | None = None


class MergeRequestHook(_Model):
    object_kind: str | None = None
    user: User | None = None
    project: Project
    object_attributes: MergeRequestAttributes


# --------------------------------------------------------------------------------------------
# Parsing

GitLabEvent = PipelineHook | JobHook | DeploymentHook | PushHook | MergeRequestHook

_KINDS: dict[str, tuple[type[GitLabEvent], frozenset[str]]] = {
    "Pipeline Hook": (PipelineHook, frozenset({"pipeline"})),
    "Job Hook": (JobHook, frozenset({"build"})),
    "Deployment Hook": (DeploymentHook, frozenset({"deployment"})),
    "Push Hook": (PushHook, frozenset({"push"})),
    "Tag Push Hook": (PushHook, frozenset({"tag_push"})),
    "Merge Request Hook": (MergeRequestHook, frozenset({"merge_request"})),
}
_MAX_REASONS = 3


def parse_event(kind: str, body: bytes) -> GitLabEvent:
    """Read a webhook body as the event named by its ``X-Gitlab-Event`` header."""
    try:
        model, object_kinds = _KINDS[kind]
    except KeyError:
        raise PayloadError(kind, "not an event kind Pitcrew reads") from None
    try:
        event = model.model_validate_json(body)
    except ValidationError as exc:
        raise PayloadError(kind, _reason(exc)) from exc
    if event.object_kind is not None and event.object_kind not in object_kinds:
        expected = " or ".join(sorted(object_kinds))
        raise PayloadError(kind, f"object_kind is {event.object_kind!r}, expected {expected}")
    return event


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    reasons = [_one_reason(e) for e in errors[:_MAX_REASONS]]
    if len(errors) > _MAX_REASONS:
        reasons.append(f"and {len(errors) - _MAX_REASONS} more")
    return "; ".join(reasons)


def _one_reason(error: ErrorDetails) -> str:
    where = ".".join(str(step) for step in error["loc"])
    kind = error["type"]
    if kind == "json_invalid":
        return f"invalid JSON ({error.get('ctx', {}).get('error', 'unreadable')})"
    if kind in ("model_type", "model_attributes_type") and not where:
        return "body is not a JSON object"
    if kind == "missing":
        return f"missing {where}"
    shown = repr(error.get("input"))
    if len(shown) > 40:
        shown = shown[:39] + "…"
    return f"{where or 'body'}: {error['msg']} (got {shown})"


# --------------------------------------------------------------------------------------------
# Translation into domain observations


def _is_status(value: str | None) -> TypeGuard[PipelineStatus]:
    return value in STATUSES


def _status(value: str, *, kind: str, where: str) -> PipelineStatus:
    if not _is_status(value):
        raise PayloadError(kind, f"{where}: unknown status {value!r}")
    return value


def _known_status(value: str | None) -> PipelineStatus | None:
    return value if _is_status(value) else None


def _join(base: str | None, path: str) -> str | None:
    return f"{base.rstrip('/')}{path}" if base else None


def pipeline_observed(hook: PipelineHook) -> PipelineObserved:
    """A Pipeline Hook as a domain observation."""
    kind = "Pipeline Hook"
    attrs = hook.object_attributes
    project = hook.project
    if not project.path_with_namespace:
        raise PayloadError(kind, "missing project.path_with_namespace")
    project_url = project.web_url
    own_clock = latest(attrs.created_at, attrs.finished_at)
    jobs = None
    if hook.builds is not None:
        # A job with a status this code does not know is left out rather than guessed at.
        built = (_build_job(b, project_url=project_url, fallback=own_clock) for b in hook.builds)
        jobs = tuple(j for j in built if j is not None)
    clock = latest(own_clock, *(j.observed_at for j in jobs or ()))
    if clock is None:
        raise PayloadError(kind, "missing object_attributes.created_at: the event has no time")
    commit = hook.commit
    author = commit.author if commit is not None else None
    user = hook.user
    mr = hook.merge_request
    return PipelineObserved(
        project=project.path_with_namespace,
        project_url=project_url,
        default_branch=project.default_branch,
        pipeline_id=attrs.id,
        iid=attrs.iid,
        name=attrs.name,
        status=_status(attrs.status, kind=kind, where="object_attributes.status"),
        ref=attrs.ref,
        tag=bool(attrs.tag),
        sha=attrs.sha,
        commit_title=_title(commit.title, commit.message) if commit is not None else None,
        commit_url=(commit.url if commit is not None else None)
        or _join(project_url, f"/-/commit/{attrs.sha}"),
        author_name=(author.name if author is not None else None)
        or (user.name if user is not None else None),
        author_email=_email(author.email if author is not None else None)
        or _email(user.email if user is not None else None),
        user_name=user.name if user is not None else None,
        user_email=_email(user.email) if user is not None else None,
        source=attrs.source,
        url=attrs.url or _join(project_url, f"/-/pipelines/{attrs.id}"),
        merge_request=None
        if mr is None
        else MergeRequestRef(
            iid=mr.iid,
            title=mr.title,
            url=mr.url or _join(project_url, f"/-/merge_requests/{mr.iid}"),
            source_branch=mr.source_branch,
            target_branch=mr.target_branch,
        ),
        created_at=attrs.created_at,
        finished_at=attrs.finished_at,
        duration=attrs.duration,
        stages=tuple(attrs.stages or ()),
        timestamp=clock,
        jobs=jobs,
    )


def _build_job(build: Build, *, project_url: str | None, fallback: datetime | None) -> Job | None:
    status = _known_status(build.status)
    clock = latest(build.created_at, build.started_at, build.finished_at) or fallback
    if status is None or clock is None:
        return None
    return Job(
        id=build.id,
        name=build.name,
        stage=build.stage,
        status=status,
        allow_failure=bool(build.allow_failure),
        manual=bool(build.manual) or build.when == "manual",
        failure_reason=build.failure_reason,
        url=_join(project_url, f"/-/jobs/{build.id}"),
        created_at=build.created_at,
        started_at=build.started_at,
        finished_at=build.finished_at,
        observed_at=clock,
    )


def job_observed(hook: JobHook) -> JobObserved:
    """A Job Hook as a domain observation."""
    kind = "Job Hook"
    project = hook.project
    homepage = hook.repository.homepage if hook.repository is not None else None
    path = project.path_with_namespace if project is not None else None
    if not path and homepage:
        try:
            path = urlsplit(homepage).path.strip("/") or None
        except ValueError:  # "http://[abc": not a URL, so no path either
            path = None
    if not path:
        raise PayloadError(kind, "missing project.path_with_namespace (and repository.homepage)")
    project_url = (project.web_url if project is not None else None) or homepage
    created = hook.build_created_at_iso or hook.build_created_at
    started = hook.build_started_at_iso or hook.build_started_at
    finished = hook.build_finished_at_iso or hook.build_finished_at
    clock = latest(created, started, finished)
    if clock is None:
        raise PayloadError(kind, "missing build_created_at: the event has no time")
    commit = hook.commit
    user = hook.user
    return JobObserved(
        project=path,
        project_url=project_url,
        default_branch=project.default_branch if project is not None else None,
        pipeline_id=hook.pipeline_id,
        pipeline_status=_known_status(commit.status) if commit is not None else None,
        pipeline_url=_join(project_url, f"/-/pipelines/{hook.pipeline_id}"),
        job_id=hook.build_id,
        name=hook.build_name,
        stage=hook.build_stage,
        status=_status(hook.build_status, kind=kind, where="build_status"),
        allow_failure=bool(hook.build_allow_failure),
        failure_reason=hook.build_failure_reason,
        url=_join(project_url, f"/-/jobs/{hook.build_id}"),
        created_at=created,
        started_at=started,
        finished_at=finished,
        timestamp=clock,
        ref=hook.ref,
        tag=bool(hook.tag),
        sha=hook.sha,
        commit_title=_title(None, commit.message) if commit is not None else None,
        author_name=(commit.author_name if commit is not None else None)
        or (user.name if user is not None else None),
        author_email=_email(commit.author_email if commit is not None else None)
        or _email(user.email if user is not None else None),
        user_name=user.name if user is not None else None,
        user_email=_email(user.email) if user is not None else None,
    )


def observed(event: GitLabEvent) -> PipelineObserved | JobObserved | None:
    """The pipeline observation an event carries, if it carries one."""
    if isinstance(event, PipelineHook):
        return pipeline_observed(event)
    if isinstance(event, JobHook):
        return job_observed(event)
    return None
