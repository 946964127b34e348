"""What the GitLab sandbox remembers besides git: users, projects, MRs, pipelines, hooks."""

from __future__ import annotations

import fnmatch
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.sandbox.gitlab.repos import Repository

JsonDict = dict[str, Any]

MergeRequestState = Literal["opened", "closed", "merged"]
PipelineStatus = Literal[
    "created", "pending", "running", "success", "failed", "canceled", "skipped"
]
JobStatus = PipelineStatus
Outcome = Literal["success", "failed", "hang", "stuck"]
CiMode = Literal["both", "merge_requests", "branches", "none"]
CI_MODES: tuple[CiMode, ...] = ("both", "merge_requests", "branches", "none")
EventKind = Literal["push", "tag_push", "merge_request", "pipeline", "job"]

FINISHED: frozenset[str] = frozenset({"success", "failed", "canceled", "skipped"})
DEFAULT_JOBS: tuple[tuple[str, str], ...] = (("build", "build"), ("test", "test"))
DEFAULT_DURATION = 60.0


class ApiError(Exception):
    """An answer other than 2xx, in GitLab's JSON shape: ``{"message": ...}`` (or ``error``)."""

    def __init__(self, status: int, message: Any, *, key: str = "message") -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body: JsonDict = {key: message}


def now() -> datetime:
    return datetime.now(UTC)


def api_time(when: datetime | None) -> str | None:
    """GitLab's REST timestamps: ``2024-05-01T10:00:00.000Z``."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def commit_time(when: datetime) -> str:
    """Commit dates keep the author's offset: ``2024-05-01T12:00:00.000+02:00``."""
    return when.isoformat(timespec="milliseconds")


def hook_time(when: datetime | None) -> str | None:
    """Pipeline and job hooks: ``2024-05-01 10:00:00 UTC``."""
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Ids:
    """Instance-wide ids (GitLab's ``id``), one sequence per kind of record."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}

    def next(self, kind: str) -> int:
        counter = self._counters.setdefault(kind, itertools.count(1))
        return next(counter)


@dataclass
class User:
    id: int
    username: str
    name: str
    email: str
    bot: bool = False
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class Token:
    token: str
    user_id: int
    read_only: bool = False


@dataclass(frozen=True)
class OutcomeRule:
    pattern: str
    outcome: Outcome
    duration: float
    failed_job: str | None
    failure_reason: str

    def matches(self, names: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, self.pattern) for name in names)


@dataclass
class Note:
    id: int
    body: str
    author_id: int
    noteable_id: int
    noteable_iid: int
    project_id: int
    system: bool = False
    created_at: datetime = field(default_factory=now)
    noteable_type: Literal["MergeRequest", "Issue"] = "MergeRequest"


IssueState = Literal["opened", "closed"]


@dataclass
class Issue:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    author_id: int
    labels: list[str] = field(default_factory=list)
    state: IssueState = "opened"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    closed_at: datetime | None = None
    closed_by_id: int | None = None
    notes: list[Note] = field(default_factory=list)


@dataclass
class Label:
    """A project label; GitLab creates one when an issue or MR is given a name it lacks."""

    id: int
    name: str
    color: str = "#6699cc"
    description: str = ""

    @property
    def scope(self) -> str | None:
        """``deployed`` for ``deployed::production``: one label per scope on an issue or MR."""
        return self.name.rsplit("::", 1)[0] if "::" in self.name else None


@dataclass
class MergeRequest:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author_id: int
    head_sha: str
    base_sha: str
    start_sha: str
    commit_shas: list[str]
    labels: list[str] = field(default_factory=list)
    state: MergeRequestState = "opened"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    merged_at: datetime | None = None
    merged_by_id: int | None = None
    closed_at: datetime | None = None
    closed_by_id: int | None = None
    merge_commit_sha: str | None = None
    merge_when_pipeline_succeeds: bool = False
    merge_user_id: int | None = None
    force_remove_source_branch: bool = False
    should_remove_source_branch: bool | None = None
    approved_by: list[int] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    conflicts: dict[tuple[str, str], bool] = field(default_factory=dict)


@dataclass
class Job:
    id: int
    name: str
    stage: str
    user_id: int
    status: JobStatus = "created"
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: str | None = None
    retried: bool = False

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or self.started_at) - self.started_at).total_seconds()

    @property
    def queued_duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.started_at - self.created_at).total_seconds()


@dataclass
class Pipeline:
    id: int
    iid: int
    project_id: int
    ref: str
    tag: bool
    sha: str
    before_sha: str
    source: str  # "push" or "merge_request_event"
    user_id: int
    jobs: list[Job]
    duration_planned: float
    merge_request_iid: int | None = None
    branch: str | None = None  # the branch the pipeline is for (an MR's source branch)
    status: PipelineStatus = "created"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    step: int = 0  # steps taken: the simulated clock of its jobs
    born: float = 0.0  # monotonic time of creation, for the ticker

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(job.stage for job in self.jobs))

    @property
    def current_jobs(self) -> list[Job]:
        return [job for job in self.jobs if not job.retried]

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds())

    @property
    def queued_duration(self) -> int | None:
        if self.started_at is None:
            return None
        return int((self.started_at - self.created_at).total_seconds())

    def names(self) -> tuple[str, ...]:
        """What an outcome rule's glob is matched against."""
        return tuple(n for n in (self.branch, self.ref) if n)


@dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    repo: Repository
    default_branch: str
    ci: CiMode
    jobs: tuple[tuple[str, str], ...]
    approvals_required: int
    pipeline_must_succeed: bool
    description: str = ""
    created_at: datetime = field(default_factory=now)
    last_activity_at: datetime = field(default_factory=now)
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)  # by name
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    rules: list[OutcomeRule] = field(default_factory=list)
    tag_order: dict[str, int] = field(default_factory=dict)  # tag → creation sequence
    mr_iids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    issue_iids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    pipeline_iids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def mr_pipelines(self) -> bool:
        """Merge request pipelines run (``rules: - if: $CI_PIPELINE_SOURCE ==
        "merge_request_event"``)."""
        return self.ci in ("both", "merge_requests")

    @property
    def branch_pipelines(self) -> bool:
        """Branch and tag pipelines run (``$CI_COMMIT_BRANCH``, ``$CI_COMMIT_TAG``)."""
        return self.ci in ("both", "branches")

    @property
    def namespace(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""


@dataclass(frozen=True)
class Event:
    """Something GitLab tells webhooks about, already rendered as its JSON payload."""

    project_id: int
    kind: EventKind
    payload: JsonDict
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
