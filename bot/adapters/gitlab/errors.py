"""What the GitLab adapter raises instead of python-gitlab's errors (the cause is kept)."""

from __future__ import annotations

from bot.errors import PitcrewError

__all__ = ["GitLabUnavailable", "MergeRefused", "NotFoundInGitLab"]


class GitLabUnavailable(PitcrewError):
    """GitLab refused the token, does not have the project, or cannot be reached."""


class NotFoundInGitLab(PitcrewError):
    """GitLab answered 404: the project, file, ref or tag does not exist."""


class MergeRefused(PitcrewError):
    """GitLab would not merge (or close) a merge request: not mergeable, conflicts, or its head
    changed since the SHA the caller checked (405/406/409/422); the message says which."""
