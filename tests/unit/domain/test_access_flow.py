"""How a break-glass grant moves, one event at a time: tables of (grant, event) → the next
state, what its thread says and what is done outside, with duplicates, late and out-of-order
deliveries among the rows, and the deadlines: expiry takes the access back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from bot.domain.access import HELD, OPEN_STATES, SETTLED_STATES, Grant, GrantState
from bot.domain.access_flow import (
    BindingSeen,
    GrantEvent,
    GrantStep,
    Revoke,
    RevokeClosed,
    RevokeMerged,
    RevokeMergeFailed,
    RevokeOpened,
    RevokeOpenFailed,
    RevokePipeline,
    RevokeUnneeded,
    apply,
)
from bot.domain.release_flow import (
    Approve,
    Closed,
    Deadlines,
    Merged,
    MergeFailed,
    MrPipeline,
    Opened,
    OpenFailed,
    Reject,
    Tick,
)
from bot.domain.releases import PipelineLink

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEAD, OTHER, REVOKE_HEAD = "a1" * 20, "b2" * 20, "d4" * 20
MERGED_AT = T0 + timedelta(minutes=10)
REVOKED_AT = T0 + timedelta(hours=2, minutes=1)
WAIT = Deadlines(
    expiry=timedelta(hours=24),
    pipeline_wait=timedelta(minutes=10),
    rollout_wait=timedelta(minutes=30),
)


def grant(state: GrantState = "awaiting_approval", **changes: Any) -> Grant:
    """bob's admin on orders in production for 2 h, its MR !7 open, the cluster watched."""
    base = Grant(
        id="g-1",
        app="orders",
        team="payments",
        env="production",
        namespace="orders",
        requester="U0BOB",
        email="bob@example.com",
        user="bob",
        subject="oidc:bob@example.com",
        role="admin",
        path="access/production/orders-bob.yaml",
        binding="pitcrew-access-bob",
        reason="",
        duration=timedelta(hours=2),
        created_at=T0,
        expires_at=T0 + timedelta(hours=2),
        watched=True,
        state=state,
    )
    if state != "requested":
        base = replace(base, mr_iid=7, mr_url="u7", branch="pitcrew/access-g-1", head_sha=HEAD)
    if state in ("active", "revoking", "revoke_failed", "revoked"):
        base = replace(base, merged_at=MERGED_AT, approvals=("U0CAROL",), seen_at=MERGED_AT)
    if state in ("revoking", "revoke_failed", "revoked"):
        base = replace(base, revoke_reason="expired", revoke_asked_at=T0 + timedelta(hours=2))
    if state in ("revoke_failed", "revoked"):
        base = replace(base, revoke_iid=8, revoke_url="u8", revoke_head=REVOKE_HEAD)
    if state == "revoked":
        base = replace(base, revoked_at=REVOKED_AT)
    return replace(base, **changes)


def opened_revoke(**changes: Any) -> Grant:
    return grant(
        "revoking",
        revoke_iid=8,
        revoke_url="u8",
        revoke_branch="b8",
        revoke_head=REVOKE_HEAD,
        **changes,
    )


def tick(at: datetime) -> Tick:
    return Tick(now=at, deadlines=WAIT)


def pipeline(pid: int, status: str) -> PipelineLink:
    return PipelineLink(id=pid, status=status, url=f"https://gitlab.example.com/p/{pid}")


def merged(head: str | None = HEAD, by: str | None = None) -> Merged:
    return Merged(merge_sha="c3" * 20, head_sha=head, by=by, at=MERGED_AT)


APPROVE = Approve(by="U0CAROL", approvals=("U0CAROL",), complete=True)
SEEN = BindingSeen(present=True, at=MERGED_AT + timedelta(seconds=20))
GONE = BindingSeen(present=False, at=REVOKED_AT + timedelta(seconds=20))
EXPIRY = T0 + timedelta(hours=2)


def summary(step: GrantStep | None) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    if step is None:
        return None
    return (
        step.grant.state,
        tuple(s.kind for s in step.says),
        tuple(type(e).__name__ for e in step.effects),
    )


CASES: list[tuple[str, Grant, GrantEvent, tuple[str, tuple[str, ...], tuple[str, ...]] | None]] = [
    # ---- opening
    (
        "the MR is opened",
        grant("requested"),
        Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
        ("awaiting_approval", (), ()),
    ),
    ("GitLab refuses the MR", grant("requested"), OpenFailed(reason="403"), ("refused", (), ())),
    ("still opening", grant("requested"), tick(T0 + timedelta(minutes=5)), None),
    (
        "interrupted while opening",
        grant("requested"),
        tick(T0 + timedelta(minutes=11)),
        ("refused", (), ()),
    ),
    # ---- waiting for its approval
    ("approved: merging", grant(), APPROVE, ("merging", ("approved", "merging"), ("Merge",))),
    ("a duplicate approval", grant(approvals=("U0CAROL",)), APPROVE, None),
    (
        "rejected",
        grant(),
        Reject(by="U0CAROL"),
        ("rejected", ("rejected",), ("CloseMergeRequest",)),
    ),
    (
        "withdrawn by its requester",
        grant(),
        Revoke(by="U0BOB", at=T0),
        ("rejected", ("rejected",), ("CloseMergeRequest",)),
    ),
    ("closed in GitLab", grant(), Closed(by="Alice"), ("rejected", ("rejected",), ())),
    (
        "its MR pipeline runs",
        grant(),
        MrPipeline(pipeline=pipeline(3, "running"), sha=HEAD),
        ("awaiting_approval", (), ()),
    ),
    (
        "its MR pipeline fails",
        grant(),
        MrPipeline(pipeline=pipeline(3, "failed"), sha=HEAD),
        ("failed", ("failed",), ("CloseMergeRequest",)),
    ),
    (
        "another head's pipeline",
        grant(),
        MrPipeline(pipeline=pipeline(3, "failed"), sha=OTHER),
        None,
    ),
    (
        "merged in GitLab before any approval: granted, and audited",
        grant("awaiting_approval", watched=False),
        merged(by="Alice"),
        ("active", ("merged", "granted"), ("Audit",)),
    ),
    (
        "not approved before the access would have ended",
        grant(),
        tick(EXPIRY),
        ("expired", ("expired",), ("CloseMergeRequest", "Audit")),
    ),
    (
        "not approved within a day",
        grant(duration=timedelta(hours=48), expires_at=T0 + timedelta(hours=48)),
        tick(T0 + timedelta(hours=24)),
        ("expired", ("expired",), ("CloseMergeRequest", "Audit")),
    ),
    ("still waiting", grant(), tick(T0 + timedelta(hours=1)), None),
    # ---- merging
    (
        "merged: waiting for the RoleBinding",
        grant("merging"),
        merged(),
        ("active", ("merged",), ()),
    ),
    (
        "merged where the cluster is not watched: granted",
        grant("merging", watched=False),
        merged(),
        ("active", ("granted",), ()),
    ),
    (
        "merged after the controller applied it: granted",
        grant("merging", seen_at=MERGED_AT),
        merged(),
        ("active", ("granted",), ()),
    ),
    (
        "merged at a head nobody approved: taken back at once",
        grant("merging"),
        merged(OTHER),
        ("revoking", ("unreviewed_merge", "revoking"), ("Audit", "OpenRevoke")),
    ),
    (
        "GitLab refuses the merge",
        grant("merging"),
        MergeFailed(reason="conflict"),
        ("failed", ("failed",), ("CloseMergeRequest", "Audit")),
    ),
    ("the RoleBinding before the merge's webhook", grant("merging"), SEEN, ("merging", (), ())),
    (
        "withdrawn while merging",
        grant("merging"),
        Revoke(by="U0BOB", at=T0),
        ("rejected", ("rejected",), ("CloseMergeRequest",)),
    ),
    (
        "its time ran out while merging",
        grant("merging"),
        tick(EXPIRY),
        ("expired", ("expired",), ("CloseMergeRequest", "Audit")),
    ),
    # ---- active
    (
        "the RoleBinding is seen: granted",
        grant("active", seen_at=None),
        SEEN,
        ("active", ("granted",), ()),
    ),
    ("seen twice", grant("active"), SEEN, None),
    ("an unwatched cluster says nothing", grant("active", watched=False, seen_at=None), SEEN, None),
    (
        "not there yet",
        grant("active", seen_at=None),
        BindingSeen(present=False, at=MERGED_AT),
        None,
    ),
    ("time left", grant("active"), tick(EXPIRY - timedelta(seconds=1)), None),
    (
        "expired: taken back",
        grant("active"),
        tick(EXPIRY),
        ("revoking", ("revoking",), ("Audit", "OpenRevoke")),
    ),
    (
        "never seen in the cluster, said once",
        grant("active", seen_at=None),
        tick(MERGED_AT + timedelta(minutes=30)),
        ("active", ("not_seen",), ()),
    ),
    (
        "never seen, already said",
        grant("active", seen_at=None, not_seen=True),
        tick(MERGED_AT + timedelta(minutes=40)),
        None,
    ),
    (
        "revoked early",
        grant("active"),
        Revoke(by="U0BOB", at=T0 + timedelta(hours=1)),
        ("revoking", ("revoking",), ("OpenRevoke",)),
    ),
    ("a late approval", grant("active"), APPROVE, None),
    ("a late rejection", grant("active"), Reject(by="U0CAROL"), None),
    ("the merge hook twice", grant("active"), merged(), None),
    # ---- taking it back
    (
        "the revoke MR is opened: merged by Pitcrew",
        grant("revoking"),
        RevokeOpened(mr_iid=8, mr_url="u8", branch="b8", head_sha=REVOKE_HEAD),
        ("revoking", ("revoking",), ("MergeRevoke",)),
    ),
    (
        "opened twice",
        opened_revoke(),
        RevokeOpened(mr_iid=9, mr_url="u9", branch="b9", head_sha=OTHER),
        None,
    ),
    (
        "GitLab does not answer: said loudly, tried again",
        grant("revoking"),
        RevokeOpenFailed(reason="GitLab: 503", at=EXPIRY),
        ("revoking", ("revoke_stuck",), ()),
    ),
    (
        "the file was already gone",
        grant("revoking"),
        RevokeUnneeded(at=REVOKED_AT),
        ("revoked", ("revoked",), ("Audit", "TellHolder")),
    ),
    (
        "revoked: the holder is told",
        opened_revoke(),
        RevokeMerged(at=REVOKED_AT),
        ("revoked", ("revoked",), ("Audit", "TellHolder")),
    ),
    (
        "its pipeline runs",
        opened_revoke(),
        RevokePipeline(pipeline=pipeline(9, "running"), sha=REVOKE_HEAD),
        ("revoking", (), ()),
    ),
    (
        "its pipeline fails: not taken back, said loudly",
        opened_revoke(),
        RevokePipeline(pipeline=pipeline(9, "failed"), sha=REVOKE_HEAD),
        ("revoke_failed", ("revoke_failed",), ("Audit",)),
    ),
    (
        "another head's pipeline",
        opened_revoke(),
        RevokePipeline(pipeline=pipeline(9, "failed"), sha=OTHER),
        None,
    ),
    (
        "someone closes it",
        opened_revoke(),
        RevokeClosed(by="Alice"),
        ("revoke_failed", ("revoke_failed",), ("Audit",)),
    ),
    (
        "GitLab refuses its merge",
        opened_revoke(),
        RevokeMergeFailed(reason="conflict"),
        ("revoke_failed", ("revoke_failed",), ("Audit",)),
    ),
    ("revoked again while revoking", grant("revoking"), Revoke(by="U0BOB", at=EXPIRY), None),
    ("the sweep ticks while revoking", grant("revoking"), tick(EXPIRY + timedelta(hours=1)), None),
    (
        "tried again after it failed",
        grant("revoke_failed"),
        Revoke(by="U0CAROL", at=REVOKED_AT),
        ("revoking", ("revoking",), ("OpenRevoke",)),
    ),
    (
        "merged by hand after it failed",
        grant("revoke_failed"),
        RevokeMerged(at=REVOKED_AT, by="Al"),
        ("revoked", ("revoked",), ("Audit", "TellHolder")),
    ),
    # ---- revoked
    ("the RoleBinding is gone", grant("revoked"), GONE, ("revoked", ("gone",), ())),
    (
        "pruned before the revoke's merge is handled: kept for the merge",
        grant("revoking"),
        GONE,
        ("revoking", (), ()),
    ),
    (
        "the merge after the RoleBinding went: both said",
        grant("revoking", gone_at=REVOKED_AT),
        RevokeMerged(at=REVOKED_AT),
        ("revoked", ("revoked", "gone"), ("Audit", "TellHolder")),
    ),
    (
        "back before the revoke merged: not gone after all",
        grant("revoking", gone_at=REVOKED_AT),
        SEEN,
        ("revoking", (), ()),
    ),
    ("gone twice", grant("revoked", gone_at=REVOKED_AT), GONE, None),
    (
        "still there long after",
        grant("revoked"),
        tick(REVOKED_AT + timedelta(minutes=30)),
        ("revoked", ("still_there",), ()),
    ),
    (
        "gone after all, once said to be still there",
        grant("revoked", still_there=True),
        GONE,
        ("revoked", ("gone",), ()),
    ),
    ("the revoke hook twice", grant("revoked"), RevokeMerged(at=REVOKED_AT), None),
    # ---- ended unmerged, then GitLab merges anyway: taken back at once
    (
        "merged after it was rejected",
        grant("rejected"),
        merged(),
        ("revoking", ("revoking",), ("Audit", "OpenRevoke")),
    ),
    (
        "merged after it expired",
        grant("expired"),
        merged(),
        ("revoking", ("revoking",), ("Audit", "OpenRevoke")),
    ),
    ("a refused grant never moves", grant("refused"), merged(), None),
]


@pytest.mark.parametrize(
    ("before", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_event(
    before: Grant,
    event: GrantEvent,
    expected: tuple[str, tuple[str, ...], tuple[str, ...]] | None,
) -> None:
    assert summary(apply(before, event)) == expected


def test_the_state_sets_cover_every_state() -> None:
    states = set(get_args(GrantState))
    assert OPEN_STATES | SETTLED_STATES | {"revoked"} == states
    assert OPEN_STATES.isdisjoint(SETTLED_STATES)
    assert {"active", "revoking", "revoke_failed"} == HELD


def test_expiry_records_why_and_when_it_asked() -> None:
    step = apply(grant("active"), tick(EXPIRY + timedelta(seconds=5)))
    assert step is not None
    assert step.grant.revoke_reason == "expired"
    assert step.grant.revoke_asked_at == EXPIRY + timedelta(seconds=5)


def test_an_early_revoke_names_who_and_a_retry_takes_a_new_branch() -> None:
    step = apply(grant("active"), Revoke(by="U0CAROL", at=T0 + timedelta(hours=1)))
    assert step is not None
    assert (step.grant.revoke_reason, step.grant.revoked_by) == ("revoked", "U0CAROL")
    assert step.grant.revoke_branch_name == "pitcrew/access-g-1-revoke"
    retry = apply(grant("revoke_failed"), Revoke(by="U0CAROL", at=REVOKED_AT))
    assert retry is not None
    assert retry.grant.revoke_iid is None
    assert retry.grant.revoke_branch_name == "pitcrew/access-g-1-revoke-1"


def test_a_merge_outside_pitcrew_is_audited_with_who() -> None:
    step = apply(grant(watched=False), merged(by="Alice Martin"))
    assert step is not None
    (audit,) = step.effects
    assert audit == type(audit)(
        action="access-merged-outside",
        detail="!7 merged in GitLab by Alice Martin before any approval in Slack",
    )
    assert step.says[0].by == "Alice Martin"


@pytest.mark.parametrize(
    ("state", "changes", "settled"),
    [
        ("rejected", {}, True),
        ("refused", {}, True),
        ("revoked", {}, False),  # watched: waiting for the RoleBinding to leave
        ("revoked", {"gone_at": REVOKED_AT}, True),
        ("revoked", {"still_there": True}, False),  # a late prune is still told
        ("revoked", {"watched": False}, True),
        ("active", {}, False),
        ("revoke_failed", {}, False),
    ],
)
def test_settled(state: GrantState, changes: dict[str, Any], settled: bool) -> None:
    assert grant(state, **changes).settled is settled
