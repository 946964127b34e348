"""GitLab's documented payloads parse, translate into domain observations, and bad ones say why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from pydantic import BaseModel

from bot.adapters.gitlab import payloads
from bot.adapters.gitlab.payloads import (
    DeploymentHook,
    JobHook,
    MergeRequestHook,
    PayloadError,
    PipelineHook,
    PushHook,
    job_observed,
    observed,
    parse_event,
    parse_timestamp,
    pipeline_observed,
)
from bot.domain.errors import PitcrewError
from bot.domain.pipelines import JobObserved, MergeRequestRef, PipelineObserved, apply

FIXTURES = Path(__file__).parents[2] / "fixtures" / "gitlab"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def body(data: object) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("kind", "name", "model"),
    [
        ("Pipeline Hook", "pipeline_hook.json", PipelineHook),
        ("Job Hook", "job_hook.json", JobHook),
        ("Deployment Hook", "deployment_hook.json", DeploymentHook),
        ("Push Hook", "push_hook.json", PushHook),
        ("Merge Request Hook", "merge_request_hook.json", MergeRequestHook),
    ],
)
def test_every_documented_example_parses(kind: str, name: str, model: type[object]) -> None:
    assert isinstance(parse_event(kind, (FIXTURES / name).read_bytes()), model)


def test_pipeline_hook_translates() -> None:
    hook = parse_event("Pipeline Hook", (FIXTURES / "pipeline_hook.json").read_bytes())
    assert isinstance(hook, PipelineHook)
    event = pipeline_observed(hook)
    assert event.project == "gitlab-org/gitlab-test"
    assert event.project_url == "http://192.168.64.1:3005/gitlab-org/gitlab-test"
    assert event.default_branch == "master"
    assert (event.pipeline_id, event.iid, event.status) == (31, 3, "success")
    assert (event.ref, event.tag, event.source) == ("master", False, "merge_request_event")
    assert event.sha == "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
    assert event.commit_title == "test"
    assert event.commit_url == (
        "http://example.com/gitlab-org/gitlab-test/commit/bcbb5ec396a2c0f828686f14fac9b80b780504f2"
    )
    assert (event.author_name, event.author_email) == ("User", "user@gitlab.com")
    assert (event.user_name, event.user_email) == ("Administrator", "user_email@gitlab.com")
    assert event.url == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    assert event.merge_request == MergeRequestRef(
        iid=1,
        title="Test",
        url="http://192.168.64.1:3005/gitlab-org/gitlab-test/merge_requests/1",
        source_branch="test",
        target_branch="master",
    )
    assert event.created_at == datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC)
    assert event.finished_at == datetime(2016, 8, 12, 15, 26, 29, tzinfo=UTC)
    assert event.duration == 63
    assert event.stages == ("build", "test", "deploy")
    assert event.timestamp == datetime(2016, 8, 12, 15, 26, 29, tzinfo=UTC)
    assert event.jobs is not None
    jobs = {j.id: j for j in event.jobs}
    assert sorted(jobs) == [376, 377, 378, 379, 380]
    failed = jobs[378]
    assert (failed.name, failed.stage, failed.status) == ("test-build", "test", "failed")
    assert failed.failure_reason == "script_failure"
    assert failed.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/378"
    assert failed.observed_at == datetime(2016, 8, 12, 15, 26, 29, tzinfo=UTC)
    assert jobs[380].manual
    assert not jobs[380].allow_failure
    assert observed(hook) == event


def test_job_hook_translates() -> None:
    hook = parse_event("Job Hook", (FIXTURES / "job_hook.json").read_bytes())
    assert isinstance(hook, JobHook)
    event = job_observed(hook)
    assert event.project == "gitlab-org/gitlab-test"
    assert (event.pipeline_id, event.pipeline_status) == (2366, "created")
    assert (event.job_id, event.name, event.stage) == (1977, "test", "test")
    assert event.status == "created"
    assert event.failure_reason == "script_failure"
    assert event.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"
    assert event.pipeline_url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/2366"
    assert event.timestamp == datetime(2021, 2, 23, 2, 41, 37, tzinfo=UTC)
    assert (event.ref, event.sha) == ("gitlab-script-trigger", hook.sha)
    assert event.commit_title == "test"
    assert (event.author_name, event.author_email) == ("User", "user@gitlab.com")
    assert observed(hook) == event


def test_a_job_hook_from_before_gitlab_16_3_finds_its_project_in_repository() -> None:
    data = fixture("job_hook.json")
    del data["project"]
    event = job_observed(JobHook.model_validate(data))
    assert event.project == "gitlab-org/gitlab-test"
    assert event.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"


def test_job_times_in_gitlabs_older_format() -> None:
    data = fixture("job_hook.json")
    for key in ("build_created_at_iso", "build_started_at_iso", "build_finished_at_iso"):
        del data[key]
    data |= {
        "build_status": "failed",
        "build_started_at": "2021-02-23 02:41:40 UTC",
        "build_finished_at": "2021-02-23 02:43:05 UTC",
    }
    event = job_observed(JobHook.model_validate(data))
    assert event.started_at == datetime(2021, 2, 23, 2, 41, 40, tzinfo=UTC)
    assert event.timestamp == datetime(2021, 2, 23, 2, 43, 5, tzinfo=UTC)


def test_other_hooks_carry_no_pipeline_observation() -> None:
    for kind, name in [
        ("Deployment Hook", "deployment_hook.json"),
        ("Push Hook", "push_hook.json"),
        ("Merge Request Hook", "merge_request_hook.json"),
    ]:
        assert observed(parse_event(kind, (FIXTURES / name).read_bytes())) is None


def test_deployment_hook_fields() -> None:
    hook = parse_event("Deployment Hook", (FIXTURES / "deployment_hook.json").read_bytes())
    assert isinstance(hook, DeploymentHook)
    assert (hook.status, hook.environment, hook.deployment_id) == ("success", "staging", 15)
    assert hook.project.path_with_namespace == "root/test-deployment-webhooks"
    assert hook.status_changed_at == datetime(2021, 4, 28, 19, 50, tzinfo=UTC)
    assert hook.user is not None
    assert hook.user.email == "admin@example.com"


def test_push_hook_lists_changed_files() -> None:
    hook = parse_event("Push Hook", (FIXTURES / "push_hook.json").read_bytes())
    assert isinstance(hook, PushHook)
    assert hook.project.path_with_namespace == "mike/diaspora"
    assert (hook.branch, hook.is_tag) == ("master", False)
    assert hook.before == "95790bf891e76fee5e1747ab589903a6a1f80f22"
    assert hook.after == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert hook.changed_paths == {"CHANGELOG", "app/controller/application.rb"}
    assert not hook.lists_every_commit  # 4 commits pushed, 2 listed


def test_a_tag_push_reads_as_a_push() -> None:
    data = fixture("push_hook.json") | {"object_kind": "tag_push", "ref": "refs/tags/v1.0.0"}
    hook = parse_event("Tag Push Hook", body(data))
    assert isinstance(hook, PushHook)
    assert (hook.branch, hook.is_tag) == (None, True)


def test_unknown_fields_are_ignored() -> None:
    data = fixture("pipeline_hook.json")
    data["brand_new_field"] = {"nested": [1, 2, 3]}
    data["object_attributes"]["protected_ref"] = True
    data["builds"][0]["some_future_flag"] = "x"
    event = pipeline_observed(PipelineHook.model_validate(data))
    assert event.pipeline_id == 31


def test_nulls_where_gitlab_sends_nulls() -> None:
    data = fixture("pipeline_hook.json")
    data["object_attributes"] |= {
        "iid": None,
        "name": None,
        "tag": None,
        "before_sha": None,
        "source": None,
        "stages": None,
        "finished_at": None,
        "duration": None,
        "queued_duration": None,
        "url": None,
        "status": "running",
    }
    data |= {"merge_request": None, "commit": None, "source_pipeline": None}
    data["user"]["email"] = "[REDACTED]"
    data["project"]["web_url"] = None
    for build in data["builds"]:
        build |= {"user": None, "runner": None, "environment": None, "allow_failure": None}
    event = pipeline_observed(PipelineHook.model_validate(data))
    assert event.status == "running"
    assert (event.iid, event.merge_request, event.commit_title) == (None, None, None)
    assert (event.author_name, event.author_email) == ("Administrator", None)
    assert event.user_email is None
    assert (event.url, event.commit_url) == (None, None)
    assert event.stages == ()
    assert event.jobs is not None
    assert all(j.url is None for j in event.jobs)
    assert apply(None, event).state.status == "running"


def test_absent_builds_are_not_an_empty_pipeline() -> None:
    data = fixture("pipeline_hook.json")
    del data["builds"]
    del data["user"]["email"]
    event = pipeline_observed(PipelineHook.model_validate(data))
    assert event.jobs is None
    assert event.timestamp == datetime(2016, 8, 12, 15, 26, 29, tzinfo=UTC)


def test_a_job_with_a_status_from_a_newer_gitlab_is_left_out() -> None:
    data = fixture("pipeline_hook.json")
    data["builds"][0]["status"] = "teleporting"
    event = pipeline_observed(PipelineHook.model_validate(data))
    assert event.jobs is not None
    assert 380 not in {j.id for j in event.jobs}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2016-08-12 15:23:28 UTC", datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC)),
        ("2021-02-23T02:41:37.886Z", datetime(2021, 2, 23, 2, 41, 37, 886000, tzinfo=UTC)),
        ("2021-02-23T02:41:37Z", datetime(2021, 2, 23, 2, 41, 37, tzinfo=UTC)),
        ("2016-08-12T17:23:21+02:00", datetime(2016, 8, 12, 15, 23, 21, tzinfo=UTC)),
        ("2021-04-28 21:50:00 +0200", datetime(2021, 4, 28, 19, 50, tzinfo=UTC)),
        ("2021-04-28 21:50:00", datetime(2021, 4, 28, 21, 50, tzinfo=UTC)),
    ],
)
def test_timestamps_in_every_gitlab_format(value: str, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert isinstance(parsed, datetime)
    assert parsed.tzinfo == UTC


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        pytest.param("Pipeline Hook", b'{"object_kind": "pipeline",', "invalid JSON", id="json"),
        pytest.param("Pipeline Hook", b"\xff\xfe", "invalid JSON", id="not utf-8"),
        pytest.param("Pipeline Hook", b"[1, 2]", "body is not a JSON object", id="array"),
        pytest.param(
            "Pipeline Hook",
            body(_without(fixture("pipeline_hook.json"), "object_attributes")),
            "missing object_attributes",
            id="no object_attributes",
        ),
        pytest.param(
            "Pipeline Hook",
            body(
                fixture("pipeline_hook.json")
                | {"object_attributes": {"id": "thirty-one", "ref": "main", "sha": "a"}}
            ),
            "object_attributes.id: Input should be a valid integer",
            id="wrong types",
        ),
        pytest.param(
            "Pipeline Hook",
            body(fixture("pipeline_hook.json") | {"builds": {"not": "a list"}}),
            "builds: Input should be a valid array",
            id="builds not a list",
        ),
        pytest.param(
            "Pipeline Hook",
            body(fixture("job_hook.json")),
            "missing object_attributes",
            id="a job hook sent as a pipeline hook",
        ),
        pytest.param(
            "Job Hook",
            body(fixture("job_hook.json") | {"object_kind": "pipeline"}),
            "object_kind is 'pipeline', expected build",
            id="object_kind disagrees",
        ),
        pytest.param(
            "Job Hook",
            body(_without(fixture("job_hook.json"), "build_id")),
            "missing build_id",
            id="no build_id",
        ),
        pytest.param(
            "Job Hook",
            body(fixture("job_hook.json") | {"build_created_at": "last tuesday"}),
            "build_created_at: Value error, not a GitLab timestamp",
            id="bad timestamp",
        ),
        pytest.param(
            "Deployment Hook",
            body(_without(fixture("deployment_hook.json"), "project")),
            "missing project",
            id="deployment without project",
        ),
        pytest.param("Issue Hook", b"{}", "not an event kind Pitcrew reads", id="unknown kind"),
    ],
)
def test_malformed_bodies_say_why(kind: str, raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_event(kind, raw)
    assert reason in caught.value.reason
    assert caught.value.kind == kind
    assert str(caught.value).startswith(f"{kind}: ")
    assert isinstance(caught.value, PitcrewError)
    assert len(str(caught.value)) < 400


def test_many_problems_are_summed_up_in_one_line() -> None:
    data = fixture("pipeline_hook.json")
    data["builds"] = [{"id": "x"}] * 5
    with pytest.raises(PayloadError) as caught:
        parse_event("Pipeline Hook", body(data))
    assert "\n" not in str(caught.value)
    assert caught.value.reason.endswith("more")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            {"object_attributes": {"status": "teleporting"}},
            "object_attributes.status: unknown status 'teleporting'",
            id="unknown status",
        ),
        pytest.param(
            {"project": {"path_with_namespace": None}},
            "missing project.path_with_namespace",
            id="no project path",
        ),
        pytest.param(
            {"object_attributes": {"created_at": None, "finished_at": None}, "builds": []},
            "the event has no time",
            id="no time at all",
        ),
    ],
)
def test_translation_refuses_what_it_cannot_order(change: dict[str, Any], reason: str) -> None:
    data = fixture("pipeline_hook.json")
    for key, value in change.items():
        data[key] = data[key] | value if isinstance(data[key], dict) else value
    hook = parse_event("Pipeline Hook", body(data))
    assert isinstance(hook, PipelineHook)
    with pytest.raises(PayloadError, match=reason):
        pipeline_observed(hook)


def test_job_translation_refuses_unknown_status_and_missing_project() -> None:
    data = fixture("job_hook.json") | {"build_status": "teleporting"}
    with pytest.raises(PayloadError, match="build_status: unknown status"):
        job_observed(JobHook.model_validate(data))
    data = _without(_without(fixture("job_hook.json"), "project"), "repository")
    with pytest.raises(PayloadError, match=r"missing project\.path_with_namespace"):
        job_observed(JobHook.model_validate(data))


def test_the_documented_examples_fold_into_pipeline_states() -> None:
    raw = (FIXTURES / "pipeline_hook.json").read_bytes()
    pipeline = observed(parse_event("Pipeline Hook", raw))
    job = observed(parse_event("Job Hook", (FIXTURES / "job_hook.json").read_bytes()))
    assert isinstance(pipeline, PipelineObserved)
    assert isinstance(job, JobObserved)
    state = apply(None, pipeline).state
    assert [(s.name, s.status) for s in state.stages] == [
        ("build", "success"),
        ("test", "failed"),
        ("deploy", "created"),
    ]
    assert [j.name for j in state.failed_jobs] == ["test-build"]
    assert apply(None, job).state.status == "created"


# --------------------------------------------------------------------------------------------
# Ids: what GitLab hands out (positive, 64-bit, integers) and nothing else

ID_FIELDS = [
    ("Pipeline Hook", "pipeline_hook.json", "object_attributes.id"),
    ("Pipeline Hook", "pipeline_hook.json", "object_attributes.iid"),
    ("Pipeline Hook", "pipeline_hook.json", "merge_request.id"),
    ("Pipeline Hook", "pipeline_hook.json", "merge_request.iid"),
    ("Pipeline Hook", "pipeline_hook.json", "builds.0.id"),
    ("Pipeline Hook", "pipeline_hook.json", "builds.0.user.id"),
    ("Pipeline Hook", "pipeline_hook.json", "user.id"),
    ("Pipeline Hook", "pipeline_hook.json", "project.id"),
    ("Job Hook", "job_hook.json", "build_id"),
    ("Job Hook", "job_hook.json", "pipeline_id"),
    ("Job Hook", "job_hook.json", "project_id"),
    ("Job Hook", "job_hook.json", "commit.id"),
    ("Job Hook", "job_hook.json", "user.id"),
    ("Job Hook", "job_hook.json", "project.id"),
    ("Deployment Hook", "deployment_hook.json", "deployment_id"),
    ("Deployment Hook", "deployment_hook.json", "deployable_id"),
    ("Deployment Hook", "deployment_hook.json", "project.id"),
    ("Deployment Hook", "deployment_hook.json", "user.id"),
    ("Push Hook", "push_hook.json", "project.id"),
    ("Merge Request Hook", "merge_request_hook.json", "object_attributes.id"),
    ("Merge Request Hook", "merge_request_hook.json", "object_attributes.iid"),
    ("Merge Request Hook", "merge_request_hook.json", "project.id"),
    ("Merge Request Hook", "merge_request_hook.json", "user.id"),
]
"""Every id and iid the payload models read, in the documented example that carries it."""

HOSTILE_IDS = [-1, 0, 10**30, 2**63, True, False, 1.0, 31.5, "31", [31], {"id": 31}]


def _with_id(name: str, where: str, value: object) -> bytes:
    data: Any = fixture(name)
    *path, last = [int(step) if step.isdigit() else step for step in where.split(".")]
    node = data
    for step in path:
        node = node[step]
    assert last in (range(len(node)) if isinstance(node, list) else node), where
    node[last] = value
    return body(data)


@pytest.mark.parametrize("value", HOSTILE_IDS, ids=repr)
@pytest.mark.parametrize(("kind", "name", "where"), ID_FIELDS)
def test_an_id_gitlab_cannot_have_makes_the_payload_unreadable(
    kind: str, name: str, where: str, value: object
) -> None:
    """Pydantic's lax ints took ``true`` as 1 and ``"31"`` as 31, and any size or sign: Slack
    showed pipelines "#1", "#-1" and "#1000000000000000000000000000000"."""
    with pytest.raises(PayloadError) as caught:
        parse_event(kind, _with_id(name, where, value))
    assert caught.value.reason.startswith(f"{where}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [1, 2**63 - 1], ids=["smallest", "largest"])
@pytest.mark.parametrize(("kind", "name", "where"), ID_FIELDS)
def test_ids_from_1_to_the_largest_bigint_are_read(
    kind: str, name: str, where: str, value: int
) -> None:
    event = parse_event(kind, _with_id(name, where, value))
    node: Any = event
    for step in where.split("."):
        node = node[int(step)] if step.isdigit() else getattr(node, step)
    assert node == value
    assert type(node) is int


def test_no_id_field_of_the_models_is_a_plain_int() -> None:
    """A field added later must not slip back to pydantic's lax ``int``."""
    models = [
        model
        for model in vars(payloads).values()
        if isinstance(model, type)
        and issubclass(model, BaseModel)
        and model.__module__ == payloads.__name__
    ]
    assert PipelineHook in models
    loose = [
        f"{model.__name__}.{name}"
        for model in models
        for name, hint in get_type_hints(model, include_extras=True).items()
        if (name in ("id", "iid") or name.endswith("_id")) and hint in (int, int | None)
    ]
    assert loose == []
