"""The autopilot through the real bot (SPEC 13): tags open releases, promotions and freezes run
on a schedule, issues hear when they ship.

The bots run against the GitLab sandbox (tag push hooks, issues and their notes and labels),
the Slack sandbox and the Kubernetes sandbox, on a catalog that turns the autopilot on. Time is
the bots' injected clock, set just past the slots a test is about; nothing waits for a wall
clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gitlab as python_gitlab
import pytest

from bot.adapters.store.audit import RedisAuditLog

from .conftest import bot_environment, eventually
from .release_world import GITOPS, PRODUCTION, SOURCE, STAGING, TEAM, World, deployment
from .test_cli import _pitcrew
from .test_release_endings import applied, controller

CATALOG = """
teams:
  payments:
    channel: "#payments-deploys"
    oncall: "@payments-oncall"
environments:
  - name: staging
    policy: auto
    auto_deploy: {auto_deploy}
{staging}  - name: production
    policy: manual
    approvals: 1
    approvers: "@sre-oncall"
    channel: "#releases"
{production}apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{{env}}/deployment.yaml"
    namespace: orders
{extra}
"""


SCHEDULES = """    promote:
      from: staging
      schedule: "0 9 * * 1"
      timezone: Europe/Rome
    freeze:
      - schedule: "0 18 * * 5"
        duration: 63h
        reason: weekend freeze
        timezone: Europe/Rome
"""
STAGING_FREEZE = """    freeze:
      schedule: "0 18 * * 5"
      duration: 63h
      reason: weekend freeze
      timezone: Europe/Rome
"""


def catalog(
    tmp_path: Path,
    *,
    auto_deploy: bool = True,
    extra: str = "",
    staging: str = "",
    production: str = SCHEDULES,
) -> str:
    """orders in staging (auto, ``auto_deploy``) and production (manual, promoted from
    staging on Mondays at 09:00 in Rome, frozen from Friday 18:00 for 63 h)."""
    path = tmp_path / "catalog.yaml"
    path.write_text(
        CATALOG.format(
            auto_deploy=str(auto_deploy).lower(),
            extra=extra,
            staging=staging,
            production=production,
        )
    )
    return str(path)


class Clock:
    """The bots' clock: a fixed moment a test moves on by hand (``running``: from which time
    goes on as usual)."""

    def __init__(self, at: datetime, *, running: bool = False) -> None:
        self.now = at
        self._started = time.monotonic() if running else None

    def __call__(self) -> datetime:
        if self._started is None:
            return self.now
        return self.now + timedelta(seconds=time.monotonic() - self._started)


def midweek() -> Clock:
    """A Wednesday morning, whatever day the tests run: no promotion slot, no freeze."""
    return Clock(datetime(2026, 3, 25, 10, tzinfo=UTC), running=True)


async def tag(world: World, version: str, *, message: str = "Work") -> None:
    """A commit and its version tag on orders' repo (the Tag Push Hook goes to the bots)."""
    await asyncio.to_thread(
        world.gitlab.commit, SOURCE, {"VERSION": f"{version}\n"}, message=message, author="alice"
    )
    await asyncio.to_thread(world.gitlab.tag, SOURCE, version, user="alice")


def release_messages(world: World, channel: str = TEAM) -> list[Any]:
    return [
        m
        for m in world.slack.messages(channel)
        if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
    ]


def read(world: World, message: Any) -> str:
    return world.slack.read(message)


# --------------------------------------------------------------------------------------------
# New versions


async def test_a_pushed_tag_deploys_itself_to_staging_and_its_issue_hears_of_it(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    world: World = await start(
        clock=midweek(), CATALOG_PATH=catalog(tmp_path), RELEASE_PIPELINE_WAIT="1"
    )
    issue = world.gitlab.add_issue(SOURCE, "Totals are rounded wrong", author="alice")
    await tag(world, "1.5.0", message=f"Round totals half-up (#{issue})")

    await eventually(lambda: len(world.mrs()) == 1, within=15)
    mr = world.mrs()[0]
    assert mr["title"] == "Deploy orders 1.5.0 to staging"
    assert mr["description"].startswith("Opened by Pitcrew's autopilot: 1.5.0 is a new version.")
    await world.pipelines()
    await eventually(lambda: world.header().startswith(":heavy_check_mark:"), within=15)
    await world.quiet()

    message = read(world, world.release_message())
    assert "`1.4.1` → `1.5.0` · requested by the autopilot (new version)" in message
    assert "1.5.0" in world.gitlab.read_file(GITOPS, STAGING)
    notes = [n["body"] for n in world.gitlab.issue_notes(SOURCE, issue) if not n["system"]]
    assert len(notes) == 1, notes
    assert notes[0].startswith("Released to **staging** in orders **1.5.0** — [Deploy orders")
    assert world.gitlab.issue(SOURCE, issue)["labels"] == ["deployed::staging"]


async def test_a_tag_pushed_while_pitcrew_was_down_is_opened_by_the_reconcile_at_start(
    gitops_gitlab: Any, start: Callable[..., Any], tmp_path: Path
) -> None:
    await asyncio.to_thread(
        gitops_gitlab.commit, SOURCE, {"VERSION": "1.5.0\n"}, message="Work", author="alice"
    )
    await asyncio.to_thread(gitops_gitlab.tag, SOURCE, "1.5.0")  # no bot listens yet
    world: World = await start(clock=midweek(), CATALOG_PATH=catalog(tmp_path))
    await eventually(lambda: len(world.mrs()) == 1, within=15)
    assert world.mrs()[0]["title"] == "Deploy orders 1.5.0 to staging"
    await world.quiet()
    assert (
        world.header()
        == ":hourglass_flowing_sand: Waiting for the MR pipeline, then merges by itself"
    )


async def test_a_lost_tag_webhook_is_found_by_the_next_reconcile(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    world: World = await start(
        clock=midweek(), CATALOG_PATH=catalog(tmp_path), AUTOPILOT_INTERVAL="1"
    )
    for hook in list(world.hooks):  # GitLab's hook to Pitcrew is lost
        world.gitlab.remove_webhook(hook)
    await tag(world, "1.5.0")
    assert not any(d.event == "Tag Push Hook" for d in world.gitlab.deliveries[-3:])
    await eventually(lambda: len(world.mrs()) == 1, within=15)
    assert world.mrs()[0]["title"] == "Deploy orders 1.5.0 to staging"


async def test_a_newer_tag_supersedes_the_autopilot_release_still_waiting_for_its_pipeline(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    world: World = await start(clock=midweek(), CATALOG_PATH=catalog(tmp_path))
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="hang")
    await tag(world, "1.5.0")
    await eventually(lambda: len(world.mrs()) == 1, within=15)
    await asyncio.to_thread(world.gitlab.advance, GITOPS)
    await asyncio.to_thread(world.gitlab.advance, GITOPS)  # the MR pipeline runs, and hangs
    await world.quiet()
    assert world.mrs()[0]["head_pipeline"]["status"] == "running"

    await tag(world, "1.5.1")
    await eventually(lambda: len(world.mrs()) == 2, within=15)
    await eventually(lambda: world.mrs()[0]["state"] == "closed", within=15)
    await world.quiet()
    first, second = release_messages(world)
    assert read(world, first).splitlines()[1] == (
        ":fast_forward: Superseded by *Deploy orders 1.5.1 to staging* (requested by the"
        " autopilot) — !1 closed"
    )
    assert (
        ":fast_forward: Supersedes *Deploy orders 1.5.0 to staging* (requested by the autopilot)"
        in read(world, second)
    )

    def closing() -> list[str]:
        return [n["body"][:18] for n in world.gitlab.notes(GITOPS, 1) if not n["system"]]

    await eventually(lambda: closing() == ["Superseded by [!2]"], within=15)

    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="success")
    await world.pipelines()
    await eventually(lambda: world.mrs()[1]["state"] == "merged", within=15)
    assert "shop/orders:1.5.1" in world.gitlab.read_file(GITOPS, STAGING)


async def test_a_version_whose_release_failed_is_not_tried_again(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    world: World = await start(clock=midweek(), CATALOG_PATH=catalog(tmp_path))
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="failed")
    await tag(world, "1.5.0")
    await eventually(lambda: len(world.mrs()) == 1, within=15)
    await world.pipelines()
    await eventually(lambda: world.header().startswith(":red_circle: Failed"), within=15)

    for _ in range(2):  # the hourly reconcile, twice
        assert world.bot.autopilot is not None
        await world.bot.autopilot.reconcile()
    await world.quiet()
    assert len(world.mrs()) == 1
    audit = await RedisAuditLog(world.bot.store.redis).query(env="staging")  # type: ignore[union-attr]
    assert any(e.action == "autopilot-give-up" and e.target == "orders 1.5.0" for e in audit)

    await tag(world, "1.5.1")  # a newer version is a new chance
    await eventually(lambda: len(world.mrs()) == 2, within=15)


async def test_tags_that_are_not_versions_and_apps_that_opted_out_open_nothing(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    world: World = await start(clock=midweek(), CATALOG_PATH=catalog(tmp_path))
    await tag(world, "1.5.0-rc1")  # not a version by the default pattern
    await tag(world, "nightly")
    await world.quiet()
    assert world.bot.autopilot is not None
    await world.bot.autopilot.reconcile()
    assert world.mrs() == []

    catalog(tmp_path, extra="    auto_deploy: false")
    assert world.bot.catalog is not None
    await world.bot.catalog.reload()
    await tag(world, "1.5.0")
    await world.quiet()
    await world.bot.autopilot.reconcile()
    assert world.mrs() == []


# --------------------------------------------------------------------------------------------
# Scheduled promotions: "0 9 * * 1" in Europe/Rome

MONDAY_WINTER = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
"""Monday 09:00 in Rome, on winter time (UTC+1)."""
MONDAY_SUMMER = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
"""Monday 09:00 in Rome, on summer time since Sunday (UTC+2)."""
FRIDAY_FREEZE = datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
"""Friday 18:00 in Rome: the weekend freeze begins, for 63 h (until Monday 08:00 UTC)."""


async def staging_runs_1_4_2(gitlab: Any) -> None:
    await asyncio.to_thread(
        gitlab.commit, GITOPS, {STAGING: deployment("1.4.2")}, message="staging", author="alice"
    )


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        pytest.param(MONDAY_WINTER + timedelta(seconds=20), True, id="09:00 Rome in winter"),
        pytest.param(MONDAY_SUMMER + timedelta(seconds=20), True, id="09:00 Rome in summer"),
        pytest.param(
            MONDAY_SUMMER - timedelta(hours=1, seconds=-20), False, id="08:00 Rome in summer"
        ),
        pytest.param(MONDAY_SUMMER + timedelta(minutes=40), True, id="missed, 40 min late"),
        pytest.param(MONDAY_SUMMER + timedelta(minutes=61), False, id="missed, an hour late"),
    ],
)
async def test_a_promotion_fires_at_nine_in_rome_whatever_the_dst_and_once_when_missed(
    gitops_gitlab: Any, start: Callable[..., Any], tmp_path: Path, now: datetime, fires: bool
) -> None:
    await staging_runs_1_4_2(gitops_gitlab)
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, auto_deploy=False), clock=Clock(now), autopilot_tick=0.1
    )
    if fires:
        await eventually(lambda: len(world.mrs()) == 1, within=15)
    assert world.bot.autopilot is not None
    await world.bot.autopilot.tick()  # one more look changes nothing
    await world.quiet()
    titles = [mr["title"] for mr in world.mrs()]
    assert titles == (["Deploy orders 1.4.2 to production"] if fires else [])


async def test_a_promotion_slot_fires_once_across_replicas_and_restarts_and_waits_for_approval(
    gitops_gitlab: Any, start: Callable[..., Any], make_bot: Callable[..., Any], tmp_path: Path
) -> None:
    await staging_runs_1_4_2(gitops_gitlab)
    clock = Clock(MONDAY_WINTER + timedelta(seconds=5))
    settings = {
        "CATALOG_PATH": catalog(tmp_path, auto_deploy=False),
        "clock": clock,
        "autopilot_tick": 0.1,
    }
    world: World = await start(replicas=2, **settings)
    await eventually(lambda: release_messages(world), within=15)
    ticks = [bot.autopilot.tick() for bot in world.bots if bot.autopilot is not None]
    await asyncio.gather(*ticks)  # both replicas look at the slot at the same moment
    await world.bots[0].stop()  # the replica that fired it goes; a new pod comes
    world.bots[0] = make_bot(GITLAB_URL=world.gitlab.url, **settings)
    await world.bots[0].start()
    for bot in world.bots:  # the lease changes hands: whoever holds it looks again
        assert bot.autopilot is not None
        await bot.autopilot.tick()
    await world.quiet()
    assert len(world.mrs()) == 1

    mr = world.mrs()[0]
    assert mr["title"] == "Deploy orders 1.4.2 to production"
    assert mr["description"].startswith("Opened by Pitcrew's autopilot: a scheduled promotion.")
    message = read(world, world.release_message())
    assert world.header() == (
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    ), message
    assert "`1.4.1` → `1.4.2` · requested by the autopilot (scheduled promotion)" in message
    assert "[Approve]" in message
    assert "[Reject]" in message
    answer = await world.click("release_approve", user="carol")
    assert answer == "Approved (1/1). Merging."

    clock.now += timedelta(days=7)  # next Monday: production runs (or is getting) 1.4.2
    await world.bot.autopilot.tick()
    await world.quiet()
    assert len(world.mrs()) == 1


# --------------------------------------------------------------------------------------------
# Freeze windows: "0 18 * * 5" for 63 h in Europe/Rome


async def test_a_freeze_locks_production_as_pitcrew_and_ends_on_its_own(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock(FRIDAY_FREEZE + timedelta(seconds=10))
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, auto_deploy=False), clock=clock, autopilot_tick=0.1
    )
    await eventually(lambda: world.slack.messages("releases"), within=15)
    await world.quiet()
    announced = [read(world, m) for m in world.slack.messages("releases")]
    assert announced == [
        ":lock: *production* locked by pitcrew — weekend freeze · until 2026-03-23 08:00 UTC"
    ]
    answer = await world.slash("/lock", "")
    assert "*production* locked by pitcrew just now — weekend freeze" in answer
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert answer.startswith(
        ":lock: *production* is locked by pitcrew (just now): “weekend freeze”"
    )

    clock.now = FRIDAY_FREEZE + timedelta(hours=63, seconds=10)
    await eventually(lambda: len(world.slack.messages("releases")) == 2, within=15)
    assert read(world, world.slack.messages("releases")[-1]) == (
        ":hourglass_flowing_sand: *production* is open again: the lock by pitcrew"
        " (weekend freeze) expired after 2 days"
    )
    assert world.bot.locks is not None
    assert await world.bot.locks.lock_of("production") is None
    assert world.bot.autopilot is not None
    await world.bot.autopilot.tick()  # the window is over: nothing locks again
    assert await world.bot.locks.lock_of("production") is None


async def test_a_freeze_leaves_a_persons_lock_and_takes_over_when_it_ends(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock(FRIDAY_FREEZE - timedelta(minutes=30))
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, auto_deploy=False), clock=clock, autopilot_tick=0.1
    )
    await world.slash("/lock", "production for 1h hotfix", user="alice")
    clock.now = FRIDAY_FREEZE + timedelta(seconds=10)
    await eventually(lambda: len(world.slack.messages("releases")) == 2, within=15)
    for bot in world.bots:  # more looks say nothing more
        assert bot.autopilot is not None
        await bot.autopilot.tick()
    await world.quiet()
    assert world.bot.locks is not None
    lock = await world.bot.locks.lock_of("production")
    assert lock is not None
    assert lock.holder == "U0ALICE"
    said = [read(world, m) for m in world.slack.messages("releases")]
    assert said[1] == (
        ":lock: The scheduled freeze of *production* (weekend freeze) began, but @alice holds a"
        " lock there: theirs stands. If it ends before 2026-03-23 08:00 UTC, the freeze takes"
        " over until then."
    ), said

    clock.now = FRIDAY_FREEZE + timedelta(minutes=31)  # alice's hour is over
    await eventually(lambda: len(world.slack.messages("releases")) == 4, within=15)
    said = [read(world, m) for m in world.slack.messages("releases")]
    assert said[2].startswith(":hourglass_flowing_sand: *production* is open again: the lock by")
    assert said[3] == (
        ":lock: *production* locked by pitcrew — weekend freeze · until 2026-03-23 08:00 UTC"
    )


async def test_a_freeze_starting_between_approval_and_merge_holds_the_merge_until_it_ends(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock(FRIDAY_FREEZE - timedelta(minutes=10))
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, auto_deploy=False), clock=clock, autopilot_tick=0.1
    )
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="hang")
    await world.slash("/deploy", "orders 1.4.2 to production")
    await asyncio.to_thread(world.gitlab.advance, GITOPS)
    await asyncio.to_thread(world.gitlab.advance, GITOPS)  # the MR pipeline runs, and hangs
    assert await world.click("release_approve", user="carol") == "Approved (1/1). Merging."
    await eventually(lambda: world.mrs()[0]["merge_when_pipeline_succeeds"], within=15)

    clock.now = FRIDAY_FREEZE + timedelta(seconds=10)  # 18:00 in Rome: the freeze begins
    await eventually(lambda: world.header().startswith(":lock: Held"), within=15)
    await world.quiet()
    assert world.header() == (
        ":lock: Held: *production* is locked by pitcrew — merges when it is unlocked"
    )
    assert world.thread()[-1] == (
        ":lock: Approved, but *production* is now locked by pitcrew: the merge is held, and"
        " goes ahead as soon as it is unlocked."
    )
    assert not world.mrs()[0]["merge_when_pipeline_succeeds"]
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="success")
    await world.pipelines()  # the pipeline passes during the freeze: GitLab does not merge
    assert world.mrs()[0]["state"] == "opened"
    assert "1.4.1" in world.gitlab.read_file(GITOPS, PRODUCTION)

    clock.now = FRIDAY_FREEZE + timedelta(hours=63, seconds=10)  # Monday 09:00: it ends
    await eventually(lambda: world.mrs()[0]["state"] == "merged", within=15)
    merged = ":twisted_rightwards_arrows: Merged !1. Waiting for the rollout."
    await eventually(lambda: merged in world.thread(), within=15)
    assert "1.4.2" in world.gitlab.read_file(GITOPS, PRODUCTION)
    assert world.thread()[-3:] == [
        ":white_check_mark: MR pipeline #3 passed",
        ":twisted_rightwards_arrows: Merging !1 when its pipeline passes",
        merged,
    ]


async def test_an_automatic_release_is_held_by_a_freeze_and_goes_ahead_when_it_ends(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock(FRIDAY_FREEZE + timedelta(seconds=10))
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, staging=STAGING_FREEZE),
        clock=clock,
        autopilot_tick=0.1,
        RELEASE_PIPELINE_WAIT="1",
    )
    assert world.bot.locks is not None
    await eventually(lambda: world.bot.locks.lock_of("staging"), within=15)  # type: ignore[union-attr]
    await tag(world, "1.5.0")
    await eventually(lambda: len(world.mrs()) == 1, within=15)
    await world.pipelines()
    await eventually(lambda: world.header().startswith(":lock: Held"), within=15)
    await world.quiet()
    assert world.thread()[-1] == (
        ":lock: The MR pipeline passed, but *staging* is locked by pitcrew: this release merges"
        " as soon as it is unlocked."
    )
    assert world.mrs()[0]["state"] == "opened"

    clock.now = FRIDAY_FREEZE + timedelta(hours=63, seconds=10)  # Monday 09:00 in Rome
    await eventually(lambda: world.mrs()[0]["state"] == "merged", within=15)
    await world.pipelines()

    def staging() -> str:
        return read(world, release_messages(world)[0]).splitlines()[1]

    await eventually(lambda: staging().startswith(":heavy_check_mark:"), within=15)
    assert "1.5.0" in world.gitlab.read_file(GITOPS, STAGING)


# --------------------------------------------------------------------------------------------
# pitcrew check


async def test_check_shows_the_next_slot_of_every_schedule_in_its_own_zone(
    slack: Any, redis_url: str, tmp_path: Path
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    env["CATALOG_PATH"] = str(Path(__file__).parents[1] / "fixtures" / "catalog_autopilot.yaml")
    _, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    lines = out.splitlines()
    promote = next(line for line in lines if line.startswith("ok    promote production"))
    assert re.fullmatch(
        r"ok    promote production  from staging, next Mon \d\d \w{3} \d{4} 09:00 CES?T"
        r" \(Europe/Rome\)",
        promote,
    ), promote
    freeze = next(line for line in lines if line.startswith("ok    freeze production"))
    assert re.fullmatch(
        r"ok    freeze production   weekend freeze for 63h, next Fri \d\d \w{3} \d{4} 18:00"
        r" CES?T \(Europe/Rome\)",
        freeze,
    ), freeze


# --------------------------------------------------------------------------------------------
# Released notes


async def test_issues_and_merge_requests_hear_once_per_env_and_a_failed_note_holds_nothing(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    # no schedules, and the bots' own clock: the production rollout is watched in real time
    world: World = await start(
        CATALOG_PATH=catalog(tmp_path, production=""), RELEASE_PIPELINE_WAIT="1"
    )
    gitlab = world.gitlab
    first = gitlab.add_issue(SOURCE, "Totals are rounded wrong", author="alice")
    second = gitlab.add_issue(SOURCE, "Invoices show no currency", author="alice")
    await asyncio.to_thread(gitlab.branch, SOURCE, "fix-totals")
    await asyncio.to_thread(
        gitlab.commit,
        SOURCE,
        {"totals.py": "half-up\n"},
        message="Round totals half-up",
        author="alice",
        branch="fix-totals",
    )
    project_mrs = await asyncio.to_thread(_open_and_merge, gitlab, "fix-totals")
    await tag(world, "1.5.0", message=f"Release 1.5.0\n\nFixes #{first}, #{second}")
    gitlab.fail(f"POST /projects/*/issues/{second}/notes", status=500)

    await eventually(lambda: len(world.mrs()) == 1, within=15)
    await world.pipelines()
    await eventually(lambda: world.header().startswith(":heavy_check_mark:"), within=15)

    def told(iid: int, *, kind: str = "issue") -> list[str]:
        notes = gitlab.issue_notes(SOURCE, iid) if kind == "issue" else gitlab.notes(SOURCE, iid)
        return [n["body"].split(" — ")[0] for n in notes if not n["system"]]

    # the notes are written in the changelog's order: the app's MR (in the merge commit) last
    await eventually(lambda: told(project_mrs, kind="mr"), within=15)
    await eventually(lambda: gitlab.merge_request(SOURCE, project_mrs)["labels"], within=15)
    assert told(first) == ["Released to **staging** in orders **1.5.0**"]
    assert told(project_mrs, kind="mr") == ["Released to **staging** in orders **1.5.0**"]
    assert gitlab.issue(SOURCE, first)["labels"] == ["deployed::staging"]
    assert gitlab.merge_request(SOURCE, project_mrs)["labels"] == ["deployed::staging"]
    assert told(second) == []  # GitLab refused it: logged, and the release ended all the same

    assert world.bot.autopilot is not None
    release = await world.bot.releases.latest_release("orders", "staging")  # type: ignore[union-attr]
    assert release is not None
    await world.bot.autopilot.on_release_ended(release)  # the end replayed (a retry, a replica)
    assert told(first) == ["Released to **staging** in orders **1.5.0**"]
    assert told(second) == ["Released to **staging** in orders **1.5.0**"]  # now it could

    # production: a new note, and the scoped label moves on
    argo = controller(world)  # Argo CD applies what merges; the rollout is watched to healthy
    try:
        answer = await world.slash("/deploy", "orders 1.5.0 to production")
        assert answer.startswith(":white_check_mark: Opened !2"), answer
        await world.click("release_approve", user="carol", message=release_messages(world)[-1])
        await world.pipelines()
        await eventually(lambda: world.mrs()[-1]["state"] == "merged", within=15)
        await applied(world, argo)
    finally:
        argo.close()

    async def production() -> str | None:
        found = await world.bot.releases.latest_release("orders", "production")  # type: ignore[union-attr]
        return found.state if found else None

    await eventually(lambda: told(first)[1:], within=15)
    assert told(first) == [
        "Released to **staging** in orders **1.5.0**",
        "Released to **production** in orders **1.5.0**",
    ]
    assert await production() == "healthy"
    # the label follows the note (two GitLab calls): on a busy machine, a moment later
    await eventually(lambda: gitlab.issue(SOURCE, first)["labels"] == ["deployed::production"])


def _open_and_merge(gitlab: Any, branch: str) -> int:
    """An MR of the app's own repository, merged: its merge commit says "See merge request"."""
    client = python_gitlab.Gitlab(gitlab.url, private_token="glpat-sandbox")
    project = client.projects.get(SOURCE)
    mr = project.mergerequests.create(
        {"source_branch": branch, "target_branch": "main", "title": "Round totals half-up"}
    )
    mr.merge()
    return int(mr.iid)
