"""The autopilot's decisions, one table each: version order, what a new version or a promotion
opens, precedence with the autopilot, a lock between approval and merge, freezes, and who hears
that a release shipped."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.autopilot import (
    ExtendFreeze,
    FreezeOver,
    LeaveLock,
    OpenRelease,
    Skip,
    TakeFreeze,
    decide_freeze,
    decide_new_version,
    decide_promotion,
    gives_up,
)
from bot.domain.catalog import App, Environment, Promotion
from bot.domain.locks import Lock
from bot.domain.release_flow import (
    Blocked,
    CancelMerge,
    Held,
    Merge,
    Proceed,
    StartMerge,
    Supersede,
    Tick,
    apply,
    precedence,
)
from bot.domain.released import (
    Reference,
    deployed_label,
    parse_reference,
    references_to_note,
    released_note,
)
from bot.domain.releases import Changelog, Release, ReleaseState, references_in
from bot.domain.versions import VersionTag, is_newer, is_version, newest
from bot.services.releases import DEFAULT_DEADLINES
from tests.release_records import T0, sample_release

D1 = datetime(2026, 1, 1, tzinfo=UTC)
D2 = datetime(2026, 2, 1, tzinfo=UTC)


def tag(name: str, at: datetime | None = None) -> VersionTag:
    return VersionTag(name=name, created_at=at)


# --------------------------------------------------------------------------------------------
# Versions


@pytest.mark.parametrize(
    ("candidate", "than", "newer"),
    [
        (tag("1.5.0"), tag("1.4.2"), True),
        (tag("1.10.0"), tag("1.9.3"), True),  # not string order
        (tag("1.4.2"), tag("1.5.0"), False),
        (tag("1.5.0"), tag("1.5.0"), False),
        (tag("v2.0.0"), tag("1.9.0"), True),  # a "v" reads as the same version
        (tag("1.5.0"), tag("1.5.0rc1"), True),  # a release after its candidate
        (tag("1.5.0"), None, True),  # nothing runs yet
        (tag("build-7", D2), tag("build-6", D1), True),  # not versions: the tags' dates
        (tag("build-6", D1), tag("build-7", D2), False),
        (tag("build-7", D2), tag("1.4.2", D1), True),  # one is not a version: dates
        (tag("build-7", D2), tag("sha-abc"), False),  # no date to compare: never a guess
    ],
)
def test_version_order(candidate: VersionTag, than: VersionTag | None, newer: bool) -> None:
    assert is_newer(candidate, than) is newer


def test_newest_and_is_version() -> None:
    tags = [tag("1.4.2"), tag("1.10.0"), tag("1.9.0"), tag("1.11.0-rc1")]
    versions = [t for t in tags if is_version(t.name)]
    assert [t.name for t in versions] == ["1.4.2", "1.10.0", "1.9.0"]
    assert newest(versions) == tag("1.10.0")
    assert newest([]) is None
    assert is_version("v1.2.3", r"^v\d+\.\d+\.\d+$")
    assert not is_version("1.2.3", r"^v\d+\.\d+\.\d+$")


# --------------------------------------------------------------------------------------------
# New versions and promotions

STAGING = Environment(name="staging", policy="auto", auto_deploy=True)
PRODUCTION = Environment(
    name="production",
    policy="manual",
    approvers=("@sre",),
    promote=Promotion(source="staging", schedule="0 9 * * 1", timezone="Europe/Rome"),
)
ORDERS = App(
    name="orders",
    team="payments",
    source="shop/orders",
    image="registry.example.com/shop/orders",
    manifests="apps/orders/{env}/deployment.yaml",
)


def latest(state: ReleaseState, *, version: str = "1.5.0", **changes: Any) -> Release:
    return sample_release(**{"env": "staging", **changes, "state": state, "to_version": version})


def autopilot(state: ReleaseState, *, version: str = "1.5.0") -> Release:
    return latest(state, version=version, requester="pitcrew", autopilot="new_version")


OPEN = OpenRelease(version="1.5.1", cause="new_version")


@pytest.mark.parametrize(
    ("env", "app", "candidate", "running", "current", "given_up", "expected"),
    [
        pytest.param(STAGING, ORDERS, "1.5.1", "1.5.0", None, (), OPEN, id="newer: open"),
        pytest.param(STAGING, ORDERS, "1.5.1", None, None, (), OPEN, id="nothing runs: open"),
        pytest.param(
            PRODUCTION, ORDERS, "1.5.1", "1.5.0", None, (), "does not auto_deploy", id="env off"
        ),
        pytest.param(
            STAGING,
            ORDERS.model_copy(update={"auto_deploy": False}),
            "1.5.1",
            "1.5.0",
            None,
            (),
            "opted out",
            id="the app opted out",
        ),
        pytest.param(
            STAGING, ORDERS, "1.5.1-rc1", "1.5.0", None, (), "is not a version", id="not a version"
        ),
        pytest.param(STAGING, ORDERS, "1.5.1", "1.5.1", None, (), "not newer", id="runs already"),
        pytest.param(STAGING, ORDERS, "1.5.1", "1.6.0", None, (), "not newer", id="runs newer"),
        pytest.param(
            STAGING, ORDERS, "1.5.1", "1.5.0", None, ("1.5.1",), "does not retry", id="gave up"
        ),
        pytest.param(
            STAGING,
            ORDERS,
            "1.5.1",
            "1.5.0",
            autopilot("waiting_pipeline", version="1.5.1"),
            (),
            "already on its way",
            id="its release is open",
        ),
        pytest.param(
            STAGING,
            ORDERS,
            "1.5.1",
            "1.5.0",
            latest("awaiting_approval", version="1.4.9"),
            (),
            "goes first",
            id="a person's release before its merge goes first",
        ),
        pytest.param(
            STAGING,
            ORDERS,
            "1.5.1",
            "1.5.0",
            autopilot("waiting_pipeline", version="1.5.0"),
            (),
            OPEN,
            id="the autopilot's older release before its merge: open (it supersedes)",
        ),
        pytest.param(
            STAGING,
            ORDERS,
            "1.5.1",
            "1.5.0",
            latest("rolling_out", version="1.5.0"),
            (),
            OPEN,
            id="a release past its merge: open (it supersedes)",
        ),
        pytest.param(
            STAGING,
            ORDERS,
            "1.5.1",
            "1.5.0",
            latest("failed", version="1.5.1"),
            (),
            OPEN,
            id="the latest failed but was not given up yet: the end listener decides",
        ),
    ],
)
def test_new_version(
    env: Environment,
    app: App,
    candidate: str,
    running: str | None,
    current: Release | None,
    given_up: tuple[str, ...],
    expected: OpenRelease | str,
) -> None:
    decision = decide_new_version(
        app=app,
        env=env,
        tag=tag(candidate),
        running=tag(running) if running else None,
        latest=current,
        given_up=frozenset(given_up),
    )
    if isinstance(expected, OpenRelease):
        assert decision == expected
    else:
        assert isinstance(decision, Skip)
        assert expected in decision.reason


@pytest.mark.parametrize(
    ("source", "running", "current", "expected"),
    [
        ("1.5.0", "1.4.2", None, OpenRelease(version="1.5.0", cause="promotion")),
        (None, "1.4.2", None, "does not run in staging"),
        ("1.4.2", "1.4.2", None, "not newer"),
        ("1.4.0", "1.4.2", None, "not newer"),  # production ahead (a hotfix): never back
        ("1.5.0", "1.4.2", latest("awaiting_approval", env="production"), "already on its way"),
    ],
)
def test_promotion(
    source: str | None, running: str, current: Release | None, expected: OpenRelease | str
) -> None:
    decision = decide_promotion(
        app=ORDERS,
        env=PRODUCTION,
        source=tag(source) if source else None,
        running=tag(running),
        latest=current,
        given_up=frozenset(),
    )
    if isinstance(expected, OpenRelease):
        assert decision == expected
    else:
        assert isinstance(decision, Skip)
        assert expected in decision.reason


@pytest.mark.parametrize(
    ("release", "given_up"),
    [
        (latest("failed"), True),
        (latest("not_seen"), True),
        (autopilot("rejected"), True),  # a person said no to the autopilot
        (latest("rejected", requester="pitcrew", autopilot="promotion"), True),
        (latest("expired", requester="pitcrew", autopilot="promotion"), True),
        (latest("rejected"), False),  # a person's own release: theirs to retry
        (autopilot("superseded"), False),
        (autopilot("refused"), False),  # never opened (GitLab down): may be tried again
        (autopilot("healthy"), False),
        (latest("failed", kind="rollback"), False),
    ],
)
def test_gives_up(release: Release, given_up: bool) -> None:
    assert gives_up(release) is given_up


# --------------------------------------------------------------------------------------------
# Precedence with the autopilot (the table in release_flow.precedence)


@pytest.mark.parametrize(
    ("current", "kind", "by_autopilot", "expected"),
    [
        (None, "deploy", True, Proceed),
        (autopilot("healthy"), "deploy", True, Proceed),
        (autopilot("requested", version="1.4.9"), "deploy", True, Blocked),
        (latest("awaiting_approval", version="1.4.9"), "deploy", True, Blocked),
        (autopilot("waiting_pipeline", version="1.4.9"), "deploy", True, Supersede),
        (autopilot("awaiting_approval", version="1.4.9"), "deploy", True, Supersede),
        (autopilot("waiting_pipeline", version="1.5.0"), "deploy", True, Blocked),
        (autopilot("waiting_pipeline", version="1.4.9"), "deploy", False, Blocked),
        (autopilot("waiting_pipeline", version="1.4.9"), "rollback", False, Supersede),
        (latest("rolling_out", version="1.4.9"), "deploy", True, Supersede),
        (latest("failed", version="1.4.9"), "deploy", True, Supersede),
    ],
)
def test_precedence_with_the_autopilot(
    current: Release | None, kind: str, by_autopilot: bool, expected: type
) -> None:
    decision = precedence(current, kind=kind, autopilot=by_autopilot, version="1.5.0")  # type: ignore[arg-type]
    assert isinstance(decision, expected)


# --------------------------------------------------------------------------------------------
# A lock between the approval and the merge


def test_a_lock_while_merging_holds_the_release_and_cancels_the_merge() -> None:
    merging = sample_release(state="merging", approvals=("UCAROL",), mr_iid=7, head_sha="h")
    step = apply(merging, Held(holder="pitcrew"))
    assert step is not None
    assert (step.release.state, step.release.held_by) == ("approved", "pitcrew")
    assert step.effects == (CancelMerge(),)
    assert [s.kind for s in step.says] == ["held"]
    assert apply(step.release, Held(holder="pitcrew")) is None  # said once

    resumed_at = T0 + timedelta(hours=63)
    going = apply(step.release, StartMerge(at=resumed_at))
    assert going is not None
    assert (going.release.state, going.release.resumed_at) == ("merging", resumed_at)
    assert going.effects == (Merge(),)
    assert going.says[0].once_per == resumed_at.isoformat()  # a new reply, after the hold


def test_a_held_release_counts_its_expiry_from_when_it_went_on() -> None:
    resumed = sample_release(state="merging", mr_iid=7, resumed_at=T0 + timedelta(hours=63))
    soon = Tick(now=T0 + timedelta(hours=64), deadlines=DEFAULT_DEADLINES)
    assert apply(resumed, soon) is None
    late = Tick(now=T0 + timedelta(hours=63 + 24), deadlines=DEFAULT_DEADLINES)
    step = apply(resumed, late)
    assert step is not None
    assert step.release.state == "expired"


def test_a_merged_release_is_not_held() -> None:
    merged = sample_release(state="merging", mr_iid=7, merged_at=T0)
    assert apply(merged, Held(holder="pitcrew")) is None


# --------------------------------------------------------------------------------------------
# Freeze windows

NOW = datetime(2026, 3, 20, 17, 0, 5, tzinfo=UTC)
END = NOW + timedelta(hours=63)


def lock(holder: str, *, until: datetime | None, since: datetime = NOW) -> Lock:
    return Lock(env="production", holder=holder, since=since, reason="x", expires_at=until)


@pytest.mark.parametrize(
    ("existing", "now", "expected"),
    [
        (None, NOW, TakeFreeze),
        (
            lock("U0ALICE", until=NOW - timedelta(minutes=1), since=NOW - timedelta(hours=1)),
            NOW,
            TakeFreeze,
        ),
        (lock("U0ALICE", until=NOW + timedelta(hours=1)), NOW, LeaveLock),
        (lock("U0ALICE", until=None), NOW, LeaveLock),
        (lock("pitcrew", until=END), NOW, LeaveLock),
        (lock("pitcrew", until=NOW + timedelta(hours=1)), NOW, ExtendFreeze),
        (None, END, FreezeOver),
    ],
)
def test_freeze(existing: Lock | None, now: datetime, expected: type) -> None:
    decision = decide_freeze(existing, env="production", reason="weekend freeze", end=END, now=now)
    assert isinstance(decision, expected)
    if isinstance(decision, TakeFreeze):
        assert decision.lock == Lock(
            env="production", holder="pitcrew", since=now, reason="weekend freeze", expires_at=END
        )
        assert decision.expired == existing
    if isinstance(decision, ExtendFreeze):
        assert decision.lock.expires_at == END


# --------------------------------------------------------------------------------------------
# Released notes


@pytest.mark.parametrize(
    ("message", "references"),
    [
        ("Fix totals (#12)", ("#12",)),
        ("Fixes #12, #13 and #12 again", ("#12", "#13")),
        ("Round half-up\n\nSee merge request shop/orders!45", ("shop/orders!45",)),
        ("Needs platform/infra#7 and !3", ("platform/infra#7", "!3")),
        ("See https://example.com/page#12 and epic &4", ()),
        ("Build #0012", ("#12",)),
        ("issue#12 is glued to a word", ()),
    ],
)
def test_references_in_commit_messages(message: str, references: tuple[str, ...]) -> None:
    assert references_in(message) == references


def test_parse_reference() -> None:
    assert parse_reference("#12", project="shop/orders") == Reference(
        project="shop/orders", kind="issue", iid=12
    )
    assert parse_reference("platform/infra!7", project="shop/orders") == Reference(
        project="platform/infra", kind="merge_request", iid=7
    )
    assert parse_reference("nonsense", project="shop/orders") is None


def shipped(state: ReleaseState = "healthy", **changes: Any) -> Release:
    return sample_release(
        state=state,
        to_version="1.5.0",
        mr_iid=9,
        mr_url="https://gitlab.example.com/platform/deployments/-/merge_requests/9",
        changelog=Changelog(references=("#12", "shop/orders#12", "!45", "platform/infra#7")),
        **changes,
    )


@pytest.mark.parametrize(
    ("release", "keys"),
    [
        (shipped(), ["shop/orders#12", "shop/orders!45", "platform/infra#7"]),
        (shipped("deployed"), ["shop/orders#12", "shop/orders!45", "platform/infra#7"]),
        (shipped("failed"), []),
        (shipped("rolling_out"), []),
        (shipped(kind="rollback"), []),  # a rollback ships nothing new
    ],
)
def test_who_hears_that_a_release_shipped(release: Release, keys: list[str]) -> None:
    found = references_to_note(release, source="shop/orders")
    assert [r.key for r in found] == keys


def test_the_released_note_and_label() -> None:
    assert released_note(shipped()) == (
        "Released to **production** in orders **1.5.0** — [Deploy orders 1.5.0 to production]"
        "(https://gitlab.example.com/platform/deployments/-/merge_requests/9), through Pitcrew."
    )
    assert deployed_label("production") == "deployed::production"
    sneaky = replace(shipped(), mr_url="javascript:alert(1)")
    assert released_note(sneaky) == (
        "Released to **production** in orders **1.5.0**, through Pitcrew."
    )
