"""The GitLab adapter's writes (merge requests, merges, notes) and release reads (compare, tags)
against the GitLab sandbox, over real HTTP and python-gitlab.

The GitOps project has CI, so every merge request gets a pipeline that only moves when the test
calls ``run_pipelines()``: nothing here waits on a clock.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.adapters.gitlab.errors import (
    GitLabRefused,
    GitLabUnavailable,
    MergeRefused,
    NotFoundInGitLab,
)
from bot.adapters.gitlab.repository import (
    CommitSummary,
    GitLabRepository,
    MergeRequestInfo,
)
from bot.sandbox.gitlab import GitLabSandbox

TOKEN = "glpat-sandbox"
GITOPS = "platform/deployments"
APP = "shop/orders"
DEPLOYMENT = "apps/orders/production/deployment.yaml"
BRANCH = "deploy/orders-1.4.2"
COMMITS = "POST /projects/*/repository/commits"
MERGE_REQUESTS = "POST /projects/*/merge_requests"
BRANCH_DELETE = "DELETE /projects/*/repository/branches/*"


def image(version: str) -> str:
    return f"image: registry.example.com/shop/orders:{version}\n"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    async with GitLabSandbox(tmp_path / "gitlab") as sb:
        sb.add_user("alice", name="Alice Martin", email="alice@example.com")
        pid = sb.add_project(GITOPS, ci=True)
        sb.commit(
            pid,
            {"catalog.yaml": "teams: {}\n", DEPLOYMENT: image("1.4.0")},
            message="Initial catalog and orders",
            author="alice",
        )
        sb.run_pipelines()
        yield sb


@pytest.fixture
def repo(sandbox: GitLabSandbox) -> Iterator[GitLabRepository]:
    repository = GitLabRepository(
        url=sandbox.url, token=TOKEN, gitops_project=GITOPS, first_delay=0.01
    )
    yield repository
    repository.close()


async def open_deploy(
    repo: GitLabRepository, version: str = "1.4.2", *, branch: str = BRANCH
) -> MergeRequestInfo:
    current = await repo.read_file(DEPLOYMENT)
    return await repo.open_merge_request(
        branch=branch,
        path=DEPLOYMENT,
        content=image(version),
        last_commit_id=current.last_commit_id,
        commit_message=f"Deploy orders {version}",
        title=f"Deploy orders {version} to production",
        description="Asked by @alice in #deploys",
    )


def git(sandbox: GitLabSandbox, *args: str) -> list[str]:
    out = subprocess.run(
        ["git", f"--git-dir={sandbox.repo_path(GITOPS)}", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def writes(sandbox: GitLabSandbox, method: str, suffix: str) -> list[int]:
    return [c.status for c in sandbox.calls if c.method == method and c.path.endswith(suffix)]


# ---------------------------------------------------------------------- open_merge_request


async def test_open_merge_request_is_one_commit_on_a_new_branch(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    main = sandbox.head(GITOPS)
    mr = await open_deploy(repo)

    head = sandbox.head(GITOPS, BRANCH)
    assert (mr.state, mr.source_branch, mr.head_sha, mr.merge_commit_sha) == (
        "opened",
        BRANCH,
        head,
        None,
    )
    assert mr.web_url == f"{sandbox.url}/{GITOPS}/-/merge_requests/{mr.iid}"
    assert (mr.detailed_merge_status, mr.has_conflicts) == ("ci_still_running", False)
    assert mr.pipeline_status in ("created", "pending", "running")
    assert not mr.merge_when_pipeline_succeeds

    assert sandbox.head(GITOPS) == main
    shas = await asyncio.to_thread(git, sandbox, "rev-list", f"{main}..{head}")
    assert shas == [head]
    changed = await asyncio.to_thread(git, sandbox, "diff", "--name-only", f"{main}", f"{head}")
    assert changed == [DEPLOYMENT]
    assert sandbox.read_file(GITOPS, DEPLOYMENT, ref=BRANCH) == image("1.4.2")

    [shown] = sandbox.merge_requests(GITOPS)
    assert (shown["title"], shown["description"], shown["target_branch"]) == (
        "Deploy orders 1.4.2 to production",
        "Asked by @alice in #deploys",
        "main",
    )
    assert shown["force_remove_source_branch"] is True
    assert await repo.merge_request(mr.iid) == MergeRequestInfo(
        iid=mr.iid,
        web_url=mr.web_url,
        state="opened",
        head_sha=mr.head_sha,
        source_branch=BRANCH,
        merge_commit_sha=None,
        has_conflicts=False,
        detailed_merge_status="ci_still_running",
        merge_when_pipeline_succeeds=False,
        pipeline_status=mr.pipeline_status,
        pipeline_id=mr.pipeline_id,
        pipeline_url=f"{sandbox.url}/{GITOPS}/-/pipelines/{mr.pipeline_id}",
    )
    assert mr.pipeline_id is not None
    assert await repo.branch_exists(BRANCH)
    assert not await repo.branch_exists("deploy/nothing")


@pytest.mark.parametrize("applied", [False, True])
async def test_a_failed_commit_is_not_retried_and_leaves_no_branch(
    sandbox: GitLabSandbox, repo: GitLabRepository, applied: bool
) -> None:
    await repo.read_file(DEPLOYMENT)
    sandbox.fail(COMMITS, status=503, applied=applied)
    with pytest.raises(GitLabUnavailable) as failed:
        await open_deploy(repo)
    assert str(failed.value) == (
        f"GitLab failed to create a commit on branch {BRANCH} of {GITOPS}: 503 (not retried)"
    )
    assert writes(sandbox, "POST", "/repository/commits") == [503]
    assert writes(sandbox, "POST", "/merge_requests") == []
    assert sandbox.head(GITOPS, BRANCH) is None
    assert writes(sandbox, "DELETE", "/deploy%2Forders-1.4.2") == ([204] if applied else [])
    assert sandbox.merge_requests(GITOPS) == []


@pytest.mark.parametrize("applied", [False, True])
async def test_a_failed_merge_request_is_not_retried_and_leaves_no_branch(
    sandbox: GitLabSandbox, repo: GitLabRepository, applied: bool
) -> None:
    sandbox.fail(MERGE_REQUESTS, status=502, applied=applied)
    with pytest.raises(GitLabUnavailable) as failed:
        await open_deploy(repo)
    assert str(failed.value) == (
        f"GitLab failed to create the merge request of branch {BRANCH} into main of {GITOPS}:"
        " 502 (not retried)"
    )
    assert "\n" not in str(failed.value)
    assert writes(sandbox, "POST", "/merge_requests") == [502]
    assert writes(sandbox, "POST", "/repository/commits") == [201]
    assert sandbox.head(GITOPS, BRANCH) is None
    if applied:
        # GitLab opened it before the answer was lost: it is closed again, not left dangling.
        [mr] = sandbox.merge_requests(GITOPS)
        assert mr["state"] == "closed"
    else:
        assert sandbox.merge_requests(GITOPS) == []


async def test_a_stale_last_commit_id_is_refused_and_nothing_is_left(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    stale = await repo.read_file(DEPLOYMENT)
    await asyncio.to_thread(
        sandbox.commit, GITOPS, {DEPLOYMENT: image("1.4.1")}, message="Hotfix", author="alice"
    )
    with pytest.raises(GitLabRefused) as refused:
        await repo.open_merge_request(
            branch=BRANCH,
            path=DEPLOYMENT,
            content=image("1.4.2"),
            last_commit_id=stale.last_commit_id,
            commit_message="Deploy orders 1.4.2",
            title="Deploy orders 1.4.2 to production",
            description="",
        )
    assert str(refused.value) == (
        f"GitLab refused to create a commit on branch {BRANCH} of {GITOPS} (400: You are"
        " attempting to update a file that has changed since you started editing it.)"
    )
    assert writes(sandbox, "POST", "/repository/commits") == [400]
    assert sandbox.head(GITOPS, BRANCH) is None
    assert sandbox.merge_requests(GITOPS) == []


async def test_somebody_elses_branch_is_refused_and_left_alone(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    theirs = await asyncio.to_thread(sandbox.branch, GITOPS, BRANCH)
    with pytest.raises(GitLabRefused) as refused:
        await open_deploy(repo)
    assert "(400: A branch called 'deploy/orders-1.4.2' already exists." in str(refused.value)
    assert sandbox.head(GITOPS, BRANCH) == theirs
    assert writes(sandbox, "DELETE", "/deploy%2Forders-1.4.2") == []


async def test_a_branch_that_cannot_be_deleted_is_logged(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    sandbox.fail(MERGE_REQUESTS, status=503)
    sandbox.fail(BRANCH_DELETE, status=503, times=3)
    with capture_logs() as logs, pytest.raises(GitLabUnavailable):
        await open_deploy(repo)
    assert writes(sandbox, "DELETE", "/deploy%2Forders-1.4.2") == [503, 503, 503]
    assert sandbox.head(GITOPS, BRANCH) is not None
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert (warning["branch"], warning["project"]) == (BRANCH, GITOPS)
    assert "503 after 3 tries" in warning["error"]


# ---------------------------------------------------------------------- merge, close, note


async def test_merge_waits_for_the_pipeline_then_merges(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    opened = await open_deploy(repo)

    waiting = await repo.merge(opened.iid, sha=opened.head_sha)
    assert (waiting.state, waiting.merge_when_pipeline_succeeds) == ("opened", True)
    assert sandbox.read_file(GITOPS, DEPLOYMENT) == image("1.4.0")

    await asyncio.to_thread(sandbox.run_pipelines)
    merged = await repo.merge_request(opened.iid)
    assert merged.state == "merged"
    assert merged.merge_commit_sha is not None
    assert merged.merge_commit_sha == sandbox.head(GITOPS)
    assert merged.pipeline_status == "success"
    assert sandbox.read_file(GITOPS, DEPLOYMENT) == image("1.4.2")
    assert not await repo.branch_exists(BRANCH)  # remove_source_branch

    assert await repo.merge_requests_of_commit(merged.merge_commit_sha) == [opened.iid]
    assert await repo.merge_requests_of_commit(opened.head_sha) == [opened.iid]
    first = (await asyncio.to_thread(git, sandbox, "rev-list", "--max-parents=0", "main"))[0]
    assert await repo.merge_requests_of_commit(first) == []


async def test_merge_when_mergeable_is_immediate_and_a_repeat_is_harmless(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    opened = await open_deploy(repo)
    await asyncio.to_thread(sandbox.run_pipelines)
    assert (await repo.merge_request(opened.iid)).detailed_merge_status == "mergeable"

    merged = await repo.merge(opened.iid, sha=opened.head_sha, when_pipeline_succeeds=False)
    assert merged.state == "merged"
    assert merged.merge_commit_sha == sandbox.head(GITOPS)
    again = await repo.merge(opened.iid, sha=opened.head_sha)
    assert (again.state, again.merge_commit_sha) == ("merged", merged.merge_commit_sha)


async def test_a_lost_merge_answer_is_retried_safely(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    opened = await open_deploy(repo)
    await asyncio.to_thread(sandbox.run_pipelines)
    sandbox.fail("PUT /projects/*/merge_requests/*/merge", status=504, applied=True)
    merged = await repo.merge(opened.iid, sha=opened.head_sha)
    assert merged.state == "merged"
    assert writes(sandbox, "PUT", "/merge") == [504, 405]


async def test_merge_with_a_changed_head_is_refused(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    opened = await open_deploy(repo)
    main = sandbox.head(GITOPS)
    assert main is not None
    with pytest.raises(MergeRefused) as refused:
        await repo.merge(opened.iid, sha=main)
    assert str(refused.value) == f"merge request !{opened.iid} cannot be merged: its head changed"
    assert writes(sandbox, "PUT", "/merge") == [409]
    assert (await repo.merge_request(opened.iid)).state == "opened"


async def test_merge_refusals_say_why(sandbox: GitLabSandbox, repo: GitLabRepository) -> None:
    opened = await open_deploy(repo)
    with pytest.raises(MergeRefused) as running:
        await repo.merge(opened.iid, sha=opened.head_sha, when_pipeline_succeeds=False)
    assert str(running.value) == (
        f"merge request !{opened.iid} is not mergeable (ci_still_running)"
    )

    await asyncio.to_thread(
        sandbox.commit, GITOPS, {DEPLOYMENT: image("1.5.0")}, message="Hotfix", author="alice"
    )
    conflicted = await repo.merge_request(opened.iid)
    assert (conflicted.has_conflicts, conflicted.detailed_merge_status) == (True, "conflict")
    with pytest.raises(MergeRefused) as conflict:
        await repo.merge(opened.iid, sha=opened.head_sha)
    assert str(conflict.value) == f"merge request !{opened.iid} cannot be merged: it has conflicts"

    await repo.close_merge_request(opened.iid)
    with pytest.raises(MergeRefused) as closed:
        await repo.merge(opened.iid, sha=opened.head_sha)
    assert str(closed.value) == f"merge request !{opened.iid} is not mergeable (not_open)"


async def test_close_is_idempotent_and_refused_once_merged(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    opened = await open_deploy(repo)
    await repo.close_merge_request(opened.iid)
    closed = await repo.merge_request(opened.iid)
    assert (closed.state, closed.detailed_merge_status) == ("closed", "not_open")
    await repo.close_merge_request(opened.iid)

    second = await open_deploy(repo, "1.4.3", branch="deploy/orders-1.4.3")
    await asyncio.to_thread(sandbox.run_pipelines)
    await repo.merge(second.iid, sha=second.head_sha)
    with pytest.raises(MergeRefused) as refused:
        await repo.close_merge_request(second.iid)
    assert str(refused.value) == (
        f"merge request !{second.iid} is already merged: it cannot be closed"
    )
    with pytest.raises(NotFoundInGitLab):
        await repo.close_merge_request(999)


async def test_add_note_is_not_retried(sandbox: GitLabSandbox, repo: GitLabRepository) -> None:
    opened = await open_deploy(repo)
    await repo.add_note(opened.iid, "Rolled out: 3/3 pods ready.")
    notes = [n for n in sandbox.notes(GITOPS, opened.iid) if not n["system"]]
    assert [(n["body"], n["author"]["username"]) for n in notes] == [
        ("Rolled out: 3/3 pods ready.", "pitcrew-bot")
    ]

    sandbox.fail("POST /projects/*/merge_requests/*/notes", status=500, applied=True)
    with pytest.raises(GitLabUnavailable) as failed:
        await repo.add_note(opened.iid, "Again?")
    assert str(failed.value) == (
        f"GitLab failed to create a note on merge request !{opened.iid} of {GITOPS}: 500"
        " (not retried)"
    )
    assert writes(sandbox, "POST", "/notes") == [201, 500]
    assert len([n for n in sandbox.notes(GITOPS, opened.iid) if not n["system"]]) == 2


# ---------------------------------------------------------------------- releases


async def test_compare_lists_the_commits_oldest_first(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    pid = sandbox.add_project(APP)
    sandbox.commit(pid, {"VERSION": "1.4.1\n"}, message="Release 1.4.1", author="alice")
    sandbox.tag(pid, "1.4.1")
    before = datetime.now(UTC).replace(microsecond=0)
    first = sandbox.commit(
        pid,
        {"src/pay.py": "x\n"},
        message="Fix rounding (#12)\n\nCents were lost.",
        author="Bob Okafor <bob@example.com>",
    )
    second = sandbox.commit(pid, {"VERSION": "1.4.2\n"}, message="Release 1.4.2", author="alice")
    sandbox.tag(pid, "1.4.2")

    comparison = await repo.compare(APP, from_ref="1.4.1", to_ref="1.4.2")
    project_url = f"{sandbox.url}/{APP}"
    assert comparison.project_url == project_url
    assert comparison.web_url == f"{project_url}/-/compare/1.4.1...1.4.2"
    # each commit's time, for the lead time of changes (DORA)
    times = [commit.committed_at for commit in comparison.commits]
    assert all(t is not None and before <= t <= datetime.now(UTC) for t in times), times
    assert tuple(replace(c, committed_at=None) for c in comparison.commits) == (
        CommitSummary(
            sha=first,
            title="Fix rounding (#12)",
            message="Fix rounding (#12)\n\nCents were lost.",
            author_name="Bob Okafor",
            web_url=f"{project_url}/-/commit/{first}",
        ),
        CommitSummary(
            sha=second,
            title="Release 1.4.2",
            message="Release 1.4.2",
            author_name="Alice Martin",
            web_url=f"{project_url}/-/commit/{second}",
        ),
    )
    assert (await repo.compare(APP, from_ref="1.4.2", to_ref="1.4.2")).commits == ()
    with pytest.raises(NotFoundInGitLab):
        await repo.compare(APP, from_ref="1.4.1", to_ref="9.9.9")
    with pytest.raises(NotFoundInGitLab):
        await repo.compare("shop/nothing", from_ref="1.4.1", to_ref="1.4.2")


async def test_resolve_tag_with_and_without_a_v(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    plain = sandbox.add_project(APP)
    sandbox.commit(plain, {"VERSION": "1.4.2\n"}, message="1.4.2", author="alice")
    sandbox.tag(plain, "1.4.2")
    prefixed = sandbox.add_project("shop/payments")
    sandbox.commit(prefixed, {"VERSION": "1.4.2\n"}, message="1.4.2", author="alice")
    sandbox.tag(prefixed, "v1.4.2")

    assert await repo.resolve_tag(APP, "1.4.2") == "1.4.2"
    assert await repo.resolve_tag(APP, "v1.4.2") == "1.4.2"
    assert await repo.resolve_tag("shop/payments", "1.4.2") == "v1.4.2"
    assert await repo.resolve_tag("shop/payments", "v1.4.2") == "v1.4.2"
    assert await repo.resolve_tag(APP, "9.9.9") is None
    with pytest.raises(NotFoundInGitLab):
        await repo.resolve_tag("shop/nothing", "1.4.2")
