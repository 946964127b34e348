"""The GitLab instance behind the sandbox's HTTP API: what each operation does and tells hooks.

Everything here is synchronous and runs under one re-entrant lock, in whichever thread calls it
(the HTTP handlers run it in a worker thread). Operations raise ``ApiError`` with GitLab's status
and message; events go out through ``emit`` already rendered as webhook payloads.

Behaviour that matters to a client, as GitLab does it:

* every write to a branch is a push: a Push Hook, MRs whose source it is move to the new head
  (approvals reset, auto-merge aborted, Merge Request Hook ``update`` with ``oldrev``), and the
  pipelines the project's CI mode makes (``Project.ci``):

  ===========================  ========  ==================  ============  ========
  what happened                ``both``  ``merge_requests``  ``branches``  ``none``
  ===========================  ========  ==================  ============  ========
  MR opened                    MR        MR                  —             —
  push to an open MR's branch  MR        MR                  branch        —
  push to another branch       branch    —                   branch        —
  merge (pushes the target)    branch    —                   branch        —
  tag pushed                   tag       —                   tag           —
  ===========================  ========  ==================  ============  ========

  "MR" is a merge request pipeline on ``refs/merge-requests/<iid>/head`` (``source:
  merge_request_event``), one per open MR of the branch; "branch" and "tag" are ``source: push``
  pipelines on the branch or tag. An MR's head pipeline is the newest pipeline of its head
  commit that is either its own MR pipeline or a branch pipeline of its source branch, so with
  ``branches`` it is the branch pipeline, as GitLab shows it;
* merging writes a real merge commit (``git merge-tree``), pushes the target branch (hook and
  pipeline), sends ``merge`` and removes the source branch when asked;
* ``merge_when_pipeline_succeeds`` waits for the MR's head pipeline (and approvals), merges when
  they are satisfied, and is aborted when the pipeline fails or the source branch moves; when
  nothing is to wait for (no CI and pipelines not required), it merges at once;
* a pipeline whose outcome rule is ``hang`` keeps one job running forever, ``stuck`` keeps its
  jobs pending (no runner takes them); both finish once a later rule gives them an end.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from bot.sandbox.gitlab import hooks
from bot.sandbox.gitlab.records import (
    CI_MODES,
    DEFAULT_DURATION,
    FINISHED,
    ApiError,
    CiMode,
    Event,
    EventKind,
    Ids,
    Issue,
    Job,
    JsonDict,
    Label,
    MergeRequest,
    Note,
    Outcome,
    OutcomeRule,
    Pipeline,
    Project,
    Token,
    User,
    now,
)
from bot.sandbox.gitlab.repos import (
    ZERO_SHA,
    Action,
    ActionError,
    CommitInfo,
    Repository,
    Signature,
)

_PROJECT_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+")
_AUTHOR = re.compile(r"\s*(?P<name>[^<]+?)\s*<(?P<email>[^>]+)>\s*")
OUTCOMES: tuple[Outcome, ...] = ("success", "failed", "hang", "stuck")


def ci_mode(ci: bool | str) -> CiMode:
    """``True`` is ``"both"``, ``False`` is ``"none"`` (what ``add_project(ci=...)`` first took)."""
    if ci is True:
        return "both"
    if ci is False:
        return "none"
    for mode in CI_MODES:
        if ci == mode:
            return mode
    raise ValueError(f"ci must be True, False or one of {', '.join(CI_MODES)}, not {ci!r}")


class Instance:
    def __init__(
        self,
        root: Path,
        *,
        emit: Callable[[Event], None],
        web_base: Callable[[], str],
    ) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.ids = Ids()
        self.users: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.projects: dict[int, Project] = {}
        self.speed: float | None = None  # pipelines follow the clock at this speed when set
        self.web_base = web_base
        self._emit = emit
        self.root_user = self.add_user("root", name="Administrator", email="admin@example.com")

    # ------------------------------------------------------------------ set-up

    def add_user(self, username: str, *, name: str, email: str, bot: bool = False) -> User:
        with self.lock:
            if self.user_named(username) is not None:
                raise ValueError(f"user @{username} already exists in the GitLab sandbox")
            user = User(
                id=self.ids.next("user"), username=username, name=name, email=email, bot=bot
            )
            self.users[user.id] = user
            return user

    def add_token(self, token: str, username: str, *, read_only: bool = False) -> None:
        with self.lock:
            user = self.user_named(username)
            if user is None:
                user = self.add_user(
                    username,
                    name=username.replace("-", " ").title(),
                    email=f"{username}@noreply.gitlab.example.com",
                    bot=True,
                )
            self.tokens[token] = Token(token=token, user_id=user.id, read_only=read_only)

    def add_project(
        self,
        path: str,
        *,
        default_branch: str,
        ci: bool | CiMode,
        jobs: Sequence[tuple[str, str]],
        approvals_required: int,
        pipeline_must_succeed: bool | None,
        description: str,
    ) -> Project:
        with self.lock:
            if not _PROJECT_PATH.fullmatch(path) or path.endswith((".git", ".")):
                raise ValueError(f"not a GitLab project path: {path!r} (group/name)")
            if any(p.path.lower() == path.lower() for p in self.projects.values()):
                raise ValueError(f"project {path} already exists in the GitLab sandbox")
            if not jobs:
                raise ValueError("a project with CI needs at least one job")
            mode = ci_mode(ci)
            repo = Repository.create(self.root / f"{path}.git", default_branch=default_branch)
            project = Project(
                id=self.ids.next("project"),
                path=path,
                repo=repo,
                default_branch=default_branch,
                ci=mode,
                jobs=tuple(jobs),
                approvals_required=approvals_required,
                pipeline_must_succeed=mode != "none"
                if pipeline_must_succeed is None
                else pipeline_must_succeed,
                description=description,
            )
            self.projects[project.id] = project
            return project

    def set_outcome(
        self,
        project: Project,
        *,
        pattern: str,
        outcome: Outcome,
        duration: float,
        failed_job: str | None,
        failure_reason: str,
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        with self.lock:
            project.rules.append(
                OutcomeRule(
                    pattern=pattern,
                    outcome=outcome,
                    duration=duration,
                    failed_job=failed_job,
                    failure_reason=failure_reason,
                )
            )

    # ------------------------------------------------------------------ lookups

    def user_named(self, username: str) -> User | None:
        return next(
            (u for u in self.users.values() if u.username.lower() == username.lower()), None
        )

    def user_for_token(self, token: str) -> Token | None:
        return self.tokens.get(token)

    def project(self, ref: int | str) -> Project:
        if isinstance(ref, int) or ref.isdigit():
            found = self.projects.get(int(ref))
        else:
            found = next((p for p in self.projects.values() if p.path.lower() == ref.lower()), None)
        if found is None:
            raise ApiError(404, "404 Project Not Found")
        return found

    def merge_request(self, project: Project, iid: int | str) -> MergeRequest:
        mr = project.merge_requests.get(int(iid)) if str(iid).isdigit() else None
        if mr is None:
            raise ApiError(404, "404 Not found")
        return mr

    def issue(self, project: Project, iid: int | str) -> Issue:
        found = project.issues.get(int(iid)) if str(iid).isdigit() else None
        if found is None:
            raise ApiError(404, "404 Not found")
        return found

    def pipeline(self, project: Project, pipeline_id: int | str) -> Pipeline:
        found = project.pipelines.get(int(pipeline_id)) if str(pipeline_id).isdigit() else None
        if found is None:
            raise ApiError(404, "404 Not found")
        return found

    def commit_of(self, project: Project, ref: str, *, missing: str) -> CommitInfo:
        sha = project.repo.resolve(ref)
        info = project.repo.commit(sha) if sha else None
        if info is None:
            raise ApiError(404, missing)
        return info

    def author(self, author: str, when: datetime) -> tuple[Signature, User]:
        """``"username"`` (a sandbox user) or ``"Name <email>"`` → signature and pusher."""
        match = _AUTHOR.fullmatch(author)
        if match:
            email = match["email"]
            user = next((u for u in self.users.values() if u.email == email), self.root_user)
            return Signature(match["name"], email, when), user
        found = self.user_named(author)
        if found is None:
            raise KeyError(f"no user @{author} in the GitLab sandbox: add_user() it first")
        return Signature(found.name, found.email, when), found

    # ------------------------------------------------------------------ URLs

    def project_url(self, project: Project) -> str:
        return f"{self.web_base()}/{project.path}"

    def mr_url(self, project: Project, mr: MergeRequest) -> str:
        return f"{self.project_url(project)}/-/merge_requests/{mr.iid}"

    def pipeline_url(self, project: Project, p: Pipeline) -> str:
        return f"{self.project_url(project)}/-/pipelines/{p.id}"

    # ------------------------------------------------------------------ commits and refs

    def commit(
        self,
        project: Project,
        *,
        branch: str,
        actions: Sequence[Action],
        message: str,
        author: Signature,
        user: User,
        start_branch: str | None = None,
        start_sha: str | None = None,
        force: bool = False,
        committed_at: datetime | None = None,
    ) -> CommitInfo:
        """One commit of ``actions`` on ``branch``, pushed as GitLab's Commits API does."""
        repo = project.repo
        with self.lock:
            if not repo.valid_branch_name(branch):
                raise ApiError(400, "Branch name is invalid")
            head = repo.branch(branch)
            start = start_branch or start_sha
            if start is not None:
                if head is not None and not force and start_branch != branch:
                    raise ApiError(
                        400,
                        f"A branch called '{branch}' already exists. Switch to that branch in "
                        "order to make changes",
                    )
                parent = repo.resolve(start)
                if parent is None:
                    raise ApiError(400, f"Invalid reference name: {start}")
            elif head is None:
                if not repo.is_empty():
                    raise ApiError(
                        400, "You can only create or edit files when you are on a branch"
                    )
                parent = None
            else:
                parent = head
            if not message.strip():
                raise ApiError(400, "commit_message is missing", key="error")
            committer = Signature(user.name, user.email, committed_at or now())
            try:
                sha = repo.write_commit(
                    parent=parent,
                    actions=actions,
                    message=message,
                    author=author,
                    committer=committer,
                )
            except ActionError as exc:
                raise ApiError(400, str(exc)) from None
            repo.set_ref(f"refs/heads/{branch}", sha, head)
            self._pushed(project, ref=f"refs/heads/{branch}", before=head, after=sha, user=user)
            info = repo.commit(sha)
            assert info is not None
            return info

    def create_branch(self, project: Project, name: str, ref: str, user: User) -> str:
        repo = project.repo
        with self.lock:
            if not repo.valid_branch_name(name):
                raise ApiError(400, "Branch name is invalid")
            if repo.branch(name) is not None:
                raise ApiError(400, "Branch already exists")
            sha = repo.resolve(ref)
            if sha is None:
                raise ApiError(400, "Invalid reference name")
            repo.set_ref(f"refs/heads/{name}", sha, None)
            self._pushed(project, ref=f"refs/heads/{name}", before=None, after=sha, user=user)
            return sha

    def delete_branch(self, project: Project, name: str, user: User) -> None:
        repo = project.repo
        with self.lock:
            sha = repo.branch(name)
            if sha is None:
                raise ApiError(404, "404 Branch Not Found")
            if name == project.default_branch:
                raise ApiError(405, "405 Method Not Allowed")
            repo.delete_ref(f"refs/heads/{name}", sha)
            self._pushed(project, ref=f"refs/heads/{name}", before=sha, after=None, user=user)

    def create_tag(
        self, project: Project, name: str, ref: str, message: str | None, user: User
    ) -> None:
        repo = project.repo
        with self.lock:
            if not repo.valid_branch_name(name):
                raise ApiError(400, "Tag name invalid")
            if any(t.name == name for t in repo.tags()):
                raise ApiError(400, f"Tag {name} already exists")
            sha = repo.resolve(ref)
            if sha is None:
                raise ApiError(400, "Target is invalid")
            tagger = Signature(user.name, user.email, now())
            obj = repo.create_tag(name, sha, message=message or None, tagger=tagger)
            project.tag_order[name] = self.ids.next("tag")
            self._pushed(project, ref=f"refs/tags/{name}", before=None, after=obj, user=user)

    def delete_tag(self, project: Project, name: str, user: User) -> None:
        repo = project.repo
        with self.lock:
            tag = next((t for t in repo.tags() if t.name == name), None)
            if tag is None:
                raise ApiError(404, "404 Tag Not Found")
            repo.delete_ref(f"refs/tags/{name}", tag.object_sha)
            self._pushed(
                project, ref=f"refs/tags/{name}", before=tag.object_sha, after=None, user=user
            )

    def _pushed(
        self, project: Project, *, ref: str, before: str | None, after: str | None, user: User
    ) -> None:
        """What GitLab does after any ref update: hooks, MR refresh, pipelines."""
        repo = project.repo
        project.last_activity_at = now()
        old, new = before or ZERO_SHA, after or ZERO_SHA
        if ref.startswith("refs/tags/"):
            name = ref.removeprefix("refs/tags/")
            commit = repo.refs().get(ref) if after else None
            payload = hooks.push(
                self, project, ref=ref, before=old, after=new, checkout_sha=commit,
                user=user, commits=[], tag=True,
            )  # fmt: skip
            self.emit(project, "tag_push", payload)
            if project.branch_pipelines and commit:
                self._create_pipeline(
                    project, ref=name, sha=commit, before_sha=ZERO_SHA, user=user, tag=True
                )
            return
        branch = ref.removeprefix("refs/heads/")
        if after is None:
            commits: list[CommitInfo] = []
        elif before is None:
            others = [sha for name, sha in repo.branches().items() if name != branch]
            commits = repo.log([after], exclude=others)[::-1]
        else:
            commits = repo.log([after], exclude=[before])[::-1]
        payload = hooks.push(
            self, project, ref=ref, before=old, after=new, checkout_sha=after,
            user=user, commits=commits, tag=False,
        )  # fmt: skip
        self.emit(project, "push", payload)
        if after is None:
            return
        opened = [mr for mr in project.merge_requests.values() if mr.state == "opened"]
        for mr in opened:
            if mr.target_branch == branch:
                self._refresh_diff(project, mr)
        sources = [mr for mr in opened if mr.source_branch == branch and mr.head_sha != after]
        for mr in sources:
            self._source_pushed(project, mr, before=old, after=after, user=user)
        if sources and project.mr_pipelines:
            for mr in sources:
                self._create_pipeline(
                    project, ref=branch, sha=after, before_sha=old, user=user, mr=mr
                )
        elif project.branch_pipelines:
            # with "both", a branch with an open MR gets MR pipelines only (GitLab's
            # workflow:rules that avoid duplicate pipelines); with "branches", a branch pipeline
            # that its MRs show as their head pipeline
            self._create_pipeline(project, ref=branch, sha=after, before_sha=old, user=user)

    def emit(self, project: Project, kind: EventKind, payload: JsonDict) -> None:
        self._emit(Event(project_id=project.id, kind=kind, payload=payload))

    # ------------------------------------------------------------------ merge requests

    def create_merge_request(
        self,
        project: Project,
        *,
        user: User,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str,
        labels: list[str],
        remove_source_branch: bool,
    ) -> MergeRequest:
        repo = project.repo
        with self.lock:
            source = repo.branch(source_branch)
            target = repo.branch(target_branch)
            if source is None:
                raise ApiError(400, ["Source branch does not exist"])
            if target is None:
                raise ApiError(400, ["Target branch does not exist"])
            if source_branch == target_branch:
                raise ApiError(
                    400, ["Branch conflict You can't use same project/branch for source and target"]
                )
            for other in project.merge_requests.values():
                if (
                    other.state == "opened"
                    and other.source_branch == source_branch
                    and other.target_branch == target_branch
                ):
                    raise ApiError(
                        409,
                        [
                            "Another open merge request already exists for this source branch: "
                            f"!{other.iid}"
                        ],
                    )
            mr = MergeRequest(
                id=self.ids.next("merge_request"),
                iid=next(project.mr_iids),
                project_id=project.id,
                title=title,
                description=description,
                source_branch=source_branch,
                target_branch=target_branch,
                author_id=user.id,
                head_sha=source,
                base_sha=repo.merge_base(target, source) or target,
                start_sha=target,
                commit_shas=repo.rev_list(source, exclude=[target]),
                labels=labels,
                force_remove_source_branch=remove_source_branch,
            )
            project.merge_requests[mr.iid] = mr
            repo.point(f"refs/merge-requests/{mr.iid}/head", source)
            self._mr_event(project, mr, user, "open")
            if project.mr_pipelines:
                self._create_pipeline(
                    project, ref=source_branch, sha=source, before_sha=ZERO_SHA, user=user, mr=mr
                )
            return mr

    def update_merge_request(
        self,
        project: Project,
        mr: MergeRequest,
        *,
        user: User,
        state_event: str | None,
        fields: JsonDict,
    ) -> None:
        with self.lock:
            changes: JsonDict = {}
            for name, value in fields.items():
                if name == "target_branch" and project.repo.branch(str(value)) is None:
                    raise ApiError(400, {"target_branch": ["is invalid"]})
                previous = getattr(mr, name)
                if previous != value:
                    setattr(mr, name, value)
                    changes[name] = {"previous": previous, "current": value}
            if "target_branch" in changes:
                self._refresh_diff(project, mr)
            if changes:
                mr.updated_at = now()
                self._mr_event(project, mr, user, "update", changes=changes)
            if state_event == "close" and mr.state == "opened":
                mr.state, mr.closed_at, mr.closed_by_id = "closed", now(), user.id
                mr.merge_when_pipeline_succeeds, mr.merge_user_id = False, None
                mr.updated_at = now()
                self._note(project, mr, user, "closed", system=True)
                self._mr_event(project, mr, user, "close")
            elif state_event == "reopen" and mr.state == "closed":
                head = project.repo.branch(mr.source_branch)
                if head is None:
                    raise ApiError(405, "405 Method Not Allowed")
                mr.state, mr.closed_at, mr.closed_by_id = "opened", None, None
                mr.head_sha = head
                project.repo.point(f"refs/merge-requests/{mr.iid}/head", head)
                self._refresh_diff(project, mr)
                mr.updated_at = now()
                self._note(project, mr, user, "reopened", system=True)
                self._mr_event(project, mr, user, "reopen")
            elif state_event not in (None, "close", "reopen"):
                raise ApiError(400, "state_event does not have a valid value", key="error")

    def approve(self, project: Project, mr: MergeRequest, user: User, sha: str | None) -> None:
        with self.lock:
            if mr.state != "opened":
                raise ApiError(401, "401 Unauthorized")
            if sha and sha != mr.head_sha:
                raise ApiError(409, f"SHA does not match HEAD of source branch: {mr.head_sha}")
            if user.id in mr.approved_by:
                raise ApiError(401, "401 Unauthorized")
            was_approved = self._approved(project, mr)
            mr.approved_by.append(user.id)
            mr.updated_at = now()
            self._note(project, mr, user, "approved this merge request", system=True)
            self._mr_event(project, mr, user, "approval")
            if not was_approved and self._approved(project, mr):
                self._mr_event(project, mr, user, "approved")
            self._try_auto_merge(project, mr)

    def unapprove(self, project: Project, mr: MergeRequest, user: User) -> None:
        with self.lock:
            if user.id not in mr.approved_by:
                raise ApiError(404, "404 Not Found")
            was_approved = self._approved(project, mr)
            mr.approved_by.remove(user.id)
            mr.updated_at = now()
            self._note(project, mr, user, "unapproved this merge request", system=True)
            self._mr_event(project, mr, user, "unapproval")
            if was_approved and not self._approved(project, mr):
                self._mr_event(project, mr, user, "unapproved")

    def add_note(self, project: Project, mr: MergeRequest, user: User, body: str) -> Note:
        with self.lock:
            if not body.strip():
                raise ApiError(400, {"note": ["can't be blank"]})
            mr.updated_at = now()
            return self._note(project, mr, user, body, system=False)

    def merge(
        self,
        project: Project,
        mr: MergeRequest,
        user: User,
        *,
        sha: str | None,
        auto: bool,
        remove_source_branch: bool | None,
        message: str | None,
    ) -> None:
        """``PUT .../merge``: 405 when not mergeable, 406 on conflicts, 409 on a stale SHA."""
        with self.lock:
            if mr.state != "opened":
                raise ApiError(405, "405 Method Not Allowed")
            if sha and sha != mr.head_sha:
                raise ApiError(409, f"SHA does not match HEAD of source branch: {mr.head_sha}")
            if remove_source_branch is not None:
                mr.should_remove_source_branch = remove_source_branch
            status = self.detailed_merge_status(project, mr)
            if status == "conflict":
                raise ApiError(406, "Branch cannot be merged")
            if status == "mergeable":
                self._merge_now(project, mr, user, message)
                return
            if auto and status in ("ci_still_running", "not_approved"):
                if not mr.merge_when_pipeline_succeeds:
                    mr.merge_when_pipeline_succeeds, mr.merge_user_id = True, user.id
                    mr.updated_at = now()
                    self._note(
                        project, mr, user,
                        f"enabled an automatic merge when all merge checks for {mr.head_sha[:8]}"
                        " pass",
                        system=True,
                    )  # fmt: skip
                return
            raise ApiError(405, "405 Method Not Allowed")

    def cancel_auto_merge(self, project: Project, mr: MergeRequest, user: User) -> None:
        with self.lock:
            if mr.state != "opened" or not mr.merge_when_pipeline_succeeds:
                raise ApiError(406, "406 Not Acceptable")
            self._abort_auto_merge(project, mr, user, reason=None)

    def has_conflicts(self, project: Project, mr: MergeRequest) -> bool:
        if mr.state != "opened":
            return False
        target = project.repo.branch(mr.target_branch)
        if target is None:
            return False
        key = (target, mr.head_sha)
        if key not in mr.conflicts:
            mr.conflicts[key] = project.repo.merge_tree(target, mr.head_sha) is None
        return mr.conflicts[key]

    def merge_status(self, project: Project, mr: MergeRequest) -> str:
        return "cannot_be_merged" if self.has_conflicts(project, mr) else "can_be_merged"

    def detailed_merge_status(self, project: Project, mr: MergeRequest) -> str:
        if mr.state != "opened":
            return "not_open"
        if mr.title.startswith("Draft:"):
            return "draft_status"
        if project.repo.branch(mr.source_branch) is None:
            return "broken_status"
        if self.has_conflicts(project, mr):
            return "conflict"
        if not self._approved(project, mr) and project.approvals_required:
            return "not_approved"
        if project.pipeline_must_succeed:
            head = self.head_pipeline(project, mr)
            if head is not None and not head.finished:
                return "ci_still_running"
            if head is None or head.status != "success":
                return "ci_must_pass"
        return "mergeable"

    def head_pipeline(self, project: Project, mr: MergeRequest) -> Pipeline | None:
        candidates = [
            p
            for p in project.pipelines.values()
            if p.sha == mr.head_sha
            and (
                p.merge_request_iid == mr.iid
                or (p.merge_request_iid is None and p.ref == mr.source_branch)
            )
        ]
        return max(candidates, key=lambda p: p.id) if candidates else None

    def mr_pipelines(self, project: Project, mr: MergeRequest) -> list[Pipeline]:
        shas = {*mr.commit_shas, mr.head_sha}
        found = [
            p
            for p in project.pipelines.values()
            if p.merge_request_iid == mr.iid
            or (p.merge_request_iid is None and p.ref == mr.source_branch and p.sha in shas)
        ]
        return sorted(found, key=lambda p: p.id, reverse=True)

    def related_merge_requests(self, project: Project, sha: str) -> list[MergeRequest]:
        return [
            mr
            for mr in project.merge_requests.values()
            if sha in mr.commit_shas or sha in (mr.merge_commit_sha, mr.head_sha)
        ]

    def _approved(self, project: Project, mr: MergeRequest) -> bool:
        return len(mr.approved_by) >= max(project.approvals_required, 1)

    def _refresh_diff(self, project: Project, mr: MergeRequest) -> None:
        repo = project.repo
        target = repo.branch(mr.target_branch)
        if target is None:
            return
        mr.start_sha = target
        mr.base_sha = repo.merge_base(target, mr.head_sha) or target
        mr.commit_shas = repo.rev_list(mr.head_sha, exclude=[target])

    def _source_pushed(
        self, project: Project, mr: MergeRequest, *, before: str, after: str, user: User
    ) -> None:
        mr.head_sha = after
        self._refresh_diff(project, mr)
        project.repo.point(f"refs/merge-requests/{mr.iid}/head", after)
        mr.approved_by.clear()
        mr.updated_at = now()
        if mr.merge_when_pipeline_succeeds:
            self._abort_auto_merge(project, mr, user, reason="the source branch was updated")
        self._mr_event(project, mr, user, "update", oldrev=before)

    def _try_auto_merge(self, project: Project, mr: MergeRequest) -> None:
        if mr.state != "opened" or not mr.merge_when_pipeline_succeeds:
            return
        assert mr.merge_user_id is not None
        user = self.users[mr.merge_user_id]
        status = self.detailed_merge_status(project, mr)
        if status == "mergeable":
            self._merge_now(project, mr, user, None)
        elif status == "ci_must_pass":
            self._abort_auto_merge(project, mr, user, reason="the pipeline did not succeed")
        elif status in ("conflict", "broken_status"):
            self._abort_auto_merge(project, mr, user, reason="the merge request cannot be merged")

    def _abort_auto_merge(
        self, project: Project, mr: MergeRequest, user: User, *, reason: str | None
    ) -> None:
        mr.merge_when_pipeline_succeeds, mr.merge_user_id = False, None
        text = (
            f"aborted the automatic merge because {reason}"
            if reason
            else "canceled the automatic merge"
        )
        self._note(project, mr, user, text, system=True)

    def _merge_now(
        self, project: Project, mr: MergeRequest, user: User, message: str | None
    ) -> None:
        repo = project.repo
        target = repo.branch(mr.target_branch)
        if target is None:
            raise ApiError(405, "405 Method Not Allowed")
        tree = repo.merge_tree(target, mr.head_sha)
        if tree is None:
            raise ApiError(406, "Branch cannot be merged")
        text = message or (
            f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
            f"See merge request {project.path}!{mr.iid}"
        )
        signature = Signature(user.name, user.email, now())
        merge_sha = repo.commit_tree(
            tree, parents=[target, mr.head_sha], message=text, author=signature, committer=signature
        )
        repo.set_ref(f"refs/heads/{mr.target_branch}", merge_sha, target)
        mr.commit_shas = repo.rev_list(mr.head_sha, exclude=[target])
        mr.start_sha, mr.base_sha = target, repo.merge_base(target, mr.head_sha) or target
        mr.state, mr.merged_at, mr.merged_by_id = "merged", now(), user.id
        mr.merge_commit_sha, mr.updated_at = merge_sha, now()
        self._pushed(
            project, ref=f"refs/heads/{mr.target_branch}", before=target, after=merge_sha, user=user
        )
        self._mr_event(project, mr, user, "merge")
        remove = mr.should_remove_source_branch
        if remove is None:
            remove = mr.force_remove_source_branch
        source = repo.branch(mr.source_branch)
        if remove and source == mr.head_sha and mr.source_branch != project.default_branch:
            repo.delete_ref(f"refs/heads/{mr.source_branch}", source)
            self._pushed(
                project, ref=f"refs/heads/{mr.source_branch}", before=source, after=None, user=user
            )

    def _note(
        self, project: Project, mr: MergeRequest, user: User, body: str, *, system: bool
    ) -> Note:
        note = Note(
            id=self.ids.next("note"),
            body=body,
            author_id=user.id,
            noteable_id=mr.id,
            noteable_iid=mr.iid,
            project_id=project.id,
            system=system,
        )
        mr.notes.append(note)
        return note

    def _mr_event(
        self,
        project: Project,
        mr: MergeRequest,
        user: User,
        action: str,
        *,
        oldrev: str | None = None,
        changes: JsonDict | None = None,
    ) -> None:
        payload = hooks.merge_request(
            self, project, mr, user=user, action=action, oldrev=oldrev, changes=changes
        )
        self.emit(project, "merge_request", payload)

    # ------------------------------------------------------------------ issues and labels

    def create_issue(
        self, project: Project, *, user: User, title: str, description: str, labels: list[str]
    ) -> Issue:
        with self.lock:
            if not title.strip():
                raise ApiError(400, {"title": ["can't be blank"]})
            issue = Issue(
                id=self.ids.next("issue"),
                iid=next(project.issue_iids),
                project_id=project.id,
                title=title,
                description=description,
                author_id=user.id,
            )
            issue.labels = self.apply_labels(project, [], labels)
            project.issues[issue.iid] = issue
            return issue

    def update_issue(
        self,
        project: Project,
        issue: Issue,
        *,
        user: User,
        state_event: str | None,
        fields: JsonDict,
        labels: list[str] | None,
    ) -> None:
        with self.lock:
            for name, value in fields.items():
                setattr(issue, name, value)
            if labels is not None and labels != issue.labels:
                added = [x for x in labels if x not in issue.labels]
                removed = [x for x in issue.labels if x not in labels]
                issue.labels = labels
                for label in added:
                    self._note_issue(project, issue, user, f"added ~{label} label", system=True)
                for label in removed:
                    self._note_issue(project, issue, user, f"removed ~{label} label", system=True)
            if state_event == "close" and issue.state == "opened":
                issue.state, issue.closed_at, issue.closed_by_id = "closed", now(), user.id
            elif state_event == "reopen" and issue.state == "closed":
                issue.state, issue.closed_at, issue.closed_by_id = "opened", None, None
            elif state_event not in (None, "close", "reopen"):
                raise ApiError(400, "state_event does not have a valid value", key="error")
            issue.updated_at = now()

    def add_issue_note(self, project: Project, issue: Issue, user: User, body: str) -> Note:
        with self.lock:
            if not body.strip():
                raise ApiError(400, {"note": ["can't be blank"]})
            issue.updated_at = now()
            return self._note_issue(project, issue, user, body, system=False)

    def _note_issue(
        self, project: Project, issue: Issue, user: User, body: str, *, system: bool
    ) -> Note:
        note = Note(
            id=self.ids.next("note"),
            body=body,
            author_id=user.id,
            noteable_id=issue.id,
            noteable_iid=issue.iid,
            project_id=project.id,
            system=system,
            noteable_type="Issue",
        )
        issue.notes.append(note)
        return note

    def create_label(self, project: Project, name: str, *, color: str, description: str) -> Label:
        with self.lock:
            if not name.strip() or "," in name:
                raise ApiError(400, {"title": ["is invalid"]})
            if name in project.labels:
                raise ApiError(409, "Label already exists")
            label = Label(
                id=self.ids.next("label"), name=name, color=color, description=description
            )
            project.labels[name] = label
            return label

    def apply_labels(self, project: Project, current: list[str], wanted: list[str]) -> list[str]:
        """``wanted`` as GitLab stores it: unknown names become project labels, and of two
        scoped labels with one scope (``deployed::staging``, ``deployed::production``) the one
        added last stays, as GitLab does with scoped labels."""
        with self.lock:
            result: list[str] = []
            for name in wanted:
                if name not in project.labels:
                    self.create_label(project, name, color="#6699cc", description="")
                scope = project.labels[name].scope
                if scope is not None:
                    result = [x for x in result if project.labels[x].scope != scope]
                if name not in result:
                    result.append(name)
            # labels kept from before come first, as GitLab lists them
            return [x for x in current if x in result] + [x for x in result if x not in current]

    # ------------------------------------------------------------------ pipelines

    def _create_pipeline(
        self,
        project: Project,
        *,
        ref: str,
        sha: str,
        before_sha: str,
        user: User,
        tag: bool = False,
        mr: MergeRequest | None = None,
    ) -> Pipeline:
        created = now()
        jobs = [
            Job(
                id=self.ids.next("job"), name=name, stage=stage, user_id=user.id, created_at=created
            )
            for stage, name in project.jobs
        ]
        pipeline = Pipeline(
            id=self.ids.next("pipeline"),
            iid=next(project.pipeline_iids),
            project_id=project.id,
            ref=f"refs/merge-requests/{mr.iid}/head" if mr else ref,
            tag=tag,
            sha=sha,
            before_sha=before_sha,
            source="merge_request_event" if mr else "push",
            user_id=user.id,
            jobs=jobs,
            duration_planned=DEFAULT_DURATION,
            merge_request_iid=mr.iid if mr else None,
            branch=None if tag else ref,
            created_at=created,
            updated_at=created,
            born=time.monotonic(),
        )
        rule = self._rule(project, pipeline)
        if rule is not None:
            pipeline.duration_planned = rule.duration
        project.pipelines[pipeline.id] = pipeline
        self._step(project, pipeline)  # created → pending at once, as on GitLab
        return pipeline

    def advance(self, project: Project | None = None) -> int:
        """One step for every unfinished pipeline (of ``project``); returns how many moved."""
        with self.lock:
            moved = 0
            for p, pipeline in self._unfinished(project):
                moved += self._step(p, pipeline)
            return moved

    def run_pipelines(self, project: Project | None = None) -> None:
        """Advance until every pipeline (of ``project``) has finished, auto-merges included."""
        with self.lock:
            for _ in range(10_000):
                if not self.advance(project):
                    return
            raise RuntimeError("pipelines did not finish after 10000 steps")

    def tick(self, monotonic: float) -> None:
        """Take every step that is due at ``monotonic`` given ``speed`` (the ticker's job)."""
        if self.speed is None:
            return
        with self.lock:
            for project, pipeline in self._unfinished(None):
                while not pipeline.finished and self._due(pipeline) <= monotonic:
                    if not self._step(project, pipeline):
                        break  # held by a hang or stuck outcome

    def retry_pipeline(self, project: Project, pipeline: Pipeline, user: User) -> None:
        """Re-run the failed, canceled and skipped jobs as new jobs, like GitLab's retry."""
        with self.lock:
            again = [
                j for j in pipeline.current_jobs if j.status in ("failed", "canceled", "skipped")
            ]
            if not again:
                return
            when = self._sim_time(pipeline, pipeline.step)
            pipeline.step += 1
            first_stage = next(s for s in pipeline.stages if any(j.stage == s for j in again))
            fresh: list[Job] = []
            for old in again:
                old.retried = True
                fresh.append(
                    Job(
                        id=self.ids.next("job"),
                        name=old.name,
                        stage=old.stage,
                        user_id=user.id,
                        status="pending" if old.stage == first_stage else "created",
                        created_at=when,
                    )
                )
            pipeline.jobs += fresh
            pipeline.status, pipeline.finished_at, pipeline.updated_at = "running", None, when
            for new_job in fresh:
                if new_job.status == "pending":
                    self.emit(project, "job", hooks.job(self, project, pipeline, new_job))
            self.emit(project, "pipeline", hooks.pipeline(self, project, pipeline))

    def _unfinished(self, project: Project | None) -> list[tuple[Project, Pipeline]]:
        chosen = [project] if project else list(self.projects.values())
        found = [(p, pl) for p in chosen for pl in p.pipelines.values() if not pl.finished]
        return sorted(found, key=lambda item: item[1].id)

    def _rule(self, project: Project, pipeline: Pipeline) -> OutcomeRule | None:
        names = pipeline.names()
        return next((r for r in reversed(project.rules) if r.matches(names)), None)

    def _interval(self, pipeline: Pipeline) -> float:
        return pipeline.duration_planned / max(2 * len(pipeline.stages) - 1, 1)

    def _sim_time(self, pipeline: Pipeline, step: int) -> datetime:
        """Steps 0 (pending) and 1 (running) are at creation, then one interval apart."""
        offset = max(step - 1, 0) * self._interval(pipeline)
        return pipeline.created_at + timedelta(seconds=offset)

    def _due(self, pipeline: Pipeline) -> float:
        speed = self.speed or 1.0
        offset = max(pipeline.step - 1, 0) * self._interval(pipeline)
        return pipeline.born + offset / speed

    def _held(self, project: Project, pipeline: Pipeline) -> bool:
        """Whether the next step is one a ``hang`` or ``stuck`` outcome never takes."""
        rule = self._rule(project, pipeline)
        if rule is None or rule.outcome not in ("hang", "stuck"):
            return False
        unfinished = [j for j in pipeline.current_jobs if j.status not in FINISHED]
        stage = next((s for s in pipeline.stages if any(j.stage == s for j in unfinished)), None)
        active = [j for j in unfinished if j.stage == stage]
        if not active or all(j.status == "created" for j in active):
            return False  # a stage that is not yet pending always becomes pending
        if rule.outcome == "stuck":
            return any(j.status == "pending" for j in active)
        hanging = self._hanging_job(rule, pipeline)
        return all(j.status == "running" and j.name == hanging for j in active)

    def _hanging_job(self, rule: OutcomeRule, pipeline: Pipeline) -> str | None:
        if rule.outcome != "hang":
            return None
        names = [j.name for j in pipeline.current_jobs]
        return rule.failed_job if rule.failed_job in names else names[-1]

    def _step(self, project: Project, pipeline: Pipeline) -> bool:
        if pipeline.finished or self._held(project, pipeline):
            return False
        when = self._sim_time(pipeline, pipeline.step)
        pipeline.step += 1
        before = pipeline.status
        jobs = pipeline.current_jobs
        stage = next(
            (
                s
                for s in pipeline.stages
                if any(j.stage == s and j.status not in FINISHED for j in jobs)
            ),
            None,
        )
        changed: list[Job] = []
        if stage is None:
            pipeline.status, pipeline.finished_at = "success", when
        else:
            active = [j for j in jobs if j.stage == stage and j.status not in FINISHED]
            if all(j.status == "created" for j in active):
                for j in active:
                    j.status = "pending"
                if pipeline.status == "created":
                    pipeline.status = "pending"
                changed = active
            elif any(j.status == "pending" for j in active):
                changed = [j for j in active if j.status == "pending"]
                for j in changed:
                    j.status, j.started_at = "running", when
                pipeline.status = "running"
                pipeline.started_at = pipeline.started_at or when
            else:
                changed = self._finish_stage(project, pipeline, stage, when)
        pipeline.updated_at = when
        for j in changed:
            self.emit(project, "job", hooks.job(self, project, pipeline, j))
        if pipeline.status != before:
            self.emit(project, "pipeline", hooks.pipeline(self, project, pipeline))
        if pipeline.finished:
            for mr in list(project.merge_requests.values()):
                if mr.state == "opened" and self.head_pipeline(project, mr) is pipeline:
                    self._try_auto_merge(project, mr)
        return True

    def _finish_stage(
        self, project: Project, pipeline: Pipeline, stage: str, when: datetime
    ) -> list[Job]:
        jobs = pipeline.current_jobs
        rule = self._rule(project, pipeline)
        failing: str | None = None
        if rule is not None and rule.outcome == "failed":
            names = [j.name for j in jobs]
            failing = rule.failed_job if rule.failed_job in names else names[-1]
        hanging = self._hanging_job(rule, pipeline) if rule is not None else None
        changed = [
            j for j in jobs if j.stage == stage and j.status == "running" and j.name != hanging
        ]
        for j in changed:
            j.finished_at = when
            if j.name == failing:
                j.status = "failed"
                j.failure_reason = rule.failure_reason if rule else "script_failure"
            else:
                j.status = "success"
        if any(j.stage == stage and j.status == "running" for j in jobs):
            return changed  # the hanging job runs on; the next stage waits for it
        if any(j.status == "failed" for j in changed):
            skipped = [j for j in jobs if j.status == "created"]
            for j in skipped:
                j.status = "skipped"
            pipeline.status, pipeline.finished_at = "failed", when
            return changed + skipped
        later = pipeline.stages[pipeline.stages.index(stage) + 1 :]
        upcoming = [j for j in jobs if later and j.stage == later[0] and j.status == "created"]
        for j in upcoming:
            j.status = "pending"
        if not later:
            pipeline.status, pipeline.finished_at = "success", when
        return changed + upcoming


def parse_labels(value: object) -> list[str]:
    if value is None:
        return []
    items: Iterable[object] = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
