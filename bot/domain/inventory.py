"""What runs where: the inventory behind ``/whatsinprod``, and that command's grammar.

Git is the source of truth (``Deployed``: the version in each app's manifest per environment, and
the commit and merge request that put it there); the cluster is the check (``Live``: what the
workload actually runs). The two are cached separately, by the GitLab and the Kubernetes adapters,
so an answer never waits on either, and ``drift`` compares them when both are known.

The grammar, ``/whatsinprod [app|team|all] [env]``:

- nothing, or ``all``: every app, in the last environment of the promotion order ("prod");
- ``<app>``: that app in every environment, in promotion order (the answer to "where is it?");
- ``<team>`` or ``all``, with an optional environment: the team's apps in that one environment —
  one line per app keeps a team of 30 readable; ``/whatsinprod <app>`` shows the other ones;
- ``<app> <env>``: that app in that environment only;
- ``<env>`` alone: every app in that environment (``/whatsinprod staging``).

A name that is both an app and a team means the app. Names are matched case-insensitively.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from bot.domain.catalog import Catalog
from bot.domain.errors import CommandError
from bot.domain.images import ImageRef, ImageRefError

__all__ = [
    "STALE_AFTER",
    "WHATSINPROD_USAGE",
    "Deployed",
    "Inventory",
    "Key",
    "Live",
    "Query",
    "QueryError",
    "QueryKind",
    "drift",
    "parse_whatsinprod",
]

STALE_AFTER: Final = timedelta(minutes=10)
"""The cache refreshes every 5 minutes: twice that without one means GitLab is not answering."""

WHATSINPROD_USAGE: Final = (
    "Usage: `/whatsinprod [app|team|all] [env]` — e.g. `/whatsinprod orders`,"
    " `/whatsinprod payments staging`, `/whatsinprod all production`"
)

_HELP_WORDS: Final = frozenset({"help", "-h", "--help", "?"})
_ALL: Final = "all"
_IN: Final = "in"
_QUOTED: Final = 40
_LISTED: Final = 10

Key = tuple[str, str]
"""``(app, env)``."""


# --------------------------------------------------------------------------------------------
# The inventory


@dataclass(frozen=True, kw_only=True)
class Deployed:
    """What git says runs: an app's manifest in one environment.

    ``version is None and unreadable is None``: the manifest does not exist (not deployed there).
    ``unreadable`` is the one-line reason the manifest could not be read; the rest of the answer
    still stands.
    """

    app: str
    env: str
    version: str | None = None
    unreadable: str | None = None
    changed_at: datetime | None = None
    """When the manifest last changed (its last commit)."""
    changed_by: str | None = None
    """The commit's author as GitLab names them (not a Slack user)."""
    commit_url: str | None = None
    mr_iid: int | None = None
    """The merge request that brought the last change, when there was one."""
    mr_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class Live:
    """What the cluster runs, from the rollout watcher's cache."""

    app: str
    env: str
    ready: int
    desired: int
    images: tuple[str, ...] = ()
    """Every container image of the workload, sidecars included."""
    observed_at: datetime


@dataclass(frozen=True, kw_only=True)
class Inventory:
    entries: Mapping[Key, Deployed] = field(default_factory=dict)
    live: Mapping[Key, Live] = field(default_factory=dict)
    refreshed_at: datetime | None = None
    """When the git side was last rebuilt or refreshed; ``None``: never (still loading)."""

    def deployed(self, app: str, env: str) -> Deployed | None:
        return self.entries.get((app, env))

    def live_state(self, app: str, env: str) -> Live | None:
        return self.live.get((app, env))

    def age(self, now: datetime) -> timedelta | None:
        if self.refreshed_at is None:
            return None
        return max(now - self.refreshed_at, timedelta(0))

    def stale(self, now: datetime) -> bool:
        age = self.age(now)
        return age is not None and age > STALE_AFTER


def _running(image: str) -> tuple[str, str | None]:
    """(repository as compared, version as shown) of one running image."""
    try:
        ref = ImageRef.parse(image)
    except ImageRefError:
        return image, image
    return ref.canonical, ref.tag if ref.tag is not None else ref.digest


def drift(deployed: Deployed, live: Live | None, *, image: str | None = None) -> str | None:
    """Why the cluster does not run what git says, e.g. ``"cluster runs 1.4.1"``; else ``None``.

    ``image`` is the app's image repository from the catalog: when given, only containers of
    that image count, so a sidecar's tag is never mistaken for the app's version. Nothing to
    compare (no live state, no version in git, no matching container) is not drift.
    """
    if live is None or deployed.version is None or not live.images:
        return None
    wanted = _running(image)[0] if image is not None else None
    versions = [
        version
        for repository, version in map(_running, live.images)
        if wanted is None or repository == wanted
    ]
    if not versions or all(v == deployed.version for v in versions):
        return None
    shown = list(dict.fromkeys("no tag" if v is None else v for v in versions))
    return "cluster runs " + ", ".join(shown)


# --------------------------------------------------------------------------------------------
# The command

QueryKind = Literal["app", "team", "all"]


@dataclass(frozen=True, kw_only=True)
class Query:
    kind: QueryKind
    subject: str
    """The app or team name; ``"all"`` for every app."""
    apps: tuple[str, ...]
    """In catalog order."""
    envs: tuple[str, ...]
    """In promotion order."""

    @property
    def title(self) -> str:
        """``orders``, ``payments in production``, ``all apps in production`` (plain text)."""
        subject = "all apps" if self.kind == "all" else self.subject
        if self.kind == "app" and len(self.envs) != 1:
            return subject
        return f"{subject} in {self.envs[0]}" if self.envs else subject


class QueryError(CommandError):
    """``/whatsinprod`` typed wrong: the one-line problem, then the usage.

    ``problem`` is ``None`` when the person only asked for the usage (``/whatsinprod help``).
    ``suggestions`` are the did-you-mean candidates, best first.
    """

    def __init__(
        self,
        problem: str | None,
        *,
        usage: str = WHATSINPROD_USAGE,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        super().__init__(problem, usage=usage)
        self.suggestions = suggestions


def _quote(token: str) -> str:
    return token if len(token) <= _QUOTED else token[: _QUOTED - 1] + "…"


def _words(text: str) -> list[str]:
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).lower().split()


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")


def _env(name: str, catalog: Catalog) -> str:
    if name in catalog.env_names:
        return name
    close = catalog.suggest(name, among="environment")
    hint = f"did you mean {close[0]}? " if close else ""
    raise QueryError(
        f"no environment {_quote(name)} — {hint}environments are {_listed(catalog.env_names)}",
        suggestions=close,
    )


def _unknown_subject(name: str, catalog: Catalog, *, envs_too: bool) -> QueryError:
    envs = () if envs_too else catalog.env_names
    close = tuple(n for n in catalog.suggest(name) if n not in envs)
    hint = f" — did you mean {close[0]}?" if close else ""
    return QueryError(f"no app or team named {_quote(name)}{hint}", suggestions=close)


def parse_whatsinprod(text: str, *, catalog: Catalog) -> Query:
    """Read ``/whatsinprod``'s text against the catalog; names are case-insensitive.

    ``in`` may join the two words (``/whatsinprod orders in staging``).
    """
    words = _words(text)
    if words and words[0] in _HELP_WORDS:
        raise QueryError(None)
    if len(words) == 3 and words[1] == _IN:
        words = [words[0], words[2]]
    if len(words) > 2:
        extra = _quote(" ".join(words[2:]))
        raise QueryError(f"`/whatsinprod` takes an app or team and an environment, not “{extra}”")

    prod = catalog.env_names[-1]
    subject = words[0] if words else _ALL
    env = _env(words[1], catalog) if len(words) == 2 else None

    if subject in catalog.app_names:
        envs = (env,) if env is not None else catalog.env_names
        return Query(kind="app", subject=subject, apps=(subject,), envs=envs)
    if subject in catalog.team_names:
        apps = tuple(a.name for a in catalog.apps_of_team(subject))
        return Query(kind="team", subject=subject, apps=apps, envs=(env or prod,))
    if subject == _ALL:
        return Query(kind="all", subject=_ALL, apps=catalog.app_names, envs=(env or prod,))
    if env is None and subject in catalog.env_names:
        return Query(kind="all", subject=_ALL, apps=catalog.app_names, envs=(subject,))
    raise _unknown_subject(subject, catalog, envs_too=env is None)
