"""The GitLab repository adapter against the GitLab sandbox, over real HTTP and python-gitlab.

The sandbox serves on the test's own event loop; the adapter's python-gitlab calls run in worker
threads, so they never block it. Setup that goes through python-gitlab here (merge requests) runs
in a thread for the same reason.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gitlab
import pytest

from bot.adapters.gitlab.errors import GitLabRefused, GitLabUnavailable, NotFoundInGitLab
from bot.adapters.gitlab.repository import GitLabRepository, MergeRequestRef
from bot.sandbox.gitlab import GitLabSandbox

TOKEN = "glpat-sandbox"
GITOPS = "platform/deployments"
DEPLOYMENT = "apps/orders/production/deployment.yaml"
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def image(version: str) -> str:
    return f"image: registry.example.com/shop/orders:{version}\n"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    async with GitLabSandbox(tmp_path / "gitlab") as sb:
        sb.add_user("alice", name="Alice Martin", email="alice@example.com")
        sb.add_user("bob", name="Bob Okafor", email="bob@example.com")
        pid = sb.add_project(GITOPS)
        sb.commit(
            pid,
            {"catalog.yaml": "teams: {}\n", DEPLOYMENT: image("1.4.0")},
            message="Initial catalog and orders",
            author="alice",
            at=START,
        )
        yield sb


@pytest.fixture
def repo(sandbox: GitLabSandbox) -> Iterator[GitLabRepository]:
    repository = GitLabRepository(
        url=sandbox.url, token=TOKEN, gitops_project=GITOPS, first_delay=0.01
    )
    yield repository
    repository.close()


def merge_deploy(url: str, version: str) -> tuple[str, int]:
    """Open and merge an MR bumping orders, as the bot's /deploy does; (commit sha, MR iid)."""
    with gitlab.Gitlab(url, private_token=TOKEN) as gl:
        project = gl.projects.get(GITOPS)
        branch = f"deploy/orders-{version}"
        commit = project.commits.create(
            {
                "branch": branch,
                "start_branch": "main",
                "commit_message": f"Deploy orders {version}",
                "author_name": "Bob Okafor",
                "author_email": "bob@example.com",
                "actions": [
                    {"action": "update", "file_path": DEPLOYMENT, "content": image(version)}
                ],
            }
        )
        mr = project.mergerequests.create(
            {
                "source_branch": branch,
                "target_branch": "main",
                "title": f"Deploy orders {version} to production",
            }
        )
        mr.merge(sha=commit.id)
        return commit.id, mr.iid


async def test_read_file_at_the_branch_and_at_a_ref(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    first = sandbox.head(GITOPS)
    assert first is not None
    second = sandbox.commit(GITOPS, {DEPLOYMENT: image("1.4.1")}, message="Bump", author="bob")

    assert await repo.default_branch() == "main"
    now = await repo.read_file(DEPLOYMENT)
    assert (now.text, now.ref, now.last_commit_id, now.path) == (
        image("1.4.1"),
        "main",
        second,
        DEPLOYMENT,
    )
    before = await repo.read_file(DEPLOYMENT, ref=first)
    assert (before.text, before.last_commit_id) == (image("1.4.0"), first)
    assert before.blob_id != now.blob_id

    app = sandbox.add_project("shop/orders", default_branch="trunk")
    sandbox.commit(app, {"VERSION": "1.4.1\n"}, message="1.4.1", author="alice", branch="trunk")
    other = await repo.read_file("VERSION", project="shop/orders")
    assert (other.text, other.ref, other.project) == ("1.4.1\n", "trunk", "shop/orders")


async def test_the_default_branch_is_asked_once(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    await repo.read_file(DEPLOYMENT)
    await repo.read_file("catalog.yaml")
    assert await repo.default_branch() == "main"
    project_gets = [c for c in sandbox.calls if c.method == "GET" and c.path.count("/") == 2]
    assert len(project_gets) == 1


async def test_readers_at_once_ask_the_default_branch_once(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    """The inventory refresh reads thousands of files at once, at start."""
    files = await asyncio.gather(*(repo.read_file(DEPLOYMENT) for _ in range(40)))
    assert {f.text for f in files} == {image("1.4.0")}
    project_gets = [c for c in sandbox.calls if c.method == "GET" and c.path.count("/") == 2]
    assert len(project_gets) == 1


async def test_readers_at_once_share_the_tries_of_a_failing_project(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    sandbox.fail("/projects/*", status=503, times=3)
    reads = await asyncio.gather(
        *(repo.read_file(DEPLOYMENT) for _ in range(40)), return_exceptions=True
    )
    assert {type(r) for r in reads} == {GitLabUnavailable}
    project_gets = [c for c in sandbox.calls if c.method == "GET" and c.path.count("/") == 2]
    assert [c.status for c in project_gets] == [503, 503, 503]
    assert (await repo.read_file(DEPLOYMENT)).text == image("1.4.0")  # asked afresh later


async def test_a_configured_branch_is_read_instead_of_the_default(sandbox: GitLabSandbox) -> None:
    sandbox.commit(
        GITOPS, {DEPLOYMENT: image("9.9.9")}, message="Env", author="bob", branch="clusters"
    )
    on_branch = GitLabRepository(
        url=sandbox.url, token=TOKEN, gitops_project=GITOPS, branch="clusters"
    )
    try:
        assert (await on_branch.read_file(DEPLOYMENT)).text == image("9.9.9")
        change = await on_branch.last_change(DEPLOYMENT)
        assert change is not None
        assert change.title == "Env"
    finally:
        on_branch.close()


async def test_last_change_without_a_merge_request(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    sha = sandbox.commit(
        GITOPS,
        {DEPLOYMENT: image("1.4.1")},
        message="Hotfix orders to 1.4.1\n\nBy hand.",
        author="bob",
        at=START + timedelta(hours=2),
    )
    sandbox.commit(GITOPS, {"README.md": "# GitOps\n"}, message="Readme", author="alice")

    change = await repo.last_change(DEPLOYMENT)
    assert change is not None
    assert (change.sha, change.title, change.author_name, change.author_email) == (
        sha,
        "Hotfix orders to 1.4.1",
        "Bob Okafor",
        "bob@example.com",
    )
    assert change.committed_at == START + timedelta(hours=2)
    assert change.web_url.endswith(f"/{GITOPS}/-/commit/{sha}")
    assert change.merge_request is None
    assert await repo.last_change("apps/nothing/here.yaml") is None


async def test_last_change_with_the_merge_request_that_brought_it(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    sha, iid = await asyncio.to_thread(merge_deploy, sandbox.url, "1.4.2")

    change = await repo.last_change(DEPLOYMENT)
    assert change is not None
    assert (change.sha, change.title, change.author_name) == (
        sha,
        "Deploy orders 1.4.2",
        "Bob Okafor",
    )
    assert change.merge_request == MergeRequestRef(
        iid=iid,
        title="Deploy orders 1.4.2 to production",
        web_url=f"{sandbox.url}/{GITOPS}/-/merge_requests/{iid}",
        author_name="Pitcrew Bot",
        author_username="pitcrew-bot",
    )


async def test_history_is_newest_first_and_limited(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    for n in range(1, 5):
        sandbox.commit(
            GITOPS,
            {DEPLOYMENT: image(f"1.4.{n}")},
            message=f"Orders 1.4.{n}",
            author="alice",
            at=START + timedelta(hours=n),
        )
        sandbox.commit(GITOPS, {f"notes/{n}.md": "x\n"}, message=f"Note {n}", author="bob")
    sha, _ = await asyncio.to_thread(merge_deploy, sandbox.url, "1.5.0")

    history = await repo.history(DEPLOYMENT)
    assert [c.title for c in history] == [
        "Deploy orders 1.5.0",
        "Orders 1.4.4",
        "Orders 1.4.3",
        "Orders 1.4.2",
        "Orders 1.4.1",
        "Initial catalog and orders",
    ]
    assert history[0].sha == sha
    assert history[0].merge_request is not None
    assert all(c.merge_request is None for c in history[1:])
    assert [c.title for c in await repo.history(DEPLOYMENT, limit=2)] == [
        "Deploy orders 1.5.0",
        "Orders 1.4.4",
    ]


async def test_tags_of_an_app_repo(sandbox: GitLabSandbox, repo: GitLabRepository) -> None:
    pid = sandbox.add_project("shop/orders")
    sandbox.commit(pid, {"VERSION": "1.4.0\n"}, message="1.4.0", author="alice", at=START)
    first = sandbox.tag(pid, "v1.4.0")
    sandbox.commit(
        pid, {"VERSION": "1.4.1\n"}, message="1.4.1", author="bob", at=START + timedelta(days=1)
    )
    second = sandbox.tag(pid, "v1.4.1", message="Release 1.4.1")

    tags = await repo.tags("shop/orders")
    assert [(t.name, t.sha) for t in tags] == [("v1.4.1", second), ("v1.4.0", first)]
    assert tags[1].created_at == START
    assert [t.name for t in await repo.tags("shop/orders", search="^v1.4.0")] == ["v1.4.0"]
    assert await repo.tag_exists("shop/orders", "v1.4.1")
    assert not await repo.tag_exists("shop/orders", "v9.9.9")
    with pytest.raises(NotFoundInGitLab):
        await repo.tag_exists("shop/nothing", "v1.4.1")


async def test_missing_things_are_not_found(repo: GitLabRepository) -> None:
    with pytest.raises(NotFoundInGitLab) as missing:
        await repo.read_file("apps/nothing.yaml")
    assert str(missing.value) == f"apps/nothing.yaml at main in {GITOPS} not found in GitLab"
    with pytest.raises(NotFoundInGitLab):
        await repo.read_file("VERSION", project="shop/nothing")
    with pytest.raises(NotFoundInGitLab):
        await repo.tags("shop/nothing")


async def test_a_transient_failure_is_retried(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    await repo.default_branch()
    sandbox.fail("/projects/*/repository/files/*", status=503)
    assert (await repo.read_file(DEPLOYMENT)).text == image("1.4.0")
    sandbox.fail("/projects/*/repository/tags", status=429, times=2)
    sandbox.add_project("shop/orders")
    assert await repo.tags("shop/orders") == []
    assert [c.status for c in sandbox.calls[-3:]] == [429, 429, 200]


async def test_a_lasting_failure_is_one_line_unavailable(
    sandbox: GitLabSandbox, repo: GitLabRepository
) -> None:
    await repo.default_branch()
    sandbox.fail("/projects/*/repository/files/*", status=503, times=100)
    with pytest.raises(GitLabUnavailable) as down:
        await repo.read_file(DEPLOYMENT)
    assert str(down.value) == (
        f"GitLab failed to read {DEPLOYMENT} at main in {GITOPS}: 503 after 3 tries"
    )
    assert "\n" not in str(down.value)
    assert [c.status for c in sandbox.calls if "/files/" in c.path] == [503, 503, 503]


async def test_a_refused_token_is_not_retried(sandbox: GitLabSandbox) -> None:
    stranger = GitLabRepository(url=sandbox.url, token="glpat-wrong", gitops_project=GITOPS)
    try:
        with pytest.raises(GitLabRefused) as refused:
            await stranger.default_branch()
    finally:
        stranger.close()
    assert str(refused.value) == f"GitLab refused to read project {GITOPS} (401)"
    assert len(sandbox.calls) == 1


async def test_an_unreachable_gitlab_is_unavailable() -> None:
    gone = GitLabRepository(
        url="http://127.0.0.1:9", token=TOKEN, gitops_project=GITOPS, first_delay=0.01
    )
    try:
        with pytest.raises(GitLabUnavailable) as down:
            await gone.read_file(DEPLOYMENT, ref="main")
    finally:
        gone.close()
    assert str(down.value).startswith("GitLab at http://127.0.0.1:9 unreachable reading ")


async def test_concurrency_is_bounded(
    sandbox: GitLabSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounded = GitLabRepository(url=sandbox.url, token=TOKEN, gitops_project=GITOPS, concurrency=2)
    session = bounded._client.session
    send = session.request
    lock = threading.Lock()
    in_flight = peak = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            time.sleep(0.05)
            return send(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(session, "request", counting)
    try:
        await bounded.default_branch()
        files = await asyncio.gather(*(bounded.read_file(DEPLOYMENT) for _ in range(8)))
    finally:
        bounded.close()
    assert {f.text for f in files} == {image("1.4.0")}
    assert peak == 2
