"""The GitLab sandbox's issues, notes and labels, driven by the real python-gitlab client:
what the autopilot's released notes rely on (doc/api/issues.md, notes.md, labels.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import gitlab
import pytest

from bot.sandbox.gitlab import GitLabSandbox


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[GitLabSandbox]:
    async with GitLabSandbox(tmp_path / "gitlab") as running:
        running.add_user("alice", name="Alice Martin", email="alice@example.com")
        running.add_project("shop/orders")
        yield running


def client(sandbox: GitLabSandbox) -> gitlab.Gitlab:
    return gitlab.Gitlab(sandbox.url, private_token="glpat-sandbox")


async def test_issues_notes_and_scoped_labels_as_python_gitlab_uses_them(
    sandbox: GitLabSandbox,
) -> None:
    iid = sandbox.add_issue("shop/orders", "Totals are off", author="alice", labels=["bug"])

    def use() -> tuple[list[str], list[str], list[str]]:
        project = client(sandbox).projects.get("shop/orders")
        issue = project.issues.get(iid)
        assert (issue.title, issue.state, issue.references["full"]) == (
            "Totals are off",
            "opened",
            "shop/orders#1",
        )
        issue.notes.create({"body": "Released to **staging**"})
        project.issues.update(iid, {"add_labels": "deployed::staging"})
        project.issues.update(iid, {"add_labels": "deployed::production"})  # one per scope
        labels = list(project.issues.get(iid).labels)
        found = [i.iid for i in project.issues.list(labels="deployed::production", get_all=True)]
        names = [label.name for label in project.labels.list(get_all=True)]
        return labels, [str(x) for x in found], names

    labels, found, names = await asyncio.to_thread(use)
    assert labels == ["bug", "deployed::production"]
    assert found == ["1"]
    assert names == ["bug", "deployed::production", "deployed::staging"]
    notes = sandbox.issue_notes("shop/orders", iid)
    assert [n["body"] for n in notes if not n["system"]] == ["Released to **staging**"]
    assert [n["body"] for n in notes if n["system"]] == [
        "added ~deployed::staging label",
        "added ~deployed::production label",
        "removed ~deployed::staging label",
    ]
    assert {n["noteable_type"] for n in notes} == {"Issue"}


async def test_a_missing_issue_and_an_empty_note_are_refused_as_gitlab_does(
    sandbox: GitLabSandbox,
) -> None:
    sandbox.add_issue("shop/orders", "Totals are off")

    def use() -> list[int]:
        project = client(sandbox).projects.get("shop/orders")
        codes = []
        for call in (
            lambda: project.issues.get(99, lazy=True).notes.create({"body": "x"}),
            lambda: project.issues.get(1, lazy=True).notes.create({"body": " "}),
        ):
            try:
                call()
            except gitlab.GitlabError as exc:
                codes.append(exc.response_code)
        return codes

    assert await asyncio.to_thread(use) == [404, 400]
