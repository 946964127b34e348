"""Rollout messages exactly as people read them in Slack, within Block Kit's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.adapters.slack.blocks.common import MAX_BLOCKS, MAX_SECTION, Rendered
from bot.adapters.slack.blocks.pipelines import STATUS_DISPLAY
from bot.adapters.slack.blocks.rollouts import (
    PHASE_EMOJI,
    ROLL_BACK,
    RolloutBlocks,
    format_pods,
    format_rollout_duration,
    render_failure,
    render_problems,
    render_recovered,
    render_rollout,
)
from bot.domain.releases import RollbackOffer
from bot.domain.rollouts import DEADLINE_EXCEEDED, ImageChange, PodProblem, Progress, Rollout
from tests.unit.adapters.hostile import HOSTILE, assert_inert

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
REGISTRY = "registry.example.com/shop/orders"
WHERE = "Deployment orders/orders · generation 2 · context prod"

ROLLING = Rollout(
    id="prod/Deployment/orders/orders/2",
    context="prod",
    kind="Deployment",
    namespace="orders",
    name="orders",
    generation=2,
    images=(ImageChange(container="api", old=f"{REGISTRY}:1.4.1", new=f"{REGISTRY}:1.4.2"),),
    phase="progressing",
    message='Waiting for deployment "orders" rollout to finish: 2 out of 4 new replicas...',
    progress=Progress(replicas=4, updated=2, ready=4, available=4, total=5),
    started_at=T0,
    progressed_at=T0 + timedelta(seconds=20),
)
SUCCEEDED = replace(
    ROLLING,
    phase="succeeded",
    progress=Progress(replicas=4, updated=4, ready=4, available=4),
    finished_at=T0 + timedelta(seconds=48),
)
FAILED = replace(
    ROLLING,
    phase="failed",
    reason=DEADLINE_EXCEEDED,
    progress=Progress(replicas=4, updated=2, ready=3, available=3, total=5),
    finished_at=T0 + timedelta(minutes=10, seconds=20),
)
RECOVERED = replace(
    SUCCEEDED, recovered=True, reason=DEADLINE_EXCEEDED, finished_at=T0 + timedelta(seconds=758)
)
CRASH = PodProblem(
    pod="orders-7d9f8-x2x",
    container="api",
    reason="CrashLoopBackOff",
    message="panic: no DATABASE_URL",
    restarts=5,
)
UNSCHEDULABLE = PodProblem(
    pod="orders-7d9f8-q8z",
    reason="Unschedulable",
    message="0/3 nodes are available: 3 Insufficient cpu.",
)


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def message(rendered: Rendered, *, where: str = WHERE) -> str:
    """The headline, checked to be the fallback text and the section, above the context line."""
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": rendered.text}},
        context(where),
    ]
    return rendered.text


def reply(rendered: Rendered) -> str:
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": rendered.text}}
    ]
    return rendered.text


def render(rollout: Rollout) -> str:
    return message(render_rollout(rollout, app="orders", env="production"))


# --------------------------------------------------------------------------------------------
# The rollout message


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        pytest.param(
            Progress(replicas=3, updated=1, ready=3, available=3, total=4),
            "new pods 0/1 ready · old pods 3/3 serving",
            id="first-new-pod",
        ),
        pytest.param(
            Progress(replicas=3, updated=0, ready=3, available=3, total=3),
            "no new pods yet (of 3) · old pods 3/3 serving",
            id="not-started",
        ),
        pytest.param(
            Progress(replicas=3, updated=3, ready=2, available=2, total=3),
            "new pods 2/3 ready",
            id="old-gone",
        ),
    ],
)
def test_progress_says_what_the_new_pods_and_the_old_ones_do(progress: Progress, text: str) -> None:
    assert format_pods(progress) == text


def test_a_failure_reply_names_the_problems_and_offers_to_roll_back() -> None:
    offer = RollbackOffer(id="0a1b2c3d4e5f", app="orders", env="production", version="1.4.1")
    rendered = RolloutBlocks().failure(
        replace(FAILED, problems=(CRASH,)), app="orders", env="production", offer=offer
    )
    assert rendered.blocks[0] == render_problems([CRASH]).blocks[0]
    [button] = rendered.blocks[1]["elements"]
    assert button["action_id"] == ROLL_BACK
    assert button["text"] == {"type": "plain_text", "text": "Roll back to 1.4.1"}
    assert button["value"] == "0a1b2c3d4e5f"  # a server-side record's id, nothing else
    assert button["confirm"]["text"]["text"] == (
        "Runs `/rollback orders production to 1.4.1` as you: a merge request that follows"
        " production's policy, approvals included."
    )


def test_a_failure_reply_without_a_known_previous_version_has_no_button() -> None:
    rendered = render_failure(
        replace(FAILED, problems=()), app="orders", env="production", offer=None
    )
    assert reply(rendered) == ":mag: New pods: none reports a problem."


def test_rolling_out() -> None:
    assert render(ROLLING) == (
        ":arrows_counterclockwise: *orders* 1.4.1 → 1.4.2 rolling out in *production*"
        " · new pods 1/2 ready · old pods 3/3 serving"
    )


def test_rolled_out() -> None:
    assert render(SUCCEEDED) == (
        ":white_check_mark: *orders* 1.4.2 rolled out in *production* in 48 s"
    )


def test_rolled_out_while_nobody_watched_has_no_duration() -> None:
    assert render(replace(SUCCEEDED, started_at=None)) == (
        ":white_check_mark: *orders* 1.4.2 rolled out in *production*"
    )


def test_failed() -> None:
    assert render(FAILED) == (
        ":x: *orders* 1.4.2 failed in *production*: ProgressDeadlineExceeded"
        " · new pods 0/2 ready · old pods 3/3 serving"
    )


def test_recovered_message() -> None:
    assert render(RECOVERED) == (
        ":white_check_mark: *orders* 1.4.2 rolled out in *production* in 12 min 38 s,"
        " after failing: ProgressDeadlineExceeded"
    )


def test_superseded() -> None:
    superseded = replace(
        ROLLING, phase="superseded", superseded_by="prod/Deployment/orders/orders/3"
    )
    assert render(superseded) == (
        ":fast_forward: *orders* 1.4.1 → 1.4.2 superseded in *production* by a newer rollout"
    )


def test_a_first_sight_rollout_shows_only_the_new_version() -> None:
    unknown_old = replace(
        ROLLING, images=(ImageChange(container="api", old=None, new=f"{REGISTRY}:1.4.2"),)
    )
    assert render(unknown_old).startswith(
        ":arrows_counterclockwise: *orders* 1.4.2 rolling out in *production* · "
    )


def test_a_rollout_without_an_image_change_says_so() -> None:
    restart = replace(
        ROLLING,
        images=(ImageChange(container="api", old=f"{REGISTRY}:1.4.1", new=f"{REGISTRY}:1.4.1"),),
    )
    assert render(restart).startswith(
        ":arrows_counterclockwise: *orders* 1.4.1 (no image change) rolling out in *production*"
    )
    assert render(replace(restart, phase="succeeded", finished_at=SUCCEEDED.finished_at)) == (
        ":white_check_mark: *orders* 1.4.1 rolled out in *production* in 48 s"
    )


def test_containers_that_moved_alike_read_as_one_version() -> None:
    both = replace(
        ROLLING,
        images=(
            ImageChange(container="api", old=f"{REGISTRY}:1.4.1", new=f"{REGISTRY}:1.4.2"),
            ImageChange(container="worker", old=f"{REGISTRY}:1.4.1", new=f"{REGISTRY}:1.4.2"),
            ImageChange(container="proxy", old="envoy:v1.29.1", new="envoy:v1.29.1"),
        ),
    )
    assert render(both).startswith(":arrows_counterclockwise: *orders* 1.4.1 → 1.4.2 rolling out")


def test_containers_that_moved_differently_are_named() -> None:
    mixed = replace(
        ROLLING,
        images=(
            ImageChange(container="api", old=f"{REGISTRY}:1.4.1", new=f"{REGISTRY}:1.4.2"),
            ImageChange(container="proxy", old="envoy:v1.29.1", new="envoy:v1.30.0"),
            ImageChange(container="metrics", old="exporter:2.0", new="exporter:2.0"),
        ),
    )
    assert render(mixed).startswith(
        ":arrows_counterclockwise: *orders* api 1.4.1 → 1.4.2, proxy v1.29.1 → v1.30.0 rolling out"
    )
    assert render(replace(mixed, phase="failed", reason="ProgressDeadlineExceeded")).startswith(
        ":x: *orders* api 1.4.2, proxy v1.30.0 failed in *production*"
    )


def test_a_daemon_set_and_a_stateful_set_say_what_they_are() -> None:
    daemon = replace(ROLLING, kind="DaemonSet", namespace="monitoring", name="node-agent")
    rendered = render_rollout(daemon, app="node-agent", env="staging")
    assert message(rendered, where="DaemonSet monitoring/node-agent · generation 2 · context prod")


def test_everything_from_the_cluster_is_escaped() -> None:
    odd = replace(
        FAILED,
        reason="<!channel> & more",
        namespace="a<b",
        context="<ctx>",
        images=(ImageChange(container="api", old=None, new="not an <image>"),),
    )
    rendered = render_rollout(odd, app="orders", env="prod&uction")
    assert message(
        rendered, where="Deployment a&lt;b/orders · generation 2 · context &lt;ctx&gt;"
    ) == (
        ":x: *orders* not an &lt;image&gt; failed in *prod&amp;uction*: &lt;!channel&gt; &amp; more"
        " · new pods 0/2 ready · old pods 3/3 serving"
    )


def test_phase_emoji_are_the_pipelines() -> None:
    pipelines = {
        "progressing": STATUS_DISPLAY["running"][0],
        "succeeded": STATUS_DISPLAY["success"][0],
        "failed": STATUS_DISPLAY["failed"][0],
        "superseded": STATUS_DISPLAY["skipped"][0],
    }
    assert dict(PHASE_EMOJI) == pipelines


def test_huge_version_lists_stay_within_limits() -> None:
    many = replace(
        ROLLING,
        images=tuple(
            ImageChange(container=f"c{i}-{'x' * 60}", old=f"img:{i}", new=f"img:{i + 1}")
            for i in range(200)
        ),
    )
    rendered = render_rollout(many, app="orders", env="production")
    assert len(rendered.blocks) <= MAX_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION for b in rendered.blocks)
    assert "…" in rendered.text


# --------------------------------------------------------------------------------------------
# Thread replies


def test_one_problem_reads_as_one_line() -> None:
    assert reply(render_problems([CRASH])) == (
        ":mag: New pods: `orders-7d9f8-x2x` api — CrashLoopBackOff (restarted 5×):"  # noqa: RUF001
        " panic: no DATABASE_URL"
    )


def test_problems_are_listed_most_severe_first_with_the_pods_they_hit() -> None:
    problems = [
        UNSCHEDULABLE,
        CRASH,
        replace(CRASH, pod="orders-7d9f8-a1b", restarts=2),
        replace(CRASH, pod="orders-7d9f8-c3d", restarts=1),
        PodProblem(pod="orders-7d9f8-k1p", container="api", reason="ImagePullBackOff"),
        PodProblem(pod="orders-7d9f8-m2n", container="proxy", reason="OOMKilled", restarts=1),
        replace(UNSCHEDULABLE, pod="orders-7d9f8-z9y"),
    ]
    assert reply(render_problems(problems)) == (
        ":mag: New pods:\n"
        "• `orders-7d9f8-k1p` api — ImagePullBackOff\n"
        "• `orders-7d9f8-m2n` proxy — OOMKilled (restarted 1×)\n"  # noqa: RUF001
        "• `orders-7d9f8-x2x` (and 2 other pods) api — CrashLoopBackOff (restarted 5×):"  # noqa: RUF001
        " panic: no DATABASE_URL\n"
        "• `orders-7d9f8-q8z` (and 1 other pod) — Unschedulable:"
        " 0/3 nodes are available: 3 Insufficient cpu."
    )


def test_more_than_five_problems_are_counted() -> None:
    problems = [
        PodProblem(pod=f"orders-{i}", container=f"c{i}", reason="CrashLoopBackOff")
        for i in range(7)
    ]
    text = reply(render_problems(problems))
    assert text.count("\n• ") == 5
    assert text.endswith("• `orders-4` c4 — CrashLoopBackOff\n… and 2 more")


def test_no_problem_reported() -> None:
    assert reply(render_problems([])) == ":mag: New pods: none reports a problem."


def test_container_messages_are_flattened_clipped_and_escaped() -> None:
    trace = "Traceback (most recent call last):\n  File <app.py>\n" + "x" * 1000
    text = reply(render_problems([replace(CRASH, message=trace)]))
    assert "\n" not in text
    assert ": Traceback (most recent call last): File &lt;app.py&gt; xxx" in text
    assert text.endswith("x…")
    assert len(text) < 450


def test_many_long_problems_stay_within_a_section() -> None:
    problems = [
        PodProblem(pod="p" * 253, container=f"{i}" + "c" * 62, reason="R" * 200, message="m" * 5000)
        for i in range(30)
    ]
    rendered = render_problems(problems)
    assert len(rendered.blocks) == 1
    assert len(rendered.text) <= MAX_SECTION


def test_recovered_reply() -> None:
    assert reply(render_recovered(RECOVERED, app="orders", env="production")) == (
        ":white_check_mark: *orders* 1.4.2 recovered in *production* after"
        " ProgressDeadlineExceeded: rolled out in 12 min 38 s"
    )
    assert reply(
        render_recovered(replace(RECOVERED, started_at=None), app="orders", env="production")
    ) == (
        ":white_check_mark: *orders* 1.4.2 recovered in *production* after"
        " ProgressDeadlineExceeded: rolled out"
    )


def test_the_views_port_renders_the_same() -> None:
    views = RolloutBlocks()
    assert views.rollout(ROLLING, app="orders", env="production") == render_rollout(
        ROLLING, app="orders", env="production"
    )
    failed = replace(FAILED, problems=(CRASH,))
    assert views.failure(failed, app="orders", env="production", offer=None) == render_problems(
        [CRASH]
    )
    assert views.recovered(RECOVERED, app="orders", env="production") == render_recovered(
        RECOVERED, app="orders", env="production"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (48, "48 s"),
        (59.6, "1 min"),
        (60, "1 min"),
        (192, "3 min 12 s"),
        (3600, "1 h"),
        (3840, "1 h 4 min"),
        (-3, "0 s"),
    ],
)
def test_durations_read_as_words(seconds: float, text: str) -> None:
    assert format_rollout_duration(seconds) == text


# --------------------------------------------------------------------------------------------
# Hostile text from the cluster


def test_control_and_bidi_characters_are_removed_from_what_the_cluster_says() -> None:
    odd = replace(FAILED, reason="Progress\x00Deadline\u202eExceeded", namespace="ord\x1bers")
    rendered = render_rollout(odd, app="orders", env="production")
    assert message(
        rendered, where="Deployment orders/orders · generation 2 · context prod"
    ).startswith(":x: *orders* 1.4.2 failed in *production*: ProgressDeadlineExceeded · ")
    problem = replace(CRASH, message="panic:\x00 no \u2066DATABASE_URL\u2069\x1b[0m")
    assert reply(render_problems([problem])) == (
        ":mag: New pods: `orders-7d9f8-x2x` api — CrashLoopBackOff (restarted 5×):"  # noqa: RUF001
        " panic: no DATABASE_URL[0m"
    )


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_cluster_text_comes_out_as_text(evil: str) -> None:
    hostile = replace(
        FAILED,
        context=evil,
        namespace=evil,
        name=evil,
        reason=evil,
        message=evil,
        recovered=True,
        images=(
            ImageChange(container=evil, old=f"{REGISTRY}:{evil}", new=f"{REGISTRY}:{evil}x"),
            ImageChange(container="api", old=None, new=evil),
        ),
    )
    problem = PodProblem(pod=evil, container=evil, reason=evil, message=evil, restarts=2, pods=3)
    for phase in ("progressing", "succeeded", "failed", "superseded"):
        rollout = replace(hostile, phase=phase)
        assert_inert(render_rollout(rollout, app=evil, env=evil))
    assert_inert(render_recovered(hostile, app=evil, env=evil))
    assert_inert(render_problems([problem]))
    assert_inert(render_problems([replace(problem, pod=f"{evil}{n}") for n in range(8)]))
