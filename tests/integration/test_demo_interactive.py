"""``pitcrew demo --interactive``: a person at the prompt types slash commands as anyone, clicks
buttons by number, and reads the channels as the demo prints them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def _session(*lines: str, cwd: Path) -> tuple[int, str, str]:
    """Run the interactive demo as a person at a terminal would, typing ``lines``."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "demo",
        "--interactive",
        env={**base, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    typed = "".join(f"{line}\n" for line in lines).encode()
    out, err = await asyncio.wait_for(process.communicate(typed), timeout=110)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _after(prompt_text: str, out: str) -> str:
    """What the session printed after the person typed ``prompt_text``, up to the next prompt."""
    start = out.index(prompt_text)
    end = out.find("> ", start + len(prompt_text))
    return out[start : end if end != -1 else len(out)]


async def test_a_person_deploys_and_another_approves_by_clicking_a_numbered_button(
    tmp_path: Path,
) -> None:
    code, out, err = await _session(
        "/as bob /deploy orders from staging to production",
        "click 1",
        "/as carol",
        "/whatsinprod orders",
        "1",
        "/as dave /lock",
        "/in nowhere",
        "click 99",
        "quit",
        cwd=tmp_path,
    )
    assert (code, err) == (0, "")
    assert "alice in #payments-deploys> " in out  # the prompt says who and where

    opened = _after(
        "bob types in #payments-deploys: /deploy orders from staging to production", out
    )
    assert "Opened !1 *Deploy orders 1.4.2 to production*" in opened
    assert "(only visible to @bob)" in opened
    assert "[1] Approve — #payments-deploys: :rocket: *Deploy orders 1.4.2 to production*" in opened
    assert "[2] Reject" in opened

    refused = _after("alice clicks [Approve]", out)
    assert "You are not an approver for production (approvers: @sre-oncall)." in refused
    assert "(only visible to @alice)" in refused

    assert "carol in #payments-deploys> " in out  # /as carol switched the person
    approved = _after("carol clicks [Approve]", out)
    assert "Approved (1/1). Merging. (only visible to @carol)" in approved
    assert "Healthy in *production*" in approved, "the world turned: merged, synced, rolled out"
    assert "#releases" in approved  # every channel that changed is printed again

    assert "no one called 'dave' here: alice, bob, carol" in out
    assert "no channel #nowhere: #payments-deploys, #search-deploys, #releases" in out
    assert "no button [99]; type buttons to list them" in out
    assert out.rstrip().endswith("(the sandbox is gone)")


async def test_the_session_ends_cleanly_at_the_end_of_input(tmp_path: Path) -> None:
    code, out, err = await _session("help", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.count("/as carol /lock production freeze") == 2  # once at start, once for help
    assert out.rstrip().endswith("(the sandbox is gone)")
