"""Release messages exactly as people read them in Slack, within Block Kit's limits."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest

from bot.adapters.slack.blocks.common import MAX_BLOCKS, MAX_SECTION, Rendered
from bot.adapters.slack.blocks.releases import (
    APPROVE,
    DEPLOY_ANYWAY,
    REJECT,
    ReleaseBlocks,
    render_note,
    render_release,
    stage,
)
from bot.domain.locks import Lock
from bot.domain.release_flow import NoteKind
from bot.domain.releases import (
    DEPLOY_USAGE,
    Changelog,
    ChangelogEntry,
    LockOverride,
    PipelineLink,
    Release,
    ReleaseCommandError,
    ReleaseRef,
    ReleaseState,
)
from bot.domain.rollouts import PodProblem, Progress
from tests.release_records import sample_release
from tests.unit.adapters.hostile import HOSTILE, assert_inert

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
APPROVERS = "@sre-oncall"
GITLAB = "https://gitlab.example.com"
MR_URL = f"{GITLAB}/platform/deployments/-/merge_requests/42"
MR = f"<{MR_URL}|!42>"
MR_PIPELINE = PipelineLink(
    id=12, status="running", url=f"{GITLAB}/platform/deployments/-/pipelines/12"
)
DEPLOY_PIPELINE = PipelineLink(
    id=77, status="running", url=f"{GITLAB}/platform/deployments/-/pipelines/77"
)
ISSUES = f"{GITLAB}/shop/orders/-/issues"
COMPARE = f"{GITLAB}/shop/orders/-/compare/1.4.1...1.4.2"


def entry(n: int, *, title: str | None = None, issues: tuple[str, ...] = ()) -> ChangelogEntry:
    sha = f"{n:02d}" + "abcdef0123456789" * 2 + "abcdef"
    return ChangelogEntry(
        sha=sha,
        title=title if title is not None else f"Commit number {n}",
        author="Alice Martin",
        url=f"{GITLAB}/shop/orders/-/commit/{sha}",
        issues=issues,
    )


def changelog(count: int, *, total: int | None = None, **changes: Any) -> Changelog:
    return Changelog(
        entries=tuple(entry(n) for n in range(1, count + 1)),
        total=count if total is None else total,
        compare_url=COMPARE,
        issues_url=ISSUES,
        **changes,
    )


def release(**changes: Any) -> Release:
    """A manual release to production, waiting for one approval, unless changed."""
    return sample_release(
        **{
            "id": "r-7f3a",
            "mr_iid": 42,
            "mr_url": MR_URL,
            "branch": "pitcrew/orders-production-1.4.2",
            **changes,
        }
    )


MERGED = release(state="merged", merge_sha="f00dfeed" * 5, watched=True, merged_at=T0)
ROLLBACK_URL = f"{GITLAB}/platform/deployments/-/merge_requests/43"
ROLLBACK = ReleaseRef(
    id="r-8b2c",
    title="Roll back orders to 1.4.1 in production",
    requester="UCAROL",
    mr_iid=43,
    mr_url=ROLLBACK_URL,
)
STAGING = release(env="staging", policy="auto", approvals_needed=0)
UNDEPLOY = release(kind="undeploy", to_version="", from_version="1.4.1", watched=True)
HEADER = f":rocket: *Deploy orders 1.4.2 to production* · {MR}"


def one_line(rendered: Rendered) -> str:
    """The message's text, checked to be what its single section shows."""
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": rendered.text}}
    ]
    assert rendered.text
    return rendered.text


def texts(rendered: Rendered) -> list[str]:
    """Every mrkdwn text a person can see, block by block."""
    seen = []
    for block in rendered.blocks:
        if block["type"] == "section":
            seen.append(block["text"]["text"])
        elif block["type"] == "context":
            seen.extend(element["text"] for element in block["elements"])
    return seen


def actions(rendered: Rendered) -> list[dict[str, Any]]:
    return [block for block in rendered.blocks if block["type"] == "actions"]


def assert_within_limits(rendered: Rendered) -> None:
    assert len(rendered.blocks) <= MAX_BLOCKS
    for block in rendered.blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= MAX_SECTION
        if block["type"] == "context":
            assert all(0 < len(e["text"]) <= MAX_SECTION for e in block["elements"])


# --------------------------------------------------------------------------------------------
# Where the release stands: the second line of the message

STAGES: list[tuple[Release, str]] = [
    (
        release(state="requested", mr_iid=None, mr_url=None),
        ":hourglass_flowing_sand: Opening the merge request…",
    ),
    (release(), ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"),
    (
        replace(STAGING, state="waiting_pipeline"),
        ":hourglass_flowing_sand: Waiting for the MR pipeline, then merges by itself",
    ),
    (
        release(state="approved", approvals=("UALICE",)),
        ":twisted_rightwards_arrows: Merging when the MR pipeline passes",
    ),
    (
        replace(STAGING, state="approved", held_by="ULOCKER"),
        ":lock: Held: *staging* is locked by <@ULOCKER> — merges when it is unlocked",
    ),
    (
        release(state="merging", approvals=("UALICE",)),
        ":twisted_rightwards_arrows: Merging when the MR pipeline passes",
    ),
    (MERGED, ":twisted_rightwards_arrows: Merged — waiting for the rollout"),
    (
        replace(MERGED, watched=False),
        ":twisted_rightwards_arrows: Merged — waiting for the GitOps pipeline",
    ),
    (
        replace(MERGED, state="deploying", deploy_pipeline=DEPLOY_PIPELINE),
        f":gear: Deploying — <{DEPLOY_PIPELINE.url}|GitOps pipeline #77> running",
    ),
    (
        replace(MERGED, state="deploying"),
        ":gear: Deploying — GitOps pipeline running",
    ),
    (
        replace(
            MERGED,
            state="deploying",
            deploy_pipeline=replace(DEPLOY_PIPELINE, status="success"),
        ),
        f":gear: Deploying — <{DEPLOY_PIPELINE.url}|GitOps pipeline #77> passed",
    ),
    (
        replace(
            MERGED,
            env="staging",
            state="deployed",
            watched=False,
            deploy_pipeline=replace(DEPLOY_PIPELINE, status="success"),
        ),
        f":heavy_check_mark: Deployed by <{DEPLOY_PIPELINE.url}|GitOps pipeline #77>"
        " — *staging*'s cluster is not watched",
    ),
    (
        replace(MERGED, env="staging", state="deployed", watched=False),
        ":heavy_check_mark: Merged, no GitOps pipeline ran — *staging*'s cluster is not watched",
    ),
    (
        replace(MERGED, state="rolling_out", rollout_started_at=T0),
        ":arrows_counterclockwise: Rolling out in *production*",
    ),
    (
        replace(
            MERGED,
            state="healthy",
            rollout_started_at=T0 + timedelta(minutes=5),
            finished_at=T0 + timedelta(minutes=7, seconds=10),
        ),
        ":large_green_circle: Healthy in *production* after 2 min 10 s",
    ),
    (
        replace(MERGED, state="healthy"),
        ":large_green_circle: Healthy in *production*",
    ),
    (
        replace(MERGED, state="failed", failure="the rollout exceeded its progress deadline"),
        ":red_circle: Failed: the rollout exceeded its progress deadline"
        " — `/rollback orders production`",
    ),
    (
        release(state="failed", failure="MR pipeline #12 failed"),
        ":red_circle: Failed: MR pipeline #12 failed",
    ),
    (release(state="failed"), ":red_circle: Failed: unknown reason"),
    (
        release(state="rejected", ended_by="UALICE"),
        f":no_entry_sign: Rejected by <@UALICE> — {MR} closed",
    ),
    (release(state="rejected"), f":no_entry_sign: Rejected — {MR} closed"),
    (
        release(state="expired", failure="not approved within 24 h"),
        f":zzz: Expired: not approved within 24 h — {MR} closed",
    ),
    (
        replace(
            MERGED,
            state="not_seen",
            failure="merged, but production never ran 1.4.2 within 30 min of the merge — is"
            " the GitOps controller syncing?",
        ),
        ":grey_question: Not seen: merged, but production never ran 1.4.2 within 30 min of the"
        " merge — is the GitOps controller syncing? — `/rollback orders production`",
    ),
    (
        replace(
            MERGED,
            state="failed",
            failed_step="unreviewed_merge",
            failure="!42 was merged at `b2b2b2b2`, not at the reviewed `a1a1a1a1`: what was"
            " merged is not what was approved",
        ),
        ":rotating_light: Merged unreviewed: !42 was merged at `b2b2b2b2`, not at the reviewed"
        " `a1a1a1a1`: what was merged is not what was approved — `/rollback orders production`",
    ),
    (
        release(state="superseded", superseded_by=ROLLBACK),
        f":fast_forward: Superseded by *<{ROLLBACK_URL}|Roll back orders to 1.4.1 in"
        f" production>* (requested by <@UCAROL>) — {MR} closed",
    ),
    (
        replace(MERGED, state="superseded", superseded_by=ROLLBACK),
        f":fast_forward: Superseded by *<{ROLLBACK_URL}|Roll back orders to 1.4.1 in"
        " production>* (requested by <@UCAROL>)",
    ),
    (
        replace(
            MERGED,
            state="superseded",
            superseded_by=ROLLBACK,
            failed_step="rollout",
            failure="the rollout failed: ProgressDeadlineExceeded",
        ),
        f":fast_forward: Superseded by *<{ROLLBACK_URL}|Roll back orders to 1.4.1 in"
        " production>* (requested by <@UCAROL>) — it had failed: the rollout failed:"
        " ProgressDeadlineExceeded",
    ),
    (
        release(state="refused", mr_iid=None, mr_url=None, failure="the manifest is invalid"),
        ":no_entry: Refused: the manifest is invalid",
    ),
    # an undeploy
    (
        replace(UNDEPLOY, state="merged", merged_at=T0, merge_sha="f00dfeed" * 5),
        ":twisted_rightwards_arrows: Merged — waiting for the workload to leave",
    ),
    (
        replace(
            UNDEPLOY,
            state="removed",
            merged_at=T0,
            rollout_started_at=T0,
            finished_at=T0 + timedelta(seconds=4),
        ),
        ":wastebasket: Removed from *production* after 4 s — its workload is gone",
    ),
    (
        replace(UNDEPLOY, state="deployed", env="staging", watched=False, merged_at=T0),
        ":heavy_check_mark: Out of *staging*'s git — its cluster is not watched",
    ),
    (
        replace(
            UNDEPLOY,
            state="not_seen",
            merged_at=T0,
            failure="merged, but orders was not seen leaving production within 30 min of the"
            " merge — is the GitOps controller pruning?",
        ),
        ":grey_question: Not seen: merged, but orders was not seen leaving production within"
        " 30 min of the merge — is the GitOps controller pruning?",
    ),
]


def test_every_state_has_a_stage_line() -> None:
    assert {r.state for r, _ in STAGES} == set(get_args(ReleaseState))


@pytest.mark.parametrize(
    ("rel", "line"), STAGES, ids=[f"{r.state}-{i}" for i, (r, _) in enumerate(STAGES)]
)
def test_the_message_says_where_the_release_stands(rel: Release, line: str) -> None:
    rendered = render_release(rel, approvers=APPROVERS)
    assert stage(rel, approvers=APPROVERS) == line
    title = HEADER if rel.mr_iid else ":rocket: *Deploy orders 1.4.2 to production* · no MR"
    if rel.kind == "undeploy":
        title = f":wastebasket: *Undeploy orders from production* · {MR}"
    if rel.env == "staging":
        title = title.replace("production", "staging")
    assert rendered.blocks[0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"{title}\n{line}"},
    }
    assert rendered.text == f"{rel.title} — {line}"
    assert_within_limits(rendered)


def test_an_undeploy_says_what_leaves_and_has_no_changelog() -> None:
    rendered = render_release(UNDEPLOY, approvers=APPROVERS)
    assert texts(rendered)[:2] == [
        f":wastebasket: *Undeploy orders from production* · {MR}\n"
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall",
        "`1.4.1` → removed · requested by <@UREQ>\n"
        "Policy: 1 approval from @sre-oncall (an undeploy always needs approval)",
    ]
    assert not any("Changelog" in text for text in texts(rendered))
    gone = replace(UNDEPLOY, state="removed", merged_at=T0)
    assert one_line(render_note(gone, "removed")) == (
        ":wastebasket: *orders is gone from production*: its workload was deleted from the cluster."
    )
    failed = replace(
        UNDEPLOY, state="failed", merged_at=T0, failed_step="deploy_pipeline", failure="x"
    )
    assert "revert <" in render_note(failed, "failed").text
    assert "/rollback" not in render_note(failed, "failed").text


def test_a_rollback_says_so_in_its_title() -> None:
    rollback = release(kind="rollback", from_version="1.4.2", to_version="1.4.1")
    assert texts(render_release(rollback, approvers=APPROVERS))[0] == (
        f":rewind: *Roll back orders to 1.4.1 in production* · {MR}\n"
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    )


def test_approvals_so_far_count_in_the_waiting_line() -> None:
    two = release(approvals_needed=2, approvals=("UALICE",))
    assert stage(two, approvers="<!subteam^S0SRE>") == (
        ":hourglass_flowing_sand: Waiting for approval — 1/2 from <!subteam^S0SRE>"
    )


def test_a_rejection_in_gitlab_names_the_gitlab_user_without_pinging() -> None:
    closed = release(state="rejected", ended_by="<!channel> dave")
    assert stage(closed, approvers=APPROVERS) == (
        f":no_entry_sign: Rejected by &lt;!channel&gt; dave — {MR} closed"
    )


# --------------------------------------------------------------------------------------------
# The details and the context line


def test_details_say_versions_requester_and_policy() -> None:
    rendered = render_release(release(), approvers=APPROVERS)
    assert texts(rendered)[1] == (
        "`1.4.1` → `1.4.2` · requested by <@UREQ>\nPolicy: manual: 1 approval from @sre-oncall"
    )


def test_details_of_an_auto_release_to_an_empty_environment() -> None:
    first = replace(STAGING, state="waiting_pipeline", from_version=None)
    assert texts(render_release(first, approvers=APPROVERS))[1] == (
        "nothing → `1.4.2` · requested by <@UREQ>\nPolicy: auto: merges when the MR pipeline passes"
    )


def test_details_name_the_approvers_and_the_lock_deployed_through() -> None:
    rel = release(
        state="approved",
        approvals_needed=2,
        approvals=("UALICE", "UBOB"),
        override=LockOverride(holder="ULOCKER", reason="black friday freeze", since=T0, by="UREQ"),
    )
    assert texts(render_release(rel, approvers=APPROVERS))[1] == (
        "`1.4.1` → `1.4.2` · requested by <@UREQ>\n"
        "Policy: manual: 2 approvals from @sre-oncall\n"
        "Approved by <@UALICE>, <@UBOB>\n"
        ":unlock: Deployed through the lock of <@ULOCKER> (black friday freeze),"
        " on <@UREQ>'s say-so"
    )


def test_context_line_gives_the_id_team_and_the_time_each_reader_reads_in_their_zone() -> None:
    paris = timezone(timedelta(hours=1))
    rendered = render_release(
        release(created_at=datetime(2026, 11, 22, 10, 30, tzinfo=paris)), approvers=APPROVERS
    )
    assert rendered.blocks[-1] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "release `r-7f3a` · team payments · requested"
                " <!date^1795339800^{date_short_pretty} {time}|2026-11-22 09:30 UTC>",
            }
        ],
    }


# --------------------------------------------------------------------------------------------
# Buttons


def test_approve_and_reject_carry_the_release_id_and_nothing_else() -> None:
    rendered = render_release(release(), approvers=APPROVERS)
    assert actions(rendered) == [
        {
            "type": "actions",
            "block_id": "release",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": "r-7f3a",
                },
                {
                    "type": "button",
                    "action_id": REJECT,
                    "text": {"type": "plain_text", "text": "Reject"},
                    "style": "danger",
                    "value": "r-7f3a",
                },
            ],
        }
    ]
    assert (APPROVE, REJECT) == ("release_approve", "release_reject")
    still_waiting = actions(
        render_release(release(approvals_needed=2, approvals=("UALICE",)), approvers=APPROVERS)
    )
    assert [e["value"] for e in still_waiting[0]["elements"]] == ["r-7f3a", "r-7f3a"]


@pytest.mark.parametrize(
    "rel", [r for r, _ in STAGES], ids=[f"{r.state}-{i}" for i, (r, _) in enumerate(STAGES)]
)
def test_buttons_show_only_while_an_approval_is_useful(rel: Release) -> None:
    shown = actions(render_release(rel, approvers=APPROVERS))
    assert bool(shown) == (rel.state == "awaiting_approval")


# --------------------------------------------------------------------------------------------
# Changelog


def changelog_of(rel: Release) -> str:
    return texts(render_release(rel, approvers=APPROVERS))[2]


def test_a_changelog_line_links_the_commit_and_its_issues() -> None:
    log = Changelog(
        entries=(entry(1, title="Fix rounding of totals", issues=("12", "3")),),
        total=1,
        compare_url=COMPARE,
        issues_url=ISSUES,
    )
    sha = entry(1).sha
    assert changelog_of(release(changelog=log)) == (
        f"*Changelog* (1 commit · <{COMPARE}|compare>)\n"
        f"• <{GITLAB}/shop/orders/-/commit/{sha}|{sha[:8]}> Fix rounding of totals"
        f" <{ISSUES}/12|#12> <{ISSUES}/3|#3> — Alice Martin"
    )


CHANGELOG_LINES: list[tuple[str, tuple[str, ...], str | None, str]] = [
    # (commit title, issues its message references, issues URL, the line after the sha link)
    (
        "Fix checkout rounding (#131)",
        ("131",),
        ISSUES,
        f"Fix checkout rounding (<{ISSUES}/131|#131>) — Alice Martin",
    ),
    (
        # "Fixes #12" in the commit's body: the one issue the title does not show
        "Fix checkout rounding (#131)",
        ("131", "12"),
        ISSUES,
        f"Fix checkout rounding (<{ISSUES}/131|#131>) <{ISSUES}/12|#12> — Alice Martin",
    ),
    (
        "Revert #12, then fix #12 and #3 properly",
        ("12", "3"),
        ISSUES,
        f"Revert <{ISSUES}/12|#12>, then fix <{ISSUES}/12|#12> and <{ISSUES}/3|#3> properly"
        " — Alice Martin",
    ),
    ("Fix checkout rounding (#131)", ("131",), None, "Fix checkout rounding (#131) — Alice Martin"),
    ("Fix #12", ("12", "40"), None, "Fix #12 #40 — Alice Martin"),
    (
        # not references: another project's issue, an anchor, an HTML entity
        "Bump other/lib#7, see docs/#8 & it&#39;s done",
        ("40",),
        ISSUES,
        f"Bump other/lib#7, see docs/#8 &amp; it&amp;#39;s done <{ISSUES}/40|#40> — Alice Martin",
    ),
    (
        # a reference the clip would cut is left out whole, and shown after the title
        "x" * 115 + " (#1311)",
        ("1311",),
        ISSUES,
        "x" * 115 + f" (… <{ISSUES}/1311|#1311> — Alice Martin",
    ),
    (
        "\u202e(#5) \x00<!here>",
        ("5",),
        ISSUES,
        f"(<{ISSUES}/5|#5>) &lt;!here&gt; — Alice Martin",
    ),
]


@pytest.mark.parametrize(("title", "issues", "issues_url", "line"), CHANGELOG_LINES)
def test_a_changelog_line_shows_each_issue_once(
    title: str, issues: tuple[str, ...], issues_url: str | None, line: str
) -> None:
    log = Changelog(entries=(entry(1, title=title, issues=issues),), total=1, issues_url=issues_url)
    sha = entry(1).sha
    assert changelog_of(release(changelog=log)).split("\n")[1] == (
        f"• <{GITLAB}/shop/orders/-/commit/{sha}|{sha[:8]}> {line}"
    )


def test_issues_without_an_issue_tracker_are_plain_numbers() -> None:
    log = Changelog(entries=(entry(1, issues=("12",)),), total=1)
    sha = entry(1).sha
    assert changelog_of(release(changelog=log)) == (
        f"*Changelog* (1 commit)\n"
        f"• <{GITLAB}/shop/orders/-/commit/{sha}|{sha[:8]}> Commit number 1 #12 — Alice Martin"
    )


def test_the_changelog_shows_five_commits_then_how_many_more() -> None:
    shown = changelog_of(release(changelog=changelog(7))).split("\n")
    assert shown[0] == f"*Changelog* (7 commits · <{COMPARE}|compare>)"
    assert [line.split("> ", 1)[1] for line in shown[1:6]] == [
        f"Commit number {n} — Alice Martin" for n in range(1, 6)
    ]
    assert shown[6:] == ["… and 2 more"]


def test_more_counts_the_commits_gitlab_did_not_list() -> None:
    shown = changelog_of(release(changelog=changelog(3, total=40))).split("\n")
    assert len(shown) == 5
    assert shown[-1] == "… and 37 more"


def test_exactly_five_commits_need_no_more_line() -> None:
    shown = changelog_of(release(changelog=changelog(5))).split("\n")
    assert len(shown) == 6
    assert not any(line.startswith("…") for line in shown)


def test_a_rollback_lists_the_commits_leaving() -> None:
    rollback = release(kind="rollback", changelog=changelog(2))
    assert changelog_of(rollback).startswith(f"*Commits leaving* (2 commits · <{COMPARE}|compare>)")


@pytest.mark.parametrize(
    ("kind", "log", "line"),
    [
        ("deploy", Changelog(), "*Changelog:* no commits between the two versions"),
        (
            "deploy",
            Changelog(unavailable="tag 1.4.1 not found in shop/orders"),
            "*Changelog:* not available (tag 1.4.1 not found in shop/orders)",
        ),
        (
            "rollback",
            Changelog(unavailable="GitLab answered 503 <html>"),
            "*Commits leaving:* not available (GitLab answered 503 &lt;html&gt;)",
        ),
    ],
)
def test_without_a_changelog_the_message_says_why(kind: str, log: Changelog, line: str) -> None:
    assert changelog_of(release(kind=kind, changelog=log)) == line


# --------------------------------------------------------------------------------------------
# People's text never pings, links or breaks the message


def test_commit_titles_and_authors_are_escaped() -> None:
    hostile = ChangelogEntry(
        sha="0123456789abcdef",
        title="<!channel> R&D > ops <https://evil|click>",
        author="<@UBOSS> & co",
        url=f"{GITLAB}/shop/orders/-/commit/0123456789abcdef",
    )
    log = Changelog(entries=(hostile,), total=1)
    assert changelog_of(release(changelog=log)).split("\n")[1] == (
        f"• <{GITLAB}/shop/orders/-/commit/0123456789abcdef|01234567>"
        " &lt;!channel&gt; R&amp;D &gt; ops &lt;https://evil|click&gt; — &lt;@UBOSS&gt; &amp; co"
    )


def test_no_user_text_reaches_slack_unescaped() -> None:
    ping = "<!channel> & <@UBOSS> >"
    rel = release(
        state="failed",
        team=ping,
        failure=ping,
        merge_sha="f00d",
        changelog=Changelog(
            entries=(replace(entry(1), title=ping, author=ping),), total=1, unavailable=None
        ),
        override=LockOverride(holder=ping, reason=ping, since=T0, by="UREQ"),
    )
    rendered = render_release(rel, approvers=APPROVERS)
    everything = json.dumps(rendered.blocks) + rendered.text
    assert "<!channel>" not in everything
    assert "<@UBOSS>" not in everything
    assert "&lt;!channel&gt; &amp; &lt;@UBOSS&gt; &gt;" in texts(rendered)[0]
    for kind in get_args(NoteKind):
        note = render_note(rel, kind, by=ping)
        assert "<!channel>" not in note.text
        assert "<@UBOSS>" not in note.text


def test_huge_inputs_stay_within_block_kit_limits() -> None:
    long_title = "x" * 10_000
    entries = tuple(
        replace(entry(n, issues=tuple(str(i) for i in range(50))), title=long_title)
        for n in range(500)
    )
    rel = release(
        state="failed",
        failure="y" * 10_000,
        approvals=tuple(f"U{n:08d}" for n in range(200)),
        override=LockOverride(holder="ULOCKER", reason="z" * 10_000, since=T0, by="UREQ"),
        changelog=Changelog(entries=entries, total=5000, compare_url=COMPARE, issues_url=ISSUES),
    )
    rendered = render_release(rel, approvers=APPROVERS)
    assert_within_limits(rendered)
    assert rendered.text
    for kind in get_args(NoteKind):
        assert_within_limits(render_note(rel, kind, by="UALICE"))


def test_a_long_commit_title_is_clipped_on_its_line() -> None:
    log = Changelog(entries=(entry(1, title="x" * 10_000),), total=1)
    line = changelog_of(release(changelog=log)).split("\n")[1]
    assert f"> {'x' * 119}… — Alice Martin" in line
    assert len(line) < 300


# --------------------------------------------------------------------------------------------
# Thread notes


def test_every_note_is_one_non_empty_section() -> None:
    rel = replace(
        MERGED,
        state="healthy",
        approvals=("UALICE",),
        override=LockOverride(holder="ULOCKER", reason="freeze", since=T0, by="UREQ"),
        mr_pipeline=replace(MR_PIPELINE, status="success"),
        deploy_pipeline=replace(DEPLOY_PIPELINE, status="success"),
    )
    for kind in get_args(NoteKind):
        for by in (None, "UALICE"):
            assert one_line(render_note(rel, kind, by=by)).strip()
            assert one_line(ReleaseBlocks().note(rel, kind, by=by)) == one_line(
                render_note(rel, kind, by=by)
            )


NOTES: list[tuple[Release, NoteKind, str | None, str]] = [
    (
        release(
            override=LockOverride(
                holder="ULOCKER", reason="black friday freeze", since=T0, by="UREQ"
            )
        ),
        "override",
        "UREQ",
        ":unlock: <@UREQ> chose *Deploy anyway* through <@ULOCKER>'s lock on *production*:"
        " “black friday freeze”",
    ),
    (
        release(override=LockOverride(holder="ULOCKER", reason="", since=T0, by="UREQ")),
        "override",
        "UREQ",
        ":unlock: <@UREQ> chose *Deploy anyway* through <@ULOCKER>'s lock on *production*",
    ),
    (
        release(state="approved", approvals=("UALICE",)),
        "approved",
        "UALICE",
        ":white_check_mark: Approved by <@UALICE> (1/1)",
    ),
    (release(), "mr_pipeline", None, ":hourglass_flowing_sand: MR pipeline pending"),
    (
        release(mr_pipeline=MR_PIPELINE),
        "mr_pipeline",
        None,
        f":hourglass_flowing_sand: MR pipeline <{MR_PIPELINE.url}|#12> running",
    ),
    (
        release(mr_pipeline=replace(MR_PIPELINE, status="success")),
        "mr_pipeline",
        None,
        f":white_check_mark: MR pipeline <{MR_PIPELINE.url}|#12> passed",
    ),
    (
        release(mr_pipeline=replace(MR_PIPELINE, status="failed")),
        "mr_pipeline",
        None,
        f":x: MR pipeline <{MR_PIPELINE.url}|#12> failed",
    ),
    (
        release(mr_pipeline=replace(MR_PIPELINE, status="canceled", url=None)),
        "mr_pipeline",
        None,
        ":x: MR pipeline #12 canceled",
    ),
    (
        replace(STAGING, state="approved", held_by="ULOCKER"),
        "held",
        "ULOCKER",
        ":lock: The MR pipeline passed, but *staging* is locked by <@ULOCKER>: this release"
        " merges as soon as it is unlocked.",
    ),
    (
        release(state="merging"),
        "merging",
        None,
        f":twisted_rightwards_arrows: Merging {MR} when its pipeline passes",
    ),
    (
        MERGED,
        "merged",
        None,
        f":twisted_rightwards_arrows: Merged {MR}. Waiting for the rollout.",
    ),
    (
        replace(MERGED, watched=False),
        "merged",
        "dave",
        f":twisted_rightwards_arrows: Merged {MR} in GitLab by dave, outside Pitcrew. Waiting"
        " for the GitOps pipeline (*production*'s cluster is not watched).",
    ),
    (replace(MERGED, state="deploying"), "deploy_pipeline", None, ":gear: GitOps pipeline started"),
    (
        replace(MERGED, state="deploying", deploy_pipeline=DEPLOY_PIPELINE),
        "deploy_pipeline",
        None,
        f":gear: GitOps pipeline <{DEPLOY_PIPELINE.url}|#77> running",
    ),
    (
        replace(MERGED, deploy_pipeline=replace(DEPLOY_PIPELINE, status="success")),
        "deploy_pipeline",
        None,
        f":white_check_mark: GitOps pipeline <{DEPLOY_PIPELINE.url}|#77> passed",
    ),
    (
        replace(MERGED, deploy_pipeline=replace(DEPLOY_PIPELINE, status="failed")),
        "deploy_pipeline",
        None,
        f":x: GitOps pipeline <{DEPLOY_PIPELINE.url}|#77> failed",
    ),
    (
        replace(MERGED, deploy_pipeline=replace(DEPLOY_PIPELINE, status="canceled")),
        "deploy_pipeline",
        None,
        f":x: GitOps pipeline <{DEPLOY_PIPELINE.url}|#77> canceled",
    ),
    (
        replace(MERGED, state="rolling_out"),
        "rollout",
        None,
        ":arrows_counterclockwise: Rolling out `1.4.2` in *production*…",
    ),
    (
        replace(
            MERGED,
            state="healthy",
            rollout_started_at=T0,
            finished_at=T0 + timedelta(minutes=2, seconds=10),
        ),
        "healthy",
        None,
        ":large_green_circle: *orders 1.4.2 is healthy in production* after 2 min 10 s",
    ),
    (
        replace(
            MERGED,
            state="healthy",
            rollout_started_at=T0,
            finished_at=T0 + timedelta(hours=1, minutes=4, seconds=59),
        ),
        "healthy",
        None,
        ":large_green_circle: *orders 1.4.2 is healthy in production* after 1 h 4 min",
    ),
    (
        replace(MERGED, state="failed", failure="the rollout exceeded its progress deadline"),
        "failed",
        None,
        ":red_circle: *Deploy orders 1.4.2 to production failed*: the rollout exceeded its"
        " progress deadline.",
    ),
    (
        release(state="failed", failure="MR pipeline #12 failed"),
        "failed",
        None,
        ":red_circle: *Deploy orders 1.4.2 to production failed*: MR pipeline #12 failed.",
    ),
    (
        release(state="rejected", ended_by="UALICE"),
        "rejected",
        "UALICE",
        f":no_entry_sign: Rejected by <@UALICE>: {MR} is closed.",
    ),
    (
        release(state="rejected", ended_by="dave"),
        "rejected",
        "dave",
        f":no_entry_sign: {MR} was closed in GitLab by dave: the release stops here.",
    ),
    (
        release(state="rejected"),
        "rejected",
        None,
        f":no_entry_sign: {MR} was closed in GitLab: the release stops here.",
    ),
    (
        release(state="expired", failure="not approved within 24 h"),
        "expired",
        None,
        f":zzz: Expired (not approved within 24 h): {MR} is closed.",
    ),
    (
        replace(STAGING, state="approved"),
        "no_mr_pipeline",
        None,
        f":fast_forward: No MR pipeline started for {MR}: merging it as in a GitOps repo without"
        " CI.",
    ),
    (
        replace(
            MERGED,
            state="failed",
            failed_step="unreviewed_merge",
            approvals=("UCAROL", "UDAVE"),
            failure="!42 was merged at `b2b2b2b2`, not at the reviewed `a1a1a1a1`",
        ),
        "unreviewed_merge",
        "Alice Martin",
        ":rotating_light: *Deploy orders 1.4.2 to production: what was merged is not what was"
        " approved* (merged in GitLab by Alice Martin). !42 was merged at `b2b2b2b2`, not at the"
        f" reviewed `a1a1a1a1`. Approvers: <@UCAROL>, <@UDAVE>. Check {MR}, and roll back if in"
        " doubt.",
    ),
    (
        replace(STAGING, state="deployed", merged_at=T0),
        "deployed",
        None,
        ":heavy_check_mark: No GitOps pipeline ran for the merge: *staging* counts as deployed."
        " Its cluster is not watched, so Pitcrew cannot verify it.",
    ),
    (
        replace(
            MERGED,
            state="not_seen",
            failure="merged, but production never ran 1.4.2 within 30 min of the merge — is the"
            " GitOps controller syncing?",
        ),
        "not_seen",
        None,
        ":grey_question: <@UREQ> merged, but production never ran 1.4.2 within 30 min of the"
        " merge — is the GitOps controller syncing? A late rollout will still be followed here.",
    ),
    (
        release(state="superseded", superseded_by=ROLLBACK),
        "superseded",
        None,
        f":fast_forward: Superseded by *<{ROLLBACK_URL}|Roll back orders to 1.4.1 in"
        f" production>* (requested by <@UCAROL>). {MR} is closed.",
    ),
    (
        replace(MERGED, state="superseded", superseded_by=ROLLBACK),
        "superseded",
        None,
        f":fast_forward: Superseded by *<{ROLLBACK_URL}|Roll back orders to 1.4.1 in"
        " production>* (requested by <@UCAROL>).",
    ),
    (
        replace(UNDEPLOY, state="removed", merged_at=T0),
        "removed",
        None,
        ":wastebasket: *orders is gone from production*: its workload was deleted from the"
        " cluster.",
    ),
    (
        replace(UNDEPLOY, state="merged", merged_at=T0),
        "merged",
        None,
        f":twisted_rightwards_arrows: Merged {MR}. Waiting for the workload to leave *production*.",
    ),
    (
        replace(UNDEPLOY, state="deployed", env="staging", watched=False, merged_at=T0),
        "deployed",
        None,
        ":heavy_check_mark: orders is out of *staging*'s git. Its cluster is not watched, so"
        " Pitcrew cannot verify that the workload is gone.",
    ),
]


def test_every_note_kind_has_an_exact_example() -> None:
    assert {kind for _, kind, _, _ in NOTES} == set(get_args(NoteKind))


@pytest.mark.parametrize(
    ("rel", "kind", "by", "line"), NOTES, ids=[f"{k}-{i}" for i, (_, k, _, _) in enumerate(NOTES)]
)
def test_thread_notes(rel: Release, kind: NoteKind, by: str | None, line: str) -> None:
    rendered = render_note(rel, kind, by=by)
    if rel.rollback_to is not None:  # the button comes after the text (tested below)
        assert [b["type"] for b in rendered.blocks[1:]] == ["actions"]
        rendered = Rendered(text=rendered.text, blocks=rendered.blocks[:1])
    assert one_line(rendered) == line


ROLLOUT_FAILED = replace(
    MERGED,
    state="failed",
    failed_step="rollout",
    failure="the rollout failed: ProgressDeadlineExceeded",
    rollout_id="prod/Deployment/orders/orders/3",
    rollout_progress=Progress(replicas=3, updated=1, ready=3, available=3, total=4),
    problems=(
        PodProblem(
            pod="orders-5c9-x",
            container="orders",
            reason="CrashLoopBackOff",
            message="panic: no PAYMENTS_KEY",
            restarts=6,
        ),
    ),
)


def test_a_failed_rollout_is_told_with_its_pods_problems_and_a_roll_back_button() -> None:
    rendered = render_note(ROLLOUT_FAILED, "failed")
    assert rendered.blocks[0]["text"]["text"] == (
        ":red_circle: *Deploy orders 1.4.2 to production failed*: the rollout failed:"
        " ProgressDeadlineExceeded · new pods 0/1 ready · old pods 3/3 serving.\n"
        ":mag: New pods: `orders-5c9-x` orders — CrashLoopBackOff (restarted 6×): panic: no"  # noqa: RUF001
        " PAYMENTS_KEY"
    )
    [button] = rendered.blocks[1]["elements"]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        "release_roll_back",
        ROLLOUT_FAILED.id,  # the release's id: the version is read from it at click time
        "Roll back to 1.4.1",
    )
    assert button["confirm"]["text"]["text"] == (
        "Runs `/rollback orders production to 1.4.1` as you: a merge request that follows"
        " production's policy, approvals included."
    )


def test_the_message_of_a_failed_rollout_says_what_its_pods_do() -> None:
    assert stage(ROLLOUT_FAILED, approvers=APPROVERS) == (
        ":red_circle: Failed: the rollout failed: ProgressDeadlineExceeded · new pods 0/1 ready"
        " · old pods 3/3 serving — `/rollback orders production`"
    )
    rolling = replace(
        ROLLOUT_FAILED,
        state="rolling_out",
        failure=None,
        failed_step=None,
        rollout_progress=Progress(replicas=3, updated=2, ready=3, available=3, total=4),
    )
    assert stage(rolling, approvers=APPROVERS) == (
        ":arrows_counterclockwise: Rolling out in *production* · new pods 1/2 ready"
        " · old pods 2/2 serving"
    )


@pytest.mark.parametrize(
    ("rel", "hint"),
    [
        pytest.param(
            replace(ROLLOUT_FAILED, kind="rollback"),
            "Go to a version you name with `/rollback orders production to <version>`.",
            id="a-failed-rollback",
        ),
        pytest.param(
            replace(ROLLOUT_FAILED, from_version=None),
            "Roll back with `/rollback orders production`.",
            id="no-previous-version",
        ),
    ],
)
def test_a_failure_without_a_button_says_how_to_roll_back(rel: Release, hint: str) -> None:
    rendered = render_note(rel, "failed")
    assert [b["type"] for b in rendered.blocks] == ["section"]
    assert rendered.text.splitlines()[-1] == hint


# --------------------------------------------------------------------------------------------
# Answers to the requester


def test_message_is_render_release() -> None:
    rel = release()
    assert ReleaseBlocks().message(rel, approvers=APPROVERS) == render_release(
        rel, approvers=APPROVERS
    )


def test_opened_a_manual_release() -> None:
    rendered = ReleaseBlocks().opened(release(), channel="C0DEPLOYS", approvers=APPROVERS)
    assert one_line(rendered) == (
        f":white_check_mark: Opened {MR} *Deploy orders 1.4.2 to production*"
        " (`1.4.1` → `1.4.2`). It needs 1 approval from @sre-oncall. Follow it in <#C0DEPLOYS>."
    )


def test_opened_an_auto_release_in_a_channel_named_by_name() -> None:
    rendered = ReleaseBlocks().opened(STAGING, channel="#payments-<deploys>", approvers="")
    assert one_line(rendered) == (
        f":white_check_mark: Opened {MR} *Deploy orders 1.4.2 to staging*"
        " (`1.4.1` → `1.4.2`). It merges when its pipeline passes."
        " Follow it in #payments-&lt;deploys&gt;."
    )


def test_working_help_refused_and_click_answers() -> None:
    views = ReleaseBlocks()
    assert one_line(views.working("deploy orders <1.4.2> to production")) == (
        ":hourglass_flowing_sand: Working on it: checking how to deploy orders &lt;1.4.2&gt;"
        " to production…"
    )
    assert one_line(views.help("Usage: `/deploy <app> <version> to <env>`")) == (
        "Usage: `/deploy &lt;app&gt; &lt;version&gt; to &lt;env&gt;`"
    )
    assert one_line(views.refused("orders already runs 1.4.2 in production")) == (
        ":no_entry: Orders already runs 1.4.2 in production"
    )
    assert one_line(views.click_answer("Approved: merging.")) == "Approved: merging."


def test_lock_prompt_asks_before_deploying_through_a_lock() -> None:
    now = T0 + timedelta(hours=2, minutes=5)
    lock = Lock(env="production", holder="ULOCKER", since=T0, reason="black friday <!here>")
    rendered = ReleaseBlocks().lock_prompt(
        lock, request_id="req-9c1", what="Deploy orders 1.4.2 to production", now=now
    )
    text = (
        ":lock: *production* is locked by <@ULOCKER> (2 h 5 min ago):"
        " “black friday &lt;!here&gt;”.\nDeploy anyway? The override is recorded and shown in"
        " the release's thread."
    )
    assert rendered.text == text
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "lock",
            "elements": [
                {
                    "type": "button",
                    "action_id": DEPLOY_ANYWAY,
                    "text": {"type": "plain_text", "text": "Deploy anyway"},
                    "style": "danger",
                    "value": "req-9c1",
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Deploy through a lock?"},
                        "text": {
                            "type": "mrkdwn",
                            "text": "Deploy orders 1.4.2 to production while production is locked.",
                        },
                        "confirm": {"type": "plain_text", "text": "Deploy anyway"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                    },
                }
            ],
        },
    ]
    assert DEPLOY_ANYWAY == "release_deploy_anyway"


def test_lock_prompt_without_a_reason() -> None:
    lock = Lock(env="staging", holder="ULOCKER", since=T0)
    now = T0 + timedelta(minutes=45)
    rendered = ReleaseBlocks().lock_prompt(lock, request_id="req-1", what="x", now=now)
    assert rendered.text.startswith(":lock: *staging* is locked by <@ULOCKER> (45 min ago).\n")


def test_lock_prompt_for_a_lock_taken_just_now() -> None:
    lock = Lock(env="staging", holder="ULOCKER", since=T0)
    rendered = ReleaseBlocks().lock_prompt(lock, request_id="req-1", what="x", now=T0)
    assert rendered.text.startswith(":lock: *staging* is locked by <@ULOCKER> (just now).\n")


def test_command_errors_quote_the_user_escaped() -> None:
    error = ReleaseCommandError("No app “<!channel>” — apps are orders", usage=DEPLOY_USAGE)
    assert one_line(ReleaseBlocks().error(error)) == (
        ":warning: No app “&lt;!channel&gt;” — apps are orders\n"
        "Usage: `/deploy &lt;app&gt; &lt;version&gt; to &lt;env&gt;` or"
        " `/deploy &lt;app&gt; from &lt;env&gt; to &lt;env&gt;` — e.g."
        " `/deploy orders 1.4.2 to staging`"
    )


# --------------------------------------------------------------------------------------------
# Hostile text from GitLab and people


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_comes_out_as_text(evil: str) -> None:
    hostile_entry = ChangelogEntry(
        sha="0123456789abcdef",
        title=f"{evil} (#7)",
        author=evil,
        url=f"{GITLAB}/shop/orders/-/commit/0123456789abcdef",
        issues=("7", "8"),
    )
    lock = LockOverride(holder=evil, reason=evil, since=T0, by="UREQ")
    rel = release(
        team=evil,
        failure=evil,
        merge_sha="f00d",
        ended_by=evil,
        held_by=evil,
        override=lock,
        mr_pipeline=replace(MR_PIPELINE, status=evil),
        deploy_pipeline=replace(DEPLOY_PIPELINE, status=evil),
        changelog=Changelog(
            entries=(hostile_entry,) * 3, total=9, compare_url=COMPARE, issues_url=ISSUES
        ),
    )
    links = (f"{GITLAB}/",)
    mentions = ("@UREQ", "#C0DEPLOYS")
    unavailable = replace(rel, changelog=Changelog(unavailable=evil))
    views = ReleaseBlocks()
    rendered = [
        render_release(replace(rel, state=state), approvers=APPROVERS)
        for state in ("awaiting_approval", "approved", "deploying", "failed", "rejected")
    ]
    rendered += [render_note(rel, kind, by=evil) for kind in get_args(NoteKind)]
    rendered += [
        render_release(unavailable, approvers=APPROVERS),
        views.working(evil),
        views.opened(rel, channel=evil, approvers=APPROVERS),
        views.opened(rel, channel="C0DEPLOYS", approvers=APPROVERS),
        views.lock_prompt(
            Lock(env=evil, holder=evil, since=T0, reason=evil), request_id="r", what=evil, now=T0
        ),
        views.help(evil),
        views.error(ReleaseCommandError(evil, usage=evil)),
    ]
    for message in rendered:
        assert_inert(message, links=links, mentions=mentions)


# --------------------------------------------------------------------------------------------
# A /deploy that must wait for the release before it


def test_a_deploy_blocked_by_a_release_waiting_for_approval_offers_reject() -> None:
    blocked = ReleaseBlocks().blocked(release(), can_reject=True)
    text = (
        f":no_entry: *<{MR_URL}|Deploy orders 1.4.2 to production>* (requested by <@UREQ>) is"
        " waiting for approval: it must merge, or be rejected, before another deploy of orders"
        " to *production*."
    )
    assert texts(blocked) == [text]
    [buttons] = actions(blocked)
    [button] = buttons["elements"]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        REJECT,
        "r-7f3a",
        "Reject it",
    )
    assert button["confirm"]["text"]["text"] == (
        "Deploy orders 1.4.2 to production: its MR is closed."
    )


def test_a_deploy_blocked_for_someone_who_may_not_reject_has_no_button() -> None:
    held = replace(STAGING, state="approved", held_by="ULOCKER")
    blocked = ReleaseBlocks().blocked(held, can_reject=False)
    assert one_line(blocked) == (
        f":no_entry: *<{MR_URL}|Deploy orders 1.4.2 to staging>* (requested by <@UREQ>) is"
        " held by a lock: it must merge, or be rejected, before another deploy of orders to"
        " *staging*."
    )


def test_a_release_being_opened_right_now_asks_to_try_again() -> None:
    opening = release(state="requested", mr_iid=None, mr_url=None)
    assert one_line(ReleaseBlocks().blocked(opening, can_reject=True)) == (
        ":hourglass_flowing_sand: A release of orders to *production* is being opened right now"
        " (requested by <@UREQ>): try again in a moment."
    )


def test_refusals_are_plain_text_whatever_gitlab_said() -> None:
    refused = ReleaseBlocks().refused("GitLab refused: <!channel> <https://evil|click> \u202e")
    assert one_line(refused) == (
        ":no_entry: GitLab refused: &lt;!channel&gt; &lt;https://evil|click&gt; "
    )
    assert one_line(ReleaseBlocks().only_requester("UBOB")) == (
        ":no_entry: Only <@UBOB>, who asked, can confirm this."
    )


def test_a_release_that_supersedes_another_says_which() -> None:
    rollback = release(
        kind="rollback",
        to_version="1.4.1",
        from_version="1.4.2",
        supersedes=ReleaseRef(
            id="r-7f3a", title="Deploy orders 1.4.2 to production", requester="UBOB",
            mr_iid=42, mr_url=MR_URL,
        ),
    )  # fmt: skip
    assert (
        f":fast_forward: Supersedes *<{MR_URL}|Deploy orders 1.4.2 to production>* (requested by"
        " <@UBOB>)" in texts(render_release(rollback, approvers=APPROVERS))[1]
    )
