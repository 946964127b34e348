"""What the autopilot says in Slack, exactly as people read it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bot.adapters.slack.blocks.autopilot import render_freeze_deferred, render_refused
from bot.adapters.slack.blocks.releases import render_note, render_release
from bot.domain.locks import Lock
from bot.domain.releases import ReleaseRef
from tests.release_records import sample_release

END = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)


def test_a_release_the_autopilot_could_not_open() -> None:
    text, blocks = render_refused(
        app="orders",
        env="staging",
        version="1.5.0",
        cause="new_version",
        reason="the edited `apps/orders/staging/deployment.yaml` would break the <rules>",
    )
    assert text == (
        ":robot_face: Autopilot could not open *Deploy orders 1.5.0 to staging* (new version):"
        " the edited `apps/orders/staging/deployment.yaml` would break the &lt;rules&gt;."
        " It tries again at its next look; `/deploy` works as usual."
    )
    assert blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_a_freeze_that_leaves_a_persons_lock() -> None:
    lock = Lock(env="production", holder="U0ALICE", since=END, reason="hotfix")
    text, _ = render_freeze_deferred(lock, reason="weekend freeze", end=END)
    assert text == (
        ":lock: The scheduled freeze of *production* (weekend freeze) began, but <@U0ALICE> holds"
        " a lock there: theirs stands. If it ends before"
        " <!date^1774252800^{date_short_pretty} {time}|2026-03-23 08:00 UTC>, the freeze takes"
        " over until then."
    )


def test_the_autopilot_is_named_for_what_it_asked_and_never_pinged() -> None:
    release = sample_release(requester="pitcrew", autopilot="promotion", mr_iid=3, mr_url=None)
    _, blocks = render_release(release, approvers="@sre-oncall")
    details = blocks[1]["text"]["text"]
    assert details.splitlines()[0] == (
        "`1.4.1` → `1.4.2` · requested by the autopilot (scheduled promotion)"
    )
    newer = ReleaseRef(id="r-2", title="Deploy orders 1.4.3 to production", requester="pitcrew")
    superseded = replace(release, state="superseded", superseded_by=newer)
    assert render_note(superseded, "superseded").text == (
        ":fast_forward: Superseded by *Deploy orders 1.4.3 to production* (requested by the"
        " autopilot). !3 is closed."
    )


def test_a_release_held_between_its_approval_and_its_merge() -> None:
    held = sample_release(
        state="approved", approvals=("U0CAROL",), held_by="pitcrew", mr_iid=3, mr_url=None
    )
    assert render_note(held, "held", by="pitcrew").text == (
        ":lock: Approved, but *production* is now locked by pitcrew: the merge is held, and goes"
        " ahead as soon as it is unlocked."
    )
    text, _ = render_release(held, approvers="@sre-oncall")
    assert text.endswith(
        ":lock: Held: *production* is locked by pitcrew — merges when it is unlocked"
    )
