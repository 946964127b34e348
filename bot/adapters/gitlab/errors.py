"""What the GitLab adapter raises instead of python-gitlab's errors (the cause is kept)."""

from __future__ import annotations

from bot.errors import PitcrewError

__all__ = ["GitLabUnavailable", "NotFoundInGitLab"]


class GitLabUnavailable(PitcrewError):
    """GitLab refused the token, does not have the project, or cannot be reached."""


class NotFoundInGitLab(PitcrewError):
    """GitLab answered 404: the project, file, ref or tag does not exist."""
