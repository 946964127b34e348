"""The Slack sandbox in its own process, so that it never shares an event loop with the load.

``python -m tests.benchmarks.slack_server '{"channels": [...]}'`` starts ``SlackSandbox`` (no
pacing: the bench measures the bot, not Slack's per-channel limit) and a second small HTTP
server for the bench, then prints one JSON line (``api_url``, ``control_url``, the token and the
signing secret) and serves until SIGTERM.

Every call is stamped with wall-clock time (``time.time()``), so that the bench compares it with
the moment it sent something from another process on the same machine. The bench endpoints:

* ``GET /bench/stats``: calls by method and outcome.
* ``GET /bench/wait?method=M&count=N&timeout=S``: wait until ``N`` calls of ``M`` were answered,
  then return the times of all of them.
* ``POST /bench/slash``: ``{"commands": [{command, text, user, channel}]}`` → signed bodies and
  headers with live response_urls, as Slack would POST them.
* ``GET /bench/keys?prefix=P``: per message key (the outbox's metadata), what Slack saw: first post
  time, posts, updates, whether it is a thread reply, its text now and since when.
* ``GET /bench/count?prefix=P&match=RE``: how many top-level keys' text matches ``RE`` now, and
  when the last of them started to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sandbox.slack import Message, SlackSandbox


@dataclass
class KeySeen:
    first_post: float
    thread: bool
    text: str
    since: float
    posts: int = 1
    updates: int = 0


class BenchSlack(SlackSandbox):
    """The sandbox, plus an index of what each keyed message went through, kept as calls come."""

    def __init__(self, **options: Any) -> None:
        super().__init__(enforce_pacing=False, clock=time.time, **options)
        self.keys: dict[str, KeySeen] = {}
        self.by_ts: dict[tuple[str, str], str] = {}
        self.times: dict[str, list[float]] = defaultdict(list)
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._changed = asyncio.Event()
        self._last_post: Message | None = None

    def _post(self, channel: Any, **options: Any) -> Message:
        message = super()._post(channel, **options)
        self._last_post = message
        return message

    def _record(self, method: str, params: dict[str, Any], status: int, error: str | None) -> None:
        super()._record(method, params, status, error)
        now = self.calls[-1].time
        ok = status == 200 and error is None
        self.outcomes[(method, "ok" if ok else (error or str(status)))] += 1
        self.times[method].append(now)
        if ok and method == "chat.postMessage" and self._last_post is not None:
            self._keyed_post(self._last_post, params, now)
        elif ok and method == "chat.update":
            key = self.by_ts.get((str(params.get("channel")), str(params.get("ts"))))
            seen = self.keys.get(key) if key else None
            if seen is not None:
                seen.updates += 1
                text = str(params.get("text") or "")
                if text != seen.text:
                    seen.text, seen.since = text, now
        self._last_post = None
        self._changed.set()
        self._changed = asyncio.Event()

    def _keyed_post(self, message: Message, params: dict[str, Any], now: float) -> None:
        raw = params.get("metadata")
        metadata = json.loads(raw) if isinstance(raw, str) and raw else raw
        if not isinstance(metadata, dict):
            return
        key = str((metadata.get("event_payload") or {}).get("key") or "")
        if not key:
            return
        self.by_ts[(message.channel, message.ts)] = key
        seen = self.keys.get(key)
        if seen is None:
            self.keys[key] = KeySeen(
                first_post=now, thread=message.thread_ts is not None, text=message.text, since=now
            )
        else:  # a second post of one key: what the outbox promises never happens
            seen.posts += 1
            if message.text != seen.text:
                seen.text, seen.since = message.text, now

    async def changed(self, within: float) -> None:
        """Wait for the next call, at most ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)


def control_app(slack: BenchSlack) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        found: dict[str, dict[str, int]] = defaultdict(dict)
        for (method, outcome), n in slack.outcomes.items():
            found[method][outcome] = n
        return web.json_response({"calls": found, "keys": len(slack.keys)})

    async def wait(request: web.Request) -> web.Response:
        method = request.query["method"]
        count = int(request.query["count"])
        deadline = time.monotonic() + float(request.query.get("timeout", "30"))
        while len(slack.times[method]) < count and time.monotonic() < deadline:
            await slack.changed(deadline - time.monotonic())
        return web.json_response({"times": slack.times[method]})

    async def slash(request: web.Request) -> web.Response:
        spec = await request.json()
        made = []
        for command in spec["commands"]:
            body, headers = slack.slash_command(**command)
            made.append({"body": body.decode(), "headers": headers})
        return web.json_response({"commands": made})

    async def keys(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        return web.json_response(
            {
                key: {
                    "first_post": seen.first_post,
                    "posts": seen.posts,
                    "updates": seen.updates,
                    "thread": seen.thread,
                    "text": seen.text,
                    "since": seen.since,
                }
                for key, seen in slack.keys.items()
                if key.startswith(prefix)
            }
        )

    async def count(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        pattern = re.compile(request.query.get("match", ""))
        matching = [
            seen
            for key, seen in slack.keys.items()
            if key.startswith(prefix) and not seen.thread and pattern.search(seen.text)
        ]
        return web.json_response(
            {"count": len(matching), "last": max((s.since for s in matching), default=None)}
        )

    app = web.Application()
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/wait", wait)
    app.router.add_post("/bench/slash", slash)
    app.router.add_get("/bench/keys", keys)
    app.router.add_get("/bench/count", count)
    return app


async def main(spec: dict[str, Any]) -> None:
    slack = BenchSlack(channels=spec.get("channels") or ("general",))
    await slack.start()
    runner = web.AppRunner(control_app(slack), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = {
        "api_url": slack.api_url,
        "control_url": f"http://127.0.0.1:{port}",
        "bot_token": slack.bot_token,
        "signing_secret": slack.signing_secret,
    }
    print(json.dumps(ready), flush=True)
    await stop.wait()
    await runner.cleanup()
    await slack.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
