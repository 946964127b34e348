"""The GitLab sandbox, driven by the real python-gitlab client over HTTP.

The sandbox and a webhook receiver run on an event loop in a background thread; the tests call
python-gitlab synchronously, as the bot does from its worker threads. What the bot's
integration tests rely on is pinned here: GitLab's answers (and failures), real git history on
disk, CI that can pass or fail on demand, and webhooks as GitLab sends them.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import gitlab
import pytest
from aiohttp import web
from gitlab.v4.objects import Project

from bot.sandbox.gitlab import GitLabSandbox

T = TypeVar("T")
TOKEN = "glpat-sandbox"
DEPLOYMENT = "apps/orders/production/deployment.yaml"


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Receiver:
    """A tiny webhook endpoint that records what GitLab sent it."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        return web.json_response({"status": "queued"})

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [body for headers, body in self.received if headers["X-Gitlab-Event"] == kind]


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture
def sandbox(background: BackgroundLoop, tmp_path: Path) -> Iterator[GitLabSandbox]:
    sb = GitLabSandbox(tmp_path / "gitlab")
    background.run(sb.start())
    sb.add_user("alice", name="Alice Martin", email="alice@example.com")
    sb.add_user("bob", name="Bob Okafor", email="bob@example.com")
    yield sb
    background.run(sb.stop())


@pytest.fixture
def gl(sandbox: GitLabSandbox) -> Iterator[gitlab.Gitlab]:
    with gitlab.Gitlab(sandbox.url, private_token=TOKEN) as client:
        yield client


@pytest.fixture
def receiver(background: BackgroundLoop) -> Iterator[Receiver]:
    r = Receiver()
    background.run(r.start())
    yield r
    background.run(r.stop())


def gitops(sandbox: GitLabSandbox, *, ci: bool = False, **options: Any) -> int:
    pid = sandbox.add_project("platform/deployments", ci=ci, **options)
    sandbox.commit(
        pid,
        {
            "catalog.yaml": "teams:\n  payments:\n    channel: '#payments-deploys'\n",
            DEPLOYMENT: "image: registry.example.com/shop/orders:1.4.1\n",
        },
        message="Initial catalog and orders",
        author="alice",
    )
    return pid


def git(sandbox: GitLabSandbox, project: str, *args: str) -> str:
    result = subprocess.run(
        ["git", f"--git-dir={sandbox.repo_path(project)}", *args],
        capture_output=True,
        check=True,
        text=True,
    )
    return result.stdout


def deploy_commit(project: Project, branch: str, version: str) -> Any:
    return project.commits.create(
        {
            "branch": branch,
            "start_branch": "main",
            "commit_message": f"Deploy orders {version}",
            "actions": [
                {
                    "action": "update",
                    "file_path": DEPLOYMENT,
                    "content": f"image: registry.example.com/shop/orders:{version}\n",
                }
            ],
        }
    )


# ---------------------------------------------------------------------- auth and users


def test_token_user_and_user_lookups(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    gl.auth()
    assert gl.user is not None
    assert gl.user.username == "pitcrew-bot"

    [alice] = gl.users.list(username="alice")
    assert alice.name == "Alice Martin"
    assert gl.users.get(alice.id).public_email == "alice@example.com"
    assert gl.users.get(alice.id).email == "alice@example.com"
    assert [u.username for u in gl.users.list(search="bob@example.com")] == ["bob"]


def test_bad_token_is_401_and_read_only_token_is_403(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab
) -> None:
    gitops(sandbox)
    with (
        gitlab.Gitlab(sandbox.url, private_token="glpat-wrong") as stranger,
        pytest.raises(gitlab.GitlabAuthenticationError) as refused,
    ):
        stranger.auth()
    assert refused.value.response_code == 401
    assert refused.value.error_message == "401 Unauthorized"

    sandbox.add_token("glpat-reader", "bob", read_only=True)
    with gitlab.Gitlab(sandbox.url, private_token="glpat-reader") as reader:
        project = reader.projects.get("platform/deployments")
        assert project.files.raw(DEPLOYMENT, ref="main").startswith(b"image:")
        with pytest.raises(gitlab.GitlabCreateError) as forbidden:
            project.branches.create({"branch": "x", "ref": "main"})
    assert forbidden.value.response_code == 403
    assert sandbox.head("platform/deployments", "x") is None


# ---------------------------------------------------------------------- repository


def test_project_files_and_tree(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = gitops(sandbox)
    first = sandbox.head(pid)
    second = sandbox.commit(pid, {"README.md": "# GitOps\n"}, message="Readme", author="bob")

    project = gl.projects.get("platform/deployments")
    assert project.id == pid
    assert gl.projects.get(pid).path_with_namespace == "platform/deployments"
    assert project.default_branch == "main"
    assert project.web_url == f"{sandbox.url}/platform/deployments"

    file = project.files.get(DEPLOYMENT, ref="main")
    assert file.decode() == b"image: registry.example.com/shop/orders:1.4.1\n"
    assert file.last_commit_id == first
    assert file.commit_id == second
    assert (
        file.blob_id
        == git(sandbox, "platform/deployments", "rev-parse", f"main:{DEPLOYMENT}").strip()
    )
    assert project.files.raw("README.md", ref=second) == b"# GitOps\n"
    headers = project.files.head(DEPLOYMENT, ref="main")
    assert headers["X-Gitlab-Last-Commit-Id"] == first
    assert headers["X-Gitlab-File-Path"] == DEPLOYMENT

    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.files.get("nope.yaml", ref="main")
    assert (missing.value.response_code, missing.value.error_message) == (404, "404 File Not Found")
    with pytest.raises(gitlab.GitlabGetError):
        project.files.get(DEPLOYMENT, ref="no-such-branch")

    tree = project.repository_tree(path="apps", recursive=True, get_all=True)
    assert [(e["path"], e["type"]) for e in tree] == [
        ("apps/orders", "tree"),
        ("apps/orders/production", "tree"),
        (DEPLOYMENT, "blob"),
    ]
    keyset = project.repository_tree(recursive=True, pagination="keyset", per_page=2, get_all=True)
    assert len(keyset) == 6


def test_commit_with_actions_is_one_git_commit(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = gitops(sandbox)
    before = sandbox.head(pid)
    project = gl.projects.get(pid)

    commit = project.commits.create(
        {
            "branch": "main",
            "commit_message": "Reorganise orders",
            "author_name": "Alice Martin",
            "author_email": "alice@example.com",
            "actions": [
                {"action": "create", "file_path": "apps/orders/staging/deployment.yaml",
                 "content": "aW1hZ2U6IG9yZGVyczoxLjQuMgo=", "encoding": "base64"},
                {"action": "update", "file_path": "catalog.yaml", "content": "teams: {}\n"},
                {"action": "move", "file_path": "apps/orders/prod/deployment.yaml",
                 "previous_path": DEPLOYMENT},
            ],
        }
    )  # fmt: skip

    assert commit.parent_ids == [before]
    assert commit.author_name == "Alice Martin"
    assert commit.committer_name == "Pitcrew Bot"
    assert git(sandbox, "platform/deployments", "rev-list", "--count", "main").strip() == "2"
    shown = git(sandbox, "platform/deployments", "show", "--name-status", "--format=%s", "main")
    assert shown.split() == [
        "Reorganise",
        "orders",
        "R100", DEPLOYMENT, "apps/orders/prod/deployment.yaml",
        "A", "apps/orders/staging/deployment.yaml",
        "M", "catalog.yaml",
    ]  # fmt: skip
    assert sandbox.read_file(pid, "apps/orders/staging/deployment.yaml") == "image: orders:1.4.2\n"

    refusals = [
        ({"action": "create", "file_path": "catalog.yaml", "content": "x"},
         "A file with this name already exists"),
        ({"action": "update", "file_path": "missing.yaml", "content": "x"},
         "A file with this name doesn't exist"),
        ({"action": "delete", "file_path": "missing.yaml"}, "A file with this name doesn't exist"),
        ({"action": "update", "file_path": "catalog.yaml", "content": "x",
          "last_commit_id": before},
         "You are attempting to update a file that has changed since you started editing it."),
    ]  # fmt: skip
    for action, message in refusals:
        with pytest.raises(gitlab.GitlabCreateError) as refused:
            project.commits.create({"branch": "main", "commit_message": "bad", "actions": [action]})
        assert (refused.value.response_code, refused.value.error_message) == (400, message)
    assert sandbox.head(pid) == commit.id

    with pytest.raises(gitlab.GitlabCreateError) as no_branch:
        project.commits.create(
            {
                "branch": "feature",
                "commit_message": "x",
                "actions": [{"action": "delete", "file_path": "catalog.yaml"}],
            }
        )
    assert no_branch.value.response_code == 400


def test_single_file_api_commits_too(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = gitops(sandbox)
    project = gl.projects.get(pid)
    project.files.create(
        {
            "file_path": "apps/cart/values.yaml",
            "branch": "main",
            "content": "image:\n  tag: 2.0.0\n",
            "commit_message": "Add cart",
        }
    )
    file = project.files.get("apps/cart/values.yaml", ref="main")
    file.content = "image:\n  tag: 2.0.1\n"
    file.save(branch="main", commit_message="Bump cart")
    assert sandbox.read_file(pid, "apps/cart/values.yaml") == "image:\n  tag: 2.0.1\n"
    project.files.delete(file_path="catalog.yaml", branch="main", commit_message="Drop catalog")
    assert sandbox.read_file(pid, "catalog.yaml") is None
    log = git(sandbox, "platform/deployments", "log", "--format=%s", "main").split("\n")
    assert log[:3] == ["Drop catalog", "Bump cart", "Add cart"]


def test_commits_list_paginates_and_filters(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = sandbox.add_project("shop/orders")
    start = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    for n in range(25):
        sandbox.commit(
            pid,
            {f"changes/{n:02d}.txt": f"{n}\n", **({"VERSION": f"1.{n}\n"} if n % 5 == 0 else {})},
            message=f"Change {n}",
            author="alice" if n % 2 else "Bob Okafor <bob@example.com>",
            at=start + timedelta(hours=n),
        )
    project = gl.projects.get("shop/orders")

    commits = project.commits.list(ref_name="main", get_all=True)
    assert [c.title for c in commits] == [f"Change {n}" for n in reversed(range(25))]
    assert commits[0].parent_ids == [commits[1].id]
    assert commits[0].authored_date == "2024-05-02T09:00:00.000+00:00"
    assert sum(1 for _ in project.commits.list(iterator=True, per_page=7)) == 25
    page = project.commits.list(per_page=10, page=3)
    assert [c.title for c in page] == [f"Change {n}" for n in (4, 3, 2, 1, 0)]

    # ``path`` is python-gitlab's own keyword (the URL): the filter goes in query_parameters.
    touching = project.commits.list(query_parameters={"path": "VERSION"}, get_all=True)
    assert [c.title for c in touching] == [
        "Change 20",
        "Change 15",
        "Change 10",
        "Change 5",
        "Change 0",
    ]
    recent = project.commits.list(since="2024-05-01T20:00:00Z", get_all=True)
    assert [c.title for c in recent][-1] == "Change 11"

    single = project.commits.get(commits[0].id)
    assert single.stats == {"additions": 1, "deletions": 0, "total": 1}
    assert single.author_email == "bob@example.com"


def test_branches_tags_and_compare(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = sandbox.add_project("shop/orders")
    base = datetime(2024, 5, 1, tzinfo=UTC)
    sandbox.commit(pid, {"VERSION": "1.4.0\n"}, message="Release 1.4.0", author="alice", at=base)
    sandbox.tag(pid, "v1.4.0")
    sandbox.commit(
        pid, {"VERSION": "1.4.1\n", "fix.txt": "x\n"}, message="Fix #12", author="bob",
        at=base + timedelta(days=1),
    )  # fmt: skip
    sandbox.tag(pid, "v1.4.1", message="Release 1.4.1")
    sandbox.commit(
        pid, {"VERSION": "1.4.2\n"}, message="Speed up #13", author="alice",
        at=base + timedelta(days=2),
    )  # fmt: skip
    project = gl.projects.get(pid)
    project.tags.create({"tag_name": "v1.4.2", "ref": "main"})

    assert [t.name for t in project.tags.list(get_all=True)] == ["v1.4.2", "v1.4.1", "v1.4.0"]
    assert [t.name for t in project.tags.list(search="^v1.4.1", get_all=True)] == ["v1.4.1"]
    annotated = project.tags.get("v1.4.1")
    assert annotated.message == "Release 1.4.1"
    assert annotated.commit["title"] == "Fix #12"
    assert annotated.target != annotated.commit["id"]

    comparison = project.repository_compare("v1.4.0", "v1.4.2")
    assert [c["title"] for c in comparison["commits"]] == ["Fix #12", "Speed up #13"]
    diffs = {d["new_path"]: d for d in comparison["diffs"]}
    assert diffs["VERSION"]["diff"] == "@@ -1 +1 @@\n-1.4.0\n+1.4.2\n"
    assert diffs["fix.txt"]["new_file"] is True

    branch = project.branches.create({"branch": "feature/faster", "ref": "v1.4.1"})
    assert branch.commit["title"] == "Fix #12"
    assert project.branches.get("feature/faster").name == "feature/faster"
    assert [b.name for b in project.branches.list(search="feature", get_all=True)] == [
        "feature/faster"
    ]
    with pytest.raises(gitlab.GitlabCreateError) as exists:
        project.branches.create({"branch": "feature/faster", "ref": "main"})
    assert exists.value.error_message == "Branch already exists"
    project.branches.delete("feature/faster")
    with pytest.raises(gitlab.GitlabGetError):
        project.branches.get("feature/faster")


# ---------------------------------------------------------------------- merge requests


def test_merge_request_approve_merge_close_and_notes(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab
) -> None:
    pid = gitops(sandbox)
    sandbox.add_token("glpat-alice", "alice")
    project = gl.projects.get(pid)
    commit = deploy_commit(project, "deploy/orders-1.4.2", "1.4.2")
    mr = project.mergerequests.create(
        {
            "source_branch": "deploy/orders-1.4.2",
            "target_branch": "main",
            "title": "Deploy orders 1.4.2 to production",
            "description": "Requested by @alice",
            "labels": ["pitcrew", "production"],
            "remove_source_branch": True,
        }
    )
    assert (mr.iid, mr.state, mr.sha) == (1, "opened", commit.id)
    assert mr.detailed_merge_status == "mergeable"
    assert mr.author["username"] == "pitcrew-bot"
    assert mr.web_url.endswith("/platform/deployments/-/merge_requests/1")
    listed = project.mergerequests.list(state="opened", labels=["production"], get_all=True)
    assert [m.iid for m in listed] == [1]
    assert project.mergerequests.list(source_branch="other", get_all=True) == []
    with pytest.raises(gitlab.GitlabCreateError) as twice:
        project.mergerequests.create(
            {"source_branch": "deploy/orders-1.4.2", "target_branch": "main", "title": "again"}
        )
    assert twice.value.response_code == 409

    mr.notes.create({"body": "Approved in Slack by @bob"})
    assert [n.body for n in mr.notes.list(get_all=True)] == ["Approved in Slack by @bob"]

    with pytest.raises(gitlab.GitlabMRApprovalError) as stale:
        mr.approve(sha="0" * 40)
    assert stale.value.response_code == 409
    with gitlab.Gitlab(sandbox.url, private_token="glpat-alice") as as_alice:
        as_alice.projects.get(pid).mergerequests.get(1).approve(sha=commit.id)
    assert [a["user"]["username"] for a in mr.approvals.get().approved_by] == ["alice"]
    mr.approve()
    # GitLab answers 401 to a second approval; python-gitlab raises its auth error for any 401.
    with pytest.raises(gitlab.GitlabAuthenticationError) as again:
        mr.approve()
    assert again.value.response_code == 401

    with pytest.raises(gitlab.GitlabMRClosedError) as moved:
        mr.merge(sha="0" * 40)
    assert moved.value.response_code == 409
    mr.merge(sha=commit.id, should_remove_source_branch=True)
    assert mr.state == "merged"
    assert git(sandbox, "platform/deployments", "rev-parse", "main^2").strip() == commit.id
    assert git(sandbox, "platform/deployments", "log", "-1", "--format=%s", "main").strip() == (
        "Merge branch 'deploy/orders-1.4.2' into 'main'"
    )
    assert sandbox.head(pid, "deploy/orders-1.4.2") is None
    assert [m["iid"] for m in project.commits.get(commit.id).merge_requests()] == [1]
    with pytest.raises(gitlab.GitlabMRClosedError) as merged:
        mr.merge()
    assert merged.value.response_code == 405

    second = deploy_commit(project, "deploy/orders-1.4.3", "1.4.3")
    other = project.mergerequests.create(
        {"source_branch": "deploy/orders-1.4.3", "target_branch": "main", "title": "Deploy 1.4.3"}
    )
    assert [c.id for c in other.commits()] == [second.id]
    assert other.changes()["changes"][0]["new_path"] == DEPLOYMENT
    other.state_event = "close"
    other.save()
    assert project.mergerequests.get(other.iid).state == "closed"


def test_conflicting_merge_request_is_refused(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = gitops(sandbox)
    project = gl.projects.get(pid)
    deploy_commit(project, "deploy/a", "1.5.0")
    sandbox.commit(pid, {DEPLOYMENT: "image: hotfix\n"}, message="Hotfix", author="bob")
    mr = project.mergerequests.create(
        {"source_branch": "deploy/a", "target_branch": "main", "title": "Deploy 1.5.0"}
    )
    assert mr.has_conflicts is True
    assert mr.merge_status == "cannot_be_merged"
    assert mr.detailed_merge_status == "conflict"
    with pytest.raises(gitlab.GitlabMRClosedError) as refused:
        mr.merge()
    assert refused.value.response_code == 406


# ---------------------------------------------------------------------- CI


def test_pipelines_follow_outcomes_and_auto_merge(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab
) -> None:
    pid = gitops(sandbox, ci=True)
    sandbox.set_pipeline_outcome(pid, ref="deploy/broken*", outcome="failed", failed_job="build")
    project = gl.projects.get(pid)
    [initial] = project.pipelines.list(ref="main", get_all=True)
    assert initial.status == "pending"
    sandbox.advance(pid)
    assert project.pipelines.get(initial.id).status == "running"
    sandbox.run_pipelines(pid)
    finished = project.pipelines.get(initial.id)
    assert (finished.status, finished.duration) == ("success", 60)
    assert [(j.name, j.status) for j in finished.jobs.list(get_all=True)] == [
        ("test", "success"),
        ("build", "success"),
    ]

    deploy_commit(project, "deploy/broken", "9.9.9")
    broken = project.mergerequests.create(
        {"source_branch": "deploy/broken", "target_branch": "main", "title": "Deploy 9.9.9"}
    )
    assert broken.detailed_merge_status == "ci_still_running"
    sandbox.run_pipelines(pid)
    broken = project.mergerequests.get(broken.iid)
    assert broken.head_pipeline["status"] == "failed"
    assert broken.head_pipeline["ref"] == "refs/merge-requests/1/head"
    jobs = project.pipelines.get(broken.head_pipeline["id"]).jobs.list(get_all=True)
    assert {j.name: (j.status, getattr(j, "failure_reason", None)) for j in jobs} == {
        "build": ("failed", "script_failure"),
        "test": ("skipped", None),
    }
    with pytest.raises(gitlab.GitlabMRClosedError) as red:
        broken.merge(merge_when_pipeline_succeeds=True)
    assert red.value.response_code == 405

    sandbox.set_pipeline_outcome(pid, ref="deploy/broken*", outcome="success")
    retried = project.pipelines.get(broken.head_pipeline["id"])
    retried.retry()
    sandbox.run_pipelines(pid)
    assert project.pipelines.get(retried.id).status == "success"
    assert len(retried.jobs.list(include_retried=True, get_all=True)) == 4

    good = deploy_commit(project, "deploy/orders-1.4.2", "1.4.2")
    auto = project.mergerequests.create(
        {"source_branch": "deploy/orders-1.4.2", "target_branch": "main", "title": "Deploy 1.4.2"}
    )
    with pytest.raises(gitlab.GitlabMRClosedError):
        auto.merge()
    auto.merge(sha=good.id, merge_when_pipeline_succeeds=True)
    assert (auto.state, auto.merge_when_pipeline_succeeds) == ("opened", True)
    sandbox.run_pipelines(pid)
    merged = project.mergerequests.get(auto.iid)
    assert merged.state == "merged"
    newest_on_main = project.pipelines.list(ref="main", get_all=True)[0]
    assert newest_on_main.sha == merged.merge_commit_sha
    assert [p.status for p in auto.pipelines.list(get_all=True)] == ["success", "success"]


def test_pipelines_run_on_their_own_with_a_speed(
    background: BackgroundLoop, tmp_path: Path
) -> None:
    sandbox = GitLabSandbox(tmp_path / "gitlab", pipeline_speed=600)
    background.run(sandbox.start())
    try:
        pid = sandbox.add_project("shop/orders", ci=True)
        sandbox.set_pipeline_outcome(pid, duration=90)
        sandbox.commit(pid, {"VERSION": "1\n"}, message="One", author="Ann <ann@example.com>")
        deadline = time.monotonic() + 5
        while sandbox.pipelines(pid)[0]["status"] != "success":
            assert time.monotonic() < deadline, sandbox.pipelines(pid)[0]["status"]
            time.sleep(0.02)
        assert sandbox.pipelines(pid)[0]["duration"] == 90
    finally:
        background.run(sandbox.stop())


MR_HEAD = "refs/merge-requests/1/head"
MR_PIPELINE = ("merge_request_event", MR_HEAD)
BRANCH_PIPELINE = ("push", "deploy/orders-1.4.2")
MAIN_PIPELINE = ("push", "main")
TAG_PIPELINE = ("push", "v1.4.2")


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        pytest.param(
            "both",
            [[MAIN_PIPELINE], [BRANCH_PIPELINE], [MR_PIPELINE], [MR_PIPELINE], [MAIN_PIPELINE],
             [TAG_PIPELINE]],
            id="both",
        ),
        pytest.param(
            True,
            [[MAIN_PIPELINE], [BRANCH_PIPELINE], [MR_PIPELINE], [MR_PIPELINE], [MAIN_PIPELINE],
             [TAG_PIPELINE]],
            id="True-is-both",
        ),
        pytest.param(
            "merge_requests", [[], [], [MR_PIPELINE], [MR_PIPELINE], [], []], id="merge_requests"
        ),
        pytest.param(
            "branches",
            [[MAIN_PIPELINE], [BRANCH_PIPELINE], [], [BRANCH_PIPELINE], [MAIN_PIPELINE],
             [TAG_PIPELINE]],
            id="branches",
        ),
        pytest.param("none", [[], [], [], [], [], []], id="none"),
        pytest.param(False, [[], [], [], [], [], []], id="False-is-none"),
    ],
)  # fmt: skip
def test_ci_modes_make_the_pipelines_gitlab_makes(
    sandbox: GitLabSandbox,
    gl: gitlab.Gitlab,
    receiver: Receiver,
    background: BackgroundLoop,
    ci: Any,
    expected: list[list[tuple[str, str]]],
) -> None:
    """Which pipelines exist after each step of a release, per ``.gitlab-ci.yml`` setup."""
    sandbox.add_webhook(receiver.url, secret_token="s3cret")
    seen: set[int] = set()
    made: list[list[tuple[str, str]]] = []

    def new_pipelines() -> None:
        listed = sorted(project.pipelines.list(get_all=True), key=lambda p: p.id)
        made.append([(p.source, p.ref) for p in listed if p.id not in seen])
        seen.update(p.id for p in listed)

    pid = gitops(sandbox, ci=ci)  # a push to main
    project = gl.projects.get(pid)
    new_pipelines()
    deploy_commit(project, "deploy/orders-1.4.2", "1.4.2")  # a push to a branch with no MR
    new_pipelines()
    sandbox.run_pipelines(pid)
    mr = project.mergerequests.create(
        {"source_branch": "deploy/orders-1.4.2", "target_branch": "main", "title": "Deploy 1.4.2"}
    )
    new_pipelines()
    head = sandbox.commit(
        pid,
        {DEPLOYMENT: "image: registry.example.com/shop/orders:1.4.2 # fixed\n"},
        message="Fix the manifest",
        author="bob",
        branch="deploy/orders-1.4.2",
    )  # a push to the MR's source branch
    new_pipelines()

    mr = project.mergerequests.get(mr.iid)
    has_ci = ci not in ("none", False)
    running = project.pipelines.list(get_all=True)[0] if expected[3] else None
    assert mr.sha == head
    assert (mr.head_pipeline or {}).get("id") == (running.id if running else None)
    assert mr.detailed_merge_status == ("ci_still_running" if has_ci else "mergeable")

    mr.merge(merge_when_pipeline_succeeds=True)
    assert mr.state == ("opened" if has_ci else "merged")  # nothing to wait for: merged at once
    sandbox.run_pipelines(pid)
    merged = project.mergerequests.get(mr.iid)
    assert merged.state == "merged"
    new_pipelines()
    sandbox.tag(pid, "v1.4.2")
    new_pipelines()
    background.run(sandbox.drain())

    assert made == expected
    tagged = [p["tag"] for p in sandbox.pipelines(pid) if p["ref"] == "v1.4.2"]
    assert tagged == ([True] if expected[5] else [])
    if running is not None:
        # what auto-merge waited for is the MR's head pipeline in the API and in the hooks
        assert merged.head_pipeline["id"] == running.id
        assert merged.head_pipeline["status"] == "success"
        hooks = receiver.events("Merge Request Hook")
        assert hooks[-1]["object_attributes"]["action"] == "merge"
        assert hooks[-1]["object_attributes"]["head_pipeline_id"] == running.id
        assert hooks[-1]["object_attributes"]["last_commit"]["id"] == head
        finished = [
            p
            for p in receiver.events("Pipeline Hook")
            if p["object_attributes"]["id"] == running.id
        ]
        assert finished[-1]["object_attributes"]["status"] == "success"
        assert finished[-1]["object_attributes"]["sha"] == head
        # GitLab names the MR only in the hooks of merge request pipelines
        assert (finished[-1]["merge_request"] or {}).get("iid") == (
            1 if running.source == "merge_request_event" else None
        )
    else:
        assert merged.head_pipeline is None
        assert receiver.events("Pipeline Hook") == []
        assert receiver.events("Job Hook") == []
    assert project.jobs_enabled is has_ci


@pytest.mark.parametrize("ci", ["both", "merge_requests", "branches"])
def test_a_push_to_the_source_branch_cancels_the_auto_merge(
    sandbox: GitLabSandbox,
    gl: gitlab.Gitlab,
    receiver: Receiver,
    background: BackgroundLoop,
    ci: str,
) -> None:
    pid = gitops(sandbox, ci=ci)
    sandbox.run_pipelines(pid)
    project = gl.projects.get(pid)
    first = deploy_commit(project, "deploy/orders-1.4.2", "1.4.2")
    mr = project.mergerequests.create(
        {"source_branch": "deploy/orders-1.4.2", "target_branch": "main", "title": "Deploy 1.4.2"}
    )
    mr.merge(sha=first.id, merge_when_pipeline_succeeds=True)
    assert (mr.state, mr.merge_when_pipeline_succeeds) == ("opened", True)
    sandbox.add_webhook(receiver.url, secret_token="s3cret")

    second = sandbox.commit(
        pid,
        {"README.md": "pushed while the merge waited\n"},
        message="Another change",
        author="bob",
        branch="deploy/orders-1.4.2",
    )
    sandbox.run_pipelines(pid)
    background.run(sandbox.drain())

    mr = project.mergerequests.get(mr.iid)
    assert (mr.state, mr.merge_when_pipeline_succeeds, mr.sha) == ("opened", False, second)
    assert mr.head_pipeline["sha"] == second
    assert mr.head_pipeline["status"] == "success"  # green, but nobody asked to merge it
    assert sandbox.notes(pid, mr.iid)[-1]["body"] == (
        "aborted the automatic merge because the source branch was updated"
    )
    [update] = receiver.events("Merge Request Hook")
    attributes = update["object_attributes"]
    assert attributes["action"] == "update"
    assert attributes["oldrev"] == first.id
    assert attributes["last_commit"]["id"] == second
    assert attributes["merge_when_pipeline_succeeds"] is False
    assert "Another change" in attributes["last_commit"]["message"]
    assert sandbox.head(pid, "main") != second
    assert "README.md" not in [f["path"] for f in project.repository_tree(get_all=True)]


def test_hanging_and_stuck_pipelines_never_finish_until_told(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab
) -> None:
    pid = gitops(sandbox, ci="branches")
    project = gl.projects.get(pid)
    sandbox.set_pipeline_outcome(pid, ref="deploy/hang*", outcome="hang")
    sandbox.set_pipeline_outcome(pid, ref="deploy/stuck*", outcome="stuck")
    deploy_commit(project, "deploy/hang", "1.4.2")
    deploy_commit(project, "deploy/stuck", "1.4.3")
    mr = project.mergerequests.create(
        {"source_branch": "deploy/hang", "target_branch": "main", "title": "Deploy 1.4.2"}
    )
    mr.merge(merge_when_pipeline_succeeds=True)

    sandbox.run_pipelines(pid)  # returns: a hanging pipeline holds nothing up
    assert sandbox.advance(pid) == 0
    [hanging] = project.pipelines.list(ref="deploy/hang", get_all=True)
    [stuck] = project.pipelines.list(ref="deploy/stuck", get_all=True)
    [main] = project.pipelines.list(ref="main", get_all=True)
    assert (hanging.status, stuck.status, main.status) == ("running", "pending", "success")
    assert {j.name: j.status for j in hanging.jobs.list(get_all=True)} == {
        "build": "success",
        "test": "running",
    }
    assert {j.name: j.status for j in stuck.jobs.list(get_all=True)} == {
        "build": "pending",
        "test": "created",
    }
    mr = project.mergerequests.get(mr.iid)
    assert (mr.state, mr.detailed_merge_status) == ("opened", "ci_still_running")

    # the job times out at last, as GitLab's job timeout would end it
    sandbox.set_pipeline_outcome(
        pid, ref="deploy/hang*", outcome="failed", failure_reason="job_execution_timeout"
    )
    sandbox.set_pipeline_outcome(pid, ref="deploy/stuck*", outcome="success")
    sandbox.run_pipelines(pid)
    assert project.pipelines.get(stuck.id).status == "success"
    ended = project.pipelines.get(hanging.id)
    assert ended.status == "failed"
    [timed_out] = [j for j in ended.jobs.list(get_all=True) if j.status == "failed"]
    assert (timed_out.name, timed_out.failure_reason) == ("test", "job_execution_timeout")
    mr = project.mergerequests.get(mr.iid)
    assert (mr.state, mr.merge_when_pipeline_succeeds) == ("opened", False)


def test_a_hanging_pipeline_does_not_hold_up_the_ticker(
    background: BackgroundLoop, tmp_path: Path
) -> None:
    sandbox = GitLabSandbox(tmp_path / "gitlab", pipeline_speed=600)
    background.run(sandbox.start())
    try:
        pid = sandbox.add_project("shop/orders", ci="branches")
        sandbox.set_pipeline_outcome(pid, ref="main", outcome="hang", failed_job="build")
        sandbox.set_pipeline_outcome(pid, ref="v*", duration=30)
        sandbox.commit(pid, {"VERSION": "1\n"}, message="One", author="Ann <ann@example.com>")
        sandbox.tag(pid, "v1")
        deadline = time.monotonic() + 5
        while sandbox.pipelines(pid)[0]["status"] != "success":  # the tag's, on the same ticker
            assert time.monotonic() < deadline, sandbox.pipelines(pid)
            time.sleep(0.02)
        hanging = sandbox.pipelines(pid)[1]
        assert (hanging["ref"], hanging["status"]) == ("main", "running")
        assert {j["name"]: j["status"] for j in hanging["jobs"]} == {
            "build": "running",
            "test": "created",
        }
    finally:
        background.run(sandbox.stop())


def test_ci_mode_must_be_one_gitlab_has(sandbox: GitLabSandbox) -> None:
    with pytest.raises(ValueError, match="merge_requests"):
        sandbox.add_project("shop/orders", ci="mr")  # type: ignore[arg-type]
    sandbox.add_project("shop/cart", ci=True)
    with pytest.raises(ValueError, match="hang"):
        sandbox.set_pipeline_outcome("shop/cart", outcome="timeout")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- webhooks


def test_webhooks_are_delivered_like_gitlab(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab, receiver: Receiver, background: BackgroundLoop
) -> None:
    sandbox.add_webhook(receiver.url, secret_token="s3cret")
    pid = gitops(sandbox, ci=True)
    sandbox.set_pipeline_outcome(pid, ref="main", outcome="failed")
    sandbox.run_pipelines(pid)
    project = gl.projects.get(pid)
    commit = deploy_commit(project, "deploy/orders-1.4.2", "1.4.2")
    mr = project.mergerequests.create(
        {"source_branch": "deploy/orders-1.4.2", "target_branch": "main", "title": "Deploy 1.4.2"}
    )
    mr.approve(sha=commit.id)
    sandbox.tag(pid, "v1")
    background.run(sandbox.drain())

    headers, first = receiver.received[0]
    assert headers["X-Gitlab-Event"] == "Push Hook"
    assert headers["X-Gitlab-Token"] == "s3cret"
    assert headers["User-Agent"].startswith("GitLab/17.")
    assert headers["X-Gitlab-Instance"] == sandbox.url
    for name in ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID", "Idempotency-Key"):
        assert headers[name]
    assert len({h["X-Gitlab-Event-UUID"] for h, _ in receiver.received}) == len(receiver.received)
    assert first["ref"] == "refs/heads/main"
    assert first["before"] == "0" * 40
    assert first["user_username"] == "alice"
    assert first["total_commits_count"] == 1
    assert first["commits"][0]["added"] == [
        "apps/orders/production/deployment.yaml",
        "catalog.yaml",
    ]
    assert first["project"]["path_with_namespace"] == "platform/deployments"

    branch_push = receiver.events("Push Hook")[1]
    assert branch_push["ref"] == "refs/heads/deploy/orders-1.4.2"
    assert branch_push["commits"][0]["modified"] == [DEPLOYMENT]

    pipelines = receiver.events("Pipeline Hook")
    main_statuses = [
        p["object_attributes"]["status"]
        for p in pipelines
        if p["object_attributes"]["ref"] == "main"
    ]
    assert main_statuses == ["pending", "running", "failed"]
    failed = pipelines[2]
    assert failed["merge_request"] is None
    assert {b["name"]: b["status"] for b in failed["builds"]} == {
        "build": "success",
        "test": "failed",
    }
    assert failed["commit"]["author"]["email"] == "alice@example.com"
    mr_pipeline = next(
        p for p in pipelines if p["object_attributes"]["source"] == "merge_request_event"
    )
    assert mr_pipeline["merge_request"]["iid"] == 1
    assert mr_pipeline["object_attributes"]["ref"] == "refs/merge-requests/1/head"

    jobs = receiver.events("Job Hook")
    failed_job = next(j for j in jobs if j["build_status"] == "failed")
    assert (failed_job["build_name"], failed_job["build_failure_reason"]) == (
        "test",
        "script_failure",
    )
    assert failed_job["pipeline_id"] == failed["object_attributes"]["id"]

    actions = [m["object_attributes"]["action"] for m in receiver.events("Merge Request Hook")]
    assert actions == ["open", "approval", "approved"]
    [tag_push] = receiver.events("Tag Push Hook")
    assert tag_push["ref"] == "refs/tags/v1"
    assert all(d.ok for d in sandbox.deliveries)


def test_webhooks_can_arrive_twice_and_failures_are_recorded(
    sandbox: GitLabSandbox, receiver: Receiver, background: BackgroundLoop
) -> None:
    pid = sandbox.add_project("shop/orders")
    sandbox.add_webhook(receiver.url, secret_token="s3cret", events={"push"}, deliver_twice=True)
    sandbox.add_webhook("http://127.0.0.1:9/unreachable", secret_token=None, project=pid)
    for n in range(3):
        sandbox.commit(pid, {"VERSION": f"{n}\n"}, message=f"v{n}", author="bob")
    background.run(sandbox.drain())

    assert len(receiver.received) == 6
    keys = [h["Idempotency-Key"] for h, _ in receiver.received]
    assert keys[0] == keys[1] != keys[2] == keys[3]
    assert [body["commits"][0]["message"] for _, body in receiver.received[::2]] == [
        "v0",
        "v1",
        "v2",
    ]
    dead = [d for d in sandbox.deliveries if "unreachable" in d.url]
    assert len(dead) == 3
    assert all(d.status is None and d.error for d in dead)


# ---------------------------------------------------------------------- faults and pagination


def test_injected_faults_surface_as_gitlab_errors(
    sandbox: GitLabSandbox, gl: gitlab.Gitlab
) -> None:
    pid = gitops(sandbox)
    project = gl.projects.get(pid)

    sandbox.fail("/projects/*/repository/files/*", status=502)
    with pytest.raises(gitlab.GitlabGetError) as gateway:
        project.files.get(DEPLOYMENT, ref="main")
    assert gateway.value.response_code == 502
    assert project.files.get(DEPLOYMENT, ref="main").file_path == DEPLOYMENT

    sandbox.fail("GET", status=503)
    with pytest.raises(gitlab.GitlabHttpError) as unavailable:
        gl.http_get(f"/projects/{pid}")
    assert unavailable.value.response_code == 503

    sandbox.fail(status=500, times=2)
    with gitlab.Gitlab(sandbox.url, private_token=TOKEN, retry_transient_errors=True) as patient:
        patient.projects.get(pid)
    assert [c.status for c in sandbox.calls[-3:]] == [500, 500, 200]

    deploy_commit(project, "deploy/x", "2.0.0")
    mr = project.mergerequests.create(
        {"source_branch": "deploy/x", "target_branch": "main", "title": "Deploy 2.0.0"}
    )
    sandbox.fail("PUT /projects/*/merge_requests/*/merge", status=504, applied=True)
    with pytest.raises(gitlab.GitlabMRClosedError) as lost:
        mr.merge()
    assert lost.value.response_code == 504
    assert project.mergerequests.get(mr.iid).state == "merged"


def test_list_pagination_headers(sandbox: GitLabSandbox, gl: gitlab.Gitlab) -> None:
    pid = sandbox.add_project("shop/orders")
    sandbox.commit(pid, {"VERSION": "0\n"}, message="init", author="alice")
    for n in range(23):
        sandbox.branch(pid, f"feature/{n:02d}")
    project = gl.projects.get(pid)

    everything = project.branches.list(get_all=True)
    assert len(everything) == 24
    lazy = project.branches.list(iterator=True)
    assert (lazy.total, lazy.total_pages, lazy.per_page, lazy.next_page) == (24, 2, 20, 2)
    assert len(list(lazy)) == 24
    last = project.branches.list(page=2, per_page=20)
    assert [b.name for b in last] == ["feature/20", "feature/21", "feature/22", "main"]
