"""The pipeline message as a person reads it in Slack, exactly, and within Block Kit's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest

from bot.adapters.gitlab.payloads import PipelineHook, parse_event, pipeline_observed
from bot.adapters.slack.blocks.common import escape
from bot.adapters.slack.blocks.pipelines import (
    STATUS_DISPLAY,
    format_duration,
    humanize_failure,
    render_failure,
    render_fixed,
    render_pipeline,
)
from bot.domain.pipelines import Job, MergeRequestRef, Pipeline, PipelineStatus, apply
from tests.unit.adapters.hostile import HOSTILE, assert_inert

FIXTURES = Path(__file__).parents[2] / "fixtures" / "gitlab"
PROJECT = "http://192.168.64.1:3005/gitlab-org/gitlab-test"
PIPELINE = "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
COMMIT = "http://example.com/gitlab-org/gitlab-test/commit/bcbb5ec396a2c0f828686f14fac9b80b780504f2"
MR = f"{PROJECT}/merge_requests/1"


@pytest.fixture
def documented() -> Pipeline:
    """GitLab's documented Pipeline Hook example, as Pitcrew holds it."""
    hook = parse_event("Pipeline Hook", (FIXTURES / "pipeline_hook.json").read_bytes())
    assert isinstance(hook, PipelineHook)
    return apply(None, pipeline_observed(hook)).state


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def test_the_documented_pipeline(documented: Pipeline) -> None:
    text, blocks = render_pipeline(documented)
    assert text == "gitlab-org/gitlab-test pipeline #31 passed on !1: test"
    assert blocks == [
        {
            "type": "section",
            "text": mrkdwn(
                f":white_check_mark: *passed* · <{PROJECT}|gitlab-org/gitlab-test>"
                f" · <{PIPELINE}|pipeline #31>"
            ),
        },
        {
            "type": "section",
            "fields": [
                mrkdwn(f"*Ref*\n<{MR}|!1 Test>"),
                mrkdwn(f"*Commit*\n<{COMMIT}|bcbb5ec3> test"),
                mrkdwn("*Author*\nUser"),
                mrkdwn("*Duration*\n1m 3s"),
            ],
        },
        {
            "type": "context",
            "elements": [mrkdwn(":white_check_mark: build → :x: test → :hourglass: deploy")],
        },
    ]


def test_a_running_branch_pipeline(documented: Pipeline) -> None:
    running = replace(documented, status="running", merge_request=None, finished_at=None)
    text, blocks = render_pipeline(running)
    assert text == "gitlab-org/gitlab-test pipeline #31 running on master: test"
    assert blocks[0]["text"]["text"].startswith(":arrows_counterclockwise: *running* · ")
    assert blocks[1]["fields"] == [
        mrkdwn(f"*Ref*\n<{PROJECT}/-/tree/master|master>"),
        mrkdwn(f"*Commit*\n<{COMMIT}|bcbb5ec3> test"),
        mrkdwn("*Author*\nUser"),
    ]


def test_a_tag_pipeline_links_the_tag(documented: Pipeline) -> None:
    tagged = replace(documented, merge_request=None, tag=True, ref="v1.4.2")
    _, blocks = render_pipeline(tagged)
    assert blocks[1]["fields"][0] == mrkdwn(f"*Ref*\ntag <{PROJECT}/-/tags/v1.4.2|v1.4.2>")


def test_branch_names_are_quoted_in_links_and_escaped_in_text(documented: Pipeline) -> None:
    odd = replace(documented, merge_request=None, ref="feat/<b>&|x")
    _, blocks = render_pipeline(odd)
    assert blocks[1]["fields"][0] == mrkdwn(
        f"*Ref*\n<{PROJECT}/-/tree/feat/%3Cb%3E%26%7Cx|feat/&lt;b&gt;&amp;|x>"
    )


def test_user_text_cannot_mention_or_link(documented: Pipeline) -> None:
    sneaky = replace(
        documented,
        commit_title="Revert <!channel> & <https://evil.example|docs>",
        author_name="<@U0BOSS>",
    )
    text, blocks = render_pipeline(sneaky)
    assert "<!channel>" not in text
    assert blocks[1]["fields"][1] == mrkdwn(
        f"*Commit*\n<{COMMIT}|bcbb5ec3> Revert &lt;!channel&gt; &amp; "
        "&lt;https://evil.example|docs&gt;"
    )
    assert blocks[1]["fields"][2] == mrkdwn("*Author*\n&lt;@U0BOSS&gt;")


def test_the_failure_reply_mentions_the_author(documented: Pipeline) -> None:
    failed = replace(documented, status="failed")
    text, blocks = render_failure(failed, slack_user="U0ALICE")
    assert text == ":x: Pipeline #31 failed on !1: test-build — <@U0ALICE>"
    assert blocks == [
        {
            "type": "section",
            "text": mrkdwn(
                f":x: <{PIPELINE}|Pipeline #31> failed on <{MR}|!1 Test>"
                f" — commit <{COMMIT}|bcbb5ec3> by <@U0ALICE>"
            ),
        },
        {
            "type": "section",
            "text": mrkdwn(
                f"1 job failed:\n• test: <{PROJECT}/-/jobs/378|test-build> — script failed"
            ),
        },
    ]


def test_without_a_slack_user_the_gitlab_name_is_written_out(documented: Pipeline) -> None:
    text, blocks = render_failure(replace(documented, status="failed"))
    assert text == ":x: Pipeline #31 failed on !1: test-build — User"
    assert blocks[0]["text"]["text"].endswith(f"commit <{COMMIT}|bcbb5ec3> by User")
    # Anything that is not a Slack user id is not trusted as one.
    text, _ = render_failure(replace(documented, status="failed"), slack_user="<!here>")
    assert text.endswith("— User")


def test_a_failure_without_known_jobs_points_to_the_pipeline(documented: Pipeline) -> None:
    bare = replace(documented, status="failed", jobs=())
    text, blocks = render_failure(bare)
    assert text == ":x: Pipeline #31 failed on !1: see the pipeline — User"
    assert blocks[1] == {
        "type": "section",
        "text": mrkdwn(f"_GitLab did not say which job failed: see <{PIPELINE}|pipeline #31>._"),
    }


def test_the_fixed_reply(documented: Pipeline) -> None:
    main = replace(documented, merge_request=None, ref="main")
    text, blocks = render_fixed(main, failures=2)
    assert text == ":white_check_mark: main is fixed — pipeline #31 passed after 2 failures"
    assert blocks == [
        {
            "type": "section",
            "text": mrkdwn(
                f":white_check_mark: <{PROJECT}/-/tree/main|main> is fixed — "
                f"<{PIPELINE}|pipeline #31> passed after 2 failures"
            ),
        }
    ]
    assert render_fixed(main, failures=1).text.endswith("passed after 1 failure")
    assert render_fixed(documented, failures=1).text.startswith(":white_check_mark: !1 is fixed")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (45, "45s"), (63, "1m 3s"), (192, "3m 12s"), (3840, "1h 4m 0s"), (59.6, "1m 0s")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("script_failure", "script failed"),
        ("job_execution_timeout", "timed out"),
        ("some_new_failure", "some new failure"),
        (None, "no reason given"),
    ],
)
def test_humanize_failure(reason: str | None, expected: str) -> None:
    assert humanize_failure(reason) == expected


def test_every_status_has_an_emoji_and_a_word() -> None:
    assert set(STATUS_DISPLAY) == set(get_args(PipelineStatus))
    for emoji, word in STATUS_DISPLAY.values():
        assert emoji.startswith(":")
        assert emoji.endswith(":")
        assert word


def test_escape() -> None:
    assert escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"


# --------------------------------------------------------------------------------------------
# Limits


def assert_within_block_kit_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        if "text" in block:
            assert 0 < len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", ())) <= 10
        for item in block.get("fields", ()):
            assert 0 < len(item["text"]) <= 2000
        assert 1 <= len(block.get("elements", [None])) <= 10
        for element in block.get("elements", ()):
            assert 0 < len(element["text"]) <= 3000


def huge(documented: Pipeline) -> Pipeline:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    jobs = tuple(
        Job(
            id=1000 + i,
            name=f"integration-test-shard-{i:03d}-with-a-rather-long-name",
            stage=f"stage-{i:03d}",
            status="failed",
            failure_reason="script_failure",
            url=f"{PROJECT}/-/jobs/{1000 + i}",
            observed_at=start + timedelta(seconds=i),
        )
        for i in range(300)
    )
    return replace(
        documented,
        status="failed",
        stage_names=tuple(j.stage for j in jobs),
        jobs=jobs,
        commit_title="x" * 5000,
        author_name="y" * 500,
    )


def test_limits_hold_with_300_jobs(documented: Pipeline) -> None:
    pipeline = huge(documented)
    text, blocks = render_pipeline(pipeline)
    assert_within_block_kit_limits(blocks)
    stages = blocks[-1]["elements"][0]["text"]
    shown = stages.count(":x: stage-")
    assert stages.endswith(f"… and {300 - shown} more")
    assert 0 < shown < 300
    assert len(text) < 500

    text, blocks = render_failure(pipeline, slack_user="U0ALICE")
    assert_within_block_kit_limits(blocks)
    listing = blocks[1]["text"]["text"]
    assert listing.startswith("300 jobs failed:\n• stage-000: ")
    listed = listing.count("\n• ")
    assert listing.endswith(f"\n… and {300 - listed} more")
    assert len(text) < 500
    assert text.endswith("— <@U0ALICE>")


def test_a_list_that_fits_is_not_cut(documented: Pipeline) -> None:
    pipeline = replace(huge(documented), stage_names=(), jobs=huge(documented).jobs[:5])
    _, blocks = render_failure(pipeline)
    assert "more" not in blocks[1]["text"]["text"]
    assert blocks[1]["text"]["text"].count("\n• ") == 5


# --------------------------------------------------------------------------------------------
# Hostile text from GitLab


def test_control_and_bidi_characters_are_removed_from_the_commit_title(
    documented: Pipeline,
) -> None:
    odd = replace(documented, commit_title="Fix\x00 \x1b[31mlogin\u202e\tpage\x1b[0m")
    text, blocks = render_pipeline(odd)
    assert text == "gitlab-org/gitlab-test pipeline #31 passed on !1: Fix [31mlogin page[0m"
    assert blocks[1]["fields"][1] == mrkdwn(f"*Commit*\n<{COMMIT}|bcbb5ec3> Fix [31mlogin page[0m")


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_gitlab_text_comes_out_as_text(documented: Pipeline, evil: str) -> None:
    job = Job(
        id=378,
        name=evil,
        stage=evil,
        status="failed",
        failure_reason=evil,
        url=f"{PROJECT}/-/jobs/378",
        observed_at=datetime(2024, 5, 1, tzinfo=UTC),
    )
    mr = MergeRequestRef(iid=1, title=evil, url=MR)
    failed = replace(
        documented,
        status="failed",
        project=evil,
        ref=evil,
        commit_title=evil,
        author_name=evil,
        merge_request=mr,
        stage_names=(evil,),
        jobs=(job,),
    )
    branch = replace(failed, merge_request=None)
    tag = replace(branch, tag=True)
    links = (PROJECT, "http://example.com/")
    for pipeline in (failed, branch, tag):
        assert_inert(render_pipeline(pipeline), links=links)
        assert_inert(render_failure(pipeline), links=links)
        assert_inert(render_failure(pipeline, slack_user=evil), links=links)
        assert_inert(render_fixed(pipeline, failures=2), links=links)


def test_a_url_carrying_control_characters_is_not_linked(documented: Pipeline) -> None:
    odd = replace(documented, url=f"{PIPELINE}\u202e", commit_url=f"{COMMIT}\x00")
    _, blocks = render_pipeline(odd)
    assert blocks[0]["text"]["text"].endswith(" · pipeline #31")
    assert blocks[1]["fields"][1] == mrkdwn("*Commit*\nbcbb5ec3 test")
