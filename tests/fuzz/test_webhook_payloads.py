"""GitLab webhook bodies: any bytes under any kind parse, or raise ``PayloadError``; the worker's
handler logs and drops what it cannot read and keeps handling the events that follow."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.adapters.gitlab.events import GitLabEvents
from bot.adapters.gitlab.payloads import PayloadError, observed, parse_event
from bot.domain.pipelines import JobObserved, PipelineObserved
from tests.unit.adapters.test_gitlab_payloads import ID_FIELDS

from .strategies import dumps, edge_mutated, json_values, mutated, nasty_values

# A failing example may hold 100 kB strings: show it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
DOCUMENTED = {
    "Pipeline Hook": "pipeline_hook.json",
    "Job Hook": "job_hook.json",
    "Deployment Hook": "deployment_hook.json",
    "Push Hook": "push_hook.json",
    "Tag Push Hook": "push_hook.json",
    "Merge Request Hook": "merge_request_hook.json",
}
KINDS = sorted(DOCUMENTED)
GITOPS = "platform/deployments"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _in_gitops(example: dict[str, Any]) -> dict[str, Any]:
    moved = copy.deepcopy(example)
    if isinstance(moved.get("project"), dict):
        moved["project"]["path_with_namespace"] = GITOPS
    return moved


EXAMPLES = {kind: _load(name) for kind, name in DOCUMENTED.items()}
RAW = {kind: (FIXTURES / name).read_bytes() for kind, name in DOCUMENTED.items()}
# The same examples in the GitOps project, whose events go to releases and pushes, not pipelines.
GITOPS_EXAMPLES = {kind: _in_gitops(example) for kind, example in EXAMPLES.items()}


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for child in value.values() for key in _keys(child)}
    if isinstance(value, list):
        return {key for child in value for key in _keys(child)}
    return set()


# Every field name GitLab sends, so that random objects get past "missing" into the fields.
FIELD_NAMES = sorted({key for example in EXAMPLES.values() for key in _keys(example)})

odd_kinds = st.one_of(
    st.sampled_from(KINDS).map(str.lower),
    st.sampled_from(["", " Pipeline Hook", "System Hook", "Pipeline Hook\x00"]),
    st.text(max_size=20),
)
# Mostly kinds that are read, so that the bodies get parsed.
kinds = st.integers(min_value=0, max_value=9).flatmap(
    lambda n: st.sampled_from(KINDS) if n else odd_kinds
)


@st.composite
def bad_bodies(draw: st.DrawFn, kind: str) -> bytes:
    """A body that is probably not a valid event of ``kind`` (some mutations still are)."""
    example_kind = kind if kind in EXAMPLES else draw(st.sampled_from(KINDS))
    examples = draw(st.sampled_from([EXAMPLES, GITOPS_EXAMPLES]))
    raw = RAW[example_kind]
    shape = draw(
        st.sampled_from(
            ["bytes", "truncated", "json", "fields", "mutated", "mutated", "edge", "other"]
        )
    )
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "truncated":
        return raw[: draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    if shape == "json":
        return dumps(draw(json_values))
    if shape == "fields":
        fields = st.dictionaries(st.sampled_from(FIELD_NAMES), nasty_values, max_size=12)
        return dumps(draw(fields))
    if shape == "other":  # a well-formed event of another kind
        return dumps(examples[draw(st.sampled_from(KINDS))])
    if shape == "edge":
        drop = ("project", "repository", "commit", "user")
        return dumps(draw(edge_mutated(examples[example_kind], drop=drop)))
    return dumps(draw(mutated(examples[example_kind])))


@st.composite
def kinds_and_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(kinds)
    return kind, draw(bad_bodies(kind))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds_and_bodies())
def test_a_body_parses_or_raises_payload_error(case: tuple[str, bytes]) -> None:
    _parses_or_refuses(*case)


def _parses_or_refuses(kind: str, body: bytes) -> None:
    try:
        observation = observed(parse_event(kind, body))
    except PayloadError as exc:
        refused = exc
    else:
        assert kind in DOCUMENTED
        assert observation is None or isinstance(observation, PipelineObserved | JobObserved)
        return
    assert refused.kind == kind
    assert refused.reason
    assert "\n" not in refused.reason, "the reason is logged on one line"


YEAR_1 = "0001-01-01T00:00:00+05:00"


def _with(example: dict[str, Any], **changes: object) -> bytes:
    return dumps({**example, **changes})


@st.composite
def edge_cases(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    example = draw(st.sampled_from([EXAMPLES, GITOPS_EXAMPLES]))[kind]
    drop = ("project", "repository", "commit", "user", "object_attributes")
    return kind, dumps(draw(edge_mutated(example, drop=drop)))


# Found by this test: these used to escape parse_event/observed as OverflowError and ValueError.
@example(("Deployment Hook", _with(EXAMPLES["Deployment Hook"], status_changed_at=YEAR_1)))
@example(("Job Hook", _with(EXAMPLES["Job Hook"], project=None, repository={"homepage": "//["})))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_cases())
def test_timestamps_and_urls_at_their_edges_parse_or_raise_payload_error(
    case: tuple[str, bytes],
) -> None:
    """Year 1 and 9999 with offsets that push them out of range, URLs that ``urlsplit``
    refuses, with the fields they are fallbacks for taken away."""
    _parses_or_refuses(*case)


# --------------------------------------------------------------------------------------------
# The worker's handler


class Recorder:
    """Every observer the handler talks to, recording what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def observe(self, event: PipelineObserved | JobObserved) -> None:
        marker = event.job_id if isinstance(event, JobObserved) else event.pipeline_id
        self.calls.append(("observe", marker))

    async def observe_many(self, events: Sequence[PipelineObserved | JobObserved]) -> None:
        for event in events:
            await self.observe(event)

    async def on_push(self, paths: Iterable[str] | None) -> None:
        self.calls.append(("push", None if paths is None else tuple(sorted(paths))))

    async def on_pipeline(
        self,
        *,
        pipeline_id: int,
        status: str,
        ref: str,
        sha: str,
        url: str | None,
        merge_request_iid: int | None,
    ) -> None:
        self.calls.append(("pipeline", pipeline_id))

    async def on_merge_request(
        self,
        *,
        iid: int,
        action: str,
        merge_sha: str | None,
        by: str | None,
        head_sha: str | None = None,
    ) -> None:
        self.calls.append(("merge_request", iid))


MARK = 777_000_000
"""Good events carry ids from here on, which no bad event holds: their calls can be told apart."""


def good_event(index: int) -> tuple[str, bytes, tuple[str, object]]:
    """A valid event, and the one call it must cause."""
    marker = MARK + index
    choice = index % 5
    if choice == 0:
        event = copy.deepcopy(EXAMPLES["Pipeline Hook"])
        event["object_attributes"]["id"] = marker
        return "Pipeline Hook", dumps(event), ("observe", marker)
    if choice == 1:
        event = copy.deepcopy(EXAMPLES["Job Hook"])
        event["build_id"] = marker
        event["build_status"] = "running"
        return "Job Hook", dumps(event), ("observe", marker)
    if choice == 2:
        event = copy.deepcopy(GITOPS_EXAMPLES["Pipeline Hook"])
        event["object_attributes"]["id"] = marker
        return "Pipeline Hook", dumps(event), ("pipeline", marker)
    if choice == 3:
        event = copy.deepcopy(GITOPS_EXAMPLES["Merge Request Hook"])
        event["object_attributes"]["iid"] = marker
        return "Merge Request Hook", dumps(event), ("merge_request", marker)
    event = copy.deepcopy(GITOPS_EXAMPLES["Push Hook"])
    event["commits"] = [{"id": "a" * 40, "added": [f"marker-{marker}"]}]
    event["total_commits_count"] = 1
    return "Push Hook", dumps(event), ("push", (f"marker-{marker}",))


def _marked(call: tuple[str, object]) -> bool:
    _, value = call
    if isinstance(value, tuple):
        return any(isinstance(v, str) and v.startswith("marker-") for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and MARK <= value < MARK * 2


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), kinds_and_bodies()), min_size=1, max_size=8))
async def test_bad_events_are_dropped_and_the_next_ones_handled(
    stream: list[tuple[str, bytes] | None],
) -> None:
    """``None`` in the stream stands for the next good event."""
    recorder = Recorder()
    events = GitLabEvents(
        pipelines=recorder,
        gitops_project=GITOPS,
        gitops_pushes=[recorder],
        releases=recorder,
    )
    expected = []
    for number, item in enumerate(stream):
        if item is None:
            kind, body, call = good_event(len(expected))
            expected.append(call)
        else:
            kind, body = item
        await events.handle(kind=kind, body=body, event_id=f"1-{number}")  # never raises
    assert [call for call in recorder.calls if _marked(call)] == expected


# --------------------------------------------------------------------------------------------
# Ids GitLab cannot have sent

hostile_ids = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=2**63),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=2**63 - 1).map(str),
    st.integers(min_value=1, max_value=2**63 - 1).map(float),
)


@st.composite
def events_with_a_hostile_id(draw: st.DrawFn) -> tuple[str, bytes, str]:
    kind, _, where = draw(st.sampled_from(ID_FIELDS))
    event: Any = copy.deepcopy(draw(st.sampled_from([EXAMPLES, GITOPS_EXAMPLES]))[kind])
    *path, last = [int(step) if step.isdigit() else step for step in where.split(".")]
    node = event
    for step in path:
        node = node[step]
    node[last] = draw(hostile_ids)
    return kind, dumps(event), where


@settings(max_examples=300, deadline=None)
@given(events_with_a_hostile_id())
async def test_an_event_with_an_id_gitlab_cannot_have_reaches_no_observer(
    case: tuple[str, bytes, str],
) -> None:
    """``true`` read as pipeline 1, -1 and 10**30 as pipelines: all were shown in Slack."""
    kind, body, where = case
    with pytest.raises(PayloadError) as caught:
        parse_event(kind, body)
    assert caught.value.reason.startswith(f"{where}: ")
    recorder = Recorder()
    events = GitLabEvents(
        pipelines=recorder, gitops_project=GITOPS, gitops_pushes=[recorder], releases=recorder
    )
    await events.handle(kind=kind, body=body, event_id="1-0")
    assert recorder.calls == []
