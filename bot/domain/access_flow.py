"""How a break-glass grant moves: every event it can meet, as one pure function, ``apply``.

The sibling of ``release_flow``, driven the same way (load → apply → compare-and-set → say and
do) by the same sources: clicks, GitLab's webhooks (late, twice, out of order), the sweep's clock,
and what the cluster shows. It reuses the release flow's events where they mean the same thing
for the grant's merge request (``Opened``, ``Approve``, ``Reject``, ``MrPipeline``, ``Merged``,
``Closed``, ``MergeFailed``, ``Tick``) and its effects (``Merge``, ``CloseMergeRequest``,
``Audit``); what is particular to access is the second merge request, the one that takes the
access back, and the RoleBinding seen (or not) in the cluster.

The expiry is a deadline like a release's: the sweep's ``Tick`` turns an ``active`` grant whose
time is up into ``revoking``, committed by compare-and-set before the revoke MR is opened, so
that several replicas and a restart in the middle open it once (the branch name is the grant's,
and a second attempt finds the first one's MR). Revoking never waits on a lock, an approval or
anything else: access is taken back as soon as GitLab merges.

Safety first where the world surprises: a grant MR that GitLab merges after the grant ended
(rejected, withdrawn, expired: a race with closing it), or at a head nobody approved, is taken
back at once; a revoke that cannot merge (its pipeline failed, someone closed it) is said loudly
in the channel, and ``/access revoke`` tries again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from bot.domain.access import Grant, GrantState
from bot.domain.pipelines import FINISHED
from bot.domain.release_flow import (
    INTERRUPTED,
    Approve,
    Audit,
    Closed,
    CloseMergeRequest,
    Merge,
    Merged,
    MergeFailed,
    MrPipeline,
    Opened,
    OpenFailed,
    Reject,
    Tick,
    format_deadline,
    newer_pipeline,
)
from bot.domain.releases import PipelineLink

__all__ = [
    "BindingSeen",
    "GrantEffect",
    "GrantEvent",
    "GrantNote",
    "GrantSay",
    "GrantStep",
    "MergeRevoke",
    "OpenRevoke",
    "Revoke",
    "RevokeClosed",
    "RevokeMergeFailed",
    "RevokeMerged",
    "RevokeOpenFailed",
    "RevokeOpened",
    "RevokePipeline",
    "RevokeUnneeded",
    "TellHolder",
    "apply",
]

_MR_OPEN: Final[frozenset[GrantState]] = frozenset({"awaiting_approval", "merging"})
_ENDED_UNMERGED: Final[frozenset[GrantState]] = frozenset({"rejected", "expired", "failed"})
_PASSED: Final = frozenset({"success", "skipped"})

GrantNote = Literal[
    "approved",
    "merging",
    "merged",
    "granted",
    "not_seen",
    "unreviewed_merge",
    "failed",
    "rejected",
    "expired",
    "revoking",
    "revoke_stuck",
    "revoke_failed",
    "revoked",
    "gone",
    "still_there",
]
"""The thread replies of a grant, one key each (``access:<id>:<kind>``)."""


@dataclass(frozen=True, kw_only=True)
class GrantSay:
    kind: GrantNote
    by: str | None = None
    broadcast: bool = False


@dataclass(frozen=True)
class OpenRevoke:
    """Open the MR that deletes the file (or find it, or find the file gone)."""


@dataclass(frozen=True)
class MergeRevoke:
    """Ask GitLab to merge the revoke MR at its head, when its pipeline passes."""


@dataclass(frozen=True)
class TellHolder:
    """A direct message to the holder: their access has ended."""


GrantEffect = Merge | CloseMergeRequest | Audit | OpenRevoke | MergeRevoke | TellHolder


@dataclass(frozen=True, kw_only=True)
class GrantStep:
    grant: Grant
    says: tuple[GrantSay, ...] = ()
    effects: tuple[GrantEffect, ...] = ()


# --------------------------------------------------------------------------------------------
# Events particular to access


@dataclass(frozen=True, kw_only=True)
class Revoke:
    """``/access revoke``: the holder, or an approver, ends it now."""

    by: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RevokeOpened:
    mr_iid: int
    mr_url: str
    branch: str
    head_sha: str


@dataclass(frozen=True, kw_only=True)
class RevokeOpenFailed:
    reason: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RevokeUnneeded:
    """The file is no longer in git (someone removed it): nothing to merge."""

    at: datetime


@dataclass(frozen=True, kw_only=True)
class RevokeMerged:
    at: datetime
    by: str | None = None
    """Who merged it in GitLab, when not Pitcrew."""


@dataclass(frozen=True, kw_only=True)
class RevokeClosed:
    by: str | None


@dataclass(frozen=True, kw_only=True)
class RevokePipeline:
    pipeline: PipelineLink
    sha: str


@dataclass(frozen=True, kw_only=True)
class RevokeMergeFailed:
    reason: str


@dataclass(frozen=True, kw_only=True)
class BindingSeen:
    """What the cluster shows of the grant's RoleBinding (read with a GET, read-only)."""

    present: bool
    at: datetime


GrantEvent = (
    Opened
    | OpenFailed
    | Approve
    | Reject
    | MrPipeline
    | Merged
    | Closed
    | MergeFailed
    | Tick
    | Revoke
    | RevokeOpened
    | RevokeOpenFailed
    | RevokeUnneeded
    | RevokeMerged
    | RevokeClosed
    | RevokePipeline
    | RevokeMergeFailed
    | BindingSeen
)


# --------------------------------------------------------------------------------------------
# apply


def apply(grant: Grant, event: GrantEvent) -> GrantStep | None:
    """The step ``event`` makes ``grant`` take; ``None`` when it changes nothing."""
    if grant.state == "refused":
        return None
    step = _step(grant, event)
    if step is None or step.grant == grant:
        return None
    return step


def _step(g: Grant, e: GrantEvent) -> GrantStep | None:
    match e:
        case Opened():
            return _opened(g, e)
        case OpenFailed():
            if g.state != "requested":
                return None
            return GrantStep(grant=replace(g, state="refused", failure=e.reason))
        case Approve():
            return _approve(g, e)
        case Reject():
            return _reject(g, by=e.by)
        case MrPipeline():
            return _mr_pipeline(g, e)
        case Merged():
            return _merged(g, e)
        case Closed():
            return _closed(g, e)
        case MergeFailed():
            return _merge_failed(g, e)
        case Tick():
            return _tick(g, e)
        case Revoke():
            return _revoke(g, e)
        case RevokeOpened():
            return _revoke_opened(g, e)
        case RevokeOpenFailed():
            return _revoke_open_failed(g, e)
        case RevokeUnneeded():
            return _revoked(g, at=e.at, by=None)
        case RevokeMerged():
            return _revoked(g, at=e.at, by=e.by)
        case RevokeClosed():
            return _revoke_stopped(g, f"!{g.revoke_iid} was closed in GitLab", by=e.by)
        case RevokePipeline():
            return _revoke_pipeline(g, e)
        case RevokeMergeFailed():
            return _revoke_stopped(g, e.reason, by=None)
        case BindingSeen():
            return _binding(g, e)


def _opened(g: Grant, e: Opened) -> GrantStep | None:
    if g.state != "requested":
        return None
    return GrantStep(
        grant=replace(
            g,
            state="awaiting_approval",
            mr_iid=e.mr_iid,
            mr_url=e.mr_url,
            branch=e.branch,
            head_sha=e.head_sha,
        )
    )


def _approve(g: Grant, e: Approve) -> GrantStep | None:
    if g.state != "awaiting_approval" or e.approvals == g.approvals:
        return None
    said = GrantSay(kind="approved", by=e.by)
    if not e.complete:
        return GrantStep(grant=replace(g, approvals=e.approvals), says=(said,))
    merging = replace(g, approvals=e.approvals, state="merging")
    return GrantStep(grant=merging, says=(said, GrantSay(kind="merging")), effects=(Merge(),))


def _reject(g: Grant, *, by: str) -> GrantStep | None:
    if g.state not in _MR_OPEN:
        return None
    return GrantStep(
        grant=replace(g, state="rejected", ended_by=by),
        says=(GrantSay(kind="rejected", by=by),),
        effects=(CloseMergeRequest(),),
    )


def _mr_pipeline(g: Grant, e: MrPipeline) -> GrantStep | None:
    if g.state not in _MR_OPEN or e.sha != g.head_sha:
        return None
    if not newer_pipeline(g.mr_pipeline, e.pipeline):
        return None
    seen = replace(g, mr_pipeline=e.pipeline)
    status = e.pipeline.status
    if status not in FINISHED or status in _PASSED:
        return GrantStep(grant=seen)
    failure = f"the merge request's pipeline #{e.pipeline.id} {status}"
    return GrantStep(
        grant=replace(seen, state="failed", failure=failure),
        says=(GrantSay(kind="failed", broadcast=True),),
        effects=(
            CloseMergeRequest(note=f"Pitcrew closed this merge request: its pipeline {status}."),
        ),
    )


def _merged(g: Grant, e: Merged) -> GrantStep | None:
    outside = None if g.state == "merging" else e.by
    if g.state in _ENDED_UNMERGED:
        # GitLab merged it after all (a close that lost the race): take it back at once.
        late = replace(
            g,
            state="revoking",
            merged_at=e.at,
            merged_by=e.by,
            revoke_reason="unmerged",
            revoke_asked_at=e.at,
            failure=None,
        )
        return GrantStep(
            grant=late,
            says=(GrantSay(kind="revoking", broadcast=True),),
            effects=(
                Audit(action="access-merged-late", detail=f"!{g.mr_iid} merged after {g.state}"),
                OpenRevoke(),
            ),
        )
    if g.state not in _MR_OPEN:
        return None
    merged = replace(g, state="active", merged_at=e.at, merged_by=outside, failure=None)
    if e.head_sha and g.head_sha and e.head_sha != g.head_sha:
        reason = (
            f"!{g.mr_iid} was merged at `{e.head_sha[:8]}`, not at the reviewed"
            f" `{g.head_sha[:8]}`: what was merged is not what was approved"
        )
        unreviewed = replace(
            merged,
            state="revoking",
            revoke_reason="unreviewed",
            revoke_asked_at=e.at,
            failure=reason,
        )
        return GrantStep(
            grant=unreviewed,
            says=(
                GrantSay(kind="unreviewed_merge", by=e.by, broadcast=True),
                GrantSay(kind="revoking"),
            ),
            effects=(Audit(action="access-merge-unreviewed", detail=reason), OpenRevoke()),
        )
    effects: tuple[GrantEffect, ...] = ()
    if outside is not None:
        effects = (
            Audit(
                action="access-merged-outside",
                detail=f"!{g.mr_iid} merged in GitLab by {outside} before any approval in Slack",
            ),
        )
    if g.watched and g.seen_at is None:
        return GrantStep(grant=merged, says=(GrantSay(kind="merged", by=outside),), effects=effects)
    says = (GrantSay(kind="merged", by=outside),) if outside else ()
    return GrantStep(
        grant=merged, says=(*says, GrantSay(kind="granted", broadcast=True)), effects=effects
    )


def _closed(g: Grant, e: Closed) -> GrantStep | None:
    if g.state not in _MR_OPEN:
        return None
    return GrantStep(
        grant=replace(g, state="rejected", ended_by=e.by),
        says=(GrantSay(kind="rejected", by=e.by),),
    )


def _merge_failed(g: Grant, e: MergeFailed) -> GrantStep | None:
    if g.state != "merging":
        return None
    return GrantStep(
        grant=replace(g, state="failed", failure=e.reason),
        says=(GrantSay(kind="failed", broadcast=True),),
        effects=(
            CloseMergeRequest(note=f"Pitcrew closed this merge request: {e.reason}."),
            Audit(action="access-merge-failed", detail=e.reason),
        ),
    )


def _tick(g: Grant, e: Tick) -> GrantStep | None:
    now, wait = e.now, e.deadlines
    if g.state == "requested":
        if now - g.created_at < INTERRUPTED:
            return None
        failure = "interrupted before its merge request was opened; run the command again"
        return GrantStep(grant=replace(g, state="refused", failure=failure))
    if g.state in _MR_OPEN:
        if now >= g.expires_at:
            failure = "it was not approved and merged before the access would have ended"
        elif now - g.created_at >= wait.expiry:
            failure = f"not approved within {format_deadline(wait.expiry)}"
        else:
            return None
        return GrantStep(
            grant=replace(g, state="expired", failure=failure),
            says=(GrantSay(kind="expired"),),
            effects=(
                CloseMergeRequest(note=f"Pitcrew closed this merge request: {failure}."),
                Audit(action="access-expire", detail=failure),
            ),
        )
    if g.state == "active":
        if now >= g.expires_at:
            revoking = replace(g, state="revoking", revoke_reason="expired", revoke_asked_at=now)
            return GrantStep(
                grant=revoking,
                says=(GrantSay(kind="revoking"),),
                effects=(Audit(action="access-expired", detail=g.path), OpenRevoke()),
            )
        since = now - (g.merged_at or g.created_at)
        if g.watched and g.seen_at is None and not g.not_seen and since >= wait.rollout_wait:
            return GrantStep(
                grant=replace(g, not_seen=True),
                says=(GrantSay(kind="not_seen", broadcast=True),),
            )
        return None
    waiting = g.state == "revoked" and g.watched and g.gone_at is None and not g.still_there
    if waiting and now - (g.revoked_at or now) >= wait.rollout_wait:
        return GrantStep(
            grant=replace(g, still_there=True),
            says=(GrantSay(kind="still_there", broadcast=True),),
        )
    return None


def _revoke(g: Grant, e: Revoke) -> GrantStep | None:
    if g.state in _MR_OPEN:
        return _reject(g, by=e.by)
    if g.state not in ("active", "revoke_failed"):
        return None
    revoking = replace(
        g,
        state="revoking",
        revoke_round=g.revoke_round + (1 if g.state == "revoke_failed" else 0),
        revoke_reason="revoked",
        revoked_by=e.by,
        revoke_asked_at=e.at,
        revoke_iid=None,
        revoke_url=None,
        revoke_branch=None,
        revoke_head=None,
        revoke_pipeline=None,
        failure=None,
    )
    return GrantStep(
        grant=revoking, says=(GrantSay(kind="revoking", by=e.by),), effects=(OpenRevoke(),)
    )


def _revoke_opened(g: Grant, e: RevokeOpened) -> GrantStep | None:
    if g.state != "revoking" or g.revoke_iid is not None:
        return None
    opened = replace(
        g,
        revoke_iid=e.mr_iid,
        revoke_url=e.mr_url,
        revoke_branch=e.branch,
        revoke_head=e.head_sha,
        failure=None,
    )
    return GrantStep(
        grant=opened, says=(GrantSay(kind="revoking", by=g.revoked_by),), effects=(MergeRevoke(),)
    )


def _revoke_open_failed(g: Grant, e: RevokeOpenFailed) -> GrantStep | None:
    if g.state != "revoking" or g.revoke_iid is not None:
        return None
    return GrantStep(
        grant=replace(g, failure=e.reason, revoke_asked_at=e.at),
        says=(GrantSay(kind="revoke_stuck", broadcast=True),),
    )


def _revoked(g: Grant, *, at: datetime, by: str | None) -> GrantStep | None:
    if g.state not in ("revoking", "revoke_failed"):
        return None
    revoked = replace(g, state="revoked", revoked_at=at, failure=None)
    detail = f"!{g.revoke_iid} merged" if g.revoke_iid else "the file was already gone"
    if by:
        detail += f" in GitLab by {by}"
    # the controller may prune the RoleBinding before the merge's webhook is handled
    gone = (GrantSay(kind="gone"),) if g.watched and g.gone_at is not None else ()
    return GrantStep(
        grant=revoked,
        says=(GrantSay(kind="revoked", broadcast=True), *gone),
        effects=(Audit(action="access-revoked", detail=detail), TellHolder()),
    )


def _revoke_pipeline(g: Grant, e: RevokePipeline) -> GrantStep | None:
    if (
        g.state != "revoking"
        or e.sha != g.revoke_head
        or not newer_pipeline(g.revoke_pipeline, e.pipeline)
    ):
        return None
    seen = replace(g, revoke_pipeline=e.pipeline)
    status = e.pipeline.status
    if status not in FINISHED or status in _PASSED:
        return GrantStep(grant=seen)
    return _revoke_stopped(seen, f"the pipeline #{e.pipeline.id} of !{g.revoke_iid} {status}")


def _revoke_stopped(g: Grant, reason: str, *, by: str | None = None) -> GrantStep | None:
    if g.state != "revoking" or g.revoke_iid is None:
        return None
    failure = f"{reason}{f' by {by}' if by else ''}: the access is still granted"
    return GrantStep(
        grant=replace(g, state="revoke_failed", failure=failure),
        says=(GrantSay(kind="revoke_failed", broadcast=True),),
        effects=(Audit(action="access-revoke-failed", detail=failure),),
    )


def _binding(g: Grant, e: BindingSeen) -> GrantStep | None:
    if not g.watched:
        return None
    if e.present:
        if g.gone_at is not None and g.state != "revoked":
            return GrantStep(grant=replace(g, gone_at=None))  # back before the revoke merged
        if g.seen_at is not None:
            return None
        if g.state == "active":
            return GrantStep(
                grant=replace(g, seen_at=e.at, not_seen=False),
                says=(GrantSay(kind="granted", broadcast=True),),
            )
        if g.state in ("merging", "revoking", "revoke_failed"):
            return GrantStep(grant=replace(g, seen_at=e.at))  # told with the merge, or moot
        return None
    if g.state == "revoked" and g.gone_at is None:
        return GrantStep(grant=replace(g, gone_at=e.at), says=(GrantSay(kind="gone"),))
    if g.state in ("revoking", "revoke_failed") and g.gone_at is None and g.seen_at is not None:
        # pruned before the revoke's merge was handled: told with the merge (``_revoked``)
        return GrantStep(grant=replace(g, gone_at=e.at))
    return None
