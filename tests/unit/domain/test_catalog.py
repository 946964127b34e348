"""The catalog as its authors meet it: every mistake named by file, line and field (SPEC 3)."""

from __future__ import annotations

from importlib.resources import files

import pytest
from pydantic import ValidationError

from bot.domain.catalog import (
    App,
    Catalog,
    CatalogError,
    CatalogProblem,
    Environment,
    NotifyFilter,
    NotInCatalogError,
    Team,
    parse_catalog,
)

# Line numbers in the expectations below count from this text.
BASE = """\
teams:
  payments:
    channel: "#payments-deploys"
    oncall: "@payments-oncall"
environments:
  - name: staging
    policy: auto
  - name: production
    policy: manual
apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{env}/deployment.yaml"
"""

REFUNDS = """\
  refunds:
    team: payments
    source: Shop/Orders
    image: registry.example.com/shop/refunds
    manifests: "apps/refunds/{env}/deployment.yaml"
"""

ORDERS_API = """\
  orders-api:
    team: payments
    source: shop/orders-api
    image: registry.example.com/shop/orders-api
    manifests: "apps/orders-api/{env}/deployment.yaml"
"""

NOT_A_NAME = (
    'is not a valid name: use lowercase letters, digits and "-", start and end with a letter '
    "or digit, at most 63 characters"
)


def edit(*replacements: tuple[str, str], append: str = "") -> str:
    text = BASE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text + append


def example_text() -> str:
    return files("bot.sandbox").joinpath("example_catalog.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def example() -> Catalog:
    return parse_catalog(example_text(), source="catalog.yaml")


@pytest.fixture(scope="module")
def base() -> Catalog:
    return parse_catalog(BASE, source="catalog.yaml")


BAD_CATALOGS = [
    pytest.param(
        edit(("team: payments", "team: paymnts")),
        'catalog.yaml:12: apps.orders.team: unknown team "paymnts" (did you mean "payments"?)',
        id="unknown-team-close",
    ),
    pytest.param(
        edit(("team: payments", "team: billing")),
        'catalog.yaml:12: apps.orders.team: unknown team "billing" (teams: payments)',
        id="unknown-team-far",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    aprovals: 2\n")),
        'catalog.yaml:10: environments[1].aprovals: unknown key "aprovals" '
        '(did you mean "approvals"?)',
        id="typo-in-environment-key",
    ),
    pytest.param(
        edit(("    source: shop/orders", "    sorce: shop/orders")),
        "catalog.yaml:11: apps.orders.source: missing required key\n"
        'catalog.yaml:13: apps.orders.sorce: unknown key "sorce" (did you mean "source"?)',
        id="typo-in-app-key",
    ),
    pytest.param(
        edit(append="extras: 1\n"),
        'catalog.yaml:16: extras: unknown key "extras" (keys: teams, environments, apps, access)',
        id="unknown-top-level-key",
    ),
    pytest.param(
        edit(('channel: "#payments-deploys"', "channel: #payments-deploys")),
        'catalog.yaml:3: teams.payments.channel: no value: a bare "#" starts a YAML comment, '
        'so quote channel names ("#payments-deploys")',
        id="unquoted-channel-is-a-comment",
    ),
    pytest.param(
        edit(('"#payments-deploys"', "payments-deploys")),
        'catalog.yaml:3: teams.payments.channel: channel names start with "#": '
        'write "#payments-deploys", in quotes',
        id="channel-without-hash",
    ),
    pytest.param(
        edit(('"@payments-oncall"', "@payments-oncall")),
        "catalog.yaml:4: invalid YAML: found character '@' that cannot start any token "
        '(quote Slack handles: "@payments-oncall")',
        id="unquoted-handle",
    ),
    pytest.param(
        edit(("image: registry", "image: [registry")),
        "catalog.yaml:15: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started on line 14)",
        id="yaml-syntax",
    ),
    pytest.param(
        edit(("    team: payments\n", "    team: payments\n    team: search\n")),
        'catalog.yaml:13: invalid YAML: duplicate key "team" (first on line 12)',
        id="duplicate-key",
    ),
    pytest.param(
        edit(("    policy: auto", "\tpolicy: auto")),
        "catalog.yaml:7: invalid YAML: found character '\\t' that cannot start any token "
        "(indent with spaces, not tabs)",
        id="tab-indent",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    approvals: 0\n")),
        "catalog.yaml:10: environments[1].approvals: must be at least 1, got 0",
        id="approvals-below-one",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    approvals: two\n")),
        'catalog.yaml:10: environments[1].approvals: expected a whole number, got "two"',
        id="approvals-not-a-number",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    self_approval: maybe\n")),
        'catalog.yaml:10: environments[1].self_approval: expected true or false, got "maybe"',
        id="self-approval-not-a-boolean",
    ),
    pytest.param(
        edit(("    policy: auto\n", "    policy: auto\n    approvals: 2\n")),
        "catalog.yaml:8: environments[0].approvals: only applies to manual environments "
        "(this one has policy auto)",
        id="approvals-on-auto-environment",
    ),
    pytest.param(
        edit(("policy: manual", "policy: manaul")),
        'catalog.yaml:9: environments[1].policy: unknown policy "manaul" (did you mean "manual"?)',
        id="policy-typo",
    ),
    pytest.param(
        edit(("    image: registry.example.com/shop/orders\n", "")),
        "catalog.yaml:11: apps.orders.image: missing required key",
        id="missing-required-key",
    ),
    pytest.param(
        edit(("{env}/deployment", "production/deployment")),
        'catalog.yaml:15: apps.orders.manifests: must contain "{env}", replaced by each '
        'environment\'s name ("apps/orders/{env}/deployment.yaml")',
        id="manifests-without-env",
    ),
    pytest.param(
        edit(('"apps/orders', '"/apps/orders')),
        "catalog.yaml:15: apps.orders.manifests: must be a path relative to the GitOps repo's "
        'root ("apps/orders/{env}/deployment.yaml")',
        id="manifests-absolute",
    ),
    pytest.param(
        edit(append="    namespace: payments\n"),
        'catalog.yaml:16: apps.orders.namespace: "payments" breaks the ground rule: '
        'the namespace of app orders is "orders" or "orders-<suffix>"',
        id="namespace-ground-rule",
    ),
    pytest.param(
        edit(("  orders:", "  Orders:")),
        f'catalog.yaml:11: apps.Orders: "Orders" {NOT_A_NAME}',
        id="app-name-not-a-dns-label",
    ),
    pytest.param(
        edit(("name: staging", "name: Staging")),
        f'catalog.yaml:6: environments[0].name: "Staging" {NOT_A_NAME}',
        id="environment-name-not-a-dns-label",
    ),
    pytest.param(
        edit(("shop/orders\n    manifests", "shop/orders:1.4.2\n    manifests")),
        'catalog.yaml:14: apps.orders.image: "registry.example.com/shop/orders:1.4.2": give the '
        'image without tag or digest ("registry.example.com/shop/orders"); the version is what '
        "Pitcrew changes",
        id="image-with-tag",
    ),
    pytest.param(
        edit(("source: shop/orders", "source: https://gitlab.example.com/shop/orders")),
        'catalog.yaml:13: apps.orders.source: use the project path ("shop/orders"), not a URL: '
        '"https://gitlab.example.com/shop/orders"',
        id="source-is-a-url",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    approvers: [U0123ABCD, sre]\n")),
        'catalog.yaml:10: environments[1].approvers[1]: "sre" is neither a Slack user group '
        'handle ("@sre-oncall") nor a user or user group ID ("U0123ABCD")',
        id="approvers-list-item",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    approvers: sre\n")),
        'catalog.yaml:10: environments[1].approvers: "sre" is neither a Slack user group '
        'handle ("@sre-oncall") nor a user or user group ID ("U0123ABCD")',
        id="approvers-single-string",
    ),
    pytest.param(
        edit(("    policy: manual\n", "    policy: manual\n    approvers: []\n")),
        "catalog.yaml:10: environments[1].approvers: must not be empty",
        id="approvers-empty",
    ),
    pytest.param(
        edit(("policy: manual\n", "policy: manual\n    approvals: 2\n    approvers: U0123ABCD\n")),
        "catalog.yaml:11: environments[1].approvers: needs 2 distinct approvals but lists "
        "only 1 person",
        id="fewer-approvers-than-approvals",
    ),
    pytest.param(
        edit(('    oncall: "@payments-oncall"\n', "")),
        'catalog.yaml:2: teams.payments.oncall: required: environment "production" names no '
        "approvers, so this team's oncall approves its releases there",
        id="nobody-could-approve",
    ),
    pytest.param(
        edit(
            ('"@payments-oncall"', "U0123ABCD"),
            ("    policy: manual\n", "    policy: manual\n    approvals: 2\n"),
        ),
        'catalog.yaml:4: teams.payments.oncall: environment "production" needs 2 distinct '
        "approvals but this oncall lists only 1 person",
        id="oncall-too-small-for-approvals",
    ),
    pytest.param(
        edit(("name: staging", "name: production")),
        'catalog.yaml:8: environments[1].name: duplicate environment "production" '
        "(also environments[0])",
        id="duplicate-environment",
    ),
    pytest.param(
        edit(append=REFUNDS),
        'catalog.yaml:18: apps.refunds.source: project "Shop/Orders" is already the source of '
        'app "orders" (one app per project)',
        id="source-shared-by-two-apps",
    ),
    pytest.param(
        edit(append="    namespace: orders-api\n" + ORDERS_API),
        'catalog.yaml:17: apps.orders-api.namespace: namespace "orders-api" already belongs to '
        'app "orders"',
        id="namespace-shared-by-two-apps",
    ),
    pytest.param(
        edit(
            ("deployment.yaml", "kustomization.yaml"),
            append="    version_key: image.tag\n",
        ),
        "catalog.yaml:16: apps.orders.version_key: only applies to Helm values files; "
        'a kustomization names its image in "images:"',
        id="version-key-on-kustomization",
    ),
    pytest.param(
        edit(
            (
                '    oncall: "@payments-oncall"\n',
                '    oncall: "@payments-oncall"\n'
                "    notify:\n"
                '      refs: ["$default", "$tagz"]\n'
                "      statuses: [faild]\n"
                "      sources: [push, 3]\n"
                "      refz: []\n",
            )
        ),
        'catalog.yaml:6: teams.payments.notify.refs[1]: unknown ref keyword "$tagz" '
        '(did you mean "$tags"?)\n'
        'catalog.yaml:7: teams.payments.notify.statuses[0]: unknown status "faild" '
        '(did you mean "failed"?)\n'
        "catalog.yaml:8: teams.payments.notify.sources[1]: expected a string, got 3\n"
        'catalog.yaml:9: teams.payments.notify.refz: unknown key "refz" (did you mean "refs"?)',
        id="notify-typos",
    ),
    pytest.param(
        edit(("    team: payments", "    name: orders\n    team: payments")),
        'catalog.yaml:12: apps.orders.name: unknown key "name": the app\'s name is its key',
        id="name-inside-a-keyed-entry",
    ),
    pytest.param(
        edit(("  - name: staging\n    policy: auto\n", "  - staging\n")),
        'catalog.yaml:6: environments[0]: expected a mapping, got "staging"',
        id="environment-not-a-mapping",
    ),
    pytest.param(
        "teams:\n  payments:\n    channel: C0123\napps:\n",
        "catalog.yaml:1: environments: missing required key: list the environments in "
        "promotion order",
        id="no-environments",
    ),
    pytest.param(
        "teams: [payments]\nenvironments: {}\napps: 3\n",
        "catalog.yaml:1: teams: expected a mapping of team names to teams, got a list\n"
        "catalog.yaml:2: environments: expected a list of environments in promotion order, "
        "got a mapping\n"
        "catalog.yaml:3: apps: expected a mapping of app names to apps, got 3",
        id="wrong-section-shapes",
    ),
    pytest.param(
        "# nothing yet\n",
        "catalog.yaml:1: the catalog is empty: it needs teams, environments and apps",
        id="empty",
    ),
    pytest.param(
        "- teams\n",
        "catalog.yaml:1: the catalog is a list, not a mapping: it needs teams, environments "
        "and apps",
        id="not-a-mapping",
    ),
    pytest.param(
        edit(("team: payments", "team: paymnts"), ("policy: manual", "policy: manaul")),
        'catalog.yaml:9: environments[1].policy: unknown policy "manaul" (did you mean '
        '"manual"?)\n'
        'catalog.yaml:12: apps.orders.team: unknown team "paymnts" (did you mean "payments"?)',
        id="every-problem-in-line-order",
    ),
    pytest.param(
        edit(
            ("team: payments", "team: paymnts"),
            ("image: registry.example.com/shop/orders", "image: registry.example.com/o:1.0"),
        ),
        'catalog.yaml:12: apps.orders.team: unknown team "paymnts" (did you mean "payments"?)\n'
        'catalog.yaml:14: apps.orders.image: "registry.example.com/o:1.0": give the image '
        'without tag or digest ("registry.example.com/shop/orders"); the version is what '
        "Pitcrew changes",
        id="unknown-team-of-an-app-with-another-problem",
    ),
    pytest.param(
        edit(
            ('    oncall: "@payments-oncall"\n', ""),
            ('channel: "#payments-deploys"', "channel: payments-deploys"),
        ),
        'catalog.yaml:2: teams.payments.oncall: required: environment "production" names no '
        "approvers, so this team's oncall approves its releases there\n"
        'catalog.yaml:3: teams.payments.channel: channel names start with "#": write '
        '"#payments-deploys", in quotes',
        id="oncall-of-a-team-with-another-problem",
    ),
    pytest.param(
        edit(
            ('    oncall: "@payments-oncall"\n', ""),
            ("source: shop/orders", "source: https://gitlab.com/shop/orders"),
        ),
        'catalog.yaml:2: teams.payments.oncall: required: environment "production" names no '
        "approvers, so this team's oncall approves its releases there\n"
        'catalog.yaml:12: apps.orders.source: use the project path ("shop/orders"), not a URL: '
        '"https://gitlab.com/shop/orders"',
        id="oncall-of-a-team-whose-only-app-has-a-problem",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CATALOGS)
def test_bad_catalog_is_refused_with_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="catalog.yaml")

    assert str(caught.value) == expected
    assert [str(p) for p in caught.value.problems] == expected.split("\n")


def test_problem_carries_its_parts() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(edit(("team: payments", "team: paymnts")), source="deploy/catalog.yaml")

    assert caught.value.problems == (
        CatalogProblem(
            source="deploy/catalog.yaml",
            line=12,
            field="apps.orders.team",
            message='unknown team "paymnts" (did you mean "payments"?)',
        ),
    )


def test_example_catalog_parses(example: Catalog) -> None:
    assert example.team_names == ("payments", "search")
    assert example.env_names == ("staging", "production")
    assert example.app_names == ("orders", "invoices", "search-api")
    production = example.environment("production")
    assert production.policy == "manual"
    assert production.approvals == 1
    assert production.approvers == ("@sre-oncall",)
    assert production.self_approval is False
    assert production.channel == "#releases"


def test_example_catalog_covers_the_three_manifest_kinds(example: Catalog) -> None:
    assert {a.name: a.manifest_kind for a in example.apps} == {
        "orders": "workload",
        "invoices": "kustomization",
        "search-api": "helm_values",
    }
    assert example.app("search-api").version_key == "image.tag"


def test_defaults(base: Catalog) -> None:
    team = base.team("payments")
    assert team.notify == NotifyFilter(refs=("$default", "$tags"), statuses=("failed",))
    assert team.notify.sources is None
    staging = base.environment("staging")
    assert (staging.approvals, staging.approvers, staging.self_approval, staging.channel) == (
        1,
        None,
        False,
        None,
    )
    orders = base.app("orders")
    assert orders.namespace == "orders"
    assert orders.version_key is None


@pytest.mark.parametrize(
    ("app", "env", "path"),
    [
        ("orders", "staging", "apps/orders/staging/deployment.yaml"),
        ("invoices", "production", "apps/invoices/production/kustomization.yaml"),
        ("search-api", "production", "apps/search-api/production/values.yaml"),
    ],
)
def test_manifest_path(example: Catalog, app: str, env: str, path: str) -> None:
    assert example.manifest_path(app, env) == path
    assert example.manifest_path(example.app(app), example.environment(env)) == path


def test_apps_of_team(example: Catalog) -> None:
    assert [a.name for a in example.apps_of_team("payments")] == ["orders", "invoices"]
    assert [a.name for a in example.apps_of_team(example.team("search"))] == ["search-api"]


def test_app_for_source_ignores_case_and_unknown_projects(example: Catalog) -> None:
    orders = example.app_for_source("Shop/Orders")
    assert orders is not None
    assert orders.name == "orders"
    assert example.app_for_source("shop/unknown") is None


def test_app_for_namespace(example: Catalog) -> None:
    app = example.app_for_namespace("search-api")
    assert app is not None
    assert app.name == "search-api"
    assert example.app_for_namespace("kube-system") is None


def test_channels(example: Catalog) -> None:
    assert example.channel_for_app("orders") == "#payments-deploys"
    assert example.channel_for_app("search-api") == "#search-deploys"
    assert example.release_channels("orders", "production") == ("#payments-deploys", "#releases")
    assert example.release_channels("orders", "staging") == ("#payments-deploys",)


def test_approvers_default_to_the_owning_teams_oncall(example: Catalog, base: Catalog) -> None:
    assert example.approvers_for("orders", "production") == ("@sre-oncall",)
    assert base.approvers_for("orders", "production") == ("@payments-oncall",)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("app", "ordrs", 'unknown app "ordrs" (did you mean "orders"?)'),
        ("team", "billing", 'unknown team "billing" (teams: payments, search)'),
        ("environment", "prod", 'unknown environment "prod" (environments: staging, production)'),
    ],
)
def test_unknown_names_raise_our_error(
    example: Catalog, kind: str, name: str, message: str
) -> None:
    lookup = {"app": example.app, "team": example.team, "environment": example.environment}[kind]

    with pytest.raises(NotInCatalogError) as caught:
        lookup(name)

    assert str(caught.value) == message
    assert (caught.value.kind, caught.value.name) == (kind, name)


def test_suggest(example: Catalog) -> None:
    assert example.suggest("ordrs") == ("orders",)
    assert example.suggest("serch") == ("search", "search-api")
    assert example.suggest("serch", among="app") == ("search-api",)
    assert example.suggest("production", among="app") == ()


@pytest.mark.parametrize(
    ("ref", "tag", "status", "source", "wanted"),
    [
        ("main", False, "running", "push", True),
        ("v1.4.2", True, "success", "push", True),
        ("feature/x", False, "running", "push", False),
        ("feature/x", False, "success", "push", False),
        ("feature/x", False, "failed", "merge_request_event", True),
    ],
)
def test_default_notify_filter_is_default_branch_tags_and_failures(
    ref: str, tag: bool, status: str, source: str, wanted: bool
) -> None:
    notify = NotifyFilter()

    assert (
        notify.wants(ref=ref, tag=tag, default_branch="main", status=status, source=source)
        is wanted
    )


@pytest.mark.parametrize(
    ("ref", "tag", "status", "source", "wanted"),
    [
        ("release/1.4", False, "running", "push", True),
        ("release/1.4", False, "running", "web", False),
        ("main", False, "failed", "push", False),
        ("v1.4.2", True, "running", "schedule", False),
    ],
)
def test_custom_notify_filter(ref: str, tag: bool, status: str, source: str, wanted: bool) -> None:
    text = edit(
        (
            '    oncall: "@payments-oncall"\n',
            '    oncall: "@payments-oncall"\n'
            "    notify:\n"
            '      refs: ["release/*"]\n'
            "      statuses: []\n"
            "      sources: [push, schedule]\n",
        )
    )
    notify = parse_catalog(text, source="catalog.yaml").team("payments").notify

    assert (
        notify.wants(ref=ref, tag=tag, default_branch="main", status=status, source=source)
        is wanted
    )


def test_ids_anchors_and_extension_keys_are_accepted() -> None:
    text = """\
x-manual: &manual
  policy: manual
  approvals: 2
  approvers: [U0123ABCD, W0456EFGH]
teams:
  payments:
    channel: C0123ABCD
    oncall: [U0123ABCD, S0789IJKL]
environments:
  - name: production
    <<: *manual
apps:
  orders:
    team: payments
    source: shop/orders
    image: localhost:5000/orders
    manifests: "apps/orders/values-{env}.yml"
    version_key: image.tag
    namespace: orders-prod
"""
    catalog = parse_catalog(text, source="catalog.yaml")

    production = catalog.environment("production")
    assert (production.approvals, production.approvers) == (2, ("U0123ABCD", "W0456EFGH"))
    assert catalog.app("orders").namespace == "orders-prod"
    assert catalog.channel_for_app("orders") == "C0123ABCD"


def test_apps_may_share_an_image() -> None:
    text = edit(
        append=ORDERS_API.replace(
            "registry.example.com/shop/orders-api", "registry.example.com/shop/orders"
        )
    )

    catalog = parse_catalog(text, source="catalog.yaml")

    assert {a.image for a in catalog.apps} == {"registry.example.com/shop/orders"}


def test_models_are_frozen_and_compare_by_value(base: Catalog) -> None:
    again = parse_catalog(BASE, source="elsewhere.yaml")
    assert again == base
    assert hash(again) == hash(base)
    with pytest.raises(ValidationError):
        base.team("payments").channel = "#elsewhere"  # type: ignore[misc]


def test_direct_construction_refuses_inconsistent_catalogs() -> None:
    with pytest.raises(ValidationError, match=r'apps\.orders\.team: unknown team "paymnts"'):
        Catalog(
            teams=(Team(name="payments", channel="#payments-deploys"),),
            environments=(Environment(name="staging", policy="auto"),),
            apps=(
                App(
                    name="orders",
                    team="paymnts",
                    source="shop/orders",
                    image="registry.example.com/shop/orders",
                    manifests="apps/orders/{env}/deployment.yaml",
                ),
            ),
        )


def test_problem_without_field_reads_naturally() -> None:
    problem = CatalogProblem(
        source="catalog.yaml", line=1, field="", message="the catalog is empty"
    )

    assert str(problem) == "catalog.yaml:1: the catalog is empty"


def test_an_app_built_with_an_explicit_empty_version_key_is_a_plain_manifest() -> None:
    from bot.domain.catalog import App

    app = App(
        name="orders",
        team="payments",
        source="shop/orders",
        image="registry.example.com/shop/orders",
        manifests="apps/orders/{env}/deployment.yaml",
        version_key=None,
    )
    assert app.manifest_kind == "workload"


def test_releases_are_announced_in_the_team_channel_and_the_env_channel(
    example: Catalog,
) -> None:
    assert example.release_channels("orders", "production") == ("#payments-deploys", "#releases")
    assert example.release_channels("orders", "staging") == ("#payments-deploys",)


def test_approvers_are_the_envs_else_the_teams_oncall(example: Catalog) -> None:
    assert example.approvers_for("orders", "production") == ("@sre-oncall",)
    text = (
        example_text()
        .replace('    approvers: "@sre-oncall"\n', "")
        .replace(
            '    channel: "#search-deploys"\n',
            '    channel: "#search-deploys"\n    oncall: "@search"\n',
        )
    )
    no_approvers = parse_catalog(text, source="catalog.yaml")
    assert no_approvers.approvers_for("orders", "production") == ("@payments-oncall",)
