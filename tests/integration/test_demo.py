"""``pitcrew demo`` plays its scenes against the sandbox and prints readable channels."""

from __future__ import annotations

import re

import pytest

from bot.demo import run_demo
from bot.domain.errors import PitcrewError


async def test_the_demo_prints_the_channels_as_a_person_reads_them() -> None:
    lines: list[str] = []
    assert await run_demo(out=lines.append) == 0
    text = "\n".join(lines)
    assert "GitLab posts a pipeline event ............ 200 queued" in text
    assert "GitLab retries the same event ............ 200 duplicate" in text
    assert "someone posts with a wrong token ......... 401 invalid X-Gitlab-Token" in text
    assert "Slack calls: 2 posts, 1 update, 1 throttled" in text
    assert (
        "#payments-deploys\n"
        "pitcrew: :white_check_mark: Pitcrew is up: webhooks in, one living message per key out"
        " (edited 1×)\n"  # noqa: RUF001
        "  ↳ pitcrew: details go in the thread, keyed too: a retry never posts them twice"
    ) in text
    # the releases scene: straight through, approved by someone else, failed, rolled back
    assert "(only bob sees) You are not an approver for production (approvers: @sre-oncall)." in (
        text
    )
    assert ":heavy_check_mark: Deployed by GitOps pipeline #" in text
    # the failed release, then superseded by the rollback: both messages link each other
    assert (
        ":red_circle: *Deploy orders 1.5.0 to production failed*: the rollout failed:"
        " ProgressDeadlineExceeded · new pods 0/1 ready · old pods 3/3 serving.\n"
        "             :mag: New pods: `orders-"
    ) in text
    assert "CrashLoopBackOff (restarted 6×): panic: no PAYMENTS_KEY\n" in text  # noqa: RUF001
    # one story per change: the release tells its rollouts, which get no message of their own
    assert "*orders* 1.5.0 failed" not in text
    assert "*orders* 1.4.1 rolled out" not in text
    # the failure reply's button, clicked by someone who may not approve: the rollback waits
    assert "  bob clicks [Roll back to 1.4.1]\n" in text
    assert (
        "(only bob sees) :white_check_mark: Opened !3 *Roll back orders to 1.4.1 in production*"
        " (`1.5.0` → `1.4.1`). It needs 1 approval from @sre-oncall."
    ) in text
    # the App Home: bob's release in progress; carol approves it from there
    assert (
        "│ *:rocket: Your releases in progress* (1)\n"
        "      │ *Roll back orders to 1.4.1 in production* · !3\n"
        "      │ :hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    ) in text
    assert (
        "│ *:hourglass_flowing_sand: Waiting for your approval* (1)\n"
        "      │ *Roll back orders to 1.4.1 in production* · !3\n"
    ) in text
    assert "  carol clicks [Approve] on the Home tab\n" in text
    assert "(direct message to carol) Approved (1/1). Merging." in text
    assert "│ :x: invoices 2.1.0 in production — ProgressDeadlineExceeded · 10 min ago" in text
    assert (
        ":fast_forward: Superseded by *Roll back orders to 1.4.1 in production* (requested by"
        " @bob) — it had failed: the rollout failed: ProgressDeadlineExceeded"
    ) in text
    assert ":rewind: *Roll back orders to 1.4.1 in production* · !3" in text
    assert ":fast_forward: Supersedes *Deploy orders 1.5.0 to production* (requested by @bob)" in (
        text
    )
    assert (
        "  ↳ pitcrew: :large_green_circle: *orders 1.4.1 is healthy in production* after " in text
    )
    # help, sharing, times
    assert "(only dave sees) */deploy* `<app> <version> to <env>" in text
    assert "(everyone in the channel sees) Shared by @carol · `/whatsinprod search-api`" in text
    assert re.search(r'in Paris, reads "until \w+ \d\d:\d\d"; notifications show the UTC', text)
    # break-glass access, then an undeploy
    assert "*Access granted until " in text
    assert "@bob (direct messages)\npitcrew: :lock: Your break-glass access to *orders*" in text
    assert "The RoleBinding `pitcrew-access-bob` is gone from *production*." in text
    assert "still in *production*" not in text
    assert ":wastebasket: Removed from *production* — its workload is gone" in text
    played = re.search(r"\(played 11 scene\(s\) in ([0-9.]+) s\)", text)
    assert played is not None


async def test_the_pipelines_scene_reads_like_a_team_channel() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["pipelines"], out=lines.append) == 0
    text = re.sub(r"#\d+", "#N", "\n".join(lines))  # pipeline ids depend on the shop's history
    assert (
        "pitcrew: :x: *failed* · shop/orders · pipeline #N\n         Ref: main    Commit: "
    ) in text
    assert "  ↳ pitcrew: :x: Pipeline #N failed on main — commit " in text
    assert (
        "by @alice\n             1 job failed:\n             • test: unit — script failed" in text
    )
    assert (
        "  ↳ pitcrew: :white_check_mark: main is fixed — pipeline #N passed after 1 failure"
        " (also sent to the channel)"
    ) in text
    assert "new-logo" not in text  # a passing feature branch is not the team's business


async def test_the_locks_scene_shows_a_freeze_seen_and_expired() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["locks"], out=lines.append) == 0
    text = "\n".join(lines)
    assert "(only alice sees) :lock: You locked *production* — black friday freeze · until" in text
    assert (
        "(only bob sees) Your lock was not set: ask @alice, or `/unlock production` first" in text
    )
    assert "#releases\npitcrew: :lock: *production* locked by @alice — black friday freeze" in text
    assert (
        "pitcrew: :hourglass_flowing_sand: *production* is open again: the lock by @alice "
        "(black friday freeze) expired after 2 h"
    ) in text


async def test_the_rollouts_scene_shows_a_success_and_a_failure_with_reasons() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["rollouts"], out=lines.append) == 0
    text = "\n".join(lines)
    assert "pitcrew: :white_check_mark: *orders* 1.4.2 rolled out in *production* in " in text
    assert "pitcrew: :x: *invoices* 2.1.0 failed in *production*: ProgressDeadlineExceeded" in text
    assert "CrashLoopBackOff" in text
    assert "panic: DATABASE_URL is not set" in text


async def test_the_whatsinprod_scene_flags_the_drifting_app() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["whatsinprod"], out=lines.append) == 0
    text = "\n".join(lines)
    assert "(only carol sees) :mag: *all apps* in *production* · 3 apps · 1 drifting" in text
    assert "(only carol sees) *orders* `1.4.1` · payments · changed just now by Bob Stone" in text
    assert (
        "*search-api* `3.2.1` · search · changed just now by Bob Stone · 2/2 ready"
        " · :warning: drift: cluster runs 3.2.0"
    ) in text


async def test_the_access_and_undeploy_scenes_grant_take_back_and_remove() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["access", "undeploy"], out=lines.append) == 0
    text = "\n".join(lines)
    assert (
        "(only bob sees) :warning: “12h” is longer than break-glass access may last: at most 8 h"
        in text
    )
    assert "(only bob sees) You are not an approver for production (approvers: @sre-oncall)." in (
        text
    )
    assert "(only carol sees) • :key: @bob: `admin` on *orders* in *production* until " in text
    assert (
        "  ↳ pitcrew: :white_check_mark: The RoleBinding `pitcrew-access-bob` is gone from"
        " *production*."
    ) in text
    assert re.search(
        r":lock: Access ended .* \(the access expired\) — !2 merged, the RoleBinding is gone from"
        r" \*production\*",
        text,
    )
    assert (
        "  ↳ pitcrew: :wastebasket: *search-api is gone from production*: its workload was deleted"
        " from the cluster. (also sent to the channel)"
    ) in text
    assert "(only bob sees) *production* not deployed" in text


async def test_an_unknown_scene_is_named_with_the_choices() -> None:
    with pytest.raises(
        PitcrewError,
        match=r"no scene 'nope'; scenes are: foundation, help, pipelines, whatsinprod, locks,"
        r" rollouts, releases, access, undeploy, autopilot, insights$",
    ):
        await run_demo(scenes=["nope"], out=lambda _: None)


async def test_the_autopilot_scene_deploys_a_tag_promotes_on_monday_and_holds_on_friday() -> None:
    lines: list[str] = []
    assert await run_demo(scenes=["autopilot"], out=lines.append) == 0
    text = re.sub(r"http://127\.0\.0\.1:\d+", "http://gitlab", "\n".join(lines))
    # the tag deployed itself to staging, and the issue heard of it
    assert ":rocket: *Deploy orders 1.6.0 to staging* · !1" in text
    assert "`1.4.2` → `1.6.0` · requested by the autopilot (new version)" in text
    assert "GitLab issue shop/orders#1 (deployed::staging):" in text
    # Monday's promotion waited for approval, the Friday freeze held it, Monday it shipped
    assert "`1.4.1` → `1.6.0` · requested by the autopilot (scheduled promotion)" in text
    assert "pitcrew: :lock: *production* locked by pitcrew — weekend freeze · until" in text
    assert (
        "  ↳ pitcrew: :lock: Approved, but *production* is now locked by pitcrew: the merge is"
        " held, and goes ahead as soon as it is unlocked."
    ) in text
    assert "  ↳ pitcrew: :large_green_circle: *orders 1.6.0 is healthy in production* after" in text
    assert "GitLab issue shop/orders#1 (deployed::production):" in text
    assert (
        "      Released to **production** in orders **1.6.0** — [Deploy orders 1.6.0 to"
        " production](http://gitlab/platform/deployments/-/merge_requests/2), through Pitcrew."
    ) in text
