"""Webhook payloads shaped like GitLab's documented ones (doc/user/project/integrations/
webhook_events.md): Push Hook, Tag Push Hook, Merge Request Hook, Pipeline Hook, Job Hook."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.sandbox.gitlab.records import (
    Job,
    JsonDict,
    MergeRequest,
    Pipeline,
    Project,
    User,
    api_time,
    commit_time,
    hook_time,
)
from bot.sandbox.gitlab.repos import CommitInfo

if TYPE_CHECKING:
    from bot.sandbox.gitlab.instance import Instance

HEADERS = {
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "merge_request": "Merge Request Hook",
    "pipeline": "Pipeline Hook",
    "job": "Job Hook",
}
MAX_PUSH_COMMITS = 20


def avatar(email: str) -> str:
    digest = hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()
    return f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon"


def user_block(user: User) -> JsonDict:
    return {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "avatar_url": avatar(user.email),
        "email": user.email,
    }


def project_block(inst: Instance, project: Project) -> JsonDict:
    web = inst.project_url(project)
    host = inst.web_base().split("://", 1)[-1]
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "web_url": web,
        "avatar_url": None,
        "git_ssh_url": f"git@{host}:{project.path}.git",
        "git_http_url": f"{web}.git",
        "namespace": project.namespace,
        "visibility_level": 0,
        "path_with_namespace": project.path,
        "default_branch": project.default_branch,
        "ci_config_path": "",
        "homepage": web,
        "url": f"{web}.git",
        "ssh_url": f"git@{host}:{project.path}.git",
        "http_url": f"{web}.git",
    }


def repository_block(inst: Instance, project: Project) -> JsonDict:
    block = project_block(inst, project)
    return {
        "name": project.name,
        "url": block["url"],
        "description": project.description,
        "homepage": block["homepage"],
        "git_http_url": block["git_http_url"],
        "git_ssh_url": block["git_ssh_url"],
        "visibility_level": 0,
    }


def commit_block(inst: Instance, project: Project, commit: CommitInfo) -> JsonDict:
    return {
        "id": commit.sha,
        "message": commit.message,
        "title": commit.title,
        "timestamp": commit_time(commit.author.when),
        "url": f"{inst.project_url(project)}/-/commit/{commit.sha}",
        "author": {"name": commit.author.name, "email": commit.author.email},
    }


def push(
    inst: Instance,
    project: Project,
    *,
    ref: str,
    before: str,
    after: str,
    checkout_sha: str | None,
    user: User,
    commits: list[CommitInfo],
    tag: bool,
) -> JsonDict:
    """Push Hook or Tag Push Hook; ``commits`` oldest first (the newest 20 are listed)."""
    listed: list[JsonDict] = []
    for commit in commits[-MAX_PUSH_COMMITS:]:
        added, modified, removed = project.repo.changed_paths(commit)
        listed.append(
            {
                **commit_block(inst, project, commit),
                "added": added,
                "modified": modified,
                "removed": removed,
            }
        )
    kind = "tag_push" if tag else "push"
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref == f"refs/heads/{project.default_branch}",
        "checkout_sha": checkout_sha,
        "message": None,
        "user_id": user.id,
        "user_name": user.name,
        "user_username": user.username,
        "user_email": user.email,
        "user_avatar": avatar(user.email),
        "project_id": project.id,
        "project": project_block(inst, project),
        "commits": listed,
        "total_commits_count": len(commits),
        "push_options": {},
        "repository": repository_block(inst, project),
    }


def merge_request(
    inst: Instance,
    project: Project,
    mr: MergeRequest,
    *,
    user: User,
    action: str,
    oldrev: str | None = None,
    changes: JsonDict | None = None,
) -> JsonDict:
    last = project.repo.commit(mr.head_sha)
    attributes: JsonDict = {
        "id": mr.id,
        "iid": mr.iid,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "source_project_id": project.id,
        "target_project_id": project.id,
        "author_id": mr.author_id,
        "assignee_ids": [],
        "assignee_id": None,
        "reviewer_ids": [],
        "title": mr.title,
        "description": mr.description,
        "created_at": _mr_time(mr.created_at),
        "updated_at": _mr_time(mr.updated_at),
        "last_edited_at": None,
        "last_edited_by_id": None,
        "milestone_id": None,
        "state_id": {"opened": 1, "closed": 2, "merged": 3}[mr.state],
        "state": mr.state,
        "blocking_discussions_resolved": True,
        "work_in_progress": mr.title.startswith("Draft:"),
        "draft": mr.title.startswith("Draft:"),
        "first_contribution": False,
        "merge_status": inst.merge_status(project, mr),
        "detailed_merge_status": inst.detailed_merge_status(project, mr),
        "merge_commit_sha": mr.merge_commit_sha,
        "merge_when_pipeline_succeeds": mr.merge_when_pipeline_succeeds,
        "head_pipeline_id": _id(inst.head_pipeline(project, mr)),
        "url": inst.mr_url(project, mr),
        "source": project_block(inst, project),
        "target": project_block(inst, project),
        "last_commit": commit_block(inst, project, last) if last else None,
        "labels": [_label(project, name) for name in mr.labels],
        "action": action,
    }
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    changes = dict(changes or {})
    if "labels" in changes:
        changes["labels"] = {
            side: [_label(project, name) for name in changes["labels"][side]]
            for side in ("previous", "current")
        }
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": user_block(user),
        "project": project_block(inst, project),
        "repository": repository_block(inst, project),
        "object_attributes": attributes,
        "labels": attributes["labels"],
        "changes": changes,
        "assignees": [],
        "reviewers": [],
    }


def pipeline(inst: Instance, project: Project, p: Pipeline) -> JsonDict:
    user = inst.users[p.user_id]
    commit = project.repo.commit(p.sha)
    mr = project.merge_requests.get(p.merge_request_iid) if p.merge_request_iid else None
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": p.id,
            "iid": p.iid,
            "name": None,
            "ref": p.ref,
            "tag": p.tag,
            "sha": p.sha,
            "before_sha": p.before_sha,
            "source": p.source,
            "status": p.status,
            "detailed_status": _detailed(p.status),
            "stages": p.stages,
            "created_at": hook_time(p.created_at),
            "finished_at": hook_time(p.finished_at),
            "duration": p.duration,
            "queued_duration": p.queued_duration,
            "variables": [],
            "url": inst.pipeline_url(project, p),
        },
        "merge_request": _pipeline_mr(inst, project, mr) if mr else None,
        "user": user_block(user),
        "project": project_block(inst, project),
        "commit": commit_block(inst, project, commit) if commit else None,
        "source_pipeline": None,
        "builds": [
            _build(inst, job) for job in sorted(p.current_jobs, key=lambda j: j.id, reverse=True)
        ],
    }


def job(inst: Instance, project: Project, p: Pipeline, j: Job) -> JsonDict:
    user = inst.users[j.user_id]
    commit = project.repo.commit(p.sha)
    retries = sum(1 for other in p.jobs if other.name == j.name and other.id < j.id)
    return {
        "object_kind": "build",
        "ref": p.ref,
        "tag": p.tag,
        "before_sha": p.before_sha,
        "sha": p.sha,
        "build_id": j.id,
        "build_name": j.name,
        "build_stage": j.stage,
        "build_status": j.status,
        "build_created_at": hook_time(j.created_at),
        "build_created_at_iso": api_time(j.created_at),
        "build_started_at": hook_time(j.started_at),
        "build_started_at_iso": api_time(j.started_at),
        "build_finished_at": hook_time(j.finished_at),
        "build_finished_at_iso": api_time(j.finished_at),
        "build_duration": j.duration,
        "build_queued_duration": j.queued_duration,
        "build_allow_failure": False,
        "build_failure_reason": j.failure_reason,
        "retries_count": retries,
        "pipeline_id": p.id,
        "project_id": project.id,
        "project_name": f"{project.namespace} / {project.name}"
        if project.namespace
        else project.name,
        "user": user_block(user),
        "commit": {
            "id": p.id,
            "name": None,
            "sha": p.sha,
            "message": commit.message if commit else "",
            "author_name": commit.author.name if commit else "",
            "author_email": commit.author.email if commit else "",
            "author_url": f"mailto:{commit.author.email}" if commit else "",
            "status": p.status,
            "duration": p.duration,
            "started_at": hook_time(p.started_at),
            "started_at_iso": api_time(p.started_at),
            "finished_at": hook_time(p.finished_at),
            "finished_at_iso": api_time(p.finished_at),
        },
        "repository": repository_block(inst, project),
        "project": project_block(inst, project),
        "runner": _runner() if j.started_at else None,
        "environment": None,
        "source_pipeline": None,
    }


def _build(inst: Instance, j: Job) -> JsonDict:
    return {
        "id": j.id,
        "stage": j.stage,
        "name": j.name,
        "status": j.status,
        "created_at": hook_time(j.created_at),
        "started_at": hook_time(j.started_at),
        "finished_at": hook_time(j.finished_at),
        "duration": j.duration,
        "queued_duration": j.queued_duration,
        "failure_reason": j.failure_reason,
        "when": "on_success",
        "manual": False,
        "allow_failure": False,
        "user": user_block(inst.users[j.user_id]),
        "runner": _runner() if j.started_at else None,
        "artifacts_file": {"filename": None, "size": None},
        "environment": None,
    }


def _pipeline_mr(inst: Instance, project: Project, mr: MergeRequest) -> JsonDict:
    return {
        "id": mr.id,
        "iid": mr.iid,
        "title": mr.title,
        "source_branch": mr.source_branch,
        "source_project_id": project.id,
        "target_branch": mr.target_branch,
        "target_project_id": project.id,
        "state": mr.state,
        "merge_status": inst.merge_status(project, mr),
        "detailed_merge_status": inst.detailed_merge_status(project, mr),
        "url": inst.mr_url(project, mr),
    }


def _runner() -> JsonDict:
    return {
        "id": 1,
        "description": "sandbox-runner",
        "active": True,
        "runner_type": "instance_type",
        "is_shared": True,
        "tags": ["sandbox"],
    }


def _detailed(status: str) -> str:
    return {"success": "passed", "created": "created"}.get(status, status)


def _label(project: Project, name: str) -> JsonDict:
    return {
        "id": int(hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6], 16),
        "title": name,
        "color": "#6699cc",
        "project_id": project.id,
        "template": False,
        "description": None,
        "type": "ProjectLabel",
        "group_id": None,
    }


def _mr_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _id(p: Pipeline | None) -> int | None:
    return p.id if p else None
