"""``make bench``: measure the running bot the way its users load it. Not part of ``make test``.

Runs the real bot in its own process (its own event loop and memory, as in production) with a
real Redis, and the Slack and Kubernetes sandboxes each in a process of their own; prints a
Markdown table and the conditions, writes ``bench-results.json``. Targets are those of issue 8
for this 2-core machine.

    python -m tests.benchmarks                  # everything (make bench)
    BENCH=rollouts python -m tests.benchmarks   # some: intake, commands, rollouts, dora
    BENCH_SCALE=0.1 ...                         # smaller sizes, while developing

Looking closer: ``BENCH_PROFILE=dir`` runs the bot under cProfile (``dir/<bench>.prof``), or
with ``BENCH_PY_SPY=path/to/py-spy`` samples it during each intake round instead
(``dir/<round>.txt``, collapsed stacks); ``BENCH_LOGS=dir`` keeps the bots' logs;
``BENCH_DEBUG=file`` writes every intake delivery's (send time, latency).

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.benchmarks import commands, dora, intake, rollouts, throughput
from tests.benchmarks.common import SCALE, Result, Section, machine, prepare_bytecode

BENCHES: dict[str, Callable[[], Coroutine[Any, Any, Section]]] = {
    "intake": intake.run,
    "commands": commands.run,
    "rollouts": rollouts.run,
    "dora": dora.run,
    "throughput": throughput.run,
}


def _value(result: Result) -> str:
    if result.value is None:
        return "—"
    if float(result.value).is_integer() and abs(result.value) < 1e9:
        return f"{int(result.value)}"
    return f"{result.value:.1f}" if abs(result.value) >= 10 else f"{result.value:.2f}"


def _met(result: Result) -> str:
    return "—" if result.met is None else ("yes" if result.met else "**NO**")


def table(sections: list[Section]) -> str:
    lines = [
        "| benchmark | measure | value | unit | target | met |",
        "|---|---|---:|---|---|---|",
    ]
    for section in sections:
        for r in section.results:
            name = r.name + (f" ({r.note})" if r.note else "")
            lines.append(
                f"| {r.bench} | {name} | {_value(r)} | {r.unit} | {r.target} | {_met(r)} |"
            )
    return "\n".join(lines)


def conditions(sections: list[Section], took: dict[str, float]) -> str:
    lines = ["", "Conditions:", ""]
    for key, value in machine().items():
        lines.append(f"- {key}: {value}")
    for section in sections:
        lines.append(f"- **{section.name}** ({took[section.name]:.0f} s):")
        for key, value in section.conditions.items():
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            lines.append(f"  - {key}: {text}")
    return "\n".join(lines)


def main() -> int:
    wanted = [b.strip() for b in os.environ.get("BENCH", "").split(",") if b.strip()]
    unknown = [b for b in wanted if b not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    sections: list[Section] = []
    took: dict[str, float] = {}
    print("compiling bytecode for the bot (as the image has it)...", flush=True)
    took["bytecode"] = prepare_bytecode()
    for name, bench in BENCHES.items():
        if wanted and name not in wanted:
            continue
        print(f"running {name} (scale {SCALE:g})...", flush=True)
        started = time.monotonic()
        sections.append(asyncio.run(bench()))
        took[name] = time.monotonic() - started
    print()
    print(table(sections))
    print(conditions(sections, took))
    results = [r for s in sections for r in s.results]
    document: dict[str, Any] = {
        "machine": machine(),
        "results": [asdict(r) for r in results],
        "conditions": {s.name: s.conditions for s in sections},
        "seconds": took,
        "all_met": all(r.met is not False for r in results),
    }
    Path("bench-results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    print("\nwritten: bench-results.json")
    return 0 if document["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
