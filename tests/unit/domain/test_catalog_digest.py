"""The team key ``digest``: the weekly delivery digest's schedule, its default, ``off``, and every
mistake named by file, line and field."""

from __future__ import annotations

import pytest

from bot.domain.catalog import CatalogError, parse_catalog

TEAMS = """\
teams:
  payments:
    channel: "#payments-deploys"
{digest}environments:
  - name: production
    policy: auto
apps: {{}}
"""


def catalog(digest: str) -> str:
    return TEAMS.format(digest=digest)


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        ("", ("0 9 * * 1", "UTC")),
        ("    digest: {}\n", ("0 9 * * 1", "UTC")),
        ('    digest: {schedule: "0 8 * * 5"}\n', ("0 8 * * 5", "UTC")),
        (
            '    digest:\n      schedule: "30 7 * * 1"\n      timezone: Europe/Rome\n',
            ("30 7 * * 1", "Europe/Rome"),
        ),
        ("    digest: off\n", None),
        ("    digest: false\n", None),
        ("    digest: OFF\n", None),
    ],
)
def test_the_digest_schedule(digest: str, expected: tuple[str, str] | None) -> None:
    team = parse_catalog(catalog(digest), source="catalog.yaml").team("payments")
    if expected is None:
        assert team.digest is None
    else:
        assert team.digest is not None
        assert (team.digest.schedule, team.digest.timezone) == expected
        assert team.digest.slots.cron == expected[0]


@pytest.mark.parametrize(
    ("digest", "problem"),
    [
        (
            '    digest: {schedule: "0 9 * *"}\n',
            'catalog.yaml:4: teams.payments.digest.schedule: "0 9 * *" is not a cron schedule:'
            ' it needs 5 fields (minute hour day month weekday, like "0 9 * * 1"), not 4',
        ),
        (
            "    digest: {timezone: Europe/Roma}\n",
            'catalog.yaml:4: teams.payments.digest.timezone: unknown time zone "Europe/Roma"'
            ' (did you mean "Europe/Rome"?)',
        ),
        (
            "    digest: {when: monday}\n",
            'catalog.yaml:4: teams.payments.digest.when: unknown key "when" (keys: schedule,'
            " timezone)",
        ),
        (
            "    digest:\n",
            "catalog.yaml:4: teams.payments.digest: no value: give one or remove the key",
        ),
    ],
)
def test_digest_mistakes_are_named_by_file_line_and_field(digest: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(catalog(digest), source="catalog.yaml")
    assert str(caught.value) == problem
