"""``pitcrew``: serve (the default), check, demo, audit.

Errors a person can fix (missing or malformed settings, an invalid catalog, Redis unreachable)
end the command with exit code 2 and one line each on stderr, all of them at once, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot import __version__, errortracking, logs
from bot.domain.errors import PitcrewError
from bot.services.ports import AuditEntry
from bot.settings import Settings, SettingsError, load_core_settings, load_settings

if TYPE_CHECKING:
    from bot.domain.catalog import Catalog

EXIT_USAGE = 2


def _fail(message: str) -> int:
    return _fail_all(message.splitlines() or [message])


def _fail_all(problems: Sequence[str]) -> int:
    for problem in problems:
        print(f"pitcrew: {problem}", file=sys.stderr)
    return EXIT_USAGE


def _quiet_libraries() -> None:
    """Libraries' own warnings (urllib3's "Retrying (Retry(total=2…))") repeat what a check
    line already says, in words meant for their developers: keep them off the terminal."""
    import logging

    for name in ("urllib3", "kubernetes", "gitlab", "requests", "asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _configure_observability(settings: Settings) -> None:
    logs.configure(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    errortracking.configure(
        dsn=settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None,
        secrets=settings.secrets,
        release=__version__,
    )


def serve() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail_all(exc.problems)
    problems = preflight(settings)
    if problems:
        return _fail_all(problems)
    from bot.app import Pitcrew

    _configure_observability(settings)
    try:
        asyncio.run(Pitcrew(settings).serve_forever())
    except PitcrewError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def preflight(settings: Settings) -> list[str]:
    """What can be checked offline once every setting parses: the Kubernetes contexts exist in
    the kubeconfig, and the store's URL is one this version can use."""
    from bot.adapters.kube.contexts import missing_contexts
    from bot.adapters.store.connection import StoreUnsupported, check_redis_url

    problems = missing_contexts(settings.kube_contexts, kubeconfig=settings.kubeconfig)
    if settings.redis_url is not None:
        try:
            check_redis_url(settings.redis_url.get_secret_value())
        except StoreUnsupported as exc:
            problems.append(str(exc))
    elif settings.redis_min_replicas:
        problems.append(
            f"setting REDIS_MIN_REPLICAS={settings.redis_min_replicas} needs REDIS_URL: the"
            " embedded Redis has no replicas"
        )
    return problems


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Every check of ``pitcrew check``; each one independent, none stops the others."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.adapters.catalog_file import FileCatalogSource
    from bot.adapters.gitlab.access import check_access
    from bot.adapters.gitlab.gitops import GitLabCatalogSource
    from bot.adapters.gitlab.repository import GitLabRepository
    from bot.adapters.kube.contexts import check_context
    from bot.adapters.store.connection import open_store
    from bot.services.catalog import CatalogHolder, CatalogSource

    results = [CheckResult("settings", True, "all required settings present")]

    gitlab = GitLabRepository(
        url=str(settings.gitlab_url),
        token=settings.gitlab_token.get_secret_value(),
        gitops_project=settings.gitops_project,
        branch=settings.gitops_branch,
        tries=1,
    )
    if settings.catalog_path is None:
        source: CatalogSource = GitLabCatalogSource(gitlab, project=settings.gitops_project)
        where = f"{settings.gitops_project}:catalog.yaml"
    else:
        source, where = FileCatalogSource(settings.catalog_path), str(settings.catalog_path)
    try:
        holder = CatalogHolder(source)
        await holder.reload()
        catalog = holder.current
        results.append(
            CheckResult(
                "catalog",
                True,
                f"{where}: {len(catalog.teams)} teams, "
                f"{len(catalog.environments)} environments, {len(catalog.apps)} apps",
            )
        )
        results.extend(schedule_checks(catalog, now=datetime.now(UTC)))
    except PitcrewError as exc:
        # One row per problem: a catalog with ten problems is ten lines, not one long one.
        results.extend(CheckResult("catalog", False, line) for line in str(exc).splitlines())
    finally:
        gitlab.close()

    try:
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        store = await asyncio.to_thread(
            open_store,
            redis_url=redis_url,
            state_dir=settings.state_dir,
            min_replicas=settings.redis_min_replicas,
        )
        ok = await store.ping()
        results.append(
            CheckResult("redis", ok, store.url_for_display + ("" if ok else ": no PONG"))
        )
        required = settings.redis_min_replicas
        if ok and required:
            online = await store.replicas_online()
            results.append(
                CheckResult(
                    "redis replicas",
                    online is not None and online >= required,
                    f"{'?' if online is None else online} online (fewest of any primary), "
                    f"REDIS_MIN_REPLICAS={required}",
                )
            )
        await store.close()
    except PitcrewError as exc:
        results.append(CheckResult("redis", False, str(exc)))

    slack = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        timeout=10,
    )
    try:
        auth = await slack.auth_test()
        results.append(
            CheckResult(
                "slack", True, f"as {auth.get('user')} in {auth.get('team')}" + _history(auth)
            )
        )
    except SlackApiError as exc:
        results.append(CheckResult("slack", False, f"auth.test: {exc.response.get('error')}"))
    except Exception as exc:  # any transport failure means "unreachable" to the operator
        results.append(CheckResult("slack", False, f"unreachable: {type(exc).__name__}"))

    try:
        detail = await asyncio.to_thread(
            check_access,
            url=str(settings.gitlab_url),
            token=settings.gitlab_token.get_secret_value(),
            project=settings.gitops_project,
        )
        results.append(CheckResult("gitlab", True, detail))
    except PitcrewError as exc:
        results.append(CheckResult("gitlab", False, str(exc)))

    if not settings.kube_contexts:
        results.append(CheckResult("kubernetes", True, "KUBE_CONTEXTS unset: rollout watching off"))
    for env, context in settings.kube_contexts.items():
        try:
            detail = await asyncio.to_thread(check_context, context, kubeconfig=settings.kubeconfig)
            results.append(CheckResult(f"kubernetes {env}", True, detail))
        except PitcrewError as exc:
            results.append(CheckResult(f"kubernetes {env}", False, str(exc)))
    return results


def _history(auth: Any) -> str:
    """How a lost post will be handled, from the token's scopes (docs/security.md)."""
    from bot.adapters.slack.outbox import HISTORY_SCOPES, granted_scopes

    scopes = granted_scopes(getattr(auth, "headers", None))
    if scopes is None:
        return ""
    if scopes & HISTORY_SCOPES:
        return "; history scopes: a post whose answer is lost is found again"
    return "; no history scopes: a post whose answer is lost may show twice"


def schedule_checks(catalog: Catalog, *, now: datetime) -> list[CheckResult]:
    """The autopilot's schedules and the teams' weekly digests, each with its next slot in its
    own time zone."""
    from bot.domain.schedules import describe_next, format_duration

    results = []
    for env in catalog.environments:
        if env.promote is not None:
            detail = f"from {env.promote.source}, next {describe_next(env.promote.slots, now)}"
            results.append(CheckResult(f"promote {env.name}", True, detail))
        for freeze in env.freeze:
            detail = (
                f"{freeze.reason} for {format_duration(freeze.duration)},"
                f" next {describe_next(freeze.slots, now)}"
            )
            results.append(CheckResult(f"freeze {env.name}", True, detail))
    for team in catalog.teams:
        if team.digest is not None:
            detail = f"team {team.name}, next {describe_next(team.digest.slots, now)}"
            results.append(CheckResult("digest", True, detail))
    return results


def format_checks(results: Sequence[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'ok' if r.ok else 'FAIL':<4}  {r.name.ljust(width)}  {r.detail}" for r in results]
    failed = sum(not r.ok for r in results)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


def check() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(format_checks([CheckResult("settings", False, p) for p in exc.problems]))
        return EXIT_USAGE
    logs.configure(level="error", fmt=settings.log_format, secrets=settings.secrets)
    _quiet_libraries()
    results = asyncio.run(run_checks(settings))
    print(format_checks(results))
    return 0 if all(r.ok for r in results) else 1


def demo(*, scenes: Sequence[str], interactive: bool = False) -> int:
    from bot.demo import SCENES, run_demo

    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        return _fail_all(
            [f"no scene {name!r}; scenes are: {', '.join(SCENES)}" for name in unknown]
        )
    logs.configure(level="warning", fmt="console")
    _quiet_libraries()
    try:
        if interactive:
            from bot.demo import run_interactive

            return asyncio.run(run_interactive(scenes=scenes))
        return asyncio.run(run_demo(scenes=scenes))
    except PitcrewError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the sandbox is stopped, nothing to report
        print("", file=sys.stderr)
        return 130


def parse_since(text: str, *, now: float) -> float:
    """``7d``, ``12h``, ``30m`` ago, or an ISO date/time (UTC when no offset is given)."""
    import re
    from datetime import UTC, datetime

    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        return now - amount * {"d": 86400, "h": 3600, "m": 60}[unit]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PitcrewError(
            f"--since {text!r}: expected 7d, 12h, 30m or a date like 2026-11-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_audit(entries: Sequence[AuditEntry]) -> str:
    from datetime import UTC, datetime

    if not entries:
        return "no audit entries match"
    rows = [("when (UTC)", "who", "action", "env", "target", "detail", "from")]
    for e in entries:
        when = datetime.fromtimestamp(e.at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((when, e.actor, e.action, e.env or "", e.target or "", e.detail, e.origin))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def audit(*, env: str | None, user: str | None, since: str | None) -> int:
    import time

    from bot.adapters.store.audit import read_audit
    from bot.adapters.store.embedded import holds_store

    problems: list[str] = []
    try:
        core = load_core_settings()
    except SettingsError as exc:
        problems += exc.problems
        core = None
    try:
        since_at = parse_since(since, now=time.time()) if since else None
    except PitcrewError as exc:
        problems.append(str(exc))
    if core is None or problems:
        return _fail_all(problems)
    if core.redis_url is None and not holds_store(core.state_dir):
        # Starting an empty embedded store here would answer "no audit entries match":
        # true of that new store, and misleading about the log the bot really keeps.
        return _fail(
            f"no audit log here: REDIS_URL is unset and STATE_DIR ({core.state_dir}) holds no"
            " Pitcrew data; run this with the same REDIS_URL or STATE_DIR as pitcrew serve"
        )
    logs.configure(level="error", fmt=core.log_format)
    _quiet_libraries()
    redis_url = core.redis_url.get_secret_value() if core.redis_url else None
    try:
        entries = asyncio.run(
            read_audit(
                redis_url=redis_url,
                state_dir=core.state_dir,
                env=env,
                actor=user,
                since=since_at,
            )
        )
    except PitcrewError as exc:
        return _fail(str(exc))
    print(format_audit(entries))
    return 0


async def run_backfill(settings: Settings, *, days: int) -> tuple[str, list[str]]:
    """Record the GitOps repo's deployments of the last ``days`` days: the summary line and
    the problems (one line per app and env that could not be read)."""
    from bot.adapters.catalog_file import FileCatalogSource
    from bot.adapters.gitlab.gitops import GitLabCatalogSource, GitOpsHistoryFromGitLab
    from bot.adapters.gitlab.repository import GitLabRepository
    from bot.adapters.store.connection import open_store
    from bot.adapters.store.dora import RedisDeploymentStore
    from bot.services.catalog import CatalogHolder, CatalogSource
    from bot.services.insights import DeploymentRecorder
    from bot.services.insights.backfill import Backfill

    gitlab = GitLabRepository(
        url=str(settings.gitlab_url),
        token=settings.gitlab_token.get_secret_value(),
        gitops_project=settings.gitops_project,
        branch=settings.gitops_branch,
    )
    source: CatalogSource = (
        GitLabCatalogSource(gitlab, project=settings.gitops_project)
        if settings.catalog_path is None
        else FileCatalogSource(settings.catalog_path)
    )
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    store = None
    try:
        holder = CatalogHolder(source)
        await holder.reload()
        store = await asyncio.to_thread(
            open_store, redis_url=redis_url, state_dir=settings.state_dir
        )
        clock = lambda: datetime.now(UTC)  # noqa: E731
        recorder = DeploymentRecorder(
            store=RedisDeploymentStore(store.redis), releases=None, clock=clock
        )
        result = await Backfill(
            catalog=holder,
            history=GitOpsHistoryFromGitLab(gitlab),
            recorder=recorder,
            clock=clock,
        ).run(days=days)
    finally:
        gitlab.close()
        if store is not None:
            await store.close()
    per_env = ", ".join(f"{env} {n}" for env, n in result.by_env.items())
    summary = (
        f"recorded {result.recorded} deployment{'s' if result.recorded != 1 else ''}"
        f" of the last {days} days"
        + (f" ({per_env})" if per_env else "")
        + f"; {result.already} already recorded"
        + f"; {result.pitcrew} made through Pitcrew (recorded as they ended)"
    )
    return summary, result.problems


def dora_backfill(*, days: int) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail_all(exc.problems)
    if not 1 <= days <= 400:
        return _fail(f"--days {days}: between 1 and 400 (records are kept 400 days)")
    logs.configure(level="error", fmt=settings.log_format, secrets=settings.secrets)
    _quiet_libraries()
    try:
        summary, problems = asyncio.run(run_backfill(settings, days=days))
    except PitcrewError as exc:
        return _fail(str(exc))
    print(summary)
    for problem in problems:
        print(f"pitcrew: not backfilled: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pitcrew", description="ChatOps for GitOps teams on GitLab and Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"pitcrew {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("serve", help="run the HTTP server and workers (the default)")
    commands.add_parser("check", help="validate settings and catalog, check every connection")
    demo_parser = commands.add_parser("demo", help="play a scenario against the built-in sandbox")
    demo_parser.add_argument("scenes", nargs="*", help="scenes to play (default: all)")
    demo_parser.add_argument(
        "--interactive",
        "-i",
        action="store_true",
        help="then keep the sandbox up: type slash commands as any user, click buttons by number",
    )
    audit_parser = commands.add_parser("audit", help="print the audit log: who did what, when")
    audit_parser.add_argument("--env", help="only this environment")
    audit_parser.add_argument("--user", help="only this Slack user id (U…)")
    audit_parser.add_argument("--since", help="7d, 12h, 30m, or a date like 2026-11-01")
    dora_parser = commands.add_parser("dora", help="delivery insights (DORA)")
    dora_commands = dora_parser.add_subparsers(dest="dora_command", metavar="command")
    backfill_parser = dora_commands.add_parser(
        "backfill",
        help="record deployments from before Pitcrew, out of the GitOps repo's history",
    )
    backfill_parser.add_argument(
        "--days", type=int, default=90, help="how far back (default 90, at most 400)"
    )
    args = parser.parse_args(argv)
    if args.command == "dora":
        if args.dora_command != "backfill":
            dora_parser.print_usage(sys.stderr)
            return _fail("dora: say what to do: pitcrew dora backfill [--days 90]")
        return dora_backfill(days=args.days)
    if args.command == "audit":
        return audit(env=args.env, user=args.user, since=args.since)
    if args.command == "check":
        return check()
    if args.command == "demo":
        return demo(scenes=args.scenes, interactive=args.interactive)
    return serve()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
