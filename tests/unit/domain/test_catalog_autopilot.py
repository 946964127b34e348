"""The catalog's autopilot keys (SPEC 13): what they mean, and every mistake named by file, line
and field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.catalog import CatalogError, parse_catalog

VALID = """\
teams:
  payments:
    channel: "#payments-deploys"
    oncall: "@payments-oncall"
environments:
  - name: staging
    policy: auto
    auto_deploy: true
  - name: production
    policy: manual
    promote:
      from: staging
      schedule: "0 9 * * 1"
      timezone: Europe/Rome
    freeze:
      - schedule: "0 18 * * 5"
        duration: 63h
        reason: weekend freeze
        timezone: Europe/Rome
apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{env}/deployment.yaml"
    versions: '^v\\d+\\.\\d+\\.\\d+$'
    auto_deploy: false
"""


def test_the_keys_of_spec_13() -> None:
    catalog = parse_catalog(VALID, source="catalog.yaml")
    staging, production = catalog.environments
    assert staging.auto_deploy
    assert not production.auto_deploy
    assert production.promote is not None
    assert (production.promote.source, production.promote.timezone) == ("staging", "Europe/Rome")
    (freeze,) = production.freeze
    assert (freeze.duration, freeze.reason) == (timedelta(hours=63), "weekend freeze")
    orders = catalog.app("orders")
    assert (orders.versions, orders.auto_deploy) == (r"^v\d+\.\d+\.\d+$", False)


def test_the_defaults() -> None:
    text = VALID.replace("    versions: '^v\\d+\\.\\d+\\.\\d+$'\n    auto_deploy: false\n", "")
    text = text.replace("        timezone: Europe/Rome\n", "").replace(
        "        reason: weekend freeze\n", ""
    )
    catalog = parse_catalog(text, source="catalog.yaml")
    orders = catalog.app("orders")
    assert (orders.versions, orders.auto_deploy) == (r"^\d+\.\d+\.\d+$", True)
    (freeze,) = catalog.environments[1].freeze
    assert (freeze.timezone, freeze.reason) == ("UTC", "scheduled freeze")


def test_a_single_freeze_may_be_a_mapping() -> None:
    text = VALID.replace(
        '      - schedule: "0 18 * * 5"\n        duration: 63h\n',
        '      schedule: "0 18 * * 5"\n      duration: 63h\n',
    ).replace("        reason: weekend freeze\n        timezone: Europe/Rome\n", "")
    (freeze,) = parse_catalog(text, source="catalog.yaml").environments[1].freeze
    assert freeze.schedule == "0 18 * * 5"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'schedule: "0 9 * * 1"',
            'schedule: "0 25 * * 1"',
            'catalog.yaml:13: environments[1].promote.schedule: "0 25 * * 1" is not a cron'
            " schedule: its hour field is not valid",
        ),
        (
            'schedule: "0 18 * * 5"',
            'schedule: "0 18 * *"',
            'catalog.yaml:16: environments[1].freeze[0].schedule: "0 18 * *" is not a cron'
            ' schedule: it needs 5 fields (minute hour day month weekday, like "0 9 * * 1"),'
            " not 4",
        ),
        (
            "      timezone: Europe/Rome\n    freeze",
            "      timezone: Europe/Roma\n    freeze",
            'catalog.yaml:14: environments[1].promote.timezone: unknown time zone "Europe/Roma"'
            ' (did you mean "Europe/Rome"?)',
        ),
        (
            "duration: 63h",
            "duration: 8d",
            'catalog.yaml:17: environments[1].freeze[0].duration: "8d" is longer than a week (7d):'
            " a freeze that long is a lock someone should hold by hand",
        ),
        (
            "duration: 63h",
            "duration: 63",
            "catalog.yaml:17: environments[1].freeze[0].duration: 63 has no unit: write the"
            ' duration like "63h", "2d" or "90m"',
        ),
        (
            "duration: 63h",
            "duration: soon",
            'catalog.yaml:17: environments[1].freeze[0].duration: "soon" is not a duration:'
            ' write it like "63h", "2d", "90m" or "1h30m"',
        ),
        (
            "from: staging",
            "from: stagin",
            'catalog.yaml:12: environments[1].promote.from: unknown environment "stagin"'
            ' (did you mean "staging"?)',
        ),
        (
            "from: staging",
            "from: production",
            'catalog.yaml:12: environments[1].promote.from: "production" cannot promote from'
            " itself",
        ),
        (
            "      from: staging",
            "      form: staging",
            "catalog.yaml:11: environments[1].promote.from: missing required key\n"
            'catalog.yaml:12: environments[1].promote.form: unknown key "form" (did you mean'
            ' "from"?)',
        ),
        (
            "        reason: weekend freeze",
            "        reasn: weekend freeze",
            'catalog.yaml:18: environments[1].freeze[0].reasn: unknown key "reasn" (did you mean'
            ' "reason"?)',
        ),
        (
            "versions: '^v\\d+\\.\\d+\\.\\d+$'",
            "versions: '^(v\\d+$'",
            'catalog.yaml:26: apps.orders.versions: "^(v\\d+$" is not a regular expression that'
            " compiles: missing ), unterminated subpattern at position 1",
        ),
        (
            "    auto_deploy: true",
            "    auto_deploy: yes please",
            'catalog.yaml:8: environments[0].auto_deploy: expected true or false, got "yes please"',
        ),
    ],
)
def test_mistakes_are_named_by_file_line_and_field(old: str, new: str, problem: str) -> None:
    assert old in VALID
    with pytest.raises(CatalogError) as caught:
        parse_catalog(VALID.replace(old, new, 1), source="catalog.yaml")
    assert str(caught.value) == problem


def test_promotions_go_forward() -> None:
    text = VALID.replace(
        "    auto_deploy: true\n",
        '    auto_deploy: true\n    promote: {from: production, schedule: "0 9 * * 1"}\n',
    )
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, source="catalog.yaml")
    assert str(caught.value) == (
        'catalog.yaml:9: environments[0].promote.from: "production" comes after "staging" in'
        " promotion order (staging → production): promotions go forward"
    )
