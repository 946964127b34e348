"""Realistic GitLab webhooks for tests: GitLab's documented examples with ids, statuses and times
changed, so that every payload keeps the exact shape GitLab sends."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
T0 = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)
STAGES = ("build", "test", "deploy")
JOBS = (("compile", "build"), ("unit", "test"), ("lint", "test"), ("production", "deploy"))


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def _pipeline_time(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else None


def _iso(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z") if at else None


def _project(project: str) -> dict[str, Any]:
    base = fixture("pipeline_hook")["project"]
    return {
        **base,
        "name": project.split("/")[-1],
        "path_with_namespace": project,
        "web_url": f"https://gitlab.example.com/{project}",
        "default_branch": "main",
    }


def _job_states(status: str, failed_job: str | None) -> dict[str, str]:
    """What each job is doing while the pipeline has ``status``."""
    if status in ("created", "pending"):
        return dict.fromkeys((n for n, _ in JOBS), "created")
    if status == "running":
        return {"compile": "success", "unit": "running", "lint": "running", "production": "created"}
    if status == "failed":
        states = {"compile": "success", "unit": "success", "lint": "success"}
        states[failed_job or "unit"] = "failed"
        return {**states, "production": "skipped"}
    return dict.fromkeys((n for n, _ in JOBS), "success")


def pipeline_hook(
    *,
    project: str = "shop/orders",
    pipeline_id: int,
    status: str,
    ref: str = "main",
    sha: str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    title: str = "Add retries to the payment client",
    author_email: str = "alice@example.com",
    author_name: str = "Alice Martin",
    started: datetime = T0,
    failed_job: str | None = None,
) -> dict[str, Any]:
    """A Pipeline Hook at one moment of a pipeline's life (``started`` is its creation time)."""
    doc = copy.deepcopy(fixture("pipeline_hook"))
    finished = started + timedelta(minutes=3) if status in ("success", "failed") else None
    attributes = doc["object_attributes"]
    attributes.update(
        id=pipeline_id,
        iid=(pipeline_id - 1) % 1000 + 1,  # GitLab counts from 1
        name=None,
        ref=ref,
        sha=sha,
        before_sha=sha,
        source="push",
        status=status,
        stages=list(STAGES),
        created_at=_pipeline_time(started),
        finished_at=_pipeline_time(finished),
        duration=170 if finished else None,
        url=f"https://gitlab.example.com/{project}/-/pipelines/{pipeline_id}",
    )
    doc["merge_request"] = None
    doc["project"] = _project(project)
    doc["commit"] = {
        **doc["commit"],
        "id": sha,
        "message": f"{title}\n\nLonger description.\n",
        "title": title,
        "url": f"https://gitlab.example.com/{project}/-/commit/{sha}",
        "author": {"name": author_name, "email": author_email},
    }
    template = doc["builds"][0]
    builds = []
    states = _job_states(status, failed_job)
    for index, (name, stage) in enumerate(JOBS):
        job_status = states[name]
        began = started + timedelta(seconds=10 + 20 * index) if job_status != "created" else None
        ended = began + timedelta(seconds=15) if began and job_status != "running" else None
        if job_status == "skipped":
            began = ended = None
        builds.append(
            {
                **template,
                "id": pipeline_id * 10 + index,
                "stage": stage,
                "name": name,
                "status": job_status,
                "created_at": _pipeline_time(started),
                "started_at": _pipeline_time(began),
                "finished_at": _pipeline_time(ended),
                "duration": 15.0 if ended else None,
                "failure_reason": "script_failure" if job_status == "failed" else None,
                "when": "on_success",
                "manual": False,
                "environment": None,
            }
        )
    doc["builds"] = builds
    return doc


def job_hook(
    *,
    project: str = "shop/orders",
    pipeline_id: int,
    name: str,
    status: str,
    ref: str = "main",
    started: datetime = T0,
    failure_reason: str | None = None,
) -> dict[str, Any]:
    """A Job Hook for one of the jobs of ``pipeline_hook``'s pipelines."""
    doc = copy.deepcopy(fixture("job_hook"))
    index = [n for n, _ in JOBS].index(name)
    stage = JOBS[index][1]
    began = started + timedelta(seconds=10 + 20 * index) if status != "created" else None
    ended = began + timedelta(seconds=15) if began and status in ("success", "failed") else None
    doc.update(
        ref=ref,
        build_id=pipeline_id * 10 + index,
        build_name=name,
        build_stage=stage,
        build_status=status,
        build_created_at=_iso(started),
        build_created_at_iso=_iso(started),
        build_started_at=_iso(began),
        build_started_at_iso=_iso(began),
        build_finished_at=_iso(ended),
        build_finished_at_iso=_iso(ended),
        build_duration=15.0 if ended else None,
        build_failure_reason=failure_reason or ("script_failure" if status == "failed" else None),
        pipeline_id=pipeline_id,
        project_name=project,
        project=_project(project),
        source_pipeline=None,
    )
    doc["commit"] = {**doc["commit"], "id": pipeline_id, "status": "running"}
    return doc
