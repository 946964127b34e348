"""Workloads deleted while nobody watched: what a complete list says is gone.

The watch tells a deletion by a ``DELETED`` event, but only while it runs. A workload deleted
while every Pitcrew replica was down, or while the watch was broken (the watcher lists again
after a 410 Gone or a reconnect), is simply absent from the next list. ``gone`` compares what
Pitcrew remembers (a ``Workload`` state per workload) with such a list, and names the
workloads to treat exactly as a ``DELETED`` event would have been treated. Its rules:

1. **Only a complete list counts.** A list that failed or was cut short (a page missing, the
   watcher stopping) proves nothing: nothing is gone.
2. **Only what that list covers.** A list is of one kind in one context: a workload of another
   kind or context is not judged by it.
3. **Only what the watch would still see.** The watch lists with a label selector; a workload
   remembered with labels the selector no longer matches (the setting changed) is not watched
   any more, which is not the same as deleted. A workload whose labels were never kept (a
   state older than labels in states) is judged only when there is no selector. A selector
   Pitcrew cannot read judges nothing (the API server would have refused the list anyway).
4. **Nothing known, nothing gone:** the first start ever says nothing.

Label selectors are read as Kubernetes reads them (k8s.io/apimachinery/pkg/labels):
comma-separated requirements, all of which must hold: ``key=value``, ``key==value``,
``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` (exists), ``!key`` (absent).
As there, ``!=`` and ``notin`` also hold for a workload without the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.domain.rollouts import Workload, workload_key

__all__ = ["Listing", "gone", "selector_matches", "workload_key"]


@dataclass(frozen=True, kw_only=True)
class Listing:
    """One list of one kind in one context, as the watcher took it."""

    context: str
    kind: str
    """``Deployment``, ``StatefulSet`` or ``DaemonSet``: the kind listed."""
    present: frozenset[str]
    """The key of every workload listed (``workload_key``), whoever owns it."""
    complete: bool
    """Every page was read: a failed or interrupted list is not complete."""
    selector: str | None = None
    """The label selector the list was taken with (``KUBE_LABEL_SELECTOR``)."""


_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALS = re.compile(rf"^\s*({_NAME})\s*(==|=|!=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_NAME})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_NAME})\s*$")


def _requirements(selector: str) -> list[str] | None:
    """The selector split on the commas outside parentheses; ``None`` if unbalanced."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(selector):
        if char == "(":
            depth += 1
            if depth > 1:
                return None
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    if depth:
        return None
    parts.append(selector[start:])
    return parts


def _holds(requirement: str, labels: Mapping[str, str]) -> bool | None:
    if match := _EQUALS.match(requirement):
        key, op, value = match.groups()
        return (labels.get(key) == value) if op != "!=" else (labels.get(key) != value)
    if match := _SET.match(requirement):
        key, op, inside = match.groups()
        values = {v.strip() for v in inside.split(",")}
        if any(not re.fullmatch(_VALUE, v) for v in values):
            return None
        found = key in labels and labels[key] in values
        return found if op == "in" else not found
    if match := _EXISTS.match(requirement):
        bang, key = match.groups()
        return (key in labels) != bool(bang)
    return None


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool | None:
    """Whether ``labels`` match the label selector (none or empty: everything matches);
    ``None`` when the selector cannot be read."""
    if selector is None or not selector.strip():
        return True
    requirements = _requirements(selector)
    if requirements is None:
        return None
    verdict = True
    for requirement in requirements:
        holds = _holds(requirement, labels)
        if holds is None:
            return None
        verdict = verdict and holds
    return verdict


def _watched(state: Workload, selector: str | None) -> bool:
    if state.labels is None:
        return selector is None or not selector.strip()
    return selector_matches(selector, state.labels) is True


def gone(*, known: Iterable[Workload], listing: Listing) -> tuple[Workload, ...]:
    """The workloads of ``known`` that ``listing`` shows deleted, in key order."""
    if not listing.complete:
        return ()
    found = [
        state
        for state in known
        if state.context == listing.context
        and state.kind == listing.kind
        and state.key not in listing.present
        and _watched(state, listing.selector)
    ]
    return tuple(sorted(found, key=lambda s: s.key))
