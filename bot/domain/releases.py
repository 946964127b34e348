"""Releases: what ``/deploy`` and ``/rollback`` ask for, who may approve them, where they stand.

Everything here is pure. The deploy and rollback services parse the command with the catalog at
hand, then check what needs the outside world (the tag exists, the version differs, the lock).
The approve service asks ``decide_approval`` at every click; every move of a release (a
click, a webhook, a rollout, a deadline) is ``release_flow.apply``.

Grammar::

    /deploy <app> <version> to <env>
    /deploy <app> from <env> to <env>   promotion: the version that runs in the first env
    /deploy help
    /rollback <app> <env> [to <version>]
    /rollback help
    /undeploy <app> [from] <env>        an MR removing the app's manifest of that env
    /undeploy help

Choices a user can notice:

- App and environment names are lower-cased (the catalog's names are lower case); a version is
  kept as typed, since tags are case-sensitive.
- A version is an image tag (``^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$``): it lands in a manifest and
  a branch name, so no path, space or shell character gets that far.
- Promotion goes forward only, in the catalog's promotion order: going back is a rollback, or a
  deploy of a named version.
- Words we do not expect are refused rather than ignored: deploying the wrong thing is worse
  than retyping.
- An undeploy always needs an approval, whatever the environment's policy (``approval_rule``):
  removing an app from an environment is not something a green pipeline decides alone.

The release record (``Release``) and its states live here; how a release moves from one state
to the next is ``bot.domain.release_flow``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from bot.domain.catalog import Catalog, Environment
from bot.domain.errors import CommandError
from bot.domain.images import is_tag
from bot.domain.rollouts import PodProblem, Progress
from bot.domain.text import scrub

__all__ = [
    "AUTOPILOT",
    "DEPLOY_USAGE",
    "ROLLBACK_USAGE",
    "UNDEPLOY_USAGE",
    "AlreadyApproved",
    "AlreadyComplete",
    "ApprovalDecision",
    "ApprovalNotRequired",
    "ApprovalRule",
    "Approved",
    "AutopilotCause",
    "Changelog",
    "ChangelogEntry",
    "DeployRequest",
    "FailedStep",
    "LockOverride",
    "NotAnApprover",
    "PipelineLink",
    "PromoteRequest",
    "Release",
    "ReleaseCommandError",
    "ReleaseHelp",
    "ReleaseKind",
    "ReleaseRef",
    "ReleaseSnapshot",
    "ReleaseState",
    "RollbackOffer",
    "RollbackRequest",
    "SelfApprovalForbidden",
    "UndeployRequest",
    "approval_note",
    "approval_rule",
    "approvers_label",
    "decide_approval",
    "merge_request_description",
    "parse_deploy",
    "parse_rollback",
    "parse_undeploy",
    "referenced_issues",
    "references_in",
    "release_title",
    "split_issue_references",
]

DEPLOY_USAGE: Final = (
    "Usage: `/deploy <app> <version> to <env>` or `/deploy <app> from <env> to <env>`"
    " — e.g. `/deploy orders 1.4.2 to staging`"
)
ROLLBACK_USAGE: Final = (
    "Usage: `/rollback <app> <env> [to <version>]` — e.g. `/rollback orders production`"
)
UNDEPLOY_USAGE: Final = "Usage: `/undeploy <app> <env>` — e.g. `/undeploy orders staging`"

_QUOTED: Final = 40
_LISTED: Final = 10
_HELP_WORDS: Final = frozenset({"help", "-h", "--help", "?"})


class ReleaseCommandError(CommandError):
    """A ``/deploy`` or ``/rollback`` typed wrong: ``problem`` then ``usage`` with an example.

    A ``CommandError``, so one handler answers every mistyped command the same way.
    """


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, kw_only=True)
class DeployRequest:
    app: str
    version: str
    env: str


@dataclass(frozen=True, kw_only=True)
class PromoteRequest:
    """Deploy to ``env`` the version that runs in ``source_env``, which comes before it."""

    app: str
    source_env: str
    env: str


@dataclass(frozen=True, kw_only=True)
class RollbackRequest:
    app: str
    env: str
    version: str | None = None
    """``None``: the version the environment ran before, from its manifest's history."""


@dataclass(frozen=True, kw_only=True)
class UndeployRequest:
    """Remove ``app``'s manifest of ``env`` from the GitOps repo: the app leaves ``env``."""

    app: str
    env: str


@dataclass(frozen=True, kw_only=True)
class ReleaseHelp:
    usage: str


def parse_deploy(text: str, *, catalog: Catalog) -> DeployRequest | PromoteRequest | ReleaseHelp:
    tokens = _words(text)
    if not tokens:
        raise ReleaseCommandError(
            "Name the app, the version and the environment.", usage=DEPLOY_USAGE
        )
    if tokens[0].lower() in _HELP_WORDS:
        return ReleaseHelp(usage=DEPLOY_USAGE)
    app = _app(tokens[0], catalog=catalog, usage=DEPLOY_USAGE)
    rest = tokens[1:]
    if rest and rest[0].lower() == "from":
        source, env = _promotion(rest[1:], catalog=catalog)
        return PromoteRequest(app=app, source_env=source, env=env)
    if not rest:
        raise ReleaseCommandError(
            f"Name the version and the environment: `/deploy {app} <version> to <env>`.",
            usage=DEPLOY_USAGE,
        )
    version = _version(rest[0], usage=DEPLOY_USAGE)
    env = _to_env(rest[1:], catalog=catalog, usage=DEPLOY_USAGE)
    return DeployRequest(app=app, version=version, env=env)


def parse_rollback(text: str, *, catalog: Catalog) -> RollbackRequest | ReleaseHelp:
    tokens = _words(text)
    if not tokens:
        raise ReleaseCommandError("Name the app and the environment.", usage=ROLLBACK_USAGE)
    if tokens[0].lower() in _HELP_WORDS:
        return ReleaseHelp(usage=ROLLBACK_USAGE)
    app = _app(tokens[0], catalog=catalog, usage=ROLLBACK_USAGE)
    if len(tokens) == 1:
        raise ReleaseCommandError(
            f"Name the environment to roll back: `/rollback {app} <env>`.", usage=ROLLBACK_USAGE
        )
    env = _env(tokens[1], catalog=catalog, usage=ROLLBACK_USAGE)
    rest = tokens[2:]
    if not rest:
        return RollbackRequest(app=app, env=env)
    if rest[0].lower() != "to":
        raise ReleaseCommandError(
            f"Expected `to <version>` after the environment, not {_quote(' '.join(rest))}.",
            usage=ROLLBACK_USAGE,
        )
    if len(rest) == 1:
        raise ReleaseCommandError("`to` needs a version.", usage=ROLLBACK_USAGE)
    version = _version(rest[1], usage=ROLLBACK_USAGE)
    _no_more(rest[2:], usage=ROLLBACK_USAGE)
    return RollbackRequest(app=app, env=env, version=version)


def parse_undeploy(text: str, *, catalog: Catalog) -> UndeployRequest | ReleaseHelp:
    tokens = _words(text)
    if not tokens:
        raise ReleaseCommandError("Name the app and the environment.", usage=UNDEPLOY_USAGE)
    if tokens[0].lower() in _HELP_WORDS:
        return ReleaseHelp(usage=UNDEPLOY_USAGE)
    app = _app(tokens[0], catalog=catalog, usage=UNDEPLOY_USAGE)
    rest = tokens[1:]
    if rest and rest[0].lower() in ("from", "in"):
        rest = rest[1:]
    if not rest:
        raise ReleaseCommandError(
            f"Name the environment to remove {app} from: `/undeploy {app} <env>`.",
            usage=UNDEPLOY_USAGE,
        )
    env = _env(rest[0], catalog=catalog, usage=UNDEPLOY_USAGE)
    _no_more(rest[1:], usage=UNDEPLOY_USAGE)
    return UndeployRequest(app=app, env=env)


def _promotion(tokens: list[str], *, catalog: Catalog) -> tuple[str, str]:
    if not tokens:
        raise ReleaseCommandError("`from` needs an environment.", usage=DEPLOY_USAGE)
    source = _env(tokens[0], catalog=catalog, usage=DEPLOY_USAGE)
    env = _to_env(tokens[1:], catalog=catalog, usage=DEPLOY_USAGE)
    order = catalog.env_names
    if source == env:
        raise ReleaseCommandError(
            f"Promote from one environment to another, not from {source} to itself.",
            usage=DEPLOY_USAGE,
        )
    if order.index(source) > order.index(env):
        raise ReleaseCommandError(
            f"{source} comes after {env} in promotion order ({' → '.join(order)}): promotions "
            "go forward. To go back, use `/rollback` or deploy a version by name.",
            usage=DEPLOY_USAGE,
        )
    return source, env


def _to_env(tokens: list[str], *, catalog: Catalog, usage: str) -> str:
    if not tokens:
        raise ReleaseCommandError("Say where: `to <env>`.", usage=usage)
    if tokens[0].lower() != "to":
        raise ReleaseCommandError(
            f"Expected `to <env>`, not {_quote(' '.join(tokens))}.", usage=usage
        )
    if len(tokens) == 1:
        raise ReleaseCommandError("`to` needs an environment.", usage=usage)
    env = _env(tokens[1], catalog=catalog, usage=usage)
    _no_more(tokens[2:], usage=usage)
    return env


def _no_more(tokens: list[str], *, usage: str) -> None:
    if tokens:
        raise ReleaseCommandError(f"Unexpected {_quote(' '.join(tokens))} at the end.", usage=usage)


def _app(token: str, *, catalog: Catalog, usage: str) -> str:
    name = token.lower()
    if name in catalog.app_names:
        return name
    close = catalog.suggest(name, among="app")
    if close:
        hint = f"did you mean {close[0]}?"
    elif catalog.app_names:
        hint = f"apps are {_listed(catalog.app_names)}"
    else:
        hint = "the catalog has no apps"
    raise ReleaseCommandError(f"No app {_quote(token)} — {hint}", usage=usage)


def _env(token: str, *, catalog: Catalog, usage: str) -> str:
    name = token.lower()
    if name in catalog.env_names:
        return name
    close = catalog.suggest(name, among="environment")
    hint = f"did you mean {close[0]}? " if close else ""
    raise ReleaseCommandError(
        f"No environment {_quote(token)} — {hint}environments are {_listed(catalog.env_names)}",
        usage=usage,
    )


def _version(token: str, *, usage: str) -> str:
    if is_tag(token):
        return token
    if len(token) > 128:
        problem = f"{_quote(token)} is too long for a version: tags have at most 128 characters."
    else:
        problem = (
            f"{_quote(token)} is not a version: a tag is letters, digits, `_`, `.` and `-`,"
            " and does not start with `.` or `-`."
        )
    raise ReleaseCommandError(problem, usage=usage)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")


def _quote(token: str) -> str:
    shown = token if len(token) <= _QUOTED else token[: _QUOTED - 1] + "…"
    return f"“{shown}”"


def _words(text: str) -> list[str]:
    """Split on any whitespace; other control characters count as spaces, never as text."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split()


# --------------------------------------------------------------------------------------------
# Approvals


@dataclass(frozen=True, kw_only=True)
class ApprovalRule:
    """What a change needs before it merges: the environment's policy for a deploy or a
    rollback; always an approval for an undeploy (and for break-glass access)."""

    required: bool
    """``False``: it merges on a green pipeline; a click approves nothing."""
    needed: int
    """Distinct approvers."""
    self_approval: bool


def approval_rule(kind: ReleaseKind, env: Environment) -> ApprovalRule:
    """The rule a ``kind`` of release follows in ``env``, read from the catalog at click time.

    An undeploy takes the env's approvals and self-approval rule where it has them (a
    ``manual`` env), else one approval by someone other than the requester."""
    manual = env.policy == "manual"
    if kind == "undeploy":
        return ApprovalRule(
            required=True,
            needed=env.approvals if manual else 1,
            self_approval=env.self_approval if manual else False,
        )
    return ApprovalRule(required=manual, needed=env.approvals, self_approval=env.self_approval)


@dataclass(frozen=True, kw_only=True)
class ReleaseSnapshot:
    """What a click is judged against, read fresh from the release record at click time."""

    requester: str
    """Slack user id."""
    approvals: tuple[str, ...]
    """Slack user ids of the approvals so far, in order."""
    env: Environment
    rule: ApprovalRule | None = None
    """``None``: the env's policy, as for a deploy."""


@dataclass(frozen=True, kw_only=True)
class Approved:
    approvals: tuple[str, ...]
    """The approvals to store: the previous ones and this user."""
    count: int
    needed: int
    complete: bool
    """Enough distinct approvers: time to merge."""


@dataclass(frozen=True, kw_only=True)
class NotAnApprover:
    approvers_label: str
    """For "you are not an approver for production (approvers: @sre-oncall)"."""


@dataclass(frozen=True)
class SelfApprovalForbidden:
    pass


@dataclass(frozen=True)
class AlreadyApproved:
    """This user's approval is already counted: a double click changes nothing."""


@dataclass(frozen=True, kw_only=True)
class AlreadyComplete:
    """Enough people approved before this click (two approvers clicking at once)."""

    approvals: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalNotRequired:
    """``auto`` environments merge on a green pipeline: a click there (a forged or stale
    button) approves nothing."""


ApprovalDecision = (
    Approved
    | NotAnApprover
    | SelfApprovalForbidden
    | AlreadyApproved
    | AlreadyComplete
    | ApprovalNotRequired
)


def decide_approval(
    release: ReleaseSnapshot,
    *,
    user: str,
    approvers: frozenset[str],
    named: Sequence[str] = (),
) -> ApprovalDecision:
    """May ``user`` approve ``release``, and is it then approved enough to merge?

    ``approvers`` are the user ids allowed (groups already resolved by the service); ``named``
    is how the catalog names them (``Catalog.approvers_for``), only for the refusal's wording.
    Checked in the order a person can fix them: who they are, then what already happened.
    """
    rule = release.rule or approval_rule("deploy", release.env)
    if not rule.required:
        return ApprovalNotRequired()
    so_far = tuple(dict.fromkeys(release.approvals))
    if user in so_far:
        return AlreadyApproved()
    if user not in approvers:
        return NotAnApprover(approvers_label=approvers_label(named))
    if user == release.requester and not rule.self_approval:
        return SelfApprovalForbidden()
    if len(so_far) >= rule.needed:
        return AlreadyComplete(approvals=so_far)
    approvals = (*so_far, user)
    return Approved(
        approvals=approvals,
        count=len(approvals),
        needed=rule.needed,
        complete=len(approvals) >= rule.needed,
    )


def approvers_label(named: Sequence[str]) -> str:
    """Slack mrkdwn for the catalog's approvers: user and group ids become mentions."""
    if not named:
        return "nobody is configured"
    return ", ".join(_mention(person) for person in named)


def _mention(person: str) -> str:
    if person.startswith("S") and person[1:].isalnum() and person.isupper():
        return f"<!subteam^{person}>"
    if person[:1] in {"U", "W"} and person[1:].isalnum() and person.isupper():
        return f"<@{person}>"
    return person


# --------------------------------------------------------------------------------------------
# States


ReleaseState = Literal[
    "requested",
    "awaiting_approval",
    "waiting_pipeline",
    "approved",
    "merging",
    "merged",
    "deploying",
    "rolling_out",
    "healthy",
    "deployed",
    "failed",
    "not_seen",
    "rejected",
    "expired",
    "refused",
    "superseded",
    "removed",
]
FailedStep = Literal["mr_pipeline", "merge", "unreviewed_merge", "deploy_pipeline", "rollout"]
"""Where a ``failed`` release failed: what may still move it (a rollout that recovers)."""


# --------------------------------------------------------------------------------------------
# Titles

ReleaseKind = Literal["deploy", "rollback", "undeploy"]

AutopilotCause = Literal["new_version", "promotion"]
"""Why the autopilot asked for a release: a new version tag, or a scheduled promotion."""
AUTOPILOT: Final = "pitcrew"
"""The requester of the autopilot's releases and the holder of its freezes: not a Slack user."""


def release_title(*, kind: ReleaseKind, app: str, version: str, env: str) -> str:
    """The MR's title and the release message's header, one wording for both."""
    if kind == "rollback":
        return f"Roll back {app} to {version} in {env}"
    if kind == "undeploy":
        return f"Undeploy {app} from {env}"
    return f"Deploy {app} {version} to {env}"


# --------------------------------------------------------------------------------------------
# The release record

Policy = Literal["auto", "manual"]


@dataclass(frozen=True, kw_only=True)
class ChangelogEntry:
    sha: str
    title: str
    author: str
    url: str
    issues: tuple[str, ...] = ()
    """Issue numbers the commit message references (``#12`` → ``"12"``)."""
    committed_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Changelog:
    """The commits between the two versions in the app's repo, newest first.

    For a rollback these are the commits that leave the environment."""

    entries: tuple[ChangelogEntry, ...] = ()
    total: int = 0
    compare_url: str | None = None
    issues_url: str | None = None
    """``{project}/-/issues``: where ``#12`` points."""
    unavailable: str | None = None
    """Why there is no changelog (a missing tag, GitLab down): the release goes on without."""
    references: tuple[str, ...] = ()
    """Every issue and merge request the commits reference, once each, as GitLab writes them
    (``#12``, ``group/project#12``, ``!45``): who gets a note when the release ships."""
    commit_times: tuple[datetime, ...] = ()
    """When each commit was committed, all of them (``entries`` shows the newest only): the
    lead time for changes counts from these."""


@dataclass(frozen=True, kw_only=True)
class LockOverride:
    """The lock a person chose to deploy through ("Deploy anyway")."""

    holder: str
    reason: str
    since: datetime
    by: str


@dataclass(frozen=True, kw_only=True)
class PipelineLink:
    id: int
    status: str
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class RollbackOffer:
    """A Roll back button on a rollout no release explains: what it rolls back, kept by the
    server. The button carries only ``id``; the click runs ``/rollback <app> <env> to
    <version>`` as the person who clicked, with every check and approval that implies."""

    id: str
    app: str
    env: str
    version: str


@dataclass(frozen=True, kw_only=True)
class ReleaseRef:
    """Another release, as a message links it (the one that superseded this one, or the one
    this one superseded)."""

    id: str
    title: str
    requester: str
    mr_iid: int | None = None
    mr_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class Release:
    """One ``/deploy`` or ``/rollback``, from the request to a healthy (or failed) rollout.

    Stored as a whole and replaced by compare-and-set; the release message is rendered from it.
    Slack user ids for people; ``approvals`` in the order they came.
    """

    id: str
    kind: ReleaseKind
    app: str
    team: str
    env: str
    policy: Policy
    approvals_needed: int
    from_version: str | None
    to_version: str
    requester: str
    created_at: datetime
    state: ReleaseState = "requested"
    changelog: Changelog = Changelog()
    watched: bool = False
    """The env's cluster is watched, so the rollout will be followed."""
    mr_iid: int | None = None
    mr_url: str | None = None
    branch: str | None = None
    head_sha: str | None = None
    approvals: tuple[str, ...] = ()
    override: LockOverride | None = None
    held_by: str | None = None
    """A release ready to merge (an ``auto`` one whose pipeline passed, or an approved one)
    while the env was locked: the lock holder."""
    resumed_at: datetime | None = None
    """When a held release went on after its lock: its expiry counts from here."""
    ended_by: str | None = None
    """Who rejected it, or who merged or closed the MR in GitLab."""
    merge_sha: str | None = None
    mr_pipeline: PipelineLink | None = None
    deploy_pipeline: PipelineLink | None = None
    rollout_started_at: datetime | None = None
    rollout_id: str | None = None
    """The rollout this release follows: its story is told here, not in a message of its own."""
    rollout_progress: Progress | None = None
    """Its pods, as last seen: the message says how many new ones are ready, and old ones serve."""
    problems: tuple[PodProblem, ...] = ()
    """Why its new pods are not becoming ready, as last read: the failure reply names them."""
    finished_at: datetime | None = None
    failure: str | None = None
    """One line: why it ended short (what failed, what was never seen, why it expired)."""
    failed_step: FailedStep | None = None
    merged_at: datetime | None = None
    """When GitLab merged it: the pipeline and rollout deadlines count from here."""
    superseded_by: ReleaseRef | None = None
    supersedes: ReleaseRef | None = None
    autopilot: AutopilotCause | None = None
    """Asked for by the autopilot (``requester`` is ``AUTOPILOT``), and why."""
    promoted_from: str | None = None
    """A promotion: the environment whose version it takes (``/deploy <app> from <env>``)."""

    @property
    def title(self) -> str:
        return release_title(kind=self.kind, app=self.app, version=self.to_version, env=self.env)

    @property
    def rollback_to(self) -> str | None:
        """The version a Roll back button puts back: the one this release replaced, once it
        has reached the environment's git (nothing to undo before the merge).

        A failed rollback offers none: the version it left is the one that failed; nor does an
        undeploy (its manifest is gone: a deploy there starts again by hand)."""
        if self.kind in ("rollback", "undeploy"):
            return None
        merged = self.merged_at is not None or self.merge_sha is not None
        if self.state not in ("failed", "not_seen") or not merged or self.from_version is None:
            return None
        return self.from_version

    @property
    def ref(self) -> ReleaseRef:
        return ReleaseRef(
            id=self.id,
            title=self.title,
            requester=self.requester,
            mr_iid=self.mr_iid,
            mr_url=self.mr_url,
        )

    def snapshot(self, env: Environment) -> ReleaseSnapshot:
        return ReleaseSnapshot(
            requester=self.requester,
            approvals=self.approvals,
            env=env,
            rule=approval_rule(self.kind, env),
        )


_ISSUE_REF: Final = re.compile(r"(?<![\w/&])#(\d{1,9})\b")
_REFERENCE: Final = re.compile(
    r"(?<![\w/&.#!-])"
    r"(?P<project>[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+)?"
    r"(?P<sigil>[#!])(?P<iid>\d{1,9})\b"
)
MAX_REFERENCES: Final = 200


def referenced_issues(message: str) -> tuple[str, ...]:
    """Issue numbers a commit message references (``Fixes #12``), in order, once each."""
    return tuple(dict.fromkeys(_ISSUE_REF.findall(message)))


def references_in(message: str) -> tuple[str, ...]:
    """The issues and merge requests a commit message references, as GitLab writes them:
    ``#12`` and ``!45`` in the same project, ``group/project#12`` in another; in order, once
    each. A URL's fragment (``…/page#12``) and an epic (``&12``) are not references."""
    found = (
        f"{match['project'] or ''}{match['sigil']}{int(match['iid'])}"
        for match in _REFERENCE.finditer(message)
    )
    return tuple(dict.fromkeys(found))


def split_issue_references(text: str) -> tuple[tuple[str, str | None], ...]:
    """``text`` in pieces, each issue reference apart with its number: ``"Fix (#131)"`` →
    ``("Fix (", None), ("#131", "131"), (")", None)``.

    A changelog links a title's references where they stand, and appends only the issues the
    title does not show (a "Fixes #12" in the commit's body): never "Fix (#131) #131".
    """
    pieces: list[tuple[str, str | None]] = []
    start = 0
    for match in _ISSUE_REF.finditer(text):
        if match.start() > start:
            pieces.append((text[start : match.start()], None))
        pieces.append((match.group(0), match.group(1)))
        start = match.end()
    if start < len(text):
        pieces.append((text[start:], None))
    return tuple(pieces)


def merge_request_description(
    release: Release,
    *,
    requester_name: str,
    approvers: str,
    lock: str | None,
    removed: str | None = None,
    unlisted_from: Sequence[str] = (),
) -> str:
    """The MR description (GitLab Markdown): who asked, what changes, the changelog, the lock.

    An undeploy names the file it removes (``removed``) and the kustomizations it takes the
    file's entry out of (``unlisted_from``) instead of a changelog."""
    if release.policy == "auto":
        policy = "merges when its pipeline passes"
    else:
        policy = (
            f"needs {_count(release.approvals_needed, 'approval')} from {_md(approvers)} in Slack"
        )
    requested = f"Requested by **{_md(requester_name)}** in Slack, through Pitcrew."
    if release.autopilot == "new_version":
        requested = f"Opened by Pitcrew's autopilot: {release.to_version} is a new version."
    elif release.autopilot == "promotion":
        requested = "Opened by Pitcrew's autopilot: a scheduled promotion."
    if release.kind == "undeploy":
        lines = [
            requested,
            "",
            f"- **App:** {release.app} (team {release.team})",
            f"- **Environment:** {release.env} — {policy} (an undeploy always does)",
            f"- **Version there now:** {release.from_version or 'unknown'} → **removed**",
            f"- **Removes:** `{_md_code(removed or 'its manifest')}`",
            *(f"- **Unlists it from:** `{_md_code(path)}`" for path in unlisted_from),
            f"- **Lock:** {_md(lock) if lock else 'none'}",
            "",
            "Once merged, the GitOps controller removes the app's resources from the"
            f" environment (if it prunes). Deploying it to {release.env} again is a merge request"
            " adding the manifest back: reverting this one does that.",
            "",
            f"<!-- pitcrew release {release.id} -->",
        ]
        return "\n".join(lines)
    lines = [
        requested,
        "",
        f"- **App:** {release.app} (team {release.team})",
        f"- **Environment:** {release.env} — {policy}",
        f"- **Version:** {release.from_version or 'none'} → **{release.to_version}**"
        + (" (rollback)" if release.kind == "rollback" else ""),
        f"- **Lock:** {_md(lock) if lock else 'none'}",
        "",
    ]
    log = release.changelog
    heading = "Commits leaving" if release.kind == "rollback" else "Changelog"
    if log.unavailable:
        lines.append(f"### {heading}\n\n_Not available: {_md(log.unavailable)}_")
    elif not log.entries:
        lines.append(f"### {heading}\n\n_No commits between the two versions._")
    else:
        where = f" ([compare]({log.compare_url}))" if log.compare_url else ""
        lines.append(f"### {heading}: {_count(log.total, 'commit')}{where}\n")
        for entry in log.entries:
            lines.append(
                f"- [`{entry.sha[:8]}`]({entry.url}) {_md_title(entry, log.issues_url)}"
                f" — {_md(entry.author)}"
            )
        if log.total > len(log.entries):
            lines.append(f"- … and {log.total - len(log.entries)} more")
    lines += ["", f"<!-- pitcrew release {release.id} -->"]
    return "\n".join(lines)


def _md_code(text: str) -> str:
    """A path inside backticks: no backtick may end the code span early."""
    return scrub(text).replace("`", "'")


def _md_title(entry: ChangelogEntry, issues_url: str | None) -> str:
    """The commit title with its issue references linked in place, then the issues only its
    body references."""
    pieces = split_issue_references(scrub(entry.title))
    shown = {number for _, number in pieces if number is not None}
    title = "".join(
        _md(piece) if number is None else _md_issue(number, issues_url) for piece, number in pieces
    )
    return title + "".join(
        f" {_md_issue(number, issues_url)}" for number in entry.issues if number not in shown
    )


def _md_issue(number: str, issues_url: str | None) -> str:
    return f"[#{number}]({issues_url}/{number})" if issues_url else f"#{number}"


def approval_note(names: Sequence[str], *, needed: int) -> str:
    """The note left on the MR when Slack approvals complete (GitLab Markdown, no mentions)."""
    who = ", ".join(_md(name) for name in names)
    return f"Approved in Slack through Pitcrew by {who} ({len(names)}/{needed})."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _md(text: str) -> str:
    """Text from people (commit titles, names) must not turn into Markdown or HTML, nor carry
    control, bidi or invisible characters (``scrub``); one line."""
    escaped = re.sub(r"([\\`*_\[\]<>|])", r"\\\1", scrub(text))
    return escaped.replace("@", "@\u200b")  # no GitLab mention from a commit title or a name
