"""Checking GitLab access for ``pitcrew check``: who the token is, and the GitOps repo."""

from __future__ import annotations

import gitlab
import requests

from bot.adapters.gitlab.errors import GitLabRefused, GitLabUnavailable

__all__ = ["GitLabRefused", "GitLabUnavailable", "check_access"]


def check_access(*, url: str, token: str, project: str, timeout: float = 10.0) -> str:
    """Return a one-line description of the access, or raise ``GitLabRefused`` (the token or
    the project is wrong) or ``GitLabUnavailable`` (GitLab did not answer)."""
    client = gitlab.Gitlab(url, private_token=token, timeout=timeout, retry_transient_errors=False)
    try:
        client.auth()
        user = client.user
        gitops = client.projects.get(project)
    except gitlab.GitlabAuthenticationError as exc:
        raise GitLabRefused("GitLab refused GITLAB_TOKEN (401)") from exc
    except gitlab.GitlabGetError as exc:
        raise GitLabRefused(f"GitOps project {project} not readable ({exc.response_code})") from exc
    except (gitlab.GitlabError, requests.RequestException) as exc:
        raise GitLabUnavailable(f"GitLab at {url} unreachable: {type(exc).__name__}") from exc
    username = getattr(user, "username", "?")
    branch = getattr(gitops, "default_branch", None) or "?"
    return f"as @{username}; {project} readable (default branch {branch})"
