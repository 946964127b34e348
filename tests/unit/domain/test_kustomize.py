"""Taking an undeployed manifest out of the kustomizations that list it: a splice, checked."""

from __future__ import annotations

import pytest

from bot.domain.kustomize import kustomizations_above, listed_entries, remove_entries
from bot.domain.manifests import ManifestError

OVERLAY = """# orders in production
namespace: orders   # <appId>
resources:
  - deployment.yaml   # the app
  - ./pdb.yaml
images:
  - name: registry.example.com/shop/orders
    newTag: "1.4.1"
"""


def test_kustomizations_above_a_manifest_nearest_first() -> None:
    assert kustomizations_above("apps/orders/production/deployment.yaml") == [
        "apps/orders/production/kustomization.yaml",
        "apps/orders/production/kustomization.yml",
        "apps/orders/production/Kustomization",
        "apps/orders/kustomization.yaml",
        "apps/orders/kustomization.yml",
        "apps/orders/Kustomization",
        "apps/kustomization.yaml",
        "apps/kustomization.yml",
        "apps/Kustomization",
        "kustomization.yaml",
        "kustomization.yml",
        "Kustomization",
    ]
    # a kustomization is not listed above itself
    assert "apps/invoices/production/kustomization.yaml" not in kustomizations_above(
        "apps/invoices/production/kustomization.yaml"
    )


@pytest.mark.parametrize(
    ("text", "kustomization", "path", "entries"),
    [
        (
            OVERLAY,
            "apps/orders/production/kustomization.yaml",
            "apps/orders/production/deployment.yaml",
            ["deployment.yaml"],
        ),
        (
            OVERLAY,
            "apps/orders/production/kustomization.yaml",
            "apps/orders/production/pdb.yaml",
            ["./pdb.yaml"],
        ),
        (
            "resources:\n- production/deployment.yaml\n",
            "apps/orders/kustomization.yaml",
            "apps/orders/production/deployment.yaml",
            ["production/deployment.yaml"],
        ),
        # an overlay directory names a kustomization manifest
        (
            "resources:\n  - invoices/production\n  - orders/production\n",
            "apps/kustomization.yaml",
            "apps/invoices/production/kustomization.yaml",
            ["invoices/production"],
        ),
        (
            "resources:\n  - ../base\n",
            "apps/orders/production/kustomization.yaml",
            "apps/orders/production/deployment.yaml",
            [],
        ),
        (
            "resources:\n  - https://example.com/deployment.yaml\n",
            "kustomization.yaml",
            "deployment.yaml",
            [],
        ),
        (
            "namespace: orders\n",
            "apps/orders/production/kustomization.yaml",
            "apps/orders/production/deployment.yaml",
            [],
        ),
    ],
)
def test_listed_entries(text: str, kustomization: str, path: str, entries: list[str]) -> None:
    assert listed_entries(text, kustomization=kustomization, path=path) == entries


def test_an_entry_is_cut_out_and_nothing_else_changes() -> None:
    assert remove_entries(OVERLAY, ["deployment.yaml"]) == (
        "# orders in production\n"
        "namespace: orders   # <appId>\n"
        "resources:\n"
        "  - ./pdb.yaml\n"
        "images:\n"
        "  - name: registry.example.com/shop/orders\n"
        '    newTag: "1.4.1"\n'
    )


def test_a_list_left_empty_becomes_an_empty_list() -> None:
    text = "resources:   # what this overlay holds\n- deployment.yaml\nnamespace: orders\n"
    assert remove_entries(text, ["deployment.yaml"]) == (
        "resources: []   # what this overlay holds\nnamespace: orders\n"
    )


def test_crlf_line_endings_are_kept() -> None:
    text = "resources:\r\n  - a.yaml\r\n  - b.yaml\r\n"
    assert remove_entries(text, ["a.yaml"]) == "resources:\r\n  - b.yaml\r\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("resources: [deployment.yaml, pdb.yaml]\n", "flow style"),
        ("resources:\n  - pdb.yaml\n", "does not list deployment.yaml"),
        ("namespace: orders\n", "has no resources: list"),
        ("resources:\n  - deployment.yaml\n---\nresources: []\n", "has no resources: list"),
    ],
)
def test_what_cannot_be_cut_safely_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        remove_entries(text, ["deployment.yaml"])
