"""The App Home and ``/pitcrew help`` exactly as people read them in Slack."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bot.adapters.slack.blocks.common import MAX_SECTION, Rendered
from bot.adapters.slack.blocks.help import COMMANDS, render_help
from bot.adapters.slack.blocks.home import HomeBlocks, render_home
from bot.domain.home import Home, RecentFailure
from bot.domain.locks import Lock
from tests.release_records import T0, sample_release
from tests.unit.adapters.hostile import HOSTILE, assert_inert

MR = "https://gitlab.example.com/platform/deployments/-/merge_requests"
WAITING = sample_release(id="0a1b2c3d4e5f", mr_iid=7, mr_url=f"{MR}/7", requester="UBOB")
MINE = sample_release(
    id="5f4e3d2c1b0a",
    kind="rollback",
    to_version="1.4.0",
    from_version="1.4.2",
    mr_iid=8,
    mr_url=f"{MR}/8",
    state="rolling_out",
)
LOCK = Lock(
    env="staging",
    holder="UALICE",
    since=T0 - timedelta(minutes=30),
    reason="migrating",
    expires_at=T0 + timedelta(hours=1),
)
PIPELINE = RecentFailure(
    key="pipeline:shop/orders:10",
    team="payments",
    kind="pipeline",
    title="shop/orders pipeline #10 on main",
    reason="unit failed",
    url="https://gitlab.example.com/shop/orders/-/pipelines/10",
    at=T0 - timedelta(hours=2),
)
ROLLOUT = RecentFailure(
    key="rollout:prod/Deployment/invoices/invoices/2",
    team="payments",
    kind="rollout",
    title="invoices 2.1.0 in production",
    reason="ProgressDeadlineExceeded",
    at=T0 - timedelta(minutes=10),
)
AT_T0 = "<!date^1795338000^{date_short_pretty} {time}|2026-11-22 09:00 UTC>"
AT_10 = "<!date^1795341600^{date_short_pretty} {time}|2026-11-22 10:00 UTC>"


def home(**changes: Any) -> Home:
    base = Home(
        user="UCAROL",
        waiting=(WAITING,),
        mine=(MINE,),
        locks=(LOCK,),
        teams=("payments", "search"),
        named=True,
        failures=(ROLLOUT, PIPELINE),
        now=T0,
    )
    return replace(base, **changes)


def lines(view: dict[str, Any]) -> list[str]:
    """What each block says, as a person reads it, with the buttons as ``[label]``."""
    out = []
    for block in view["blocks"]:
        if block["type"] == "actions":
            out.append(" ".join(f"[{e['text']['text']}]" for e in block["elements"]))
        elif block["type"] == "divider":
            out.append("---")
        elif block["type"] == "context":
            out.append(block["elements"][0]["text"])
        else:
            out.append(block["text"]["text"])
    return out


APPROVERS = {WAITING.id: "<!subteam^S0SRE>", MINE.id: "<!subteam^S0SRE>"}


def test_the_home_of_an_approver() -> None:
    view = render_home(home(), approvers=APPROVERS)
    assert view["type"] == "home"
    assert lines(view) == [
        "Pitcrew",
        ":wave: <@UCAROL>: what waits for you, your releases, the locks, and your teams'"
        " failures of the last 24 h. `/pitcrew help` lists every command.",
        "---",
        "*:hourglass_flowing_sand: Waiting for your approval* (1)",
        f"*Deploy orders 1.4.2 to production* · <{MR}/7|!7>\n`1.4.1` → `1.4.2` · requested by"
        f" <@UBOB> {AT_T0} · 0/1 approvals from <!subteam^S0SRE>",
        "[Approve] [Reject]",
        "---",
        "*:rocket: Your releases in progress* (1)",
        f"*Roll back orders to 1.4.0 in production* · <{MR}/8|!8>\n"
        ":arrows_counterclockwise: Rolling out in *production*",
        "---",
        "*:lock: Locks* (1)",
        f":lock: *staging* locked by <@UALICE> 30 min ago — migrating · until {AT_10}",
        "---",
        "*:warning: Your teams' failures, last 24 h* · payments, search",
        ":x: invoices 2.1.0 in production — ProgressDeadlineExceeded · 10 min ago\n"
        ":x: <https://gitlab.example.com/shop/orders/-/pipelines/10|shop/orders pipeline #10 on"
        " main> — unit failed · 2 h ago",
        "---",
        f"Drawn {AT_T0} · redrawn each time you open this tab, and after every click in it",
    ]
    buttons = next(b for b in view["blocks"] if b["type"] == "actions")
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [
        ("release_approve", WAITING.id),
        ("release_reject", WAITING.id),
    ]
    assert HomeBlocks().home(home(), approvers=APPROVERS) == view


def test_an_empty_home_says_so_in_every_section() -> None:
    view = render_home(
        home(waiting=(), mine=(), locks=(), failures=(), teams=("payments",), named=False),
        approvers={},
    )
    said = lines(view)
    assert "Nothing waits for your approval." in said
    assert "None: `/deploy` or `/rollback` starts one." in said
    assert ":unlock: No environment is locked." in said
    assert "None: :large_green_circle: all quiet." in said
    assert (
        "The catalog names you in no team (a team's `oncall`, or an environment's `approvers`),"
        " so every team's failures are shown."
    ) in said
    assert not [b for b in view["blocks"] if b["type"] == "actions"]


def test_ten_releases_each_with_its_buttons_keep_within_a_views_limits() -> None:
    many = tuple(replace(WAITING, id=f"{i:012x}", mr_iid=i) for i in range(10))
    view = render_home(home(waiting=many, mine=many), approvers={})
    assert len(view["blocks"]) <= 100
    ids = [b["block_id"] for b in view["blocks"] if b["type"] == "actions"]
    assert len(ids) == len(set(ids)) == 10
    assert all(len(b["text"]["text"]) <= MAX_SECTION for b in view["blocks"] if "text" in b)


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_on_the_home_comes_out_as_text(evil: str) -> None:
    failure = replace(ROLLOUT, title=evil, reason=evil, url=f"https://x/{evil}")
    lock = replace(LOCK, reason=evil)
    view = render_home(home(failures=(failure,), locks=(lock,), teams=(evil,)), approvers={})
    assert_inert(
        Rendered(text="home", blocks=view["blocks"][1:]),
        links=("https://x/", "https://gitlab.example.com/"),
        mentions=("@UCAROL", "@UBOB", "@UALICE", "!subteam^S0SRE"),
    )


def test_help_lists_every_command_with_an_example() -> None:
    rendered = render_help("help")
    text = "\n".join(b["text"]["text"] for b in rendered.blocks)
    for command in COMMANDS:
        assert f"*{command.name}* `" in text
        assert command.examples
    assert (
        "e.g. `/deploy orders 1.4.2 to staging` · `/deploy orders from staging to production`"
        in (text)
    )
    assert "*Roll back to &lt;version&gt;* on a failure" in text
    assert "e.g. `/access production orders for 2h db is locked up`" in text
    assert rendered.text == (
        "Pitcrew's commands: /whatsinprod, /deploy, /rollback, /undeploy, /access, /lock,"
        " /unlock, /dora, /pitcrew"
    )
    assert "e.g. `/dora` · `/dora payments 30d` · `/dora orders 90d staging`" in text
    assert "*Share in channel* on a `/whatsinprod` or `/dora` answer" in text
    assert render_help("") == rendered


def test_help_after_something_unknown_says_so_first() -> None:
    rendered = render_help("deploy <@U1> orders")
    assert rendered.blocks[0]["text"]["text"] == (
        ":warning: `/pitcrew deploy &lt;@U1&gt; orders` is not something Pitcrew knows; here is"
        " what it does."
    )
    assert rendered.blocks[1:] == render_help().blocks
