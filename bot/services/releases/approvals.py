"""Approve and Reject, decided at each click from the stored record.

Nothing in a click is trusted but who clicked and the button's value (a release id). An approval
counts only if ``decide_approval`` accepts the person now (groups resolved at click time), the
MR is still open, unchanged since it was opened (same head SHA) and mergeable, and the env's lock
allows it. The approval is committed against the very version that was judged: two approvers
clicking at once are judged one after the other.
"""

from __future__ import annotations

from bot import logs
from bot.domain.errors import PitcrewError
from bot.domain.release_flow import Approve, Reject, apply
from bot.domain.releases import (
    AlreadyApproved,
    AlreadyComplete,
    ApprovalDecision,
    ApprovalNotRequired,
    Approved,
    NotAnApprover,
    Release,
    SelfApprovalForbidden,
    approval_note,
    approvers_label,
    decide_approval,
)
from bot.services.releases.engine import MAX_RACES, ReleaseEngine, approvers_named, overridden
from bot.services.releases.ports import ReleaseRepository, Reply

log = logs.get(__name__)


class Approvals:
    def __init__(self, engine: ReleaseEngine) -> None:
        self._engine = engine

    async def approve(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        engine = self._engine
        views = engine.views
        for _ in range(MAX_RACES):
            release, version = await engine.store.load(release_id)
            if release is None:
                await answer(views.click_answer("This release is not known to Pitcrew."))
                return
            catalog = engine.catalog.current
            if release.env not in catalog.env_names:
                await answer(views.click_answer(f"{release.env} is no longer in the catalog."))
                return
            env = catalog.environment(release.env)
            named = approvers_named(catalog, release)
            decision: ApprovalDecision
            if release.state != "awaiting_approval":
                decision = (
                    AlreadyApproved()
                    if user in release.approvals
                    else AlreadyComplete(approvals=release.approvals)
                )
            else:
                try:
                    members = await engine.people.members(named)
                except PitcrewError as exc:
                    await answer(
                        views.click_answer(f"Approvers could not be checked: {exc}. Try again.")
                    )
                    return
                decision = decide_approval(
                    release.snapshot(env), user=user, approvers=members, named=named
                )
            problem = _refusal(decision, release=release)
            if problem is None:
                problem = await self._still_mergeable(release) or await self._lock_problem(release)
            if problem is not None or not isinstance(decision, Approved):
                problem = problem or "This approval was not accepted."
                await engine.record(
                    user, "approve-refused", release.env, release.title, problem, origin=origin
                )
                await answer(views.click_answer(problem))
                return
            step = apply(
                release,
                Approve(by=user, approvals=decision.approvals, complete=decision.complete),
            )
            if step is None:
                continue
            committed = await engine.save(step, previous=release, expected=version)
            if committed is None:
                continue  # someone else clicked at the same moment: judge again
            await engine.record(
                user,
                "approve",
                release.env,
                release.title,
                f"{decision.count}/{decision.needed}",
                origin=origin,
            )
            await engine.follow_through(committed)
            if decision.complete:
                approved = committed.release
                names = [await engine.people.display_name(u) for u in approved.approvals]
                note = approval_note(names, needed=approved.approvals_needed)
                await engine.quietly(engine.repo.note(approved.mr_iid or 0, note))
            await answer(
                views.click_answer(
                    f"Approved ({decision.count}/{decision.needed})."
                    + (" Merging." if decision.complete else "")
                )
            )
            return
        await answer(views.click_answer("The release kept changing; try again."))

    async def reject(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        engine = self._engine
        views = engine.views
        release, _ = await engine.store.load(release_id)
        if release is None:
            await answer(views.click_answer("This release is not known to Pitcrew."))
            return
        try:
            allowed = await engine.may_reject(release, user)
        except PitcrewError as exc:
            await answer(views.click_answer(f"Approvers could not be checked: {exc}. Try again."))
            return
        if not allowed:
            named = approvers_named(engine.catalog.current, release)
            problem = (
                f"Only the requester or an approver for {release.env} can reject"
                f" (approvers: {approvers_label(named)})."
            )
            await engine.record(
                user, "reject-refused", release.env, release.title, problem, origin=origin
            )
            await answer(views.click_answer(problem))
            return
        rejected = await engine.drive(release_id, Reject(by=user))
        if rejected is None:
            latest, _ = await engine.store.load(release_id)
            state = latest.state if latest else release.state
            await answer(views.click_answer(f"Too late to reject: the release is {state}."))
            return
        await engine.record(
            user, "reject", rejected.env, rejected.title, f"MR !{rejected.mr_iid}", origin=origin
        )
        await answer(views.click_answer("Rejected: the merge request is closed."))

    async def _still_mergeable(self, release: Release) -> str | None:
        """Re-read the MR at click time: still open, unchanged since it was opened, mergeable."""
        if release.mr_iid is None:
            return "This release has no merge request yet."
        return await mergeable_problem(
            self._engine.repo, mr_iid=release.mr_iid, head_sha=release.head_sha
        )

    async def _lock_problem(self, release: Release) -> str | None:
        lock = await self._engine.locks.lock_of(release.env)
        if lock is None or overridden(release, lock):
            return None
        reason = f": {lock.reason}" if lock.reason else ""
        holder = approvers_label([lock.holder])  # a user's mention; the autopilot by name
        return (
            f"{release.env} is locked by {holder}{reason}. Approvals wait until"
            f" `/unlock {release.env}`."
        )


async def mergeable_problem(
    repo: ReleaseRepository, *, mr_iid: int, head_sha: str | None
) -> str | None:
    """Why an approval of ``!mr_iid`` cannot count now, read from GitLab at click time: it is
    no longer open, its head moved since it was reviewed, or it cannot merge as it stands."""
    try:
        mr = await repo.merge_request(mr_iid)
    except PitcrewError as exc:
        return f"GitLab could not be asked about !{mr_iid}: {exc}. Try again."
    if mr.state != "opened":
        return f"!{mr.iid} is {mr.state} in GitLab: there is nothing to approve."
    if mr.head_sha != head_sha:
        return (
            f"!{mr.iid} changed since it was opened (its head is now `{mr.head_sha[:8]}`):"
            " approvals are refused. Reject it and run the command again."
        )
    if not mr.mergeable:
        return (
            f"!{mr.iid} cannot be merged as it stands (a conflict or a draft):"
            " fix it in GitLab first."
        )
    return None


def _refusal(decision: ApprovalDecision, *, release: Release) -> str | None:
    if isinstance(decision, Approved):
        return None
    if isinstance(decision, NotAnApprover):
        return f"You are not an approver for {release.env} (approvers: {decision.approvers_label})."
    if isinstance(decision, SelfApprovalForbidden):
        return (
            "You asked for this release: someone else must approve it"
            f" ({release.env} forbids self-approval)."
        )
    if isinstance(decision, AlreadyApproved):
        return "Your approval is already counted."
    if isinstance(decision, ApprovalNotRequired):
        return (
            f"{release.env} releases merge when their pipeline passes: there is nothing to approve."
        )
    if release.state in ("rejected", "expired", "refused", "superseded"):
        return f"This release is {release.state.replace('_', ' ')}: there is nothing to approve."
    if release.state == "failed":
        return f"This release failed ({release.failure}): there is nothing to approve."
    return "This release already has the approvals it needs."
