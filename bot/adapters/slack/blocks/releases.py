"""Release messages: the one message per release, its thread, and the answers to the requester.

The message is read at a glance by someone paged at 3 a.m., so its first line says what and
where, and its second line says where the release stands right now, with one vocabulary:

    :hourglass_flowing_sand: waiting   :white_check_mark: approved/passed   :lock: held by a lock
    :twisted_rightwards_arrows: merging/merged   :gear: GitOps pipeline
    :arrows_counterclockwise: rolling out   :large_green_circle: healthy   :red_circle: failed
    :no_entry_sign: rejected   :zzz: expired   :no_entry: refused

Buttons carry the release id and nothing else; they are only shown while an approval is useful.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_SECTION,
    Rendered,
    clip,
    escape,
    link,
    mention,
    render_command_error,
    section,
)
from bot.adapters.slack.blocks.rollouts import format_rollout_duration
from bot.domain.errors import CommandError
from bot.domain.locks import Lock, format_age
from bot.domain.releases import Release
from bot.services.releases import NoteKind

__all__ = ["APPROVE", "DEPLOY_ANYWAY", "REJECT", "ReleaseBlocks"]

APPROVE: Final = "release_approve"
REJECT: Final = "release_reject"
DEPLOY_ANYWAY: Final = "release_deploy_anyway"
_CHANGELOG_LINES: Final = 5


def _one(text: str) -> Rendered:
    return Rendered(text=text, blocks=[section(clip(text, MAX_SECTION))])


def _link(url: str | None, label: str) -> str:
    """``label`` (raw text) linked to ``url``."""
    return link(url, escape(label))


def _mr(release: Release) -> str:
    return _link(release.mr_url, f"!{release.mr_iid}") if release.mr_iid else "no MR"


def _versions(release: Release) -> str:
    before = f"`{escape(release.from_version)}`" if release.from_version else "nothing"
    return f"{before} → `{escape(release.to_version)}`"


def _took(release: Release) -> str:
    if release.rollout_started_at is None or release.finished_at is None:
        return ""
    seconds = (release.finished_at - release.rollout_started_at).total_seconds()
    return f" after {format_rollout_duration(max(seconds, 0.0))}"


def _rollback_hint(release: Release) -> str:
    return f"`/rollback {release.app} {release.env}`"


def stage(release: Release, *, approvers: str) -> str:
    """Where the release stands, in one line."""
    env = f"*{escape(release.env)}*"
    state = release.state
    if state == "requested":
        return ":hourglass_flowing_sand: Opening the merge request…"
    if state == "awaiting_approval":
        return (
            f":hourglass_flowing_sand: Waiting for approval — {len(release.approvals)}/"
            f"{release.approvals_needed} from {approvers}"
        )
    if state == "waiting_pipeline":
        return ":hourglass_flowing_sand: Waiting for the MR pipeline, then merges by itself"
    if state == "approved" and release.held_by:
        return (
            f":lock: Held: {env} is locked by {mention(release.held_by)} — merges when it is"
            " unlocked"
        )
    if state in ("approved", "merging"):
        return ":twisted_rightwards_arrows: Merging when the MR pipeline passes"
    if state == "merged":
        if release.watched:
            return ":twisted_rightwards_arrows: Merged — waiting for the deploy"
        return f":twisted_rightwards_arrows: Merged — {env}'s cluster is not watched"
    if state == "deployed":
        pipeline = release.deploy_pipeline
        if pipeline is not None:
            label = _link(pipeline.url, f"GitOps pipeline #{pipeline.id}")
            return f":white_check_mark: Deployed by {label} — {env}'s cluster is not watched"
        return f":white_check_mark: Merged — {env}'s cluster is not watched"
    if state == "deploying":
        pipeline = release.deploy_pipeline
        status = pipeline.status if pipeline else "running"
        word = "passed" if status == "success" else escape(status)
        label = f"GitOps pipeline #{pipeline.id}" if pipeline else "GitOps pipeline"
        return f":gear: Deploying — {_link(pipeline.url if pipeline else None, label)} {word}"
    if state == "rolling_out":
        return f":arrows_counterclockwise: Rolling out in {env}"
    if state == "healthy":
        return f":large_green_circle: Healthy in {env}{_took(release)}"
    if state == "failed":
        hint = f" — {_rollback_hint(release)}" if release.merge_sha else ""
        return f":red_circle: Failed: {escape(release.failure or 'unknown reason')}{hint}"
    if state == "rejected":
        who = f" by {mention(release.ended_by)}" if release.ended_by else ""
        return f":no_entry_sign: Rejected{who} — {_mr(release)} closed"
    if state == "expired":
        return f":zzz: Expired without approval — {_mr(release)} closed"
    return f":no_entry: Refused: {escape(release.failure or 'unknown reason')}"


def _changelog(release: Release) -> str:
    log = release.changelog
    heading = "Commits leaving" if release.kind == "rollback" else "Changelog"
    if log.unavailable:
        return f"*{heading}:* not available ({escape(clip(log.unavailable, 200))})"
    if not log.entries:
        return f"*{heading}:* no commits between the two versions"
    where = f" · {_link(log.compare_url, 'compare')}" if log.compare_url else ""
    lines = [f"*{heading}* ({log.total} commit{'s' if log.total != 1 else ''}{where})"]
    for entry in log.entries[:_CHANGELOG_LINES]:
        issues = "".join(
            f" {_link(f'{log.issues_url}/{n}' if log.issues_url else None, f'#{n}')}"
            for n in entry.issues
        )
        lines.append(
            f"• {_link(entry.url, entry.sha[:8])} {escape(clip(entry.title, 120))}{issues}"
            f" — {escape(clip(entry.author, 60))}"
        )
    more = log.total - min(len(log.entries), _CHANGELOG_LINES)
    if more > 0:
        lines.append(f"… and {more} more")
    return "\n".join(lines)


def _policy(release: Release, *, approvers: str) -> str:
    if release.policy == "auto":
        return "auto: merges when the MR pipeline passes"
    count = release.approvals_needed
    return f"manual: {count} approval{'s' if count != 1 else ''} from {approvers}"


def render_release(release: Release, *, approvers: str) -> Rendered:
    verb = ":rewind:" if release.kind == "rollback" else ":rocket:"
    title = f"{verb} *{escape(release.title)}* · {_mr(release)}"
    status = stage(release, approvers=approvers)
    details = [
        f"{_versions(release)} · requested by {mention(release.requester)}",
        f"Policy: {_policy(release, approvers=approvers)}",
    ]
    if release.approvals:
        details.append("Approved by " + ", ".join(mention(u) for u in release.approvals))
    if release.override is not None:
        lock = release.override
        why = f" ({escape(clip(lock.reason, 100))})" if lock.reason else ""
        details.append(
            f":unlock: Deployed through the lock of {mention(lock.holder)}{why},"
            f" on {mention(lock.by)}'s say-so"
        )
    blocks: list[dict[str, Any]] = [
        section(clip(f"{title}\n{status}", MAX_SECTION)),
        section(clip("\n".join(details), MAX_SECTION)),
        section(clip(_changelog(release), MAX_SECTION)),
    ]
    if release.state == "awaiting_approval":
        blocks.append(
            {
                "type": "actions",
                "block_id": "release",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": release.id,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": release.id,
                    },
                ],
            }
        )
    when = release.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = f"release `{release.id}` · team {escape(release.team)} · requested {when}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return Rendered(text=f"{escape(release.title)} — {status}", blocks=blocks)


def render_note(release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered:
    env = f"*{escape(release.env)}*"
    who = mention(by) if by else "someone"
    if kind == "override":
        lock = release.override
        holder = mention(lock.holder) if lock else "someone"
        why = f": “{escape(clip(lock.reason, 200))}”" if lock and lock.reason else ""
        return _one(f":unlock: {who} chose *Deploy anyway* through {holder}'s lock on {env}{why}")
    if kind == "approved":
        return _one(
            f":white_check_mark: Approved by {who}"
            f" ({len(release.approvals)}/{release.approvals_needed})"
        )
    if kind == "mr_pipeline":
        p = release.mr_pipeline
        if p is None:
            return _one(":hourglass_flowing_sand: MR pipeline pending")
        label = _link(p.url, f"#{p.id}")
        if p.status == "success":
            return _one(f":white_check_mark: MR pipeline {label} passed")
        if p.status in ("failed", "canceled"):
            return _one(f":x: MR pipeline {label} {p.status}")
        return _one(f":hourglass_flowing_sand: MR pipeline {label} {escape(p.status)}")
    if kind == "held":
        return _one(
            f":lock: The MR pipeline passed, but {env} is locked by {who}: this release merges"
            " as soon as it is unlocked."
        )
    if kind == "merging":
        return _one(f":twisted_rightwards_arrows: Merging {_mr(release)} when its pipeline passes")
    if kind == "merged":
        outside = f" in GitLab by {escape(by)}, outside Pitcrew" if by else ""
        follow = (
            " Waiting for the rollout."
            if release.watched
            else f" {env}'s cluster is not watched: Pitcrew stops following here."
        )
        return _one(f":twisted_rightwards_arrows: Merged {_mr(release)}{outside}.{follow}")
    if kind == "deploy_pipeline":
        p = release.deploy_pipeline
        if p is None:
            return _one(":gear: GitOps pipeline started")
        label = _link(p.url, f"#{p.id}")
        word = {"success": "passed", "failed": "failed", "canceled": "canceled"}.get(
            p.status, escape(p.status)
        )
        emoji = {"success": ":white_check_mark:", "failed": ":x:", "canceled": ":x:"}.get(
            p.status, ":gear:"
        )
        return _one(f"{emoji} GitOps pipeline {label} {word}")
    if kind == "rollout":
        return _one(
            f":arrows_counterclockwise: Rolling out `{escape(release.to_version)}` in {env}…"
        )
    if kind == "healthy":
        return _one(
            f":large_green_circle: *{escape(release.app)} {escape(release.to_version)} is"
            f" healthy in {escape(release.env)}*{_took(release)}"
        )
    if kind == "failed":
        hint = f" Roll back with {_rollback_hint(release)}." if release.merge_sha else ""
        return _one(
            f":red_circle: *{escape(release.title)} failed*:"
            f" {escape(release.failure or 'unknown reason')}.{hint}"
        )
    if kind == "rejected":
        if by and mention(by).startswith("<@"):
            return _one(f":no_entry_sign: Rejected by {who}: {_mr(release)} is closed.")
        where = f" in GitLab by {escape(by)}" if by else " in GitLab"
        return _one(f":no_entry_sign: {_mr(release)} was closed{where}: the release stops here.")
    return _one(f":zzz: Nobody approved in time: {_mr(release)} is closed.")


class ReleaseBlocks:
    """The ``ReleaseViews`` port."""

    def message(self, release: Release, *, approvers: str) -> Rendered:
        return render_release(release, approvers=approvers)

    def note(self, release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered:
        return render_note(release, kind, by=by)

    def working(self, what: str) -> Rendered:
        return _one(f":hourglass_flowing_sand: Working on it: checking how to {escape(what)}…")

    def opened(self, release: Release, *, channel: str, approvers: str) -> Rendered:
        count = release.approvals_needed
        next_step = (
            f"It needs {count} approval{'s' if count != 1 else ''} from {approvers}."
            if release.policy == "manual"
            else "It merges when its pipeline passes."
        )
        where = f"<#{channel}>" if channel.startswith(("C", "G")) else escape(channel)
        return _one(
            f":white_check_mark: Opened {_mr(release)} *{escape(release.title)}*"
            f" ({_versions(release)}). {next_step} Follow it in {where}."
        )

    def refused(self, problem: str) -> Rendered:
        # The service's own words: catalog names, validated versions, links; no raw user text.
        return _one(f":no_entry: {problem[:1].upper()}{problem[1:]}")

    def lock_prompt(self, lock: Lock, *, request_id: str, what: str, now: datetime) -> Rendered:
        why = f": “{escape(clip(lock.reason, 200))}”" if lock.reason else ""
        age = format_age(lock.age(now))
        ago = age if age == "just now" else f"{age} ago"
        text = (
            f":lock: *{escape(lock.env)}* is locked by {mention(lock.holder)}"
            f" ({ago}){why}.\nDeploy anyway? The override is recorded and shown in the"
            " release's thread."
        )
        return Rendered(
            text=text,
            blocks=[
                section(text),
                {
                    "type": "actions",
                    "block_id": "lock",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": DEPLOY_ANYWAY,
                            "text": {"type": "plain_text", "text": "Deploy anyway"},
                            "style": "danger",
                            "value": request_id,
                            "confirm": {
                                "title": {"type": "plain_text", "text": "Deploy through a lock?"},
                                "text": {
                                    "type": "mrkdwn",
                                    "text": f"{escape(what)} while {escape(lock.env)} is locked.",
                                },
                                "confirm": {"type": "plain_text", "text": "Deploy anyway"},
                                "deny": {"type": "plain_text", "text": "Cancel"},
                            },
                        }
                    ],
                },
            ],
        )

    def help(self, usage: str) -> Rendered:
        return _one(escape(usage))

    def error(self, error: CommandError) -> Rendered:
        return render_command_error(error)

    def click_answer(self, text: str) -> Rendered:
        return _one(text)
