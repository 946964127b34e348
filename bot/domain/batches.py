"""Cutting a batch of work into parts that may be handled together, keeping what must be ordered.

The stream worker reads events by the hundred. Events of different pipelines are independent and
are handled together (one Redis round trip for all their loads, one for all their commits...);
events of one pipeline keep the order they were received in. These helpers are the pure part of
that: which events go together, and in which order the resulting writes go out.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

__all__ = ["in_waves", "partition", "runs"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def partition(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[tuple[int, T]]]:
    """Group items by ``key``, each with its position in ``items``: partitions in the order of
    their first item, items of a partition in their order."""
    parts: dict[K, list[tuple[int, T]]] = {}
    for index, item in enumerate(items):
        parts.setdefault(key(item), []).append((index, item))
    return parts


def runs(items: Iterable[T], together: Callable[[T], bool]) -> list[list[T]]:
    """Consecutive items that may be handled ``together`` as one run; every other item alone,
    in order: an item that is not ``together`` (a change of the catalog, a release's event) is a
    barrier that what came before it has been handled and what comes after it has not."""
    out: list[list[T]] = []
    open_run = False
    for item in items:
        if together(item):
            if open_run:
                out[-1].append(item)
            else:
                out.append([item])
                open_run = True
        else:
            out.append([item])
            open_run = False
    return out


def in_waves(owners: Sequence[Hashable]) -> list[list[int]]:
    """Cut a sequence of writes (by position), each belonging to an owner, into consecutive
    waves in which no owner appears twice.

    Writes of one wave go out together; a wave waits for the previous one. Since the waves are
    consecutive, the writes still go out in the given order, and an owner's second write is
    computed from its first one once that one is done (committed and announced).
    """
    waves: list[list[int]] = []
    in_wave: set[Hashable] = set()
    for index, owner in enumerate(owners):
        if not waves or owner in in_wave:
            waves.append([])
            in_wave = set()
        waves[-1].append(index)
        in_wave.add(owner)
    return waves
