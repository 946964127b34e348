"""What a person following the docs meets agrees with the code: the getting-started guide's
catalog, webhooks and commands, links that lead somewhere, no reference to a document users do
not have, the licence and the changelog."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from bot.adapters.gitlab.payloads import observed, parse_event
from bot.domain.catalog import parse_catalog

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
READERS = [
    *DOCS,
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "manifests/components/README.md",
]
GUIDE = ROOT / "docs" / "getting-started.md"
FIXTURES = ROOT / "tests" / "fixtures" / "gitlab"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^#{2,3} ", text[start + len(heading) :], flags=re.MULTILINE)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


@pytest.mark.parametrize("path", READERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_cites_the_spec_which_users_do_not_have(path: Path) -> None:
    assert not re.search(r"\bSPEC\b", path.read_text()), f"{path.name} cites the SPEC"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", READERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path: Path) -> None:
    text = path.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: {target} leads nowhere"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: no #{anchor}"


def test_the_guides_catalog_is_valid_and_names_the_approvers_of_the_first_deploy() -> None:
    text = GUIDE.read_text()
    catalog_section = _section(text, "### 2.3 Catalog")
    (yaml,) = re.findall(r"```yaml\n(.*?)```", catalog_section, flags=re.DOTALL)
    catalog = parse_catalog(yaml, source="getting-started.md")
    assert catalog.approvers_for("orders", "production") == ("@sre-oncall",)
    assert catalog.environment("staging").policy == "auto"

    first_deploy = _section(text, "### 2.6 First deploy")
    assert "`@sre-oncall`" in first_deploy
    assert "/deploy orders from staging to production" in first_deploy
    assert catalog.release_channels("orders", "production") == ("#payments-deploys",)
    assert "`#payments-deploys`" in first_deploy


def test_the_guide_asks_only_for_the_webhook_events_pitcrew_uses() -> None:
    """GitLabEvents uses, on the GitOps repo, pushes (catalog and inventory), merge requests and
    pipelines (releases); on app repos, pipelines and jobs (pipeline messages). A Deployment
    Hook carries nothing Pitcrew reads."""
    text = _section(GUIDE.read_text(), "### 2.2 GitLab")
    assert "Deployment" not in text
    assert "deployment_events" not in text
    assert "hook platform/deployments push_events merge_requests_events pipeline_events" in text
    assert 'hook "$app" pipeline_events job_events' in text
    assert "| Trigger on the GitOps repo | Push events" in text
    assert "| Trigger on each app repo | Pipeline events, Job events" in text

    deployment = parse_event("Deployment Hook", (FIXTURES / "deployment_hook.json").read_bytes())
    assert observed(deployment) is None
    job = parse_event("Job Hook", (FIXTURES / "job_hook.json").read_bytes())
    assert observed(job) is not None


def test_the_guides_second_cluster_uses_what_the_manifests_provide() -> None:
    text = GUIDE.read_text()
    section = _section(text, "#### Watch a second cluster")
    assert "../../manifests/components/remote-cluster" in section
    component = (ROOT / "manifests/components/remote-cluster/kustomization.yaml").read_text()
    assert "secretName: pitcrew-kubeconfig" in component
    assert "--from-file=config=" in section
    assert "key: config" in component
    values = YAML(typ="safe").load((ROOT / "manifests/helm/pitcrew/values.yaml").read_text())
    assert values["kubeconfigs"] == []
    assert "kubeconfigs[0].secretName=pitcrew-kubeconfig" in section
    assert "KUBE_CONTEXTS: production=in-cluster,staging=staging" in section


def test_the_licence_is_the_one_pyproject_names() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    releases = re.findall(r"^## \[(.+?)\]", text, flags=re.MULTILINE)
    assert releases[0] == "Unreleased"
    kinds = re.findall(r"^### (.+)$", text, flags=re.MULTILINE)
    assert kinds, "no Added/Changed/... sections"
    assert set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_readme_keeps_its_two_commands_at_the_top() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block[1].splitlines()]
    assert commands == ["make demo", "make test"]
    assert text.index("## Two commands") < text.index("## Status")
