"""Break-glass access: the catalog's ``access`` key, the ``/access`` grammar, the RoleBinding."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bot.domain.access import (
    ACCESS_USAGE,
    AccessCommandError,
    AccessHelp,
    Grant,
    GrantRequest,
    ListAccess,
    RevokeRequest,
    access_user,
    binding_manifest,
    grant_description,
    parse_access,
    revoke_description,
    rfc3339,
)
from bot.domain.catalog import Access, Catalog, CatalogError, parse_catalog
from bot.domain.ground_rules import check_ground_rules
from tests.unit.adapters.hostile import HOSTILE

EXAMPLE = Path(__file__).parents[3] / "bot" / "sandbox" / "example_catalog.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(EXAMPLE.read_text(), source="catalog.yaml")


# --------------------------------------------------------------------------------------------
# The catalog's access key


def test_the_example_catalog_offers_access(catalog: Catalog) -> None:
    assert catalog.access == Access(
        path="access/{env}/{namespace}-{user}.yaml",
        role="admin",
        subject="oidc:{email}",
        max=timedelta(hours=8),
    )
    access = catalog.access
    assert access.path_for(env="production", namespace="orders", user="bob", app="orders") == (
        "access/production/orders-bob.yaml"
    )
    assert access.subject_for(email="bob@example.com", user="bob") == "oidc:bob@example.com"


def without_access() -> str:
    """The example catalog without its access section (which comes before the apps)."""
    text = EXAMPLE.read_text()
    return text[: text.index("\naccess:")] + text[text.index("\napps:") :]


def test_access_is_optional_and_has_defaults() -> None:
    text = without_access()
    assert parse_catalog(text, source="c.yaml").access is None
    minimal = parse_catalog(text + '\naccess:\n  subject: "{user}"\n', source="c.yaml").access
    assert minimal == Access(subject="{user}")
    assert minimal is not None
    assert minimal.max == timedelta(hours=8)


BASE_LINES = len(without_access().splitlines())


@pytest.mark.parametrize(
    ("section", "problems"),
    [
        (
            'access:\n  path: "access/{namespace}.yaml"\n  subject: "oidc:{email}"\n',
            ['+1: access.path: must contain "{env}": each person\'s access in each environment'
             ' is a file of its own ("access/{env}/{namespace}-{user}.yaml")'],
        ),
        (
            'access:\n  path: "access/{env}/{user}.yaml"\n  subject: "oidc:{email}"\n',
            ['+1: access.path: must contain "{namespace}" or "{app}"'
             ' ("access/{env}/{namespace}-{user}.yaml")'],
        ),
        (
            'access:\n  path: "access/{env}/{team}-{user}.yaml"\n  subject: "oidc:{email}"\n',
            ['+1: access.path: unknown placeholder "{team}": use {env}, {namespace}, {user} and'
             ' {app} ("access/{env}/{namespace}-{user}.yaml")'],
        ),
        (
            'access:\n  path: "../{env}/{app}-{user}.yaml"\n  subject: "oidc:{email}"\n',
            ["+1: access.path: must be a path relative to the GitOps repo's root"
             ' ("access/{env}/{namespace}-{user}.yaml")'],
        ),
        (
            'access:\n  path: "access/{env}/{app}-{user}.json"\n  subject: "oidc:{email}"\n',
            ['+1: access.path: must name a YAML file (".yaml" or ".yml"):'
             ' "access/{env}/{app}-{user}.json"'],
        ),
        (
            'access:\n  subject: "oidc"\n  role: "Cluster Admin"\n  max: 8\n',
            ['+1: access.subject: must contain "{email}" (or "{user}"): each person binds as'
             ' themselves, e.g. "oidc:{email}"',
             '+2: access.role: "Cluster Admin" is not a ClusterRole name like "admin" or "edit"',
             '+3: access.max: expected a duration like "8h" or "1h30m", got 8'],
        ),
        (
            'access:\n  subject: "oidc:{mail}"\n  max: 45d\n',
            ['+1: access.subject: unknown placeholder "{mail}": use {email} (from Slack) or {user}',
             "+2: access.max: 45 days is too long for break-glass access: at most 30 days"],
        ),
        (
            'access:\n  subject: "oidc:{email}"\n  max: "a while"\n',
            ['+2: access.max: "a while" is not a duration: write it like "63h", "2d", "90m"'
             ' or "1h30m"'],
        ),
        (
            'access:\n  subject: "oidc:{email}"\n  rol: edit\n',
            ['+2: access.rol: unknown key "rol" (did you mean "role"?)'],
        ),
        ("access: admin\n", ['+0: access: expected a mapping, got "admin"']),
        ("access:\n  max: 8h\n", ["+0: access.subject: missing required key"]),
    ],
)  # fmt: skip
def test_a_bad_access_section_is_reported_with_line_and_field(
    section: str, problems: list[str]
) -> None:
    base = without_access() + "\n"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(base + section, source="c.yaml")
    first = BASE_LINES + 2  # the line of "access:"

    def where(problem: str) -> str:
        offset, rest = problem[1:].split(":", 1)
        return f"c.yaml:{first + int(offset)}:{rest}"

    assert [str(p) for p in caught.value.problems] == [where(p) for p in problems]


# --------------------------------------------------------------------------------------------
# /access


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ListAccess()),
        ("list", ListAccess()),
        ("help", AccessHelp()),
        (
            "production orders for 2h db is locked up",
            GrantRequest(
                env="production",
                app="orders",
                duration=timedelta(hours=2),
                reason="db is locked up",
            ),
        ),
        (
            "orders production 90 minutes",  # either order; "for" may be left out
            GrantRequest(env="production", app="orders", duration=timedelta(minutes=90), reason=""),
        ),
        (
            "Staging Invoices for 1h30m",
            GrantRequest(env="staging", app="invoices", duration=timedelta(minutes=90), reason=""),
        ),
        (
            "production orders for 8h",  # the limit itself is fine
            GrantRequest(env="production", app="orders", duration=timedelta(hours=8), reason=""),
        ),
        ("revoke production orders", RevokeRequest(env="production", app="orders")),
        ("revoke orders production", RevokeRequest(env="production", app="orders")),
    ],
)
def test_access_commands_are_understood(catalog: Catalog, text: str, expected: Any) -> None:
    assert parse_access(text, catalog=catalog, limit=timedelta(hours=8)) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "production orders for 9h",
            "“9h” is longer than break-glass access may last: at most 8 h (the catalog's"
            " `access.max`). Ask for 8h or less, and again when it ends if you still need it.",
        ),
        (
            "production orders for 1 day",
            "“1 day” is longer than break-glass access may last: at most 8 h (the catalog's"
            " `access.max`). Ask for 8h or less, and again when it ends if you still need it.",
        ),
        ("production orders", "Say for how long: `/access production orders for 2h`."),
        (
            "production orders because",
            "Say for how long: `/access production orders for 2h`, not “because”.",
        ),
        ("production orders for 0m", "“0m” is too short: at least a minute."),
        ("production", "Name the environment and the app, and for how long."),
        (
            "prodction orders for 2h",
            "No app or environment “prodction” — did you mean production? (environments are"
            " staging, production; apps are orders, invoices, search-api)",
        ),
        (
            "orders invoices for 2h",
            "Name one environment and one app, not “orders” and “invoices”.",
        ),
        ("revoke production", "Name the environment and the app: `/access revoke <env> <app>`."),
        ("revoke production orders now", "Unexpected “now” at the end."),
    ],
)
def test_wrong_access_commands_say_what_is_wrong(catalog: Catalog, text: str, problem: str) -> None:
    with pytest.raises(AccessCommandError) as caught:
        parse_access(text, catalog=catalog, limit=timedelta(hours=8))
    assert caught.value.problem == problem
    assert caught.value.usage == ACCESS_USAGE


def test_the_limit_is_said_as_it_would_be_typed(catalog: Catalog) -> None:
    with pytest.raises(AccessCommandError, match=r"at most 1 h 30 min .* Ask for 1h30m or less"):
        parse_access("staging orders for 2h", catalog=catalog, limit=timedelta(minutes=90))


@pytest.mark.parametrize(
    ("email", "user"),
    [
        ("bob@example.com", "bob"),
        ("Jean.Dupont@example.com", "jean-dupont"),
        ("o'brien+oncall@example.com", "o-brien-oncall"),
        ("__@example.com", "user"),
        ("a" * 80 + "@example.com", "a" * 40),
    ],
)
def test_the_user_of_an_email(email: str, user: str) -> None:
    assert access_user(email) == user


# --------------------------------------------------------------------------------------------
# The RoleBinding file


def grant(**changes: Any) -> Grant:
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
    )
    return replace(base, **changes)


def test_the_rolebinding_file_exactly() -> None:
    assert binding_manifest(grant()) == (
        "# Break-glass access opened through Pitcrew. Pitcrew removes this file when it expires\n"
        "# (pitcrew.io/expires below) or on `/access revoke`: do not edit it by hand.\n"
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        "kind: RoleBinding\n"
        "metadata:\n"
        "  name: pitcrew-access-bob\n"
        "  namespace: orders\n"
        "  labels:\n"
        "    appId: orders\n"
        "    app.kubernetes.io/managed-by: pitcrew\n"
        "  annotations:\n"
        '    pitcrew.io/expires: "2026-03-02T11:00:00Z"\n'
        '    pitcrew.io/requested-by: "bob@example.com"\n'
        '    pitcrew.io/grant: "0a1b2c3d4e5f"\n'
        '    pitcrew.io/reason: "checkout is down"\n'
        "roleRef:\n"
        "  apiGroup: rbac.authorization.k8s.io\n"
        "  kind: ClusterRole\n"
        '  name: "admin"\n'
        "subjects:\n"
        "  - apiGroup: rbac.authorization.k8s.io\n"
        "    kind: User\n"
        '    name: "oidc:bob@example.com"\n'
    )
    assert "reason" not in binding_manifest(grant(reason=""))


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_any_reason_stays_one_annotation_of_valid_yaml(catalog: Catalog, evil: str) -> None:
    text = binding_manifest(grant(reason=evil + '"\n  name: x\n# ' + evil))
    loaded = YAML(typ="safe").load(text)
    assert set(loaded) == {"apiVersion", "kind", "metadata", "roleRef", "subjects"}
    assert loaded["metadata"]["name"] == "pitcrew-access-bob"
    assert "\n" not in loaded["metadata"]["annotations"]["pitcrew.io/reason"]
    assert check_ground_rules(text, app=catalog.app("orders"), kind="workload") == []


def test_the_ground_rules_read_it_as_resources_whatever_the_apps_manifest(
    catalog: Catalog,
) -> None:
    invoices = catalog.app("invoices")  # its manifest is a kustomization
    bad = binding_manifest(grant(namespace="payments", app="invoices"))
    assert check_ground_rules(bad, app=invoices) == []  # read as a kustomization: nothing to see
    assert check_ground_rules(bad, app=invoices, kind="workload") == [
        'line 3: RoleBinding pitcrew-access-bob: namespace "payments" breaks the ground rule:'
        ' app invoices lives in namespace "invoices" or "invoices-<suffix>"'
    ]


def test_rfc3339_is_utc_whole_seconds() -> None:
    paris = datetime(2026, 3, 2, 10, 0, 30, 123456).astimezone()
    assert rfc3339(datetime(2026, 3, 2, 11, 0, 0, 999, tzinfo=UTC)) == "2026-03-02T11:00:00Z"
    assert rfc3339(paris).endswith("Z")


def test_the_merge_requests_say_who_what_until_when_and_why() -> None:
    description = grant_description(
        grant(reason="**urgent** @everyone"), requester_name="Bob <b>", approvers="@sre-oncall"
    )
    assert "Break-glass access requested by **Bob \\<b\\>** in Slack" in description
    assert "- **For:** 2 h, until 2026-03-02T11:00:00Z (counted from the request)" in description
    assert "- **Reason:** \\*\\*urgent\\*\\* @\u200beveryone" in description
    assert "needs 1 approval from @\u200bsre-oncall in Slack, not the requester's" in description
    assert description.endswith("<!-- pitcrew access 0a1b2c3d4e5f -->")
    expired = revoke_description(grant(revoke_reason="expired", mr_iid=4), by_name=None)
    assert "(granted by !4): it expired at 2026-03-02T11:00:00Z." in expired
    revoked = revoke_description(grant(revoke_reason="revoked"), by_name="Carol")
    assert "**Carol** revoked it in Slack" in revoked


def test_titles_and_branches() -> None:
    assert grant().title == "Grant admin on orders in production to bob for 2 h"
    assert grant(revoke_reason="expired").revoke_title == (
        "Revoke admin on orders in production from bob (expired)"
    )
    assert grant().revoke_branch_name == "pitcrew/access-0a1b2c3d4e5f-revoke"
    assert grant(revoke_round=2).revoke_branch_name == "pitcrew/access-0a1b2c3d4e5f-revoke-2"


def test_time_left_never_goes_below_zero() -> None:
    assert grant().left(T0 + timedelta(minutes=30)) == timedelta(minutes=90)
    assert grant().left(T0 + timedelta(hours=5)) == timedelta(0)
