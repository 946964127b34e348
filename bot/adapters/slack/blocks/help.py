"""``/pitcrew`` and ``/pitcrew help``: every command with an example, and where to click.

The list is the one place that names every command Pitcrew answers: the Slack app manifest must
declare exactly these (a unit test compares them), and the command listeners are registered for
each, so that a newcomer who types ``/pitcrew`` learns all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    EMOJI_ERROR,
    MAX_TITLE,
    Rendered,
    escape,
    plain,
    section,
)

__all__ = ["COMMANDS", "CommandHelp", "render_help"]


@dataclass(frozen=True, kw_only=True)
class CommandHelp:
    name: str
    usage: str
    what: str
    examples: tuple[str, ...]


COMMANDS: Final = (
    CommandHelp(
        name="/whatsinprod",
        usage="[app|team|all] [env]",
        what="what runs where, which version, who owns it, since when, and drift from git",
        examples=("/whatsinprod", "/whatsinprod orders", "/whatsinprod payments staging"),
    ),
    CommandHelp(
        name="/deploy",
        usage="<app> <version> to <env>  |  <app> from <env> to <env>",
        what="a release as a merge request on the GitOps repo, approved with buttons where the"
        " environment asks for it, followed to a healthy rollout",
        examples=("/deploy orders 1.4.2 to staging", "/deploy orders from staging to production"),
    ),
    CommandHelp(
        name="/rollback",
        usage="<app> <env> [to <version>]",
        what="back to the version the environment ran before (or one you name); never blocked",
        examples=("/rollback orders production", "/rollback orders production to 1.4.0"),
    ),
    CommandHelp(
        name="/undeploy",
        usage="<app> <env>",
        what="remove an app from an environment: a merge request deleting its manifest there,"
        " always approved by someone, followed until its workload is gone",
        examples=("/undeploy search-api staging",),
    ),
    CommandHelp(
        name="/access",
        usage="[<env> <app> for <duration> [reason…] | revoke <env> <app>]",
        what="break-glass access to an app's namespace, by merge request: approved by someone"
        " else, taken back by Pitcrew when it expires; alone, lists who holds what",
        examples=(
            "/access production orders for 2h db is locked up",
            "/access revoke production orders",
            "/access",
        ),
    ),
    CommandHelp(
        name="/lock",
        usage="[<env> [for <duration> | until <time>] [reason…]]",
        what="freeze an environment, visibly, with an end; alone, lists every lock",
        examples=("/lock production for 2h black friday freeze", "/lock"),
    ),
    CommandHelp(
        name="/unlock",
        usage="<env>",
        what="lift a lock; anyone may, and its holder is told",
        examples=("/unlock production",),
    ),
    CommandHelp(
        name="/dora",
        usage="[app|team|all] [7d|30d|90d] [env]",
        what="delivery performance: deployments, lead time, change failure rate and time to"
        " restore, with their DORA bands, against the period before, and the apps that weigh"
        " most",
        examples=("/dora", "/dora payments 30d", "/dora orders 90d staging"),
    ),
    CommandHelp(
        name="/pitcrew",
        usage="[help]",
        what="this list",
        examples=("/pitcrew help",),
    ),
)
_HELP_WORDS: Final = frozenset({"", "help", "-h", "--help", "?"})
_ELSEWHERE: Final = (
    "*Buttons:* *Approve* / *Reject* on a release or an access request waiting for approval"
    " · *Roll back to"
    " <version>* on a failure (it runs `/rollback` as you, with the same checks and approvals)"
    " · *Share in channel* on a `/whatsinprod` or `/dora` answer.\n"
    "*Home tab:* open Pitcrew in Slack's sidebar for what waits for your approval, your"
    " releases, the locks and your teams' failures of the last 24 h.\n"
    "*Weekly digest:* each team's channel gets its delivery figures and a chart, Mondays at"
    " 09:00 UTC unless the catalog says otherwise.\n"
    "`/deploy help`, `/rollback help`, `/undeploy help`, `/access help`, `/lock help`,"
    " `/whatsinprod help`, `/dora help`: one command in detail."
)


def _command(command: CommandHelp) -> str:
    examples = " · ".join(f"`{escape(example)}`" for example in command.examples)
    return (
        f"*{escape(command.name)}* `{escape(command.usage)}` — {escape(command.what)}\n"
        f"e.g. {examples}"
    )


def render_help(text: str = "") -> Rendered:
    """The answer to ``/pitcrew [text]``: every command, the buttons and the Home tab; what
    was typed after ``/pitcrew``, when it is not ``help``, is said to be unknown first."""
    blocks: list[dict[str, Any]] = []
    asked = text.strip()
    if asked.lower() not in _HELP_WORDS:
        blocks.append(
            section(
                f"{EMOJI_ERROR} `/pitcrew {plain(asked, MAX_TITLE)}` is not something Pitcrew"
                " knows; here is what it does."
            )
        )
    blocks.append(
        section(
            ":wave: *Pitcrew* reports your team's GitLab pipelines and Kubernetes rollouts in its"
            " channel, and turns deploys, rollbacks and locks into merge requests on the GitOps"
            " repo. Answers to commands are only for you."
        )
    )
    blocks.append(section("\n".join(_command(command) for command in COMMANDS)))
    blocks.append(section(escape(_ELSEWHERE)))
    names = ", ".join(command.name for command in COMMANDS)
    return Rendered(text=f"Pitcrew's commands: {names}", blocks=blocks)
