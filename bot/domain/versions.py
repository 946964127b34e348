"""Which tags are versions, and which version is newer (SPEC 13).

An app's ``versions`` pattern says which of its tags are versions (``^\\d+\\.\\d+\\.\\d+$`` by
default: ``1.4.2`` is, ``1.5.0-rc1`` and ``nightly`` are not). Between two versions, the newer is
decided by version order where both parse (``packaging.version``: ``1.10.0`` after ``1.9.0``,
``v2.0.0`` like ``2.0.0``, a release candidate before its release), else by the tags' dates.
What cannot be ordered either way is not newer: the autopilot never moves an environment on a
guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

from packaging.version import InvalidVersion, Version

__all__ = ["DEFAULT_VERSIONS", "VersionTag", "is_newer", "is_version", "newest", "version_order"]

DEFAULT_VERSIONS: Final = r"^\d+\.\d+\.\d+$"


@dataclass(frozen=True, kw_only=True)
class VersionTag:
    """A tag of an app's repository, as far as ordering goes."""

    name: str
    created_at: datetime | None = None
    """The tag's date (an annotated tag's own, else its commit's); ``None`` when unknown."""


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def is_version(tag: str, pattern: str = DEFAULT_VERSIONS) -> bool:
    """Whether ``tag`` is a version by the app's ``versions`` pattern (a search: anchor it)."""
    return _pattern(pattern).search(tag) is not None


@lru_cache(maxsize=1024)
def version_order(name: str) -> Version | None:
    """``name`` as a comparable version, or ``None`` when it is not one."""
    try:
        return Version(name)
    except InvalidVersion:
        return None


def is_newer(candidate: VersionTag, than: VersionTag | None) -> bool:
    """Whether ``candidate`` comes after ``than`` (``None``: nothing runs, so anything is)."""
    if than is None:
        return True
    if candidate.name == than.name:
        return False
    mine, theirs = version_order(candidate.name), version_order(than.name)
    if mine is not None and theirs is not None:
        return mine > theirs
    if candidate.created_at is not None and than.created_at is not None:
        return candidate.created_at > than.created_at
    return False


def newest(tags: Iterable[VersionTag]) -> VersionTag | None:
    """The newest of ``tags`` by ``is_newer``; of two that cannot be ordered, the first."""
    best: VersionTag | None = None
    for tag in tags:
        if best is None or is_newer(tag, best):
            best = tag
    return best
