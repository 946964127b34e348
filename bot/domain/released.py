"""Released notes (SPEC 13): the issues and merge requests of a release's changelog hear that
they shipped.

When a deploy ends ``healthy`` or ``deployed``, every issue (``#123``, ``group/project#12``) and
merge request (``!45``) its changelog's commits reference gets one note ("Released to
production in orders 1.5.0", linking the release's merge request) and the scoped label
``deployed::<env>`` — once per issue and env (``Reference.key``), whatever the retries and
replicas. A rollback ships nothing new (its changelog lists the commits that leave), so it
writes no note; nor does a release that failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from bot.domain.releases import Release, references_in
from bot.domain.text import scrub

__all__ = [
    "NOTED_STATES",
    "Reference",
    "deployed_label",
    "parse_reference",
    "references_to_note",
    "released_note",
]

NOTED_STATES: Final = frozenset({"healthy", "deployed"})


@dataclass(frozen=True, kw_only=True)
class Reference:
    """An issue or a merge request, in the project it lives in."""

    project: str
    kind: Literal["issue", "merge_request"]
    iid: int

    @property
    def key(self) -> str:
        """``shop/orders#12``, ``shop/orders!45``: how GitLab names it across projects."""
        return f"{self.project}{'#' if self.kind == 'issue' else '!'}{self.iid}"


def parse_reference(text: str, *, project: str) -> Reference | None:
    """``#12`` (in ``project``), ``group/project#12``, ``!45``; ``None`` for anything else."""
    found = references_in(text)
    if len(found) != 1 or found[0] != text:
        return None
    sigil = "#" if "#" in text else "!"
    where, _, iid = text.rpartition(sigil)
    return Reference(
        project=where or project,
        kind="issue" if sigil == "#" else "merge_request",
        iid=int(iid),
    )


def references_to_note(release: Release, *, source: str) -> tuple[Reference, ...]:
    """Who hears that ``release`` shipped (``source``: the app's project, where ``#12`` is)."""
    if release.kind != "deploy" or release.state not in NOTED_STATES:
        return ()
    found = (parse_reference(text, project=source) for text in release.changelog.references)
    unique = {ref.key.lower(): ref for ref in found if ref is not None}
    return tuple(unique.values())


def deployed_label(env: str) -> str:
    """Scoped, so a board can have one column per environment."""
    return f"deployed::{env}"


def released_note(release: Release) -> str:
    """The note (GitLab Markdown): where, what, and the release's merge request."""
    what = f"Released to **{_md(release.env)}** in {_md(release.app)} **{_md(release.to_version)}**"
    if release.mr_url and release.mr_url.startswith(("https://", "http://")):
        return f"{what} — [{_md(release.title)}]({release.mr_url}), through Pitcrew."
    return f"{what}, through Pitcrew."


def _md(text: str) -> str:
    escaped = "".join(f"\\{c}" if c in "\\`*_[]<>|#!" else c for c in scrub(text))
    return escaped.replace("@", "@\u200b")
