"""The REST API v4 routes of the GitLab sandbox: parameters in, GitLab-shaped answers out.

Handlers are synchronous and run in a worker thread under the instance lock. Paths are matched
on the raw (still percent-encoded) path, as GitLab does, so ``platform%2Fdeployments`` and a file
path like ``apps%2Forders%2Fdeployment.yaml`` are one segment each.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlencode

from bot.sandbox.gitlab import shapes
from bot.sandbox.gitlab.instance import Instance, parse_labels
from bot.sandbox.gitlab.records import (
    ApiError,
    Issue,
    JsonDict,
    MergeRequest,
    Project,
    User,
    now,
)
from bot.sandbox.gitlab.repos import Action, CommitInfo, Signature

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
_ACTIONS = ("create", "update", "delete", "move", "chmod")


class Params:
    """GitLab reads parameters from the query string and the (JSON or form) body alike."""

    def __init__(self, query: Sequence[tuple[str, str]], body: JsonDict) -> None:
        self.pairs = list(query)
        self.values: JsonDict = {}
        for key, value in query:
            if key.endswith("[]"):
                self.values.setdefault(key[:-2], []).append(value)
            else:
                self.values[key] = value
        self.values.update(body)

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None or value == "":
            raise ApiError(400, f"{key} is missing", key="error")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "t")

    def integer(self, key: str, default: int) -> int:
        value = self.values.get(key)
        try:
            return int(value) if value not in (None, "") else default
        except (TypeError, ValueError):
            raise ApiError(400, f"{key} is invalid", key="error") from None

    def items(self, key: str) -> list[Any]:
        value = self.values.get(key)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # raw path after /api/v4, without the query string
    params: Params
    user: User
    origin: str  # scheme://host:port as the client addressed us


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request, dict[str, str]], Reply]


class Api:
    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        project = "/projects/{pid}"
        repo = f"{project}/repository"
        mr = f"{project}/merge_requests/{{iid}}"
        pipeline = f"{project}/pipelines/{{pipeline_id}}"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/user", self.current_user),
            ("GET", "/users", self.users),
            ("GET", "/users/{user_id}", self.user),
            ("GET", "/projects", self.projects),
            ("GET", project, self.project),
            ("GET", f"{repo}/files/{{path}}", self.file),
            ("GET", f"{repo}/files/{{path}}/raw", self.file_raw),
            ("POST", f"{repo}/files/{{path}}", self.file_write),
            ("PUT", f"{repo}/files/{{path}}", self.file_write),
            ("DELETE", f"{repo}/files/{{path}}", self.file_write),
            ("GET", f"{repo}/blobs/{{sha}}", self.blob),
            ("GET", f"{repo}/blobs/{{sha}}/raw", self.blob_raw),
            ("GET", f"{repo}/tree", self.tree),
            ("GET", f"{repo}/commits", self.commits),
            ("POST", f"{repo}/commits", self.commit_create),
            ("GET", f"{repo}/commits/{{sha}}", self.commit),
            ("GET", f"{repo}/commits/{{sha}}/diff", self.commit_diff),
            ("GET", f"{repo}/commits/{{sha}}/merge_requests", self.commit_merge_requests),
            ("GET", f"{repo}/branches", self.branches),
            ("POST", f"{repo}/branches", self.branch_create),
            ("GET", f"{repo}/branches/{{name}}", self.branch),
            ("DELETE", f"{repo}/branches/{{name}}", self.branch_delete),
            ("GET", f"{repo}/tags", self.tags),
            ("POST", f"{repo}/tags", self.tag_create),
            ("GET", f"{repo}/tags/{{name}}", self.tag),
            ("DELETE", f"{repo}/tags/{{name}}", self.tag_delete),
            ("GET", f"{repo}/compare", self.compare),
            ("GET", f"{project}/merge_requests", self.merge_requests),
            ("POST", f"{project}/merge_requests", self.merge_request_create),
            ("GET", mr, self.merge_request),
            ("PUT", mr, self.merge_request_update),
            ("GET", f"{mr}/commits", self.merge_request_commits),
            ("GET", f"{mr}/changes", self.merge_request_changes),
            ("GET", f"{mr}/diffs", self.merge_request_diffs),
            ("GET", f"{mr}/pipelines", self.merge_request_pipelines),
            ("GET", f"{mr}/approvals", self.approvals),
            ("POST", f"{mr}/approve", self.approve),
            ("POST", f"{mr}/unapprove", self.unapprove),
            ("PUT", f"{mr}/merge", self.merge),
            ("POST", f"{mr}/cancel_merge_when_pipeline_succeeds", self.cancel_auto_merge),
            ("GET", f"{mr}/notes", self.notes),
            ("POST", f"{mr}/notes", self.note_create),
            ("GET", f"{project}/issues", self.issues),
            ("POST", f"{project}/issues", self.issue_create),
            ("GET", f"{project}/issues/{{iid}}", self.issue),
            ("PUT", f"{project}/issues/{{iid}}", self.issue_update),
            ("GET", f"{project}/issues/{{iid}}/notes", self.issue_notes),
            ("POST", f"{project}/issues/{{iid}}/notes", self.issue_note_create),
            ("GET", f"{project}/labels", self.labels),
            ("POST", f"{project}/labels", self.label_create),
            ("GET", f"{project}/pipelines", self.pipelines),
            ("GET", pipeline, self.pipeline),
            ("GET", f"{pipeline}/jobs", self.pipeline_jobs),
            ("POST", f"{pipeline}/retry", self.pipeline_retry),
            ("GET", f"{project}/jobs", self.jobs),
            ("GET", f"{project}/jobs/{{job_id}}", self.job),
        ]
        for method, template, handler in table:
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            self.routes.append((method, re.compile(pattern), handler))

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        wanted = "GET" if method == "HEAD" else method
        for verb, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if verb == wanted and match:
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}
        return None

    # ------------------------------------------------------------------ users and projects

    def current_user(self, req: Request, _: dict[str, str]) -> Reply:
        return Reply(json=shapes.user_full(self.inst, req.user))

    def users(self, req: Request, _: dict[str, str]) -> Reply:
        username = req.params.text("username")
        search = (req.params.text("search") or "").lower()
        found = [
            u
            for u in self.inst.users.values()
            if (username is None or u.username.lower() == username.lower())
            and (not search or any(search in s.lower() for s in (u.username, u.name, u.email)))
        ]
        return paginate(req, [shapes.user_full(self.inst, u) for u in found])

    def user(self, req: Request, args: dict[str, str]) -> Reply:
        user_id = args["user_id"]
        user = self.inst.users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise ApiError(404, "404 User Not Found")
        return Reply(json=shapes.user_full(self.inst, user))

    def projects(self, req: Request, _: dict[str, str]) -> Reply:
        search = (req.params.text("search") or "").lower()
        found = [p for p in self.inst.projects.values() if search in p.path.lower()]
        found.sort(key=lambda p: p.id, reverse=True)
        return paginate(req, [shapes.project(self.inst, p) for p in found])

    def project(self, req: Request, args: dict[str, str]) -> Reply:
        return Reply(json=shapes.project(self.inst, self.inst.project(args["pid"])))

    # ------------------------------------------------------------------ files, blobs, tree

    def _file_meta(self, project: Project, path: str, ref: str) -> tuple[JsonDict, bytes]:
        sha = project.repo.resolve(ref)
        if sha is None:
            raise ApiError(404, "404 Commit Not Found")
        blob = project.repo.blob_at(sha, path)
        if blob is None:
            raise ApiError(404, "404 File Not Found")
        last = project.repo.last_commit_for(sha, path) or sha
        return shapes.file(project, path, ref, sha, last, blob), blob.data

    def file(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        meta, _ = self._file_meta(project, args["path"], req.params.required("ref"))
        if req.method == "HEAD":
            return Reply(headers=shapes.file_headers(meta), body=b"")
        return Reply(json=meta)

    def file_raw(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        ref = req.params.text("ref") or project.default_branch
        meta, data = self._file_meta(project, args["path"], ref)
        return Reply(body=data, content_type="text/plain", headers=shapes.file_headers(meta))

    def file_write(self, req: Request, args: dict[str, str]) -> Reply:
        """The single-file API: one commit, like ``POST .../commits`` with one action."""
        project = self.inst.project(args["pid"])
        params, path = req.params, args["path"]
        branch = params.required("branch")
        message = params.required("commit_message")
        kinds: dict[str, Literal["create", "update", "delete"]] = {
            "POST": "create",
            "PUT": "update",
            "DELETE": "delete",
        }
        kind = kinds[req.method]
        content = None
        if kind != "delete":
            content = _decode(params.required("content"), params.text("encoding"))
        action = Action(
            action=kind,
            file_path=path,
            content=content,
            execute_filemode=params.flag("execute_filemode"),
            last_commit_id=params.text("last_commit_id"),
        )
        self._commit(req, project, branch=branch, message=message, actions=[action])
        if kind == "delete":
            return Reply(status=204)
        return Reply(
            status=201 if kind == "create" else 200, json={"file_path": path, "branch": branch}
        )

    def blob(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        data = (
            project.repo.blob(args["sha"]) if re.fullmatch(r"[0-9a-f]{40}", args["sha"]) else None
        )
        if data is None:
            raise ApiError(404, "404 Blob Not Found")
        return Reply(
            json={
                "size": len(data),
                "encoding": "base64",
                "content": base64.b64encode(data).decode(),
                "sha": args["sha"],
            }
        )

    def blob_raw(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        data = (
            project.repo.blob(args["sha"]) if re.fullmatch(r"[0-9a-f]{40}", args["sha"]) else None
        )
        if data is None:
            raise ApiError(404, "404 Blob Not Found")
        return Reply(body=data, content_type="text/plain")

    def tree(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        ref = req.params.text("ref") or project.default_branch
        sha = project.repo.resolve(ref)
        entries = (
            project.repo.tree(
                sha, req.params.text("path") or "", recursive=bool(req.params.flag("recursive"))
            )
            if sha
            else None
        )
        if entries is None:
            raise ApiError(404, "404 Tree Not Found")
        items = [shapes.tree_entry(e) for e in entries]
        if req.params.text("pagination") == "keyset":
            return keyset(req, items, key="path")
        return paginate(req, items)

    # ------------------------------------------------------------------ commits

    def commits(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        repo, params = project.repo, req.params
        if params.flag("all"):
            include = sorted(set(repo.refs().values()))
        else:
            sha = repo.resolve(params.text("ref_name") or project.default_branch)
            include = [sha] if sha else []
        found = repo.log(
            include,
            path=params.text("path"),
            since=params.text("since"),
            until=params.text("until"),
            first_parent=bool(params.flag("first_parent")),
            topo=params.text("order") == "topo",
        )
        return paginate(req, [shapes.commit(self.inst, project, c) for c in found])

    def commit(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        info = self.inst.commit_of(project, args["sha"], missing="404 Commit Not Found")
        return Reply(json=shapes.commit_detail(self.inst, project, info))

    def commit_diff(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        info = self.inst.commit_of(project, args["sha"], missing="404 Commit Not Found")
        changes = project.repo.diff(info.parents[0] if info.parents else None, info.sha)
        return paginate(req, [shapes.diff(c) for c in changes])

    def commit_merge_requests(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        info = self.inst.commit_of(project, args["sha"], missing="404 Commit Not Found")
        found = self.inst.related_merge_requests(project, info.sha)
        return paginate(req, [shapes.merge_request(self.inst, project, mr) for mr in found])

    def commit_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        branch = params.required("branch")
        message = params.required("commit_message")
        raw_actions = params.values.get("actions")
        if not isinstance(raw_actions, list) or not raw_actions:
            raise ApiError(400, "actions is missing", key="error")
        actions = [_action(i, item) for i, item in enumerate(raw_actions)]
        info = self._commit(
            req,
            project,
            branch=branch,
            message=message,
            actions=actions,
            start_branch=params.text("start_branch"),
            start_sha=params.text("start_sha"),
            force=bool(params.flag("force")),
        )
        return Reply(status=201, json=shapes.commit_detail(self.inst, project, info))

    def _commit(
        self,
        req: Request,
        project: Project,
        *,
        branch: str,
        message: str,
        actions: list[Action],
        start_branch: str | None = None,
        start_sha: str | None = None,
        force: bool = False,
    ) -> CommitInfo:
        params = req.params
        author, _ = self.inst.author(req.user.username, now())
        name, email = params.text("author_name"), params.text("author_email")
        if name or email:
            author = Signature(name or author.name, email or author.email, author.when)
        return self.inst.commit(
            project,
            branch=branch,
            actions=actions,
            message=message,
            author=author,
            user=req.user,
            start_branch=start_branch,
            start_sha=start_sha,
            force=force,
        )

    # ------------------------------------------------------------------ branches and tags

    def branches(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        search = req.params.text("search")
        found = sorted(
            (name, sha)
            for name, sha in project.repo.branches().items()
            if search is None or _search(name, search)
        )
        return paginate(req, [self._branch(project, name, sha) for name, sha in found])

    def _branch(self, project: Project, name: str, sha: str) -> JsonDict:
        info = project.repo.commit(sha)
        assert info is not None
        return shapes.branch(self.inst, project, name, info)

    def branch(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        sha = project.repo.branch(args["name"])
        if sha is None:
            raise ApiError(404, "404 Branch Not Found")
        return Reply(json=self._branch(project, args["name"], sha))

    def branch_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        name = req.params.required("branch")
        sha = self.inst.create_branch(project, name, req.params.required("ref"), req.user)
        return Reply(status=201, json=self._branch(project, name, sha))

    def branch_delete(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        self.inst.delete_branch(project, args["name"], req.user)
        return Reply(status=204)

    def tags(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        search = req.params.text("search")
        order = req.params.text("order_by") or "updated"
        descending = (req.params.text("sort") or "desc") == "desc"
        rows: list[tuple[Any, JsonDict]] = []
        for tag in project.repo.tags():
            if search is not None and not _search(tag.name, search):
                continue
            info = project.repo.commit(tag.commit_sha)
            assert info is not None
            if order == "name":
                key: Any = tag.name
            elif order == "version":
                key = _version_key(tag.name)
            else:
                key = (info.committer.when, project.tag_order.get(tag.name, 0))
            rows.append((key, shapes.tag(self.inst, project, tag, info)))
        rows.sort(key=lambda row: row[0], reverse=descending)
        return paginate(req, [shape for _, shape in rows])

    def tag(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        tag = next((t for t in project.repo.tags() if t.name == args["name"]), None)
        if tag is None:
            raise ApiError(404, "404 Tag Not Found")
        info = project.repo.commit(tag.commit_sha)
        assert info is not None
        return Reply(json=shapes.tag(self.inst, project, tag, info))

    def tag_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        name = req.params.required("tag_name")
        self.inst.create_tag(
            project, name, req.params.required("ref"), req.params.text("message"), req.user
        )
        return Reply(status=201, json=self.tag(req, {**args, "name": name}).json)

    def tag_delete(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        self.inst.delete_tag(project, args["name"], req.user)
        return Reply(status=204)

    def compare(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        repo = project.repo
        start_ref, end_ref = req.params.required("from"), req.params.required("to")
        start, end = repo.resolve(start_ref), repo.resolve(end_ref)
        if start is None or end is None:
            raise ApiError(404, "404 Ref Not Found")
        base = start if req.params.flag("straight") else (repo.merge_base(start, end) or start)
        commits = repo.log([end], exclude=[start])[::-1]
        return Reply(
            json={
                "commit": shapes.commit(self.inst, project, commits[-1]) if commits else None,
                "commits": [shapes.commit(self.inst, project, c) for c in commits],
                "diffs": [shapes.diff(c) for c in repo.diff(base, end)],
                "compare_timeout": False,
                "compare_same_ref": start_ref == end_ref,
                "web_url": f"{self.inst.project_url(project)}/-/compare/{start_ref}...{end_ref}",
            }
        )

    # ------------------------------------------------------------------ merge requests

    def _mr(self, args: dict[str, str]) -> tuple[Project, MergeRequest]:
        project = self.inst.project(args["pid"])
        return project, self.inst.merge_request(project, args["iid"])

    def merge_requests(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        state = params.text("state") or "all"
        labels = parse_labels(params.values.get("labels"))
        iids = {int(i) for i in params.items("iids") if str(i).isdigit()}
        search = (params.text("search") or "").lower()
        author = params.text("author_id")
        found = [
            mr
            for mr in project.merge_requests.values()
            if state in ("all", mr.state)
            and params.text("source_branch") in (None, mr.source_branch)
            and params.text("target_branch") in (None, mr.target_branch)
            and all(label in mr.labels for label in labels)
            and (not iids or mr.iid in iids)
            and (author is None or str(mr.author_id) == author)
            and (not search or search in mr.title.lower() or search in mr.description.lower())
        ]
        order = "updated_at" if params.text("order_by") == "updated_at" else "created_at"
        found.sort(key=lambda mr: (getattr(mr, order), mr.id), reverse=params.text("sort") != "asc")
        return paginate(req, [shapes.merge_request(self.inst, project, mr) for mr in found])

    def merge_request(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        return Reply(json=shapes.merge_request(self.inst, project, mr))

    def merge_request_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        mr = self.inst.create_merge_request(
            project,
            user=req.user,
            source_branch=params.required("source_branch"),
            target_branch=params.required("target_branch"),
            title=params.required("title"),
            description=params.text("description") or "",
            labels=parse_labels(params.values.get("labels")),
            remove_source_branch=bool(params.flag("remove_source_branch")),
        )
        return Reply(status=201, json=shapes.merge_request(self.inst, project, mr))

    def merge_request_update(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        params = req.params
        fields: JsonDict = {}
        for name in ("title", "description", "target_branch"):
            if params.text(name) is not None:
                fields[name] = params.text(name)
        labels = list(mr.labels)
        if "labels" in params.values:
            labels = parse_labels(params.values["labels"])
        labels += [x for x in parse_labels(params.values.get("add_labels")) if x not in labels]
        removed = parse_labels(params.values.get("remove_labels"))
        labels = self.inst.apply_labels(project, mr.labels, [x for x in labels if x not in removed])
        if labels != mr.labels:
            fields["labels"] = labels
        if params.flag("remove_source_branch") is not None:
            fields["force_remove_source_branch"] = params.flag("remove_source_branch")
        self.inst.update_merge_request(
            project, mr, user=req.user, state_event=params.text("state_event"), fields=fields
        )
        return Reply(json=shapes.merge_request(self.inst, project, mr))

    def merge_request_commits(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        infos = [project.repo.commit(sha) for sha in mr.commit_shas]
        return paginate(req, [shapes.commit(self.inst, project, c) for c in infos if c])

    def merge_request_changes(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        changes = project.repo.diff(mr.base_sha, mr.head_sha)
        return Reply(
            json={
                **shapes.merge_request(self.inst, project, mr),
                "changes": [shapes.diff(c) for c in changes],
                "overflow": False,
            }
        )

    def merge_request_diffs(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        changes = project.repo.diff(mr.base_sha, mr.head_sha)
        return paginate(req, [shapes.diff(c) for c in changes])

    def merge_request_pipelines(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        found = self.inst.mr_pipelines(project, mr)
        return paginate(req, [shapes.pipeline_basic(self.inst, project, p) for p in found])

    def approvals(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        return Reply(json=shapes.approvals(self.inst, project, mr, req.user))

    def approve(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        self.inst.approve(project, mr, req.user, req.params.text("sha"))
        return Reply(status=201, json=shapes.approvals(self.inst, project, mr, req.user))

    def unapprove(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        self.inst.unapprove(project, mr, req.user)
        return Reply(status=201, json=shapes.approvals(self.inst, project, mr, req.user))

    def merge(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        params = req.params
        auto = params.flag("merge_when_pipeline_succeeds") or params.flag("auto_merge")
        self.inst.merge(
            project,
            mr,
            req.user,
            sha=params.text("sha"),
            auto=bool(auto),
            remove_source_branch=params.flag("should_remove_source_branch"),
            message=params.text("merge_commit_message"),
        )
        return Reply(json=shapes.merge_request(self.inst, project, mr))

    def cancel_auto_merge(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        self.inst.cancel_auto_merge(project, mr, req.user)
        return Reply(status=201, json=shapes.merge_request(self.inst, project, mr))

    def notes(self, req: Request, args: dict[str, str]) -> Reply:
        _, mr = self._mr(args)
        ascending = req.params.text("sort") == "asc"
        found = sorted(mr.notes, key=lambda n: (n.created_at, n.id), reverse=not ascending)
        return paginate(req, [shapes.note(self.inst, n) for n in found])

    def note_create(self, req: Request, args: dict[str, str]) -> Reply:
        project, mr = self._mr(args)
        note = self.inst.add_note(project, mr, req.user, req.params.text("body") or "")
        return Reply(status=201, json=shapes.note(self.inst, note))

    # ------------------------------------------------------------------ issues and labels

    def _issue(self, args: dict[str, str]) -> tuple[Project, Issue]:
        project = self.inst.project(args["pid"])
        return project, self.inst.issue(project, args["iid"])

    def issues(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        state = params.text("state") or "all"
        labels = parse_labels(params.values.get("labels"))
        iids = {int(i) for i in params.items("iids") if str(i).isdigit()}
        search = (params.text("search") or "").lower()
        found = [
            i
            for i in project.issues.values()
            if state in ("all", i.state)
            and all(label in i.labels for label in labels)
            and (not iids or i.iid in iids)
            and (not search or search in i.title.lower() or search in i.description.lower())
        ]
        found.sort(key=lambda i: (i.created_at, i.id), reverse=params.text("sort") != "asc")
        return paginate(req, [shapes.issue(self.inst, project, i) for i in found])

    def issue(self, req: Request, args: dict[str, str]) -> Reply:
        project, found = self._issue(args)
        return Reply(json=shapes.issue(self.inst, project, found))

    def issue_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        created = self.inst.create_issue(
            project,
            user=req.user,
            title=params.required("title"),
            description=params.text("description") or "",
            labels=parse_labels(params.values.get("labels")),
        )
        return Reply(status=201, json=shapes.issue(self.inst, project, created))

    def issue_update(self, req: Request, args: dict[str, str]) -> Reply:
        project, found = self._issue(args)
        params = req.params
        fields: JsonDict = {
            name: params.text(name)
            for name in ("title", "description")
            if params.text(name) is not None
        }
        labels = list(found.labels)
        if "labels" in params.values:
            labels = parse_labels(params.values["labels"])
        labels += [x for x in parse_labels(params.values.get("add_labels")) if x not in labels]
        removed = parse_labels(params.values.get("remove_labels"))
        wanted = [x for x in labels if x not in removed]
        self.inst.update_issue(
            project,
            found,
            user=req.user,
            state_event=params.text("state_event"),
            fields=fields,
            labels=self.inst.apply_labels(project, found.labels, wanted),
        )
        return Reply(json=shapes.issue(self.inst, project, found))

    def issue_notes(self, req: Request, args: dict[str, str]) -> Reply:
        _, found = self._issue(args)
        ascending = req.params.text("sort") == "asc"
        notes = sorted(found.notes, key=lambda n: (n.created_at, n.id), reverse=not ascending)
        return paginate(req, [shapes.note(self.inst, n) for n in notes])

    def issue_note_create(self, req: Request, args: dict[str, str]) -> Reply:
        project, found = self._issue(args)
        note = self.inst.add_issue_note(project, found, req.user, req.params.text("body") or "")
        return Reply(status=201, json=shapes.note(self.inst, note))

    def labels(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        found = sorted(project.labels.values(), key=lambda lab: lab.name.lower())
        return paginate(req, [shapes.label(project, lab) for lab in found])

    def label_create(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        created = self.inst.create_label(
            project,
            params.required("name"),
            color=params.text("color") or "#6699cc",
            description=params.text("description") or "",
        )
        return Reply(status=201, json=shapes.label(project, created))

    # ------------------------------------------------------------------ pipelines and jobs

    def pipelines(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        params = req.params
        found = [
            p
            for p in project.pipelines.values()
            if params.text("ref") in (None, p.ref)
            and params.text("sha") in (None, p.sha)
            and params.text("status") in (None, p.status)
            and params.text("source") in (None, p.source)
            and (params.text("scope") != "finished" or p.finished)
            and (params.text("scope") != "running" or p.status == "running")
            and (params.text("scope") != "tags" or p.tag)
            and (params.text("scope") != "branches" or not p.tag)
        ]
        order = params.text("order_by") or "id"
        if order not in ("id", "updated_at", "ref", "status"):
            raise ApiError(400, "order_by does not have a valid value", key="error")
        found.sort(key=lambda p: (getattr(p, order), p.id), reverse=params.text("sort") != "asc")
        return paginate(req, [shapes.pipeline_basic(self.inst, project, p) for p in found])

    def pipeline(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        found = self.inst.pipeline(project, args["pipeline_id"])
        return Reply(json=shapes.pipeline(self.inst, project, found))

    def pipeline_jobs(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        found = self.inst.pipeline(project, args["pipeline_id"])
        scope = {str(s) for s in req.params.items("scope")}
        retried = bool(req.params.flag("include_retried"))
        jobs = [
            j
            for j in sorted(found.jobs, key=lambda j: j.id, reverse=True)
            if (retried or not j.retried) and (not scope or j.status in scope)
        ]
        return paginate(req, [shapes.job(self.inst, project, found, j) for j in jobs])

    def pipeline_retry(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        found = self.inst.pipeline(project, args["pipeline_id"])
        self.inst.retry_pipeline(project, found, req.user)
        return Reply(status=201, json=shapes.pipeline(self.inst, project, found))

    def jobs(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        scope = {str(s) for s in req.params.items("scope")}
        rows = [
            (j, p)
            for p in project.pipelines.values()
            for j in p.current_jobs
            if not scope or j.status in scope
        ]
        rows.sort(key=lambda row: row[0].id, reverse=True)
        return paginate(req, [shapes.job(self.inst, project, p, j) for j, p in rows])

    def job(self, req: Request, args: dict[str, str]) -> Reply:
        project = self.inst.project(args["pid"])
        for p in project.pipelines.values():
            for j in p.jobs:
                if str(j.id) == args["job_id"]:
                    return Reply(json=shapes.job(self.inst, project, p, j))
        raise ApiError(404, "404 Not found")


# ---------------------------------------------------------------------- pagination


def paginate(req: Request, items: list[JsonDict]) -> Reply:
    """Offset pagination with the headers python-gitlab follows (``Link`` rel=next...)."""
    per_page = req.params.integer("per_page", DEFAULT_PER_PAGE)
    per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
    page = max(req.params.integer("page", 1), 1)
    total = len(items)
    pages = max(math.ceil(total / per_page), 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    if page < pages:
        links.append(f'<{_page_url(req, page=page + 1, per_page=per_page)}>; rel="next"')
    if page > 1:
        links.append(f'<{_page_url(req, page=page - 1, per_page=per_page)}>; rel="prev"')
    links.append(f'<{_page_url(req, page=1, per_page=per_page)}>; rel="first"')
    links.append(f'<{_page_url(req, page=pages, per_page=per_page)}>; rel="last"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Total": str(total),
        "X-Total-Pages": str(pages),
        "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
        "Link": ", ".join(links),
    }
    return Reply(json=chunk, headers=headers)


def keyset(req: Request, items: list[JsonDict], *, key: str) -> Reply:
    """Keyset pagination (``pagination=keyset``): only a ``Link`` rel=next, no totals."""
    per_page = req.params.integer("per_page", DEFAULT_PER_PAGE)
    per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
    token = req.params.text("page_token")
    start = 0
    if token is not None:
        start = next((i + 1 for i, item in enumerate(items) if item[key] == token), len(items))
    chunk = items[start : start + per_page]
    headers = {"X-Per-Page": str(per_page)}
    if start + per_page < len(items):
        url = _page_url(req, per_page=per_page, page_token=str(chunk[-1][key]))
        headers["Link"] = f'<{url}>; rel="next"'
    return Reply(json=chunk, headers=headers)


def _page_url(req: Request, **replace: str | int) -> str:
    pairs = [(k, v) for k, v in req.params.pairs if k not in replace]
    pairs += [(k, str(v)) for k, v in replace.items()]
    return f"{req.origin}/api/v4{req.path}?{urlencode(pairs)}"


# ---------------------------------------------------------------------- helpers


def _decode(content: str, encoding: str | None) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "content is not valid base64", key="error") from None
    return content.encode()


def _action(index: int, item: Any) -> Action:
    if not isinstance(item, dict):
        raise ApiError(400, f"actions[{index}] is invalid", key="error")
    kind = item.get("action")
    if kind not in _ACTIONS:
        raise ApiError(400, f"actions[{index}][action] does not have a valid value", key="error")
    path = item.get("file_path")
    if not isinstance(path, str) or not path:
        raise ApiError(400, f"actions[{index}][file_path] is missing", key="error")
    content = item.get("content")
    if content is None and kind in ("create", "update"):
        content = ""
    if kind == "move" and not item.get("previous_path"):
        raise ApiError(400, f"actions[{index}][previous_path] is missing", key="error")
    mode = item.get("execute_filemode")
    return Action(
        action=kind,
        file_path=path,
        previous_path=item.get("previous_path"),
        content=None if content is None else _decode(str(content), item.get("encoding")),
        execute_filemode=None if mode is None else bool(mode),
        last_commit_id=item.get("last_commit_id"),
    )


def _search(name: str, pattern: str) -> bool:
    """GitLab's branch/tag ``search``: substring, ``^prefix`` or ``suffix$``."""
    if pattern.startswith("^") and pattern.endswith("$"):
        return name == pattern[1:-1]
    if pattern.startswith("^"):
        return name.startswith(pattern[1:])
    if pattern.endswith("$"):
        return name.endswith(pattern[:-1])
    return pattern.lower() in name.lower() or fnmatch.fnmatchcase(name, pattern)


def _version_key(name: str) -> tuple[tuple[int, int | str], ...]:
    parts = re.split(r"[.\-+]", name.lstrip("vV"))
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)
