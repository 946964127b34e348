"""Break-glass access by merge request: ``/access``, the grant record, and the RoleBinding file.

Admin rights on an app's namespace "when something goes horribly wrong and your time is
limited" are granted the GitOps way: a merge request adds a RoleBinding file (where, which
role and which Kubernetes user: the catalog's ``access`` key), someone other than the requester
approves it in Slack, Pitcrew merges it; at its expiry (or on ``/access revoke``) Pitcrew opens
and merges the merge request that deletes the file. Git says who had what, when, and who
approved it; nobody edits RBAC by hand, and nobody forgets to take it back.

Everything here is pure. How a grant moves is ``bot.domain.access_flow``.

Grammar::

    /access                                    current grants with their time left (also ``list``)
    /access <env> <app> for <duration> [reason…]   ask for access (``for`` may be left out)
    /access revoke <env> <app>                 end it now
    /access help

Choices a user can notice:

- ``<env> <app>`` may also be typed ``<app> <env>`` (as ``/deploy`` and ``/undeploy`` name
  them): the catalog tells apps from environments; a name that is both reads as the spec's
  order.
- A duration is required, and at most the catalog's ``access.max``; a longer one is refused
  with the limit, not shortened: the person decides what to ask for.
- The expiry is fixed when the merge request is opened (request time + duration) and written
  in the file (``pitcrew.io/expires``, RFC 3339): what approvers review is what ends. Time
  spent waiting for approval counts.
- ``{user}`` in the file's path and the RoleBinding's name is the local part of the person's
  Slack email, lower-cased, every other character a ``-`` (``Jean.Dupont@…`` → ``jean-dupont``).
- Reasons keep any character (the file quotes them, the renderers escape them); whitespace runs
  become one space; cut at ``MAX_REASON`` characters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from bot.domain.catalog import Catalog
from bot.domain.durations import format_duration, take_duration
from bot.domain.errors import CommandError
from bot.domain.releases import ApprovalRule, PipelineLink
from bot.domain.text import scrub

__all__ = [
    "ACCESS_RULE",
    "ACCESS_USAGE",
    "EXPIRES_ANNOTATION",
    "MAX_REASON",
    "OPEN_STATES",
    "SETTLED_STATES",
    "AccessCommandError",
    "AccessHelp",
    "Grant",
    "GrantRequest",
    "GrantState",
    "ListAccess",
    "RevokeRequest",
    "access_user",
    "binding_manifest",
    "binding_name",
    "grant_description",
    "parse_access",
    "revoke_description",
    "rfc3339",
]

ACCESS_USAGE: Final = (
    "Usage: `/access <env> <app> for <duration> [reason…]`, `/access revoke <env> <app>`,"
    " or `/access` for the current grants — e.g. `/access production orders for 2h db locked up`"
)
EXPIRES_ANNOTATION: Final = "pitcrew.io/expires"
MAX_REASON: Final = 300
ACCESS_RULE: Final = ApprovalRule(required=True, needed=1, self_approval=False)
"""One approval by an allowed approver other than the requester, whatever the env's policy."""

_HELP_WORDS: Final = frozenset({"help", "-h", "--help", "?"})
_LIST_WORDS: Final = frozenset({"list", "ls"})
_REVOKE_WORDS: Final = frozenset({"revoke", "end", "drop"})
_QUOTED: Final = 40
_LISTED: Final = 10
_USER: Final = re.compile(r"[^a-z0-9]+")
_MAX_USER: Final = 40


class AccessCommandError(CommandError):
    """``/access`` typed wrong (or asking for longer than allowed): the problem, then the usage."""


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class ListAccess:
    pass


@dataclass(frozen=True)
class AccessHelp:
    pass


@dataclass(frozen=True, kw_only=True)
class GrantRequest:
    env: str
    app: str
    duration: timedelta
    reason: str


@dataclass(frozen=True, kw_only=True)
class RevokeRequest:
    env: str
    app: str


AccessRequest = ListAccess | AccessHelp | GrantRequest | RevokeRequest


def parse_access(text: str, *, catalog: Catalog, limit: timedelta) -> AccessRequest:
    """Read ``/access``'s text against the catalog; ``limit`` is ``access.max``."""
    tokens = _words(text)
    if not tokens or tokens[0].lower() in _LIST_WORDS:
        return ListAccess()
    first = tokens[0].lower()
    if first in _HELP_WORDS:
        return AccessHelp()
    if first in _REVOKE_WORDS:
        if len(tokens) < 3:
            raise AccessCommandError(
                "Name the environment and the app: `/access revoke <env> <app>`.",
                usage=ACCESS_USAGE,
            )
        env, app = _place(tokens[1], tokens[2], catalog=catalog)
        if len(tokens) > 3:
            raise AccessCommandError(
                f"Unexpected {_quote(' '.join(tokens[3:]))} at the end.", usage=ACCESS_USAGE
            )
        return RevokeRequest(env=env, app=app)
    if len(tokens) < 2:
        raise AccessCommandError(
            "Name the environment and the app, and for how long.", usage=ACCESS_USAGE
        )
    env, app = _place(tokens[0], tokens[1], catalog=catalog)
    rest = tokens[2:]
    start = 1 if rest and rest[0].lower() == "for" else 0
    taken = take_duration(rest, start)
    if taken is None:
        said = f", not {_quote(' '.join(rest[start:]))}" if rest[start:] else ""
        raise AccessCommandError(
            f"Say for how long: `/access {env} {app} for 2h`{said}.", usage=ACCESS_USAGE
        )
    duration, end = taken
    asked = _quote(" ".join(rest[start:end]))
    if duration < timedelta(minutes=1):
        raise AccessCommandError(f"{asked} is too short: at least a minute.", usage=ACCESS_USAGE)
    if duration > limit:
        raise AccessCommandError(
            f"{asked} is longer than break-glass access may last: at most"
            f" {format_duration(limit)} (the catalog's `access.max`). Ask for"
            f" {_compact(limit)} or less, and again when it ends if you still need it.",
            usage=ACCESS_USAGE,
        )
    reason = " ".join(rest[end:])[:MAX_REASON]
    return GrantRequest(env=env, app=app, duration=duration, reason=reason)


def _place(one: str, two: str, *, catalog: Catalog) -> tuple[str, str]:
    """``(env, app)`` from two names typed in either order."""
    a, b = one.lower(), two.lower()
    if a in catalog.env_names and b in catalog.app_names:
        return a, b
    if a in catalog.app_names and b in catalog.env_names:
        return b, a
    if a not in catalog.env_names and a not in catalog.app_names:
        raise _unknown(one, catalog=catalog)
    if b not in catalog.env_names and b not in catalog.app_names:
        raise _unknown(two, catalog=catalog)
    raise AccessCommandError(
        f"Name one environment and one app, not {_quote(one)} and {_quote(two)}.",
        usage=ACCESS_USAGE,
    )


def _unknown(token: str, *, catalog: Catalog) -> AccessCommandError:
    close = catalog.suggest(token.lower())
    hint = f" — did you mean {close[0]}?" if close else ""
    return AccessCommandError(
        f"No app or environment {_quote(token)}{hint} (environments are"
        f" {_listed(catalog.env_names)}; apps are {_listed(catalog.app_names)})",
        usage=ACCESS_USAGE,
    )


def _compact(delta: timedelta) -> str:
    """``8h``, ``1h30m``, ``2d``: a limit as a person would type it back."""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts) or "1m"


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")


def _quote(token: str) -> str:
    shown = token if len(token) <= _QUOTED else token[: _QUOTED - 1] + "…"
    return f"“{shown}”"


def _words(text: str) -> list[str]:
    """Split on any whitespace; other control characters count as spaces, never as text."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split()


# --------------------------------------------------------------------------------------------
# Who, where


def access_user(email: str) -> str:
    """``{user}``: the local part of ``email`` as a Kubernetes name piece (``jean-dupont``)."""
    local = email.split("@", 1)[0].lower()
    slug = _USER.sub("-", local).strip("-")[:_MAX_USER].strip("-")
    return slug or "user"


def binding_name(user: str) -> str:
    return f"pitcrew-access-{user}"


def rfc3339(when: datetime) -> str:
    """``2025-01-15T11:00:00Z``: UTC, whole seconds."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# The grant

GrantState = Literal[
    "requested",
    "awaiting_approval",
    "merging",
    "active",
    "revoking",
    "revoke_failed",
    "revoked",
    "rejected",
    "expired",
    "failed",
    "refused",
]
"""::

    requested ─► awaiting_approval ─► merging ─► active ─► revoking ─► revoked
        │              │                 │                    │  ▲
        └─► refused    └─► rejected / expired / failed        ▼  │
                                                       revoke_failed

``rejected``, ``expired`` and ``failed`` end a grant whose MR never merged; a merge GitLab
makes anyway (a race with the close) turns it into ``revoking`` at once.
"""
BEFORE_MERGE: Final[frozenset[GrantState]] = frozenset(
    {"requested", "awaiting_approval", "merging"}
)
HELD: Final[frozenset[GrantState]] = frozenset({"active", "revoking", "revoke_failed"})
"""The file is in git: someone holds (or may hold) the access."""
SETTLED_STATES: Final[frozenset[GrantState]] = frozenset(
    {"rejected", "expired", "failed", "refused"}
)
OPEN_STATES: Final[frozenset[GrantState]] = BEFORE_MERGE | HELD


@dataclass(frozen=True, kw_only=True)
class Grant:
    """One ``/access``, from the request to the merge request that takes it back.

    Stored as a whole and replaced by compare-and-set, like a release; its message is rendered
    from it. Slack user ids for people.
    """

    id: str
    app: str
    team: str
    env: str
    namespace: str
    requester: str
    email: str
    user: str
    """``{user}``: from the email (``access_user``)."""
    subject: str
    """The Kubernetes user bound (``access.subject`` filled in)."""
    role: str
    path: str
    binding: str
    """The RoleBinding's name, in ``namespace``."""
    reason: str
    duration: timedelta
    created_at: datetime
    expires_at: datetime
    watched: bool = False
    """The env's cluster is watched: Pitcrew confirms the RoleBinding there."""
    state: GrantState = "requested"
    approvals: tuple[str, ...] = ()
    ended_by: str | None = None
    """Who rejected or withdrew it, or closed its MR in GitLab (a name)."""
    failure: str | None = None
    """One line: why it ended short, or why taking it back is stuck."""
    mr_iid: int | None = None
    mr_url: str | None = None
    branch: str | None = None
    head_sha: str | None = None
    mr_pipeline: PipelineLink | None = None
    merged_at: datetime | None = None
    merged_by: str | None = None
    """Who merged it in GitLab, when not Pitcrew (a name)."""
    seen_at: datetime | None = None
    """When the RoleBinding was seen in the cluster."""
    not_seen: bool = False
    """The RoleBinding was not seen in time after the merge (said once)."""
    revoke_reason: Literal["expired", "revoked", "unmerged", "unreviewed"] | None = None
    revoked_by: str | None = None
    """Slack user id of who ended it early."""
    revoke_asked_at: datetime | None = None
    """When Pitcrew last tried to open the MR that removes the file (the sweep tries again)."""
    revoke_round: int = 0
    """How many times taking it back was started again (after a revoke MR that failed)."""
    revoke_iid: int | None = None
    revoke_url: str | None = None
    revoke_branch: str | None = None
    revoke_head: str | None = None
    revoke_pipeline: PipelineLink | None = None
    revoked_at: datetime | None = None
    gone_at: datetime | None = None
    """When the RoleBinding was seen gone from the cluster."""
    still_there: bool = False
    """The RoleBinding was still in the cluster well after the revoke merged (said once)."""

    @property
    def title(self) -> str:
        return (
            f"Grant {self.role} on {self.app} in {self.env} to {self.user}"
            f" for {format_duration(self.duration)}"
        )

    @property
    def revoke_title(self) -> str:
        why = {
            "expired": "expired",
            "revoked": "revoked",
            "unmerged": "merged after it ended",
            "unreviewed": "merged unreviewed",
        }
        return (
            f"Revoke {self.role} on {self.app} in {self.env} from {self.user}"
            f" ({why.get(self.revoke_reason or 'revoked', 'revoked')})"
        )

    @property
    def revoke_branch_name(self) -> str:
        """One branch per attempt: a second try after a lost answer finds the first one's MR."""
        suffix = f"-{self.revoke_round}" if self.revoke_round else ""
        return f"pitcrew/access-{self.id}-revoke{suffix}"

    def left(self, now: datetime) -> timedelta:
        return max(self.expires_at - now, timedelta(0))

    @property
    def settled(self) -> bool:
        """Nothing more will happen to it: the sweep lets it be."""
        if self.state in SETTLED_STATES:
            return True
        if self.state != "revoked":
            return False
        # "still there" is said once, but the sweep keeps looking: a late prune is told too
        return not self.watched or self.gone_at is not None


def binding_manifest(grant: Grant) -> str:
    """The RoleBinding file: valid YAML whatever the reason says (every value from outside is
    a double-quoted JSON string, which YAML reads as written), and only what the catalog and
    the request name."""

    def quoted(value: str) -> str:
        return json.dumps(scrub(value), ensure_ascii=False)

    lines = [
        "# Break-glass access opened through Pitcrew. Pitcrew removes this file when it expires",
        f"# ({EXPIRES_ANNOTATION} below) or on `/access revoke`: do not edit it by hand.",
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: RoleBinding",
        "metadata:",
        f"  name: {grant.binding}",
        f"  namespace: {grant.namespace}",
        "  labels:",
        f"    appId: {grant.app}",
        "    app.kubernetes.io/managed-by: pitcrew",
        "  annotations:",
        f"    {EXPIRES_ANNOTATION}: {quoted(rfc3339(grant.expires_at))}",
        f"    pitcrew.io/requested-by: {quoted(grant.email)}",
        f"    pitcrew.io/grant: {quoted(grant.id)}",
    ]
    if grant.reason:
        lines.append(f"    pitcrew.io/reason: {quoted(grant.reason)}")
    lines += [
        "roleRef:",
        "  apiGroup: rbac.authorization.k8s.io",
        "  kind: ClusterRole",
        f"  name: {quoted(grant.role)}",
        "subjects:",
        "  - apiGroup: rbac.authorization.k8s.io",
        "    kind: User",
        f"    name: {quoted(grant.subject)}",
    ]
    return "\n".join(lines) + "\n"


def grant_description(grant: Grant, *, requester_name: str, approvers: str) -> str:
    """The grant MR's description (GitLab Markdown)."""
    reason = _md(grant.reason) if grant.reason else "_none given_"
    return "\n".join(
        [
            f"Break-glass access requested by **{_md(requester_name)}** in Slack, through Pitcrew.",
            "",
            f"- **Who:** `{_code(grant.subject)}` ({_md(grant.email)})",
            f"- **Role:** ClusterRole `{_code(grant.role)}` in namespace `{grant.namespace}`"
            f" ({grant.app}, team {grant.team})",
            f"- **Environment:** {grant.env} — needs 1 approval from {_md(approvers)} in Slack,"
            " not the requester's",
            f"- **For:** {format_duration(grant.duration)}, until {rfc3339(grant.expires_at)}"
            " (counted from the request)",
            f"- **Reason:** {reason}",
            "",
            "Pitcrew opens and merges the merge request that removes this file when it expires,"
            f" or on `/access revoke {grant.env} {grant.app}`.",
            "",
            f"<!-- pitcrew access {grant.id} -->",
        ]
    )


def revoke_description(grant: Grant, *, by_name: str | None) -> str:
    if grant.revoke_reason == "expired":
        why = f"it expired at {rfc3339(grant.expires_at)}"
    elif grant.revoke_reason == "unmerged":
        why = "GitLab merged the grant after it had ended (rejected, withdrawn or expired)"
    elif grant.revoke_reason == "unreviewed":
        why = "the grant was merged at a head nobody approved"
    else:
        why = f"**{_md(by_name or 'someone')}** revoked it in Slack"
    granted = f" (granted by !{grant.mr_iid})" if grant.mr_iid else ""
    return "\n".join(
        [
            f"Pitcrew removes the break-glass access of `{_code(grant.subject)}` to"
            f" {grant.app} in {grant.env}{granted}: {why}.",
            "",
            "Pitcrew merges this merge request by itself: access ends as soon as the GitOps"
            " controller applies it.",
            "",
            f"<!-- pitcrew access {grant.id} revoke -->",
        ]
    )


def _code(text: str) -> str:
    return scrub(text).replace("`", "'")


def _md(text: str) -> str:
    """Text from people must not turn into Markdown, HTML or a GitLab mention; one line."""
    escaped = re.sub(r"([\\`*_\[\]<>|])", r"\\\1", scrub(text))
    return escaped.replace("@", "@\u200b")
