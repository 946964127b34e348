"""REST API v4 resources as GitLab renders them (doc/api/*.md), from the sandbox's records."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from bot.sandbox.gitlab.hooks import avatar
from bot.sandbox.gitlab.records import (
    Issue,
    Job,
    JsonDict,
    Label,
    MergeRequest,
    Note,
    Pipeline,
    Project,
    User,
    api_time,
    commit_time,
)
from bot.sandbox.gitlab.repos import Blob, CommitInfo, FileChange, TagInfo, TreeEntry

if TYPE_CHECKING:
    from bot.sandbox.gitlab.instance import Instance


def user_basic(inst: Instance, user: User) -> JsonDict:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": False,
        "avatar_url": avatar(user.email),
        "web_url": f"{inst.web_base()}/{user.username}",
    }


def user_full(inst: Instance, user: User) -> JsonDict:
    """``/users/:id`` as an administrator's token sees it (``email`` included)."""
    return {
        **user_basic(inst, user),
        "created_at": api_time(user.created_at),
        "bio": "",
        "location": "",
        "public_email": user.email,
        "skype": "",
        "linkedin": "",
        "twitter": "",
        "website_url": "",
        "organization": "",
        "job_title": "",
        "bot": user.bot,
        "email": user.email,
        "commit_email": user.email,
        "is_admin": user.username == "root",
        "two_factor_enabled": False,
        "external": False,
    }


def project(inst: Instance, p: Project) -> JsonDict:
    web = inst.project_url(p)
    api = f"{inst.web_base()}/api/v4/projects/{p.id}"
    namespace = p.namespace or p.path
    return {
        "id": p.id,
        "description": p.description,
        "name": p.name,
        "name_with_namespace": p.path.replace("/", " / "),
        "path": p.name,
        "path_with_namespace": p.path,
        "created_at": api_time(p.created_at),
        "default_branch": p.default_branch,
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@{inst.web_base().split('://', 1)[-1]}:{p.path}.git",
        "http_url_to_repo": f"{web}.git",
        "web_url": web,
        "readme_url": None,
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "last_activity_at": api_time(p.last_activity_at),
        "namespace": {
            "id": 1000 + p.id,
            "name": namespace.rsplit("/", 1)[-1],
            "path": namespace.rsplit("/", 1)[-1],
            "kind": "group",
            "full_path": namespace,
            "parent_id": None,
            "avatar_url": None,
            "web_url": f"{inst.web_base()}/groups/{namespace}",
        },
        "empty_repo": p.repo.is_empty(),
        "archived": False,
        "visibility": "private",
        "jobs_enabled": p.ci != "none",
        "merge_requests_enabled": True,
        "merge_method": "merge",
        "squash_option": "default_off",
        "only_allow_merge_if_pipeline_succeeds": p.pipeline_must_succeed,
        "remove_source_branch_after_merge": True,
        "approvals_before_merge": p.approvals_required,
        "permissions": {"project_access": {"access_level": 40, "notification_level": 3}},
        "_links": {
            "self": api,
            "issues": f"{api}/issues",
            "merge_requests": f"{api}/merge_requests",
            "repo_branches": f"{api}/repository/branches",
            "labels": f"{api}/labels",
            "events": f"{api}/events",
            "members": f"{api}/members",
        },
    }


def commit(inst: Instance, p: Project, c: CommitInfo) -> JsonDict:
    return {
        "id": c.sha,
        "short_id": c.sha[:8],
        "created_at": commit_time(c.committer.when),
        "parent_ids": list(c.parents),
        "title": c.title,
        "message": c.message,
        "author_name": c.author.name,
        "author_email": c.author.email,
        "authored_date": commit_time(c.author.when),
        "committer_name": c.committer.name,
        "committer_email": c.committer.email,
        "committed_date": commit_time(c.committer.when),
        "trailers": {},
        "extended_trailers": {},
        "web_url": f"{inst.project_url(p)}/-/commit/{c.sha}",
    }


def commit_detail(inst: Instance, p: Project, c: CommitInfo) -> JsonDict:
    """A single commit: adds stats and its last pipeline, as ``GET .../commits/:sha``."""
    changes = p.repo.diff(c.parents[0] if c.parents else None, c.sha)
    additions = sum(change.additions for change in changes)
    deletions = sum(change.deletions for change in changes)
    pipelines = [pl for pl in p.pipelines.values() if pl.sha == c.sha]
    last = max(pipelines, key=lambda pl: pl.id) if pipelines else None
    return {
        **commit(inst, p, c),
        "stats": {"additions": additions, "deletions": deletions, "total": additions + deletions},
        "status": last.status if last else None,
        "project_id": p.id,
        "last_pipeline": pipeline_basic(inst, p, last) if last else None,
    }


def branch(inst: Instance, p: Project, name: str, c: CommitInfo) -> JsonDict:
    default = name == p.default_branch
    target = p.repo.branch(p.default_branch)
    return {
        "name": name,
        "commit": commit(inst, p, c),
        "merged": bool(target) and not default and p.repo.is_ancestor(c.sha, str(target)),
        "protected": default,
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": True,
        "default": default,
        "web_url": f"{inst.project_url(p)}/-/tree/{name}",
    }


def tag(inst: Instance, p: Project, t: TagInfo, c: CommitInfo) -> JsonDict:
    return {
        "name": t.name,
        "message": t.message or "",
        "target": t.object_sha,
        "commit": commit(inst, p, c),
        "release": None,
        "protected": False,
        "created_at": commit_time(c.committer.when) if t.message is not None else None,
    }


def file(
    p: Project, path: str, ref: str, commit_sha: str, last_commit: str, blob: Blob
) -> JsonDict:
    return {
        "file_name": path.rsplit("/", 1)[-1],
        "file_path": path,
        "size": len(blob.data),
        "encoding": "base64",
        "content": base64.b64encode(blob.data).decode(),
        "content_sha256": hashlib.sha256(blob.data).hexdigest(),
        "ref": ref,
        "blob_id": blob.sha,
        "commit_id": commit_sha,
        "last_commit_id": last_commit,
        "execute_filemode": blob.mode == "100755",
    }


def file_headers(meta: JsonDict) -> dict[str, str]:
    """``HEAD`` and ``/raw`` answers carry the file's metadata as ``X-Gitlab-*`` headers."""
    names = (
        "blob_id", "commit_id", "content_sha256", "encoding", "file_name", "file_path",
        "last_commit_id", "ref", "size", "execute_filemode",
    )  # fmt: skip
    headers = {}
    for name in names:
        value = meta[name]
        header = "X-Gitlab-" + "-".join(part.capitalize() for part in name.split("_"))
        headers[header] = str(value).lower() if isinstance(value, bool) else str(value)
    return headers


def tree_entry(e: TreeEntry) -> JsonDict:
    return {"id": e.sha, "name": e.name, "type": e.type, "path": e.path, "mode": e.mode}


def diff(change: FileChange) -> JsonDict:
    return {
        "old_path": change.old_path,
        "new_path": change.new_path,
        "a_mode": change.a_mode,
        "b_mode": change.b_mode,
        "new_file": change.new_file,
        "renamed_file": change.renamed_file,
        "deleted_file": change.deleted_file,
        "generated_file": False,
        "diff": change.diff,
    }


def pipeline_basic(inst: Instance, p: Project, pl: Pipeline) -> JsonDict:
    return {
        "id": pl.id,
        "iid": pl.iid,
        "project_id": p.id,
        "sha": pl.sha,
        "ref": pl.ref,
        "status": pl.status,
        "source": pl.source,
        "created_at": api_time(pl.created_at),
        "updated_at": api_time(pl.updated_at),
        "web_url": inst.pipeline_url(p, pl),
        "name": None,
    }


def pipeline(inst: Instance, p: Project, pl: Pipeline) -> JsonDict:
    c = p.repo.commit(pl.sha)
    return {
        **pipeline_basic(inst, p, pl),
        "before_sha": pl.before_sha,
        "tag": pl.tag,
        "yaml_errors": None,
        "user": user_basic(inst, inst.users[pl.user_id]),
        "started_at": api_time(pl.started_at),
        "finished_at": api_time(pl.finished_at),
        "committed_at": commit_time(c.committer.when) if c else None,
        "duration": pl.duration,
        "queued_duration": pl.queued_duration,
        "coverage": None,
        "detailed_status": {
            "icon": f"status_{pl.status}",
            "text": pl.status,
            "label": "passed" if pl.status == "success" else pl.status,
            "group": pl.status,
            "has_details": True,
            "details_path": inst.pipeline_url(p, pl).split("://", 1)[-1].split("/", 1)[-1],
        },
    }


def job(inst: Instance, p: Project, pl: Pipeline, j: Job) -> JsonDict:
    c = p.repo.commit(pl.sha)
    shape: JsonDict = {
        "id": j.id,
        "status": j.status,
        "stage": j.stage,
        "name": j.name,
        "ref": pl.ref,
        "tag": pl.tag,
        "coverage": None,
        "allow_failure": False,
        "created_at": api_time(j.created_at),
        "started_at": api_time(j.started_at),
        "finished_at": api_time(j.finished_at),
        "erased_at": None,
        "duration": j.duration,
        "queued_duration": j.queued_duration,
        "user": user_basic(inst, inst.users[j.user_id]),
        "commit": commit(inst, p, c) if c else None,
        "pipeline": {
            "id": pl.id,
            "project_id": p.id,
            "ref": pl.ref,
            "sha": pl.sha,
            "status": pl.status,
        },
        "web_url": f"{inst.project_url(p)}/-/jobs/{j.id}",
        "project": {"ci_job_token_scope_enabled": False},
        "artifacts": [],
        "runner": None,
        "artifacts_expire_at": None,
        "tag_list": [],
        "retried": j.retried,
    }
    if j.failure_reason:
        shape["failure_reason"] = j.failure_reason
    return shape


def merge_request(inst: Instance, p: Project, mr: MergeRequest) -> JsonDict:
    def person(user_id: int | None) -> JsonDict | None:
        return user_basic(inst, inst.users[user_id]) if user_id else None

    head = inst.head_pipeline(p, mr)
    merged_by = person(mr.merged_by_id)
    return {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": p.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": api_time(mr.created_at),
        "updated_at": api_time(mr.updated_at),
        "merged_by": merged_by,
        "merge_user": merged_by or person(mr.merge_user_id),
        "merged_at": api_time(mr.merged_at),
        "closed_by": person(mr.closed_by_id),
        "closed_at": api_time(mr.closed_at),
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "user_notes_count": sum(1 for n in mr.notes if not n.system),
        "upvotes": 0,
        "downvotes": 0,
        "author": person(mr.author_id),
        "assignees": [],
        "assignee": None,
        "reviewers": [],
        "source_project_id": p.id,
        "target_project_id": p.id,
        "labels": list(mr.labels),
        "draft": mr.title.startswith("Draft:"),
        "work_in_progress": mr.title.startswith("Draft:"),
        "milestone": None,
        "merge_when_pipeline_succeeds": mr.merge_when_pipeline_succeeds,
        "merge_status": inst.merge_status(p, mr),
        "detailed_merge_status": inst.detailed_merge_status(p, mr),
        "sha": mr.head_sha,
        "merge_commit_sha": mr.merge_commit_sha,
        "squash_commit_sha": None,
        "discussion_locked": None,
        "should_remove_source_branch": mr.should_remove_source_branch,
        "force_remove_source_branch": mr.force_remove_source_branch,
        "prepared_at": api_time(mr.created_at),
        "reference": f"!{mr.iid}",
        "references": {
            "short": f"!{mr.iid}",
            "relative": f"!{mr.iid}",
            "full": f"{p.path}!{mr.iid}",
        },
        "web_url": inst.mr_url(p, mr),
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "squash": False,
        "squash_on_merge": False,
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_conflicts": inst.has_conflicts(p, mr),
        "blocking_discussions_resolved": True,
        "approvals_before_merge": None,
        "subscribed": False,
        "changes_count": str(len(p.repo.diff(mr.base_sha, mr.head_sha))),
        "latest_build_started_at": api_time(head.started_at) if head else None,
        "latest_build_finished_at": api_time(head.finished_at) if head else None,
        "first_deployed_to_production_at": None,
        "pipeline": pipeline_basic(inst, p, head) if head else None,
        "head_pipeline": pipeline(inst, p, head) if head else None,
        "diff_refs": {
            "base_sha": mr.base_sha,
            "head_sha": mr.head_sha,
            "start_sha": mr.start_sha,
        },
        "merge_error": None,
        "first_contribution": False,
        "user": {"can_merge": True},
    }


def note(inst: Instance, n: Note) -> JsonDict:
    return {
        "id": n.id,
        "type": None,
        "body": n.body,
        "attachment": None,
        "author": user_basic(inst, inst.users[n.author_id]),
        "created_at": api_time(n.created_at),
        "updated_at": api_time(n.created_at),
        "system": n.system,
        "noteable_id": n.noteable_id,
        "noteable_type": n.noteable_type,
        "project_id": n.project_id,
        "noteable_iid": n.noteable_iid,
        "resolvable": False,
        "confidential": False,
        "internal": False,
        "imported": False,
        "imported_from": "none",
    }


def issue(inst: Instance, p: Project, i: Issue) -> JsonDict:
    """``GET /projects/:id/issues/:iid`` (doc/api/issues.md), the fields clients read."""

    def person(user_id: int | None) -> JsonDict | None:
        return user_basic(inst, inst.users[user_id]) if user_id else None

    web_url = f"{inst.project_url(p)}/-/issues/{i.iid}"
    return {
        "id": i.id,
        "iid": i.iid,
        "project_id": p.id,
        "title": i.title,
        "description": i.description,
        "state": i.state,
        "created_at": api_time(i.created_at),
        "updated_at": api_time(i.updated_at),
        "closed_at": api_time(i.closed_at),
        "closed_by": person(i.closed_by_id),
        "labels": list(i.labels),
        "milestone": None,
        "assignees": [],
        "assignee": None,
        "author": person(i.author_id),
        "type": "ISSUE",
        "issue_type": "issue",
        "user_notes_count": sum(1 for n in i.notes if not n.system),
        "merge_requests_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "due_date": None,
        "confidential": False,
        "discussion_locked": None,
        "web_url": web_url,
        "references": {
            "short": f"#{i.iid}",
            "relative": f"#{i.iid}",
            "full": f"{p.path}#{i.iid}",
        },
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "task_completion_status": {"count": 0, "completed_count": 0},
        "_links": {
            "self": f"{inst.web_base()}/api/v4/projects/{p.id}/issues/{i.iid}",
            "notes": f"{inst.web_base()}/api/v4/projects/{p.id}/issues/{i.iid}/notes",
            "project": f"{inst.web_base()}/api/v4/projects/{p.id}",
        },
        "subscribed": False,
    }


def label(p: Project, lab: Label) -> JsonDict:
    """``GET /projects/:id/labels`` (doc/api/labels.md)."""
    return {
        "id": lab.id,
        "name": lab.name,
        "color": lab.color,
        "text_color": "#FFFFFF",
        "description": lab.description or None,
        "description_html": lab.description,
        "open_issues_count": sum(
            1 for i in p.issues.values() if i.state == "opened" and lab.name in i.labels
        ),
        "closed_issues_count": sum(
            1 for i in p.issues.values() if i.state == "closed" and lab.name in i.labels
        ),
        "open_merge_requests_count": sum(
            1 for m in p.merge_requests.values() if m.state == "opened" and lab.name in m.labels
        ),
        "subscribed": False,
        "priority": None,
        "is_project_label": True,
    }


def approvals(inst: Instance, p: Project, mr: MergeRequest, viewer: User) -> JsonDict:
    required = p.approvals_required
    left = max(required - len(mr.approved_by), 0)
    return {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": p.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": api_time(mr.created_at),
        "updated_at": api_time(mr.updated_at),
        "merge_status": inst.merge_status(p, mr),
        "approved": left == 0 and (required > 0 or bool(mr.approved_by)),
        "approvals_required": required,
        "approvals_left": left,
        "require_password_to_approve": False,
        "approved_by": [{"user": user_basic(inst, inst.users[uid])} for uid in mr.approved_by],
        "suggested_approvers": [],
        "approvers": [],
        "approver_groups": [],
        "user_has_approved": viewer.id in mr.approved_by,
        "user_can_approve": viewer.id not in mr.approved_by and mr.state == "opened",
        "approval_rules_left": [],
        "has_approval_rules": required > 0,
        "merge_request_approvers_available": True,
        "multiple_approval_rules_available": False,
        "invalid_approvers_rules": [],
    }
