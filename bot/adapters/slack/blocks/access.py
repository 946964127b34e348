"""Break-glass access messages: the one message per grant, its thread, and the answers.

Read like a release's, one vocabulary for both: the first line says who gets what where, the
second where the grant stands right now:

    :hourglass_flowing_sand: waiting   :twisted_rightwards_arrows: merging/merged
    :key: access granted until …   :grey_question: never seen in the cluster
    :lock: access ended   :rotating_light: access not taken back (or merged unreviewed)
    :no_entry_sign: rejected/withdrawn   :zzz: expired   :red_circle: failed   :no_entry: refused

Every absolute time is a Slack date token (each reader sees their own zone); what is left of a
grant is a duration. Approve and Reject carry the grant's id and nothing else, and are shown only
while an approval is useful. Everything from outside (reasons, emails, paths, GitLab's words)
goes through ``plain``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_NAME,
    MAX_SECTION,
    MAX_TITLE,
    Rendered,
    clip,
    escape,
    link,
    mention,
    plain,
    render_command_error,
    section,
    slack_date,
)
from bot.domain.access import ACCESS_USAGE, Grant
from bot.domain.access_flow import GrantNote
from bot.domain.durations import format_duration
from bot.domain.errors import CommandError
from bot.domain.text import scrub

__all__ = ["APPROVE", "REJECT", "AccessBlocks", "render_grant", "render_grant_note"]

APPROVE: Final = "access_approve"
REJECT: Final = "access_reject"
_CHANNEL_ID: Final = re.compile(r"[CG][A-Z0-9]{2,}")
_MAX_REASON: Final = 300
_MAX_FAILURE: Final = 500
_LISTED: Final = 20


def _one(text: str) -> Rendered:
    return Rendered(text=text, blocks=[section(clip(text, MAX_SECTION))])


def _mr(grant: Grant) -> str:
    return link(grant.mr_url, f"!{grant.mr_iid}") if grant.mr_iid else "no MR"


def _revoke_mr(grant: Grant) -> str:
    return link(grant.revoke_url, f"!{grant.revoke_iid}") if grant.revoke_iid else "its MR"


def _env(grant: Grant) -> str:
    return f"*{plain(grant.env, MAX_NAME)}*"


def _app(grant: Grant) -> str:
    return f"*{plain(grant.app, MAX_NAME)}*"


def _code(text: str, limit: int = MAX_TITLE) -> str:
    shown = plain(text.replace("`", "'"), limit)
    return f"`{shown}`"


def _failure(grant: Grant) -> str:
    return plain(grant.failure or "unknown reason", _MAX_FAILURE)


def _until(grant: Grant) -> str:
    return slack_date(grant.expires_at)


def _lower(text: str) -> str:
    """A sentence's start in the middle of one: its first letter only (mentions keep theirs)."""
    return text[:1].lower() + text[1:]


def _why(grant: Grant) -> str:
    """Why the access is being (or was) taken back, as a sentence's start."""
    if grant.revoke_reason == "expired":
        return "The access expired"
    if grant.revoke_reason == "unmerged":
        return "GitLab merged it after it had ended"
    if grant.revoke_reason == "unreviewed":
        return "It was merged unreviewed"
    if grant.revoked_by is not None:
        return f"Revoked by {mention(grant.revoked_by)}"
    return "Revoked"


def _rejected(grant: Grant, by: str | None) -> str:
    who = by or grant.ended_by
    if who and mention(who).startswith("<@"):
        verb = "Withdrawn" if who == grant.requester else "Rejected"
        return f"{verb} by {mention(who)}"
    where = f" in GitLab by {plain(who, MAX_NAME)}" if who else " in GitLab"
    return f"{_mr(grant)} was closed{where}"


def stage(grant: Grant, *, approvers: str) -> str:
    """Where the grant stands, in one line."""
    env, state = _env(grant), grant.state
    if state == "requested":
        return ":hourglass_flowing_sand: Opening the merge request…"
    if state == "awaiting_approval":
        return (
            f":hourglass_flowing_sand: Waiting for approval — {len(grant.approvals)}/1 from"
            f" {approvers}, anyone but the requester"
        )
    if state == "merging":
        return ":twisted_rightwards_arrows: Approved — merging when the MR pipeline passes"
    if state == "active":
        if not grant.watched:
            return (
                f":key: Access granted until {_until(grant)} — {env}'s cluster is not watched,"
                " so Pitcrew cannot confirm it"
            )
        if grant.seen_at is not None:
            return f":key: Access granted until {_until(grant)} — the RoleBinding is in {env}"
        if grant.not_seen:
            return (
                f":grey_question: Merged, but the RoleBinding never showed up in {env} — is the"
                f" GitOps controller syncing? Pitcrew takes it back at {_until(grant)} all the same"
            )
        return f":twisted_rightwards_arrows: Merged — waiting for the RoleBinding in {env}"
    if state == "revoking":
        where = f"merging {_revoke_mr(grant)}" if grant.revoke_iid else "opening the merge request"
        stuck = f" — {_failure(grant)}; trying again" if grant.failure else ""
        return f":hourglass_flowing_sand: {_why(grant)}: taking it back, {where}{stuck}"
    if state == "revoke_failed":
        return (
            f":rotating_light: Access NOT taken back: {_failure(grant)} — merge"
            f" {_revoke_mr(grant)}, or `/access revoke {plain(grant.env, MAX_NAME)}"
            f" {plain(grant.app, MAX_NAME)}` to try again"
        )
    if state == "revoked":
        when = slack_date(grant.revoked_at) if grant.revoked_at else "now"
        line = f":lock: Access ended {when} ({_lower(_why(grant))})"
        if grant.revoke_iid:
            line += f" — {_revoke_mr(grant)} merged"
        if grant.watched and grant.gone_at is not None:
            line += f", the RoleBinding is gone from {env}"
        elif grant.watched and grant.still_there:
            line += f", but the RoleBinding is still in {env}"
        elif grant.watched:
            line += f", waiting for the RoleBinding to leave {env}"
        return line
    if state == "rejected":
        closed = (
            f" — {_mr(grant)} closed"
            if grant.ended_by and mention(grant.ended_by)[:2] == "<@"
            else ""
        )
        return f":no_entry_sign: {_rejected(grant, None)}{closed}"
    if state == "expired":
        return f":zzz: Expired: {_failure(grant)} — {_mr(grant)} closed"
    if state == "failed":
        return f":red_circle: Failed: {_failure(grant)} — {_mr(grant)} closed"
    return f":no_entry: Refused: {_failure(grant)}"


def render_grant(grant: Grant, *, approvers: str) -> Rendered:
    title = f":key: *{plain(grant.title, MAX_SECTION)}* · {_mr(grant)}"
    status = stage(grant, approvers=approvers)
    requested = (
        f"For {format_duration(grant.duration)}, until {_until(grant)} · requested by"
        f" {mention(grant.requester)}"
    )
    if grant.reason:
        requested += f" · “{plain(grant.reason, _MAX_REASON)}”"
    details = [
        requested,
        f"As {_code(grant.subject)} · ClusterRole {_code(grant.role)} in namespace"
        f" {_code(grant.namespace)} · {_code(grant.path, 2 * MAX_TITLE)}",
    ]
    if grant.approvals:
        details.append("Approved by " + ", ".join(mention(u) for u in grant.approvals))
    blocks: list[dict[str, Any]] = [
        section(clip(f"{title}\n{status}", MAX_SECTION)),
        section(clip("\n".join(details), MAX_SECTION)),
    ]
    if grant.state == "awaiting_approval":
        blocks.append(
            {
                "type": "actions",
                "block_id": "access",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": grant.id,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": grant.id,
                    },
                ],
            }
        )
    context = (
        f"access `{plain(grant.id, MAX_NAME)}` · team {plain(grant.team, MAX_NAME)}"
        f" · requested {slack_date(grant.created_at)}"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return Rendered(text=f"{plain(grant.title, MAX_TITLE)} — {status}", blocks=blocks)


def render_grant_note(grant: Grant, kind: GrantNote, *, by: str | None = None) -> Rendered:
    env, app = _env(grant), _app(grant)
    who = mention(by) if by else "someone"
    if kind == "approved":
        return _one(f":white_check_mark: Approved by {who} (1/1)")
    if kind == "merging":
        return _one(f":twisted_rightwards_arrows: Merging {_mr(grant)} when its pipeline passes")
    if kind == "merged":
        outside = f" in GitLab by {plain(by, MAX_NAME)}, outside Pitcrew" if by else ""
        follow = (
            f" Waiting for the RoleBinding to appear in {env}."
            if grant.watched and grant.seen_at is None
            else ""
        )
        return _one(f":twisted_rightwards_arrows: Merged {_mr(grant)}{outside}.{follow}")
    if kind == "granted":
        confirmed = (
            "the RoleBinding is in the cluster."
            if grant.watched
            else f"{env}'s cluster is not watched, so Pitcrew cannot confirm it."
        )
        return _one(
            f":key: *Access granted until {_until(grant)}*: {mention(grant.requester)} is"
            f" {_code(grant.role)} on {app} in {env} (as {_code(grant.subject)}) — {confirmed}"
        )
    if kind == "not_seen":
        return _one(
            f":grey_question: {mention(grant.requester)} {_mr(grant)} was merged, but the"
            f" RoleBinding {_code(grant.binding)} never showed up in {env} — is the GitOps"
            " controller syncing?"
        )
    if kind == "unreviewed_merge":
        outside = f" (merged in GitLab by {plain(by, MAX_NAME)})" if by else ""
        return _one(
            f":rotating_light: *{_mr(grant)} was merged at a head nobody approved*{outside}:"
            f" {_failure(grant)}. Pitcrew takes the access back at once."
        )
    if kind == "failed":
        return _one(
            f":red_circle: *Access not granted*: {_failure(grant)}. {_mr(grant)} is closed."
        )
    if kind == "rejected":
        closed = f": {_mr(grant)} is closed." if by and mention(by)[:2] == "<@" else "."
        return _one(f":no_entry_sign: {_rejected(grant, by)}{closed}")
    if kind == "expired":
        return _one(f":zzz: Expired ({_failure(grant)}): {_mr(grant)} is closed.")
    if kind == "revoking":
        if grant.revoke_iid:
            doing = f"merging {_revoke_mr(grant)}, which removes the RoleBinding."
        else:
            doing = "opening the merge request that removes the RoleBinding…"
        return _one(f":hourglass_flowing_sand: {_why(grant)}: {doing}")
    if kind == "revoke_stuck":
        return _one(
            f":warning: The merge request removing the access could not be opened:"
            f" {_failure(grant)}. Pitcrew tries again every minute; the access stays until then."
        )
    if kind == "revoke_failed":
        return _one(
            f":rotating_light: *The access was not taken back*: {_failure(grant)}. Merge"
            f" {_revoke_mr(grant)} or remove {_code(grant.path, 2 * MAX_TITLE)} by hand — or"
            f" `/access revoke {plain(grant.env, MAX_NAME)} {plain(grant.app, MAX_NAME)}` to try"
            " again."
        )
    if kind == "revoked":
        how = f"{_revoke_mr(grant)} merged" if grant.revoke_iid else "its file was already gone"
        waiting = grant.watched and grant.gone_at is None
        follow = f" Waiting for the RoleBinding to leave {env}." if waiting else ""
        return _one(
            f":lock: *{mention(grant.requester)}'s access to {plain(grant.app, MAX_NAME)} in"
            f" {plain(grant.env, MAX_NAME)} has ended* ({_lower(_why(grant))}): {how}.{follow}"
        )
    if kind == "gone":
        return _one(
            f":white_check_mark: The RoleBinding {_code(grant.binding)} is gone from {env}."
        )
    return _one(
        f":rotating_light: {_revoke_mr(grant)} was merged, but the RoleBinding"
        f" {_code(grant.binding)} is still in {env} — is the GitOps controller syncing and"
        " pruning? Remove it by hand if in doubt."
    )


def _list_line(grant: Grant, *, now: datetime) -> str:
    what = f"{_code(grant.role)} on {_app(grant)} in {_env(grant)}"
    holder = mention(grant.requester)
    if grant.state in ("awaiting_approval", "requested"):
        return (
            f"• :hourglass_flowing_sand: {holder} waits for approval: {what} for"
            f" {format_duration(grant.duration)} · {_mr(grant)}"
        )
    if grant.state == "merging":
        return f"• :twisted_rightwards_arrows: {holder}: {what}, approved, merging · {_mr(grant)}"
    if grant.state == "revoking":
        return (
            f"• :hourglass_flowing_sand: {holder}: {what}, being taken back · {_revoke_mr(grant)}"
        )
    if grant.state == "revoke_failed":
        return (
            f"• :rotating_light: {holder}: {what}, *not taken back*: {_failure(grant)} ·"
            f" {_revoke_mr(grant)}"
        )
    left = format_duration(grant.left(now))
    return f"• :key: {holder}: {what} until {_until(grant)} ({left} left) · {_mr(grant)}"


def render_listing(grants: Sequence[Grant], *, now: datetime) -> Rendered:
    if not grants:
        text = (
            ":key: Nobody holds break-glass access right now. Ask with"
            f" `{escape('/access <env> <app> for <duration> [reason]')}`."
        )
        return _one(text)
    held = sum(1 for g in grants if g.state not in ("requested", "awaiting_approval", "merging"))
    waiting = len(grants) - held
    header = f":key: *Break-glass access* · {held} held · {waiting} waiting"
    lines = [_list_line(g, now=now) for g in grants[:_LISTED]]
    if len(grants) > _LISTED:
        lines.append(f"… and {len(grants) - _LISTED} more")
    body = clip("\n".join(lines), MAX_SECTION)
    return Rendered(text=header, blocks=[section(header), section(body)])


class AccessBlocks:
    """The ``AccessViews`` port."""

    def message(self, grant: Grant, *, approvers: str, now: datetime) -> Rendered:
        return render_grant(grant, approvers=approvers)

    def note(self, grant: Grant, kind: GrantNote, *, by: str | None = None) -> Rendered:
        return render_grant_note(grant, kind, by=by)

    def ended(self, grant: Grant) -> Rendered:
        how = (
            f"{_revoke_mr(grant)} removed the RoleBinding"
            if grant.revoke_iid
            else ("its file was already gone from git")
        )
        return _one(
            f":lock: Your break-glass access to {_app(grant)} in {_env(grant)} has ended"
            f" ({_lower(_why(grant))}): {how}. If you still need it, ask again with"
            f" `/access {plain(grant.env, MAX_NAME)} {plain(grant.app, MAX_NAME)} for"
            f" {escape('<duration>')}`."
        )

    def listing(self, grants: Sequence[Grant], *, now: datetime) -> Rendered:
        return render_listing(grants, now=now)

    def working(self, what: str) -> Rendered:
        return _one(
            f":hourglass_flowing_sand: Working on it: checking how to {plain(what, MAX_TITLE)}…"
        )

    def opened(self, grant: Grant, *, channel: str, approvers: str) -> Rendered:
        where = f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else plain(channel, MAX_NAME)
        return _one(
            f":white_check_mark: Opened {_mr(grant)} *{plain(grant.title, MAX_TITLE)}*, until"
            f" {_until(grant)}. It needs 1 approval from {approvers} — anyone but you. Follow it"
            f" in {where}."
        )

    def already(self, grant: Grant, *, now: datetime) -> Rendered:
        where = f"{plain(grant.app, MAX_NAME)} in {plain(grant.env, MAX_NAME)}"
        revoke = f"`/access revoke {plain(grant.env, MAX_NAME)} {plain(grant.app, MAX_NAME)}`"
        if grant.state in ("requested", "awaiting_approval", "merging"):
            return _one(
                f":hourglass_flowing_sand: You already asked for access to {where}: {_mr(grant)}"
                f" is {grant.state.replace('_', ' ')}. To ask differently, withdraw it with"
                f" {revoke}."
            )
        if grant.state == "active":
            return _one(
                f":key: You already hold access to {where} until {_until(grant)}"
                f" ({format_duration(grant.left(now))} left, {_mr(grant)}). To ask again,"
                f" end it first with {revoke}."
            )
        return _one(
            f":hourglass_flowing_sand: Your access to {where} is being taken back"
            f" ({_revoke_mr(grant)}): ask again once it has ended."
        )

    def refused(self, problem: str) -> Rendered:
        problem = plain(problem, _MAX_FAILURE * 2, newlines=True)
        return _one(f":no_entry: {problem[:1].upper()}{problem[1:]}")

    def help(self) -> Rendered:
        text = (
            f"{plain(ACCESS_USAGE, MAX_SECTION)}\n"
            "Break-glass access is a merge request adding a RoleBinding for you in the app's"
            " namespace. One approver of the environment other than you approves it in Slack;"
            " Pitcrew merges it, and takes it back by itself when it expires. You, or an"
            f" approver, can end it sooner with `{escape('/access revoke <env> <app>')}`."
        )
        return _one(text)

    def error(self, error: CommandError) -> Rendered:
        return render_command_error(error)

    def click_answer(self, text: str) -> Rendered:
        return _one(scrub(text, newlines=True))
