"""Taking a file out of the kustomizations that list it, for ``/undeploy``.

An undeploy removes an app's manifest of one environment. Where a ``kustomization.yaml`` lists
that file (or, for an app whose manifest *is* a kustomization, its directory) under
``resources:``, the entry must go in the same merge request, or ``kustomize build`` fails on a
missing file and the GitOps controller stops syncing everything else with it.

As for version edits (``bot.domain.manifests``), the edit is a splice: the lines of the entry
are cut out of the original text and nothing else changes (comments, order, quoting). The
result is read back and must equal the original minus those entries, or the edit is refused
with a reason (``ManifestError``). A ``resources:`` list written in flow style
(``resources: [a.yaml, b.yaml]``) is refused too: cutting inside a line is where a splice goes
wrong, and that case is rare enough to leave to a person. A list left empty becomes ``[]``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from bot.domain.manifests import ManifestError, compose_documents

__all__ = [
    "KUSTOMIZATION_FILES",
    "kustomizations_above",
    "listed_entries",
    "remove_entries",
]

KUSTOMIZATION_FILES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kustomizations_above(path: str) -> list[str]:
    """Where a kustomization listing ``path`` may be: its directory and every directory above
    it, nearest first (the file itself excepted, when it is a kustomization)."""
    found: list[str] = []
    directory = posixpath.dirname(path)
    while True:
        for name in KUSTOMIZATION_FILES:
            candidate = posixpath.join(directory, name) if directory else name
            if candidate != path:
                found.append(candidate)
        if not directory:
            return found
        directory = posixpath.dirname(directory)


def _targets(path: str) -> frozenset[str]:
    """What an entry may name to mean ``path``: the file, or for a kustomization its directory."""
    if posixpath.basename(path) in KUSTOMIZATION_FILES:
        return frozenset({path, posixpath.dirname(path) or "."})
    return frozenset({path})


def _resolve(directory: str, entry: str) -> str:
    return posixpath.normpath(posixpath.join(directory, entry) if directory else entry)


def _resources(text: str) -> tuple[MappingNode, ScalarNode, SequenceNode] | None:
    """The ``resources:`` key and list of a one-document kustomization, if it has one."""
    documents = compose_documents(text)
    if len(documents) != 1 or not isinstance(documents[0], MappingNode):
        return None
    root = documents[0]
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == "resources":
            if isinstance(value, SequenceNode):
                return root, key, value
            return None
    return None


def listed_entries(text: str, *, kustomization: str, path: str) -> list[str]:
    """The ``resources:`` entries of the kustomization at ``kustomization`` (its text) that name
    ``path``, as written (``deployment.yaml``, ``./production``)."""
    found = _resources(text)
    if found is None:
        return []
    directory = posixpath.dirname(kustomization)
    targets = _targets(path)
    return [
        item.value
        for item in found[2].value
        if isinstance(item, ScalarNode)
        and isinstance(item.value, str)
        and "://" not in item.value
        and _resolve(directory, item.value) in targets
    ]


def remove_entries(text: str, entries: Sequence[str]) -> str:
    """``text`` without the ``resources:`` items ``entries``; nothing else changes."""
    found = _resources(text)
    if found is None:
        raise ManifestError("has no resources: list to take the entry out of")
    _, key, sequence = found
    if sequence.flow_style:
        raise ManifestError("lists its resources in flow style ([...]): take the entry out by hand")
    wanted = set(entries)
    doomed = [
        item for item in sequence.value if isinstance(item, ScalarNode) and item.value in wanted
    ]
    if not doomed:
        raise ManifestError(f"does not list {', '.join(sorted(wanted))} under resources:")
    lines = text.splitlines(keepends=True)
    cut: set[int] = set()
    for item in doomed:
        if item.start_mark.line != item.end_mark.line:
            raise ManifestError(f"its entry {item.value} spans several lines: take it out by hand")
        line = lines[item.start_mark.line]
        if not line.lstrip().startswith("-"):
            raise ManifestError(f"its entry {item.value} shares a line: take it out by hand")
        cut.add(item.start_mark.line)
    kept = [line for index, line in enumerate(lines) if index not in cut]
    if len(doomed) == len(sequence.value):
        kept = _empty_list(kept, key=key)
    edited = "".join(kept)
    _check(text, edited, removed=[item.value for item in doomed])
    return edited


def _empty_list(lines: list[str], *, key: ScalarNode) -> list[str]:
    """``resources:`` with no item left: ``resources: []`` (a null list reads as a mistake)."""
    index = key.end_mark.line
    line = lines[index]
    colon = line.index(":", key.end_mark.column)
    ending = line[len(line.rstrip("\r\n")) :]
    rest = line[colon + 1 :].rstrip("\r\n")
    lines[index] = f"{line[: colon + 1]} []{rest}{ending}"
    return lines


def _load(text: str) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:  # pragma: no cover - composed fine above, so it loads
        raise ManifestError(f"invalid YAML: {exc}") from exc


def _check(before: str, after: str, *, removed: list[str]) -> None:
    """The edit is what it claims: the same document, less those entries."""
    expected = _load(before)
    remaining = list(expected.get("resources") or [])
    for entry in removed:
        remaining.remove(entry)
    expected["resources"] = remaining
    if _load(after) != expected:
        raise ManifestError("taking the entry out would change more than the entry")
