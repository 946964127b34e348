"""The pipeline message, its failure reply and its "fixed" reply, as Block Kit.

One vocabulary for every status (``STATUS_DISPLAY``) so that people learn to read a glance of
emoji; links everywhere a person would want to click; and Slack's limits kept here (50 blocks,
3000 characters per section or context text, 2000 per field), by cutting long lists with
"… and N more" rather than letting Slack refuse the whole message. Everything GitLab says
(project, ref, commit title, author, job and stage names, failure reasons) goes through ``plain``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from bot.adapters.slack.blocks.common import (
    MAX_FIELD,
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    Rendered,
    clip,
    link,
    mention,
    plain,
)
from bot.adapters.slack.blocks.common import section as _section
from bot.domain.pipelines import Pipeline, PipelineStatus

__all__ = [
    "FAILURE_REASONS",
    "STATUS_DISPLAY",
    "Rendered",
    "format_duration",
    "humanize_failure",
    "render_failure",
    "render_fixed",
    "render_pipeline",
]

STATUS_DISPLAY: Final[Mapping[PipelineStatus, tuple[str, str]]] = {
    "created": (":hourglass:", "created"),
    "waiting_for_resource": (":hourglass:", "waiting for resource"),
    "preparing": (":hourglass:", "preparing"),
    "pending": (":hourglass:", "pending"),
    "waiting_for_callback": (":hourglass:", "waiting for callback"),
    "scheduled": (":alarm_clock:", "scheduled"),
    "running": (":arrows_counterclockwise:", "running"),
    "manual": (":hand:", "manual"),
    "canceling": (":no_entry_sign:", "canceling"),
    "canceled": (":no_entry_sign:", "canceled"),
    "skipped": (":fast_forward:", "skipped"),
    "success": (":white_check_mark:", "passed"),
    "failed": (":x:", "failed"),
}
"""Status → (emoji, word), for pipelines and stages alike."""
WARNING_EMOJI: Final = ":warning:"
"""A stage that passed with allowed failures."""

FAILURE_REASONS: Final[Mapping[str, str]] = {
    "script_failure": "script failed",
    "unknown_failure": "unknown failure",
    "api_failure": "GitLab API failure",
    "stuck_or_timeout_failure": "stuck or timed out",
    "job_execution_timeout": "timed out",
    "runner_system_failure": "runner system failure",
    "runner_unsupported": "runner unsupported",
    "missing_dependency_failure": "missing dependency (expired artifacts?)",
    "stale_schedule": "stale schedule",
    "archived_failure": "job archived",
    "unmet_prerequisites": "unmet prerequisites",
    "scheduler_failure": "could not be scheduled",
    "data_integrity_failure": "data integrity failure",
    "forward_deployment_failure": "a newer deployment already ran",
    "failed_outdated_deployment_job": "outdated deployment job",
    "user_blocked": "user blocked",
    "project_deleted": "project deleted",
    "ci_quota_exceeded": "CI/CD minutes quota exceeded",
    "pipeline_loop_detected": "pipeline loop detected",
    "no_matching_runner": "no matching runner",
    "trace_size_exceeded": "job log too large",
    "builds_disabled": "CI/CD disabled",
    "environment_creation_failure": "environment could not be created",
    "deployment_rejected": "deployment rejected",
    "protected_environment_failure": "protected environment",
    "insufficient_bridge_permissions": "not allowed to trigger the downstream pipeline",
    "downstream_pipeline_creation_failed": "downstream pipeline could not be created",
}
"""GitLab's ``failure_reason`` codes in words; codes not listed are shown with spaces."""

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


# --------------------------------------------------------------------------------------------
# mrkdwn


def _fit(items: Sequence[str], *, limit: int, separator: str) -> str:
    """As many items as fit in ``limit`` characters, then "… and N more"."""
    kept: list[str] = []
    size = 0
    for index, item in enumerate(items):
        after = len(items) - index - 1
        reserve = len(separator) + len(f"… and {after} more") if after else 0
        grown = size + (len(separator) if kept else 0) + len(item)
        if grown + reserve > limit:
            kept.append(f"… and {len(items) - index} more")
            break
        kept.append(item)
        size = grown
    return separator.join(kept)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --------------------------------------------------------------------------------------------
# Pieces


def format_duration(seconds: float) -> str:
    """``45s``, ``3m 12s``, ``1h 4m 0s``: short enough for a field, exact enough to compare."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def humanize_failure(reason: str | None) -> str:
    if not reason:
        return "no reason given"
    return FAILURE_REASONS.get(reason, reason.replace("_", " "))


def _ref_label(pipeline: Pipeline) -> str:
    """The ref in plain words: ``main``, ``v1.4.2``, ``!12``."""
    if pipeline.merge_request is not None:
        return f"!{pipeline.merge_request.iid}"
    return pipeline.ref


def _ref_url(pipeline: Pipeline) -> str | None:
    mr = pipeline.merge_request
    if mr is not None and mr.url:
        return mr.url
    base = pipeline.project_url.rstrip("/") if pipeline.project_url else None
    if base is None:
        return None
    if mr is not None:
        return f"{base}/-/merge_requests/{mr.iid}"
    kind = "tags" if pipeline.tag else "tree"
    return f"{base}/-/{kind}/{quote(pipeline.ref, safe='/')}"


def _ref(pipeline: Pipeline) -> str:
    mr = pipeline.merge_request
    if mr is not None:
        label = f"!{mr.iid} {mr.title}" if mr.title else f"!{mr.iid}"
        return link(_ref_url(pipeline), label, limit=MAX_TITLE)
    linked = link(_ref_url(pipeline), pipeline.ref)
    return f"tag {linked}" if pipeline.tag else linked


def _pipeline_link(pipeline: Pipeline, label: str = "pipeline") -> str:
    return link(pipeline.url, f"{label} #{pipeline.id}")


def _commit(pipeline: Pipeline) -> str:
    sha = link(pipeline.commit_url, pipeline.short_sha)
    title = plain(pipeline.commit_title or "", MAX_TITLE)
    return f"{sha} {title}" if title else sha


def _stage_icon(status: PipelineStatus, *, warnings: bool) -> str:
    if status == "success" and warnings:
        return WARNING_EMOJI
    return STATUS_DISPLAY[status][0]


# --------------------------------------------------------------------------------------------
# Messages


def render_pipeline(pipeline: Pipeline) -> Rendered:
    """The pipeline's own message, posted at its first event and updated in place."""
    emoji, word = STATUS_DISPLAY[pipeline.status]
    project = link(pipeline.project_url, pipeline.project, limit=2 * MAX_NAME)
    header = f"{emoji} *{word}* · {project} · {_pipeline_link(pipeline)}"
    fields = [f"*Ref*\n{_ref(pipeline)}", f"*Commit*\n{_commit(pipeline)}"]
    author = plain(pipeline.author_name or "", MAX_NAME)
    if author:
        fields.append(f"*Author*\n{author}")
    elapsed = pipeline.elapsed
    if elapsed is not None:
        fields.append(f"*Duration*\n{format_duration(elapsed)}")
    blocks: list[dict[str, Any]] = [
        _section(clip(header, MAX_SECTION)),
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": clip(f, MAX_FIELD)} for f in fields],
        },
    ]
    stages = [
        f"{_stage_icon(s.status, warnings=s.warnings)} {plain(s.name, MAX_NAME)}"
        for s in pipeline.stages
    ]
    if stages:
        line = _fit(stages, limit=MAX_SECTION, separator=" → ")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    text = (
        f"{plain(pipeline.project, 2 * MAX_NAME)} pipeline #{pipeline.id} {word}"
        f" on {plain(_ref_label(pipeline), MAX_NAME)}"
    )
    title = plain(pipeline.commit_title or "", MAX_TITLE)
    if title:
        text += f": {title}"
    return Rendered(text=text, blocks=blocks)


def render_failure(pipeline: Pipeline, *, slack_user: str | None = None) -> Rendered:
    """The thread reply that names what failed, and tells the commit's author.

    ``slack_user`` is the author's Slack user id when the service found one; otherwise the
    GitLab name is written out, without an @, so that nobody is pinged by mistake.
    """
    failed = pipeline.failed_jobs
    if slack_user is not None and _SLACK_USER.fullmatch(slack_user):
        who = mention(slack_user)
    else:
        who = plain(pipeline.author_name or "", MAX_NAME)
    header = (
        f":x: {_pipeline_link(pipeline, 'Pipeline')} failed on {_ref(pipeline)}"
        f" — commit {link(pipeline.commit_url, pipeline.short_sha)}"
    )
    if who:
        header += f" by {who}"
    if failed:
        lines = [
            f"• {plain(j.stage, MAX_NAME)}: {link(j.url, j.name)}"
            f" — {plain(humanize_failure(j.failure_reason), MAX_NAME)}"
            for j in failed
        ]
        intro = f"{_plural(len(failed), 'job')} failed:\n"
        listing = intro + _fit(lines, limit=MAX_SECTION - len(intro), separator="\n")
        summary = _fit([plain(j.name, MAX_NAME) for j in failed], limit=300, separator=", ")
    else:
        listing = f"_GitLab did not say which job failed: see {_pipeline_link(pipeline)}._"
        summary = "see the pipeline"
    text = (
        f":x: Pipeline #{pipeline.id} failed on {plain(_ref_label(pipeline), MAX_NAME)}: {summary}"
    )
    if who:
        text += f" — {who}"
    return Rendered(text=text, blocks=[_section(clip(header, MAX_SECTION)), _section(listing)])


def render_fixed(pipeline: Pipeline, *, failures: int) -> Rendered:
    """The reply, broadcast to the channel, that a failing ref passes again."""
    after = f" after {_plural(failures, 'failure')}" if failures > 0 else " again"
    label = _ref_label(pipeline)
    text = f"{plain(label, MAX_NAME)} is fixed — pipeline #{pipeline.id} passed{after}"
    rich = (
        f"{STATUS_DISPLAY['success'][0]} {link(_ref_url(pipeline), label)} is fixed — "
        f"{_pipeline_link(pipeline)} passed{after}"
    )
    return Rendered(
        text=f"{STATUS_DISPLAY['success'][0]} {text}", blocks=[_section(clip(rich, MAX_SECTION))]
    )


class PipelineBlocks:
    """The renderers, as the pipeline service's ``PipelineViews`` port."""

    def pipeline(self, p: Pipeline) -> Rendered:
        return render_pipeline(p)

    def failure(self, p: Pipeline, *, slack_user: str | None) -> Rendered:
        return render_failure(p, slack_user=slack_user)

    def fixed(self, p: Pipeline, *, failures: int) -> Rendered:
        return render_fixed(p, failures=failures)
