"""What the GitLab adapter raises instead of python-gitlab's errors (the cause is kept).

``GitLabUnavailable`` is for answers that may change if asked again (5xx, 429, timeouts, a lost
connection); ``GitLabRefused`` for GitLab saying no (401, 403, 400, 422…): the token's access
or the request must change first.
"""

from __future__ import annotations

from bot.errors import Refused, Unavailable

__all__ = ["GitLabRefused", "GitLabUnavailable", "MergeRefused", "NotFoundInGitLab"]


class GitLabUnavailable(Unavailable):
    """GitLab cannot be reached, timed out, or failed (5xx, 429) after the retries."""


class GitLabRefused(Refused):
    """GitLab answered no: the token lacks access, or the request is not acceptable."""


class NotFoundInGitLab(GitLabRefused):
    """GitLab answered 404: the project, file, ref or tag does not exist."""


class MergeRefused(GitLabRefused):
    """GitLab would not merge (or close) a merge request: not mergeable, conflicts, or its head
    changed since the SHA the caller checked (405/406/409/422); the message says which."""
