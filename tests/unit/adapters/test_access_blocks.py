"""Break-glass access messages exactly as people read them in Slack, within Block Kit's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from bot.adapters.slack.blocks.access import (
    APPROVE,
    REJECT,
    AccessBlocks,
    render_grant,
    render_grant_note,
    stage,
)
from bot.adapters.slack.blocks.common import Rendered
from bot.domain.access import Grant, GrantState
from bot.domain.access_flow import GrantNote
from tests.unit.adapters.hostile import HOSTILE, assert_inert

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNTIL = "<!date^1772449200^{date_short_pretty} {time}|2026-03-02 11:00 UTC>"
ENDED = "<!date^1772449260^{date_short_pretty} {time}|2026-03-02 11:01 UTC>"
MR_URL = "https://gitlab.example.com/platform/deployments/-/merge_requests/7"
MR = f"<{MR_URL}|!7>"
REVOKE_URL = "https://gitlab.example.com/platform/deployments/-/merge_requests/8"
REVOKE = f"<{REVOKE_URL}|!8>"
APPROVERS = "<!subteam^S0SRE>"
VIEWS = AccessBlocks()


def grant(state: GrantState = "awaiting_approval", **changes: Any) -> Grant:
    base = Grant(
        id="0a1b2c3d4e5f",
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
        reason="checkout is down",
        duration=timedelta(hours=2),
        created_at=T0,
        expires_at=T0 + timedelta(hours=2),
        watched=True,
        state=state,
        mr_iid=7,
        mr_url=MR_URL,
    )
    return replace(base, **changes)


REVOKED = grant(
    "revoked",
    revoke_reason="expired",
    revoke_iid=8,
    revoke_url=REVOKE_URL,
    revoked_at=T0 + timedelta(hours=2, minutes=1),
)

STAGES: list[tuple[Grant, str]] = [
    (
        grant("requested", mr_iid=None, mr_url=None),
        ":hourglass_flowing_sand: Opening the merge request…",
    ),
    (
        grant(),
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from <!subteam^S0SRE>, anyone but"
        " the requester",
    ),
    (
        grant("merging"),
        ":twisted_rightwards_arrows: Approved — merging when the MR pipeline passes",
    ),
    (
        grant("active"),
        ":twisted_rightwards_arrows: Merged — waiting for the RoleBinding in *production*",
    ),
    (
        grant("active", seen_at=T0),
        f":key: Access granted until {UNTIL} — the RoleBinding is in *production*",
    ),
    (
        grant("active", watched=False),
        f":key: Access granted until {UNTIL} — *production*'s cluster is not watched, so Pitcrew"
        " cannot confirm it",
    ),
    (
        grant("active", not_seen=True),
        ":grey_question: Merged, but the RoleBinding never showed up in *production* — is the"
        " GitOps controller syncing? Pitcrew takes it back at " + UNTIL + " all the same",
    ),
    (
        grant("revoking", revoke_reason="expired"),
        ":hourglass_flowing_sand: The access expired: taking it back, opening the merge request",
    ),
    (
        grant(
            "revoking",
            revoke_reason="revoked",
            revoked_by="U0CAROL",
            revoke_iid=8,
            revoke_url=REVOKE_URL,
        ),
        f":hourglass_flowing_sand: Revoked by <@U0CAROL>: taking it back, merging {REVOKE}",
    ),
    (
        grant("revoking", revoke_reason="expired", failure="GitLab: 503"),
        ":hourglass_flowing_sand: The access expired: taking it back, opening the merge request —"
        " GitLab: 503; trying again",
    ),
    (
        grant(
            "revoke_failed",
            revoke_reason="expired",
            revoke_iid=8,
            revoke_url=REVOKE_URL,
            failure="the pipeline #9 of !8 failed: the access is still granted",
        ),
        ":rotating_light: Access NOT taken back: the pipeline #9 of !8 failed: the access is"
        f" still granted — merge {REVOKE}, or `/access revoke production orders` to try again",
    ),
    (
        REVOKED,
        f":lock: Access ended {ENDED} (the access expired) — {REVOKE} merged, waiting for the"
        " RoleBinding to leave *production*",
    ),
    (
        replace(REVOKED, gone_at=T0),
        f":lock: Access ended {ENDED} (the access expired) — {REVOKE} merged, the RoleBinding is"
        " gone from *production*",
    ),
    (
        replace(REVOKED, still_there=True),
        f":lock: Access ended {ENDED} (the access expired) — {REVOKE} merged, but the RoleBinding"
        " is still in *production*",
    ),
    (
        grant("rejected", ended_by="U0CAROL"),
        f":no_entry_sign: Rejected by <@U0CAROL> — {MR} closed",
    ),
    (grant("rejected", ended_by="U0BOB"), f":no_entry_sign: Withdrawn by <@U0BOB> — {MR} closed"),
    (
        grant("rejected", ended_by="Alice Martin"),
        f":no_entry_sign: {MR} was closed in GitLab by Alice Martin",
    ),
    (
        grant("expired", failure="not approved within 24 h"),
        f":zzz: Expired: not approved within 24 h — {MR} closed",
    ),
    (
        grant("failed", failure="the merge request's pipeline #3 failed"),
        f":red_circle: Failed: the merge request's pipeline #3 failed — {MR} closed",
    ),
    (
        grant("refused", mr_iid=None, mr_url=None, failure="GitLab refused"),
        ":no_entry: Refused: GitLab refused",
    ),
]


def test_every_state_has_a_stage_line() -> None:
    assert {g.state for g, _ in STAGES} == set(get_args(GrantState))


@pytest.mark.parametrize(
    ("g", "line"), STAGES, ids=[f"{g.state}-{i}" for i, (g, _) in enumerate(STAGES)]
)
def test_the_message_says_where_the_grant_stands(g: Grant, line: str) -> None:
    assert stage(g, approvers=APPROVERS) == line
    rendered = render_grant(g, approvers=APPROVERS)
    mr = MR if g.mr_iid else "no MR"
    assert rendered.blocks[0]["text"]["text"] == (
        f":key: *Grant admin on orders in production to bob for 2 h* · {mr}\n{line}"
    )


def test_the_message_waiting_for_approval_exactly() -> None:
    rendered = render_grant(grant(approvals=()), approvers=APPROVERS)
    assert rendered.blocks[1]["text"]["text"] == (
        f"For 2 h, until {UNTIL} · requested by <@U0BOB> · “checkout is down”\n"
        "As `oidc:bob@example.com` · ClusterRole `admin` in namespace `orders` ·"
        " `access/production/orders-bob.yaml`"
    )
    buttons = rendered.blocks[2]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (APPROVE, "0a1b2c3d4e5f"),
        (REJECT, "0a1b2c3d4e5f"),
    ]
    assert rendered.blocks[3]["elements"][0]["text"] == (
        "access `0a1b2c3d4e5f` · team payments · requested"
        " <!date^1772442000^{date_short_pretty} {time}|2026-03-02 09:00 UTC>"
    )
    # buttons only while an approval is useful
    assert all(b["type"] != "actions" for b in render_grant(grant("merging"), approvers="").blocks)


NOTES: list[tuple[Grant, GrantNote, str | None, str]] = [
    (
        grant(approvals=("U0CAROL",)),
        "approved",
        "U0CAROL",
        ":white_check_mark: Approved by <@U0CAROL> (1/1)",
    ),
    (
        grant("merging"),
        "merging",
        None,
        f":twisted_rightwards_arrows: Merging {MR} when its pipeline passes",
    ),
    (
        grant("active"),
        "merged",
        None,
        f":twisted_rightwards_arrows: Merged {MR}. Waiting for the RoleBinding to appear in"
        " *production*.",
    ),
    (
        grant("active", watched=False),
        "merged",
        "Alice",
        f":twisted_rightwards_arrows: Merged {MR} in GitLab by Alice, outside Pitcrew.",
    ),
    (
        grant("active", seen_at=T0),
        "granted",
        None,
        f":key: *Access granted until {UNTIL}*: <@U0BOB> is `admin` on *orders* in *production*"
        " (as `oidc:bob@example.com`) — the RoleBinding is in the cluster.",
    ),
    (
        grant("active", watched=False),
        "granted",
        None,
        f":key: *Access granted until {UNTIL}*: <@U0BOB> is `admin` on *orders* in *production*"
        " (as `oidc:bob@example.com`) — *production*'s cluster is not watched, so Pitcrew cannot"
        " confirm it.",
    ),
    (
        grant("active", not_seen=True),
        "not_seen",
        None,
        f":grey_question: <@U0BOB> {MR} was merged, but the RoleBinding `pitcrew-access-bob`"
        " never showed up in *production* — is the GitOps controller syncing?",
    ),
    (
        grant(
            "revoking",
            failure="!7 was merged at `b2b2b2b2`, not at the reviewed `a1a1a1a1`: what was"
            " merged is not what was approved",
        ),
        "unreviewed_merge",
        "Alice",
        f":rotating_light: *{MR} was merged at a head nobody approved* (merged in GitLab by"
        " Alice): !7 was merged at `b2b2b2b2`, not at the reviewed `a1a1a1a1`: what was merged"
        " is not what was approved. Pitcrew takes the access back at once.",
    ),
    (
        grant("failed", failure="GitLab refused to merge !7: conflict"),
        "failed",
        None,
        f":red_circle: *Access not granted*: GitLab refused to merge !7: conflict. {MR} is closed.",
    ),
    (
        grant("rejected", ended_by="U0CAROL"),
        "rejected",
        "U0CAROL",
        f":no_entry_sign: Rejected by <@U0CAROL>: {MR} is closed.",
    ),
    (
        grant("rejected", ended_by="Alice"),
        "rejected",
        "Alice",
        f":no_entry_sign: {MR} was closed in GitLab by Alice.",
    ),
    (
        grant("expired", failure="not approved within 24 h"),
        "expired",
        None,
        f":zzz: Expired (not approved within 24 h): {MR} is closed.",
    ),
    (
        grant("revoking", revoke_reason="expired"),
        "revoking",
        None,
        ":hourglass_flowing_sand: The access expired: opening the merge request that removes the"
        " RoleBinding…",
    ),
    (
        grant(
            "revoking",
            revoke_reason="revoked",
            revoked_by="U0BOB",
            revoke_iid=8,
            revoke_url=REVOKE_URL,
        ),
        "revoking",
        "U0BOB",
        f":hourglass_flowing_sand: Revoked by <@U0BOB>: merging {REVOKE}, which removes the"
        " RoleBinding.",
    ),
    (
        grant("revoking", failure="GitLab: 503"),
        "revoke_stuck",
        None,
        ":warning: The merge request removing the access could not be opened: GitLab: 503."
        " Pitcrew tries again every minute; the access stays until then.",
    ),
    (
        grant(
            "revoke_failed",
            revoke_iid=8,
            revoke_url=REVOKE_URL,
            failure="!8 was closed in GitLab by Alice: the access is still granted",
        ),
        "revoke_failed",
        None,
        ":rotating_light: *The access was not taken back*: !8 was closed in GitLab by Alice: the"
        f" access is still granted. Merge {REVOKE} or remove `access/production/orders-bob.yaml`"
        " by hand — or `/access revoke production orders` to try again.",
    ),
    (
        REVOKED,
        "revoked",
        None,
        ":lock: *<@U0BOB>'s access to orders in production has ended* (the access expired):"
        f" {REVOKE} merged. Waiting for the RoleBinding to leave *production*.",
    ),
    (
        replace(
            REVOKED, revoke_iid=None, watched=False, revoke_reason="revoked", revoked_by="U0CAROL"
        ),
        "revoked",
        None,
        ":lock: *<@U0BOB>'s access to orders in production has ended* (revoked by <@U0CAROL>):"
        " its file was already gone.",
    ),
    (
        replace(REVOKED, gone_at=T0),
        "gone",
        None,
        ":white_check_mark: The RoleBinding `pitcrew-access-bob` is gone from *production*.",
    ),
    (
        replace(REVOKED, still_there=True),
        "still_there",
        None,
        f":rotating_light: {REVOKE} was merged, but the RoleBinding `pitcrew-access-bob` is still"
        " in *production* — is the GitOps controller syncing and pruning? Remove it by hand if"
        " in doubt.",
    ),
]


def test_every_note_kind_has_an_exact_example() -> None:
    assert {kind for _, kind, _, _ in NOTES} == set(get_args(GrantNote))


@pytest.mark.parametrize(
    ("g", "kind", "by", "line"), NOTES, ids=[f"{k}-{i}" for i, (_, k, _, _) in enumerate(NOTES)]
)
def test_each_thread_reply(g: Grant, kind: GrantNote, by: str | None, line: str) -> None:
    rendered = render_grant_note(g, kind, by=by)
    assert rendered.text == line
    assert rendered.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": line}}]


def test_the_holder_is_told_in_a_direct_message() -> None:
    assert VIEWS.ended(REVOKED).text == (
        f":lock: Your break-glass access to *orders* in *production* has ended (the access"
        f" expired): {REVOKE} removed the RoleBinding. If you still need it, ask again with"
        " `/access production orders for &lt;duration&gt;`."
    )


def test_the_listing_with_time_left() -> None:
    now = T0 + timedelta(minutes=40)
    rendered = VIEWS.listing(
        [
            grant("active", seen_at=T0),
            grant(requester="U0DAVE", env="staging"),
            grant(
                "revoke_failed",
                requester="U0ALICE",
                failure="closed",
                revoke_iid=8,
                revoke_url=REVOKE_URL,
            ),
        ],
        now=now,
    )
    assert [b["text"]["text"] for b in rendered.blocks] == [
        ":key: *Break-glass access* · 2 held · 1 waiting",
        f"• :key: <@U0BOB>: `admin` on *orders* in *production* until {UNTIL} (1 h 20 min left)"
        f" · {MR}\n"
        "• :hourglass_flowing_sand: <@U0DAVE> waits for approval: `admin` on *orders* in"
        f" *staging* for 2 h · {MR}\n"
        "• :rotating_light: <@U0ALICE>: `admin` on *orders* in *production*, *not taken back*:"
        f" closed · {REVOKE}",
    ]
    assert VIEWS.listing([], now=now).text == (
        ":key: Nobody holds break-glass access right now. Ask with"
        " `/access &lt;env&gt; &lt;app&gt; for &lt;duration&gt; [reason]`."
    )


def test_already_held_or_asked() -> None:
    now = T0 + timedelta(minutes=30)
    assert VIEWS.already(grant("active"), now=now).text == (
        f":key: You already hold access to orders in production until {UNTIL} (1 h 30 min"
        f" left, {MR}). To ask again, end it first with `/access revoke production orders`."
    )
    assert VIEWS.already(grant(), now=now).text == (
        f":hourglass_flowing_sand: You already asked for access to orders in production: {MR}"
        " is awaiting approval. To ask differently, withdraw it with"
        " `/access revoke production orders`."
    )


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_comes_out_as_text(evil: str) -> None:
    g = grant(
        reason=evil,
        failure=evil,
        subject=evil,
        email=evil,
        path=evil,
        ended_by=evil,
        mr_url=f"https://gitlab.example.com/{evil}",
    )
    rendered: list[Rendered] = [render_grant(g, approvers=APPROVERS)]
    rendered += [render_grant_note(g, kind, by=evil) for kind in get_args(GrantNote)]
    rendered += [VIEWS.listing([g], now=T0), VIEWS.ended(g), VIEWS.refused(evil)]
    for message in rendered:
        assert_inert(
            message,
            links=("https://gitlab.example.com/",),
            mentions=("@U0BOB", "!subteam^S0SRE"),
        )
