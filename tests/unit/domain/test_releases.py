"""/deploy and /rollback as people type them, approvals as people click them, and the release's
states as webhooks and the watcher move them (SPEC 5)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.catalog import App, Catalog, Environment, Team
from bot.domain.locks import CommandError
from bot.domain.releases import (
    DEPLOY_USAGE,
    ROLLBACK_USAGE,
    UNDEPLOY_USAGE,
    AlreadyApproved,
    AlreadyComplete,
    ApprovalDecision,
    ApprovalNotRequired,
    ApprovalRule,
    Approved,
    Changelog,
    ChangelogEntry,
    DeployRequest,
    NotAnApprover,
    PromoteRequest,
    Release,
    ReleaseCommandError,
    ReleaseHelp,
    ReleaseKind,
    ReleaseSnapshot,
    RollbackRequest,
    SelfApprovalForbidden,
    UndeployRequest,
    approval_rule,
    approvers_label,
    decide_approval,
    merge_request_description,
    parse_deploy,
    parse_rollback,
    parse_undeploy,
    referenced_issues,
    release_title,
    split_issue_references,
)
from tests.release_records import sample_release


def _app(name: str) -> App:
    return App(
        name=name,
        team="payments",
        source=f"shop/{name}",
        image=f"registry.example.com/shop/{name}",
        manifests=f"apps/{name}/{{env}}/deployment.yaml",
        namespace=name,
    )


CATALOG = Catalog(
    teams=(Team(name="payments", channel="#payments-deploys", oncall=("@payments-oncall",)),),
    environments=(
        Environment(name="dev", policy="auto"),
        Environment(name="staging", policy="auto"),
        Environment(name="production", policy="manual"),
    ),
    apps=(_app("orders"), _app("orders-api"), _app("billing")),
)


# --------------------------------------------------------------------------------------------
# /deploy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders 1.4.2 to staging", DeployRequest(app="orders", version="1.4.2", env="staging")),
        (
            "  Orders   v1.4.2-rc.1  TO  Production ",
            DeployRequest(app="orders", version="v1.4.2-rc.1", env="production"),
        ),
        (
            "orders-api main_2024 to dev",
            DeployRequest(app="orders-api", version="main_2024", env="dev"),
        ),
        (
            "orders\t1.4.2\nto\u0000staging",
            DeployRequest(app="orders", version="1.4.2", env="staging"),
        ),
        (
            "orders " + "a" * 128 + " to dev",
            DeployRequest(app="orders", version="a" * 128, env="dev"),
        ),
        (
            "orders from staging to production",
            PromoteRequest(app="orders", source_env="staging", env="production"),
        ),
        (
            "orders FROM dev TO production",
            PromoteRequest(app="orders", source_env="dev", env="production"),
        ),
        ("help", ReleaseHelp(usage=DEPLOY_USAGE)),
        ("--help", ReleaseHelp(usage=DEPLOY_USAGE)),
        ("HELP me", ReleaseHelp(usage=DEPLOY_USAGE)),
    ],
)
def test_deploy_commands_are_understood(
    text: str, expected: DeployRequest | PromoteRequest | ReleaseHelp
) -> None:
    assert parse_deploy(text, catalog=CATALOG) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Name the app, the version and the environment."),
        ("   \t ", "Name the app, the version and the environment."),
        ("orders", "Name the version and the environment: `/deploy orders <version> to <env>`."),
        ("ordres 1.4.2 to staging", "No app “ordres” — did you mean orders?"),
        ("zzz 1.4.2 to staging", "No app “zzz” — apps are orders, orders-api, billing"),
        ("órders 1.4.2 to staging", "No app “órders” — did you mean orders?"),
        (
            "orders 1.4.2 to prod",
            "No environment “prod” — environments are dev, staging, production",
        ),
        (
            "orders 1.4.2 to stagin",
            "No environment “stagin” — did you mean staging? environments are dev, staging, "
            "production",
        ),
        ("orders 1.4.2", "Say where: `to <env>`."),
        ("orders 1.4.2 staging", "Expected `to <env>`, not “staging”."),
        ("orders 1.4.2 to", "`to` needs an environment."),
        ("orders 1.4.2 to staging now", "Unexpected “now” at the end."),
        (
            "orders 1.4.2 to staging; rm -rf /",
            "No environment “staging;” — did you mean staging? "
            "environments are dev, staging, production",
        ),
        ("orders from", "`from` needs an environment."),
        ("orders from staging", "Say where: `to <env>`."),
        ("orders from staging production", "Expected `to <env>`, not “production”."),
        (
            "orders from staging to staging",
            "Promote from one environment to another, not from staging to itself.",
        ),
        (
            "orders from production to staging",
            "production comes after staging in promotion order (dev → staging → production): "
            "promotions go forward. To go back, use `/rollback` or deploy a version by name.",
        ),
        (
            "orders from qa to production",
            "No environment “qa” — environments are dev, staging, production",
        ),
    ],
)
def test_wrong_deploy_commands_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ReleaseCommandError) as caught:
        parse_deploy(text, catalog=CATALOG)
    assert caught.value.problem == problem
    assert caught.value.usage == DEPLOY_USAGE
    assert str(caught.value) == f"{problem}\n{DEPLOY_USAGE}"


@pytest.mark.parametrize(
    "version",
    [
        "../1.4.2",
        "1.4/2",
        ".hidden",
        "-rf",
        "1.4.2;reboot",
        "$(whoami)",
        "`id`",
        "1.4.2|cat",
        "1.4.2&&x",
        "1.4.2>out",
        "v1.4.2'",
        'v1.4.2"',
        "1.4.2*",
        "versión",
        "1.4.2\u200b",
        "१.४.२",
        "a" * 129,
    ],
)
def test_versions_must_be_tags(version: str) -> None:
    with pytest.raises(ReleaseCommandError) as caught:
        parse_deploy(f"orders {version} to staging", catalog=CATALOG)
    assert caught.value.problem is not None
    assert "version" in caught.value.problem
    assert len(caught.value.problem) < 200  # a long paste is quoted cut short, not echoed


def test_a_very_long_command_is_refused_with_a_short_line() -> None:
    with pytest.raises(ReleaseCommandError) as caught:
        parse_deploy("x" * 100_000, catalog=CATALOG)
    assert caught.value.problem == f"No app “{'x' * 39}…” — apps are orders, orders-api, billing"


def test_release_errors_are_command_errors() -> None:
    with pytest.raises(CommandError):
        parse_deploy("nope", catalog=CATALOG)


# --------------------------------------------------------------------------------------------
# /rollback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders production", RollbackRequest(app="orders", env="production")),
        (
            "orders production to 1.4.1",
            RollbackRequest(app="orders", env="production", version="1.4.1"),
        ),
        ("BILLING Staging TO V2", RollbackRequest(app="billing", env="staging", version="V2")),
        ("help", ReleaseHelp(usage=ROLLBACK_USAGE)),
        ("?", ReleaseHelp(usage=ROLLBACK_USAGE)),
    ],
)
def test_rollback_commands_are_understood(
    text: str, expected: RollbackRequest | ReleaseHelp
) -> None:
    assert parse_rollback(text, catalog=CATALOG) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Name the app and the environment."),
        ("orders", "Name the environment to roll back: `/rollback orders <env>`."),
        ("ordres production", "No app “ordres” — did you mean orders?"),
        (
            "orders prod",
            "No environment “prod” — environments are dev, staging, production",
        ),
        ("orders production 1.4.1", "Expected `to <version>` after the environment, not “1.4.1”."),
        ("orders production to", "`to` needs a version."),
        ("orders production to 1.4.1 please", "Unexpected “please” at the end."),
        (
            "orders production to ../etc",
            "“../etc” is not a version: a tag is letters, digits, `_`, `.` and `-`, and does not "
            "start with `.` or `-`.",
        ),
        (
            "orders production to " + "9" * 200,
            f"“{'9' * 39}…” is too long for a version: tags have at most 128 characters.",
        ),
    ],
)
def test_wrong_rollback_commands_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ReleaseCommandError) as caught:
        parse_rollback(text, catalog=CATALOG)
    assert caught.value.problem == problem
    assert caught.value.usage == ROLLBACK_USAGE


# --------------------------------------------------------------------------------------------
# /undeploy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders staging", UndeployRequest(app="orders", env="staging")),
        ("Orders from PRODUCTION", UndeployRequest(app="orders", env="production")),
        ("orders in dev", UndeployRequest(app="orders", env="dev")),
        ("help", ReleaseHelp(usage=UNDEPLOY_USAGE)),
    ],
)
def test_undeploy_commands_are_understood(text: str, expected: Any) -> None:
    assert parse_undeploy(text, catalog=CATALOG) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Name the app and the environment."),
        ("orders", "Name the environment to remove orders from: `/undeploy orders <env>`."),
        ("ordres staging", "No app “ordres” — did you mean orders?"),
        (
            "orders prod",
            "No environment “prod” — environments are dev, staging, production",
        ),
        ("orders staging now", "Unexpected “now” at the end."),
    ],
)
def test_wrong_undeploy_commands_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ReleaseCommandError) as caught:
        parse_undeploy(text, catalog=CATALOG)
    assert caught.value.problem == problem
    assert caught.value.usage == UNDEPLOY_USAGE


# --------------------------------------------------------------------------------------------
# Approvals

REQUESTER = "UREQ"
ALICE, BOB, CAROL, MALLORY = "UALICE", "UBOB", "UCAROL", "UMALLORY"
APPROVERS = frozenset({REQUESTER, ALICE, BOB, CAROL})


def _release(
    *approvals: str, needed: int = 1, self_approval: bool = False, policy: str = "manual"
) -> ReleaseSnapshot:
    if policy == "auto":
        env = Environment(name="staging", policy="auto")
    else:
        env = Environment(
            name="production", policy="manual", approvals=needed, self_approval=self_approval
        )
    return ReleaseSnapshot(requester=REQUESTER, approvals=approvals, env=env)


@pytest.mark.parametrize(
    ("release", "user", "expected"),
    [
        (
            _release(),
            ALICE,
            Approved(approvals=(ALICE,), count=1, needed=1, complete=True),
        ),
        (
            _release(needed=2),
            ALICE,
            Approved(approvals=(ALICE,), count=1, needed=2, complete=False),
        ),
        (
            _release(ALICE, needed=2),
            BOB,
            Approved(approvals=(ALICE, BOB), count=2, needed=2, complete=True),
        ),
        (
            _release(ALICE, ALICE, needed=2),  # a duplicate in the record counts once
            BOB,
            Approved(approvals=(ALICE, BOB), count=2, needed=2, complete=True),
        ),
        (_release(ALICE, needed=2), ALICE, AlreadyApproved()),  # double click
        (_release(ALICE), ALICE, AlreadyApproved()),
        (_release(ALICE), BOB, AlreadyComplete(approvals=(ALICE,))),  # counted up to N only
        (_release(ALICE, BOB, needed=2), CAROL, AlreadyComplete(approvals=(ALICE, BOB))),
        (_release(), MALLORY, NotAnApprover(approvers_label="@sre-oncall")),
        (_release(ALICE, needed=2), MALLORY, NotAnApprover(approvers_label="@sre-oncall")),
        (_release(), REQUESTER, SelfApprovalForbidden()),
        (
            _release(self_approval=True),
            REQUESTER,
            Approved(approvals=(REQUESTER,), count=1, needed=1, complete=True),
        ),
        (
            _release(ALICE, needed=2, self_approval=True),
            REQUESTER,
            Approved(approvals=(ALICE, REQUESTER), count=2, needed=2, complete=True),
        ),
        (_release(policy="auto"), ALICE, ApprovalNotRequired()),
    ],
)
def test_approval_policy(release: ReleaseSnapshot, user: str, expected: ApprovalDecision) -> None:
    assert (
        decide_approval(release, user=user, approvers=APPROVERS, named=("@sre-oncall",)) == expected
    )


# An undeploy always needs an approval: the env's rule where it has one, else one by someone else.
AUTO = Environment(name="staging", policy="auto")
MANUAL = Environment(name="production", policy="manual", approvals=2, self_approval=True)


@pytest.mark.parametrize(
    ("kind", "env", "rule"),
    [
        ("deploy", AUTO, ApprovalRule(required=False, needed=1, self_approval=False)),
        ("deploy", MANUAL, ApprovalRule(required=True, needed=2, self_approval=True)),
        ("rollback", MANUAL, ApprovalRule(required=True, needed=2, self_approval=True)),
        ("undeploy", AUTO, ApprovalRule(required=True, needed=1, self_approval=False)),
        ("undeploy", MANUAL, ApprovalRule(required=True, needed=2, self_approval=True)),
    ],
)
def test_approval_rules(kind: ReleaseKind, env: Environment, rule: ApprovalRule) -> None:
    assert approval_rule(kind, env) == rule


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (ALICE, Approved(approvals=(ALICE,), count=1, needed=1, complete=True)),
        (REQUESTER, SelfApprovalForbidden()),
        (MALLORY, NotAnApprover(approvers_label="@payments-oncall")),
    ],
)
def test_an_undeploy_from_an_auto_env_needs_one_approval_by_someone_else(
    user: str, expected: ApprovalDecision
) -> None:
    undeploy = sample_release(kind="undeploy", env="staging", requester=REQUESTER)
    decision = decide_approval(
        undeploy.snapshot(AUTO), user=user, approvers=APPROVERS, named=("@payments-oncall",)
    )
    assert decision == expected


def test_a_requester_who_is_no_approver_is_told_so_first() -> None:
    decision = decide_approval(_release(), user=REQUESTER, approvers=frozenset({ALICE}))
    assert decision == NotAnApprover(approvers_label="nobody is configured")


def test_nobody_approves_when_nobody_is_an_approver() -> None:
    decision = decide_approval(_release(), user=ALICE, approvers=frozenset())
    assert isinstance(decision, NotAnApprover)


@pytest.mark.parametrize(
    ("named", "label"),
    [
        ((), "nobody is configured"),
        (("@sre-oncall",), "@sre-oncall"),
        (("U123ABC", "W9", "S0SRE"), "<@U123ABC>, <@W9>, <!subteam^S0SRE>"),
        (("@sre-oncall", "UALICE"), "@sre-oncall, <@UALICE>"),
    ],
)
def test_approvers_are_labelled_as_slack_shows_them(named: tuple[str, ...], label: str) -> None:
    assert approvers_label(named) == label


# --------------------------------------------------------------------------------------------
# Titles


@pytest.mark.parametrize(
    ("kind", "version", "env", "title"),
    [
        ("deploy", "1.4.2", "production", "Deploy orders 1.4.2 to production"),
        ("deploy", "v2", "staging", "Deploy orders v2 to staging"),
        ("rollback", "1.4.1", "production", "Roll back orders to 1.4.1 in production"),
        ("undeploy", "", "staging", "Undeploy orders from staging"),
    ],
)
def test_release_titles(kind: ReleaseKind, version: str, env: str, title: str) -> None:
    assert release_title(kind=kind, app="orders", version=version, env=env) == title


# --------------------------------------------------------------------------------------------
# The release record: the MR description, the issues a commit references

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
GITLAB = "https://gitlab.example.com"
ISSUES = f"{GITLAB}/shop/orders/-/issues"
COMPARE = f"{GITLAB}/shop/orders/-/compare/1.4.1...1.4.2"


def _commit(sha: str, title: str, *issues: str, author: str = "Alice Martin") -> ChangelogEntry:
    return ChangelogEntry(
        sha=sha,
        title=title,
        author=author,
        url=f"{GITLAB}/shop/orders/-/commit/{sha}",
        issues=issues,
    )


def _record(**changes: Any) -> Release:
    """A manual release of orders 1.4.2 to production, waiting for one approval."""
    return sample_release(**{"id": "r-7f3a", "mr_iid": 42, **changes})


@pytest.mark.parametrize(
    ("message", "issues"),
    [
        ("Fix #12, closes #3 and #12", ("12", "3")),
        ("(#7) tidy up", ("7",)),
        ("Fixes #12\n\nSee also #40.", ("12", "40")),
        ("It&#39;s done", ()),  # an HTML entity is no issue
        ("x#4 and a#5", ()),
        ("see http://h/#frag and http://h/#4", ()),
        ("#12abc and #1234567890", ()),
        ("no issue here", ()),
    ],
)
def test_referenced_issues(message: str, issues: tuple[str, ...]) -> None:
    assert referenced_issues(message) == issues


def test_merge_request_description() -> None:
    log = Changelog(
        entries=(
            _commit("0123456789abcdef", "Fix rounding of totals", "12", "3"),
            _commit("fedcba9876543210", "Bump aiohttp", author="renovate[bot]"),
        ),
        total=5,
        compare_url=COMPARE,
        issues_url=ISSUES,
    )
    text = merge_request_description(
        _record(changelog=log), requester_name="Dave Roy", approvers="@sre-oncall", lock=None
    )
    assert text == (
        "Requested by **Dave Roy** in Slack, through Pitcrew.\n"
        "\n"
        "- **App:** orders (team payments)\n"
        "- **Environment:** production — needs 1 approval from @\u200bsre-oncall in Slack\n"
        "- **Version:** 1.4.1 → **1.4.2**\n"
        "- **Lock:** none\n"
        "\n"
        f"### Changelog: 5 commits ([compare]({COMPARE}))\n"
        "\n"
        f"- [`01234567`]({GITLAB}/shop/orders/-/commit/0123456789abcdef) Fix rounding of totals"
        f" [#12]({ISSUES}/12) [#3]({ISSUES}/3) — Alice Martin\n"
        f"- [`fedcba98`]({GITLAB}/shop/orders/-/commit/fedcba9876543210) Bump aiohttp"
        " — renovate\\[bot\\]\n"
        "- … and 3 more\n"
        "\n"
        "<!-- pitcrew release r-7f3a -->"
    )


def test_merge_request_description_of_an_auto_rollback_through_a_lock() -> None:
    rollback = _record(
        kind="rollback",
        env="staging",
        policy="auto",
        from_version="1.4.2",
        to_version="1.4.1",
        changelog=Changelog(
            entries=(_commit("0123456789abcdef", "Fix #12", "12"),), total=1, compare_url=None
        ),
    )
    text = merge_request_description(
        rollback,
        requester_name="Dave",
        approvers="nobody",
        lock="locked by Bob since 2026-11-22 08:00 UTC — the requester chose to deploy anyway",
    )
    assert text.split("\n")[2:] == [
        "- **App:** orders (team payments)",
        "- **Environment:** staging — merges when its pipeline passes",
        "- **Version:** 1.4.2 → **1.4.1** (rollback)",
        "- **Lock:** locked by Bob since 2026-11-22 08:00 UTC — the requester chose to deploy"
        " anyway",
        "",
        "### Commits leaving: 1 commit",
        "",
        # The title shows its reference: it is not repeated after it.
        f"- [`01234567`]({GITLAB}/shop/orders/-/commit/0123456789abcdef) Fix #12 — Alice Martin",
        "",
        "<!-- pitcrew release r-7f3a -->",
    ]


def test_merge_request_description_of_a_first_deploy_needing_two_approvals() -> None:
    text = merge_request_description(
        _record(from_version=None, approvals_needed=2, changelog=Changelog()),
        requester_name="Dave",
        approvers="@sre-oncall",
        lock=None,
    )
    assert (
        "- **Environment:** production — needs 2 approvals from @\u200bsre-oncall in Slack" in text
    )
    assert "- **Version:** none → **1.4.2**\n" in text
    assert "### Changelog\n\n_No commits between the two versions._\n" in text


def test_merge_request_description_says_why_there_is_no_changelog() -> None:
    text = merge_request_description(
        _record(changelog=Changelog(unavailable="tag v1_old not found")),
        requester_name="Dave",
        approvers="@sre-oncall",
        lock=None,
    )
    assert "### Changelog\n\n_Not available: tag v1\\_old not found_\n" in text


def test_people_text_cannot_become_markdown_or_html_in_the_description() -> None:
    hostile = _commit(
        "0123456789abcdef", "Use *fast* path_[x](http://evil) <img src=x> `rm` a|b \\o/"
    )
    text = merge_request_description(
        _record(changelog=Changelog(entries=(hostile,), total=1)),
        requester_name="**Eve** <script>",
        approvers="@sre-oncall",
        lock=None,
    )
    assert text.startswith("Requested by **\\*\\*Eve\\*\\* \\<script\\>** in Slack")
    assert (
        "Use \\*fast\\* path\\_\\[x\\](http://evil) \\<img src=x\\> \\`rm\\` a\\|b \\\\o/"
        " — Alice Martin"
    ) in text


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Fix rounding", (("Fix rounding", None),)),
        ("Fix rounding (#131)", (("Fix rounding (", None), ("#131", "131"), (")", None))),
        ("#1 and #2", (("#1", "1"), (" and ", None), ("#2", "2"))),
        ("other/lib#7 & it&#39;s", (("other/lib#7 & it&#39;s", None),)),
        ("", ()),
    ],
)
def test_split_issue_references(text: str, pieces: tuple[tuple[str, str | None], ...]) -> None:
    assert split_issue_references(text) == pieces
    assert "".join(piece for piece, _ in pieces) == text


def _changelog_line(title: str, *issues: str, issues_url: str | None = ISSUES) -> str:
    log = Changelog(
        entries=(_commit("0123456789abcdef", title, *issues),), total=1, issues_url=issues_url
    )
    text = merge_request_description(
        _record(changelog=log), requester_name="Dave", approvers="@sre-oncall", lock=None
    )
    [line] = [line for line in text.split("\n") if line.startswith("- [`01234567`]")]
    return line.removeprefix(f"- [`01234567`]({GITLAB}/shop/orders/-/commit/0123456789abcdef) ")


@pytest.mark.parametrize(
    ("title", "issues", "issues_url", "line"),
    [
        (
            "Fix checkout rounding (#131)",
            ("131",),
            ISSUES,
            f"Fix checkout rounding ([#131]({ISSUES}/131)) — Alice Martin",
        ),
        (
            # "Fixes #12" in the commit's body: the one issue the title does not show
            "Fix checkout rounding (#131)",
            ("131", "12"),
            ISSUES,
            f"Fix checkout rounding ([#131]({ISSUES}/131)) [#12]({ISSUES}/12) — Alice Martin",
        ),
        (
            "Revert #12, fix #12",
            ("12",),
            ISSUES,
            f"Revert [#12]({ISSUES}/12), fix [#12]({ISSUES}/12) — Alice Martin",
        ),
        ("Fix rounding (#131)", ("131", "12"), None, "Fix rounding (#131) #12 — Alice Martin"),
        (
            "Use *fast* path (#3)",
            ("3",),
            ISSUES,
            f"Use \\*fast\\* path ([#3]({ISSUES}/3)) — Alice Martin",
        ),
    ],
)
def test_a_changelog_line_in_the_description_shows_each_issue_once(
    title: str, issues: tuple[str, ...], issues_url: str | None, line: str
) -> None:
    assert _changelog_line(title, *issues, issues_url=issues_url) == line


def test_control_and_bidi_characters_never_reach_the_description() -> None:
    hostile = "\x00nul \x1b[31mesc \u202erlo \u2066iso\u2069 zero\u200bwidth\nnext line"
    text = merge_request_description(
        _record(
            changelog=Changelog(
                entries=(_commit("0123456789abcdef", f"{hostile} (#4)", "4", author=hostile),),
                total=1,
                issues_url=ISSUES,
            )
        ),
        requester_name=hostile,
        approvers="@sre-oncall",
        lock=hostile,
    )
    clean = "nul \\[31mesc rlo iso zerowidth next line"
    assert text.startswith(f"Requested by **{clean}** in Slack")
    assert f"- **Lock:** {clean}\n" in text
    assert f") {clean} ([#4]({ISSUES}/4)) — {clean}\n" in text
    # The only invisible character left is Pitcrew's own, that keeps "@name" from mentioning.
    hidden = [
        text[i - 1 : i + 1]
        for i, ch in enumerate(text)
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf")
    ]
    assert hidden == ["@\u200b"]
