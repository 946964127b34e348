"""Real git repositories for the GitLab sandbox: bare repos written with git plumbing.

Every write builds objects with ``hash-object``, a throwaway index and ``commit-tree``, and moves
the ref with ``update-ref``'s compare-and-swap, so a repository on disk is exactly what a GitLab
server would hold: ``git log``, ``git show`` and ``git clone`` work on it. Refs are resolved to
SHAs before they reach any other git command, so no user input is ever read as an option.

The calls block (a few milliseconds each); the sandbox runs them in a worker thread.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILE_MODE = "100644"
EXEC_MODE = "100755"

_SHA = re.compile(r"[0-9a-f]{7,40}")
_FIELD = "\x1f"
_LOG_FORMAT = _FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"])
_ISOLATED_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


class RepoError(Exception):
    """git refused an operation the sandbox expected to work (a bug, or a lost race)."""


class ActionError(Exception):
    """A commit action does not apply to the tree: GitLab answers 400 with this message."""


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    when: datetime  # timezone-aware

    def env(self, role: Literal["AUTHOR", "COMMITTER"]) -> dict[str, str]:
        offset = self.when.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        return {
            f"GIT_{role}_NAME": self.name,
            f"GIT_{role}_EMAIL": self.email,
            f"GIT_{role}_DATE": f"{int(self.when.timestamp())} {zone}",
        }


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: str

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass(frozen=True)
class TreeEntry:
    sha: str
    name: str
    type: str  # "blob", "tree" or "commit" (a submodule)
    path: str
    mode: str


@dataclass(frozen=True)
class Blob:
    sha: str
    mode: str
    data: bytes


@dataclass(frozen=True)
class TagInfo:
    name: str
    object_sha: str  # the tag object for annotated tags, else the commit
    commit_sha: str
    message: str | None  # None for lightweight tags


@dataclass(frozen=True)
class FileChange:
    """One file of a diff, as GitLab's compare/changes/diff endpoints describe it."""

    old_path: str
    new_path: str
    a_mode: str
    b_mode: str
    new_file: bool
    renamed_file: bool
    deleted_file: bool
    diff: str
    additions: int
    deletions: int


@dataclass(frozen=True)
class Action:
    """One entry of the Commits API's ``actions`` (content already decoded to bytes)."""

    action: Literal["create", "update", "delete", "move", "chmod"]
    file_path: str
    previous_path: str | None = None
    content: bytes | None = None
    execute_filemode: bool | None = None
    last_commit_id: str | None = None


@dataclass
class _Staged:
    files: dict[str, tuple[str, str]]  # path -> (mode, blob sha)
    contents: dict[str, bytes] = field(default_factory=dict)  # path -> new content to hash


class Repository:
    """One bare repository; every method is synchronous and short."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path, *, default_branch: str) -> Repository:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)],
            check=True,
            capture_output=True,
            env={**os.environ, **_ISOLATED_ENV},
        )
        return cls(path)

    # ------------------------------------------------------------------ plumbing

    def _git(
        self,
        *args: str,
        data: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            ["git", f"--git-dir={self.path}", *args],
            input=data,
            capture_output=True,
            env={**os.environ, **_ISOLATED_ENV, **(env or {})},
            check=False,
        )
        if result.returncode not in ok:
            stderr = result.stderr.decode(errors="replace").strip()
            raise RepoError(f"git {args[0]} failed ({result.returncode}): {stderr}")
        return result

    def _out(self, *args: str, data: bytes | None = None) -> str:
        return self._git(*args, data=data).stdout.decode(errors="replace")

    # ------------------------------------------------------------------ refs

    def refs(self) -> dict[str, str]:
        """Every ref (``refs/heads/main``...) → the commit it points to (tags peeled)."""
        out = self._out("for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)")
        found: dict[str, str] = {}
        for line in out.splitlines():
            name, sha, peeled = line.split("\0")
            found[name] = peeled or sha
        return found

    def branches(self) -> dict[str, str]:
        return {
            name.removeprefix("refs/heads/"): sha
            for name, sha in self.refs().items()
            if name.startswith("refs/heads/")
        }

    def branch(self, name: str) -> str | None:
        return self.refs().get(f"refs/heads/{name}")

    def is_empty(self) -> bool:
        return not any(name.startswith("refs/heads/") for name in self.refs())

    def resolve(self, ref: str) -> str | None:
        """A branch, tag, full ref or (abbreviated) SHA → commit SHA, like GitLab's ``ref``."""
        if not ref or ref.startswith("-") or any(c in ref for c in "\0\n :^~?*[\\"):
            return None
        refs = self.refs()
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if candidate in refs:
                return refs[candidate]
        if _SHA.fullmatch(ref):
            result = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
            if result.returncode == 0:
                return result.stdout.decode().strip()
        return None

    def set_ref(self, ref: str, new: str, old: str | None) -> None:
        """Move ``ref`` to ``new`` only if it still points at ``old`` (None: must not exist)."""
        self._git("update-ref", ref, new, old or ZERO_SHA)

    def point(self, ref: str, new: str) -> None:
        """Set ``ref`` unconditionally (for refs only the sandbox writes, like MR heads)."""
        self._git("update-ref", ref, new)

    def delete_ref(self, ref: str, old: str) -> None:
        self._git("update-ref", "-d", ref, old)

    def valid_branch_name(self, name: str) -> bool:
        if not name or name.startswith("-") or name == "HEAD" or len(name) > 255:
            return False
        return self._git("check-ref-format", f"refs/heads/{name}", ok=(0, 1)).returncode == 0

    def tags(self) -> list[TagInfo]:
        out = self._out(
            "for-each-ref",
            "--format=%(refname:strip=2)%00%(objectname)%00%(objecttype)%00%(*objectname)"
            "%00%(contents)%1e",
            "refs/tags",
        )
        found: list[TagInfo] = []
        for record in out.split("\x1e"):
            record = record.lstrip("\n")
            if not record:
                continue
            name, sha, kind, peeled, contents = record.split("\0", 4)
            annotated = kind == "tag"
            found.append(
                TagInfo(
                    name=name,
                    object_sha=sha,
                    commit_sha=peeled if annotated else sha,
                    message=contents.rstrip("\n") if annotated else None,
                )
            )
        return found

    def create_tag(self, name: str, commit: str, *, message: str | None, tagger: Signature) -> str:
        if message is None:
            self.set_ref(f"refs/tags/{name}", commit, None)
            return commit
        self._git(
            "tag", "--annotate", "--file=-", "--", name, commit,
            data=message.encode(), env=tagger.env("COMMITTER"),
        )  # fmt: skip
        return self.refs_raw(f"refs/tags/{name}")

    def refs_raw(self, ref: str) -> str:
        """The object a ref names, without peeling (a tag object for annotated tags)."""
        return self._out("rev-parse", "--verify", ref).strip()

    # ------------------------------------------------------------------ history

    def commit(self, sha: str) -> CommitInfo | None:
        result = self._git("log", "-z", "--no-walk", f"--format={_LOG_FORMAT}", sha, ok=(0, 128))
        if result.returncode != 0:
            return None
        commits = _parse_log(result.stdout.decode(errors="replace"))
        return commits[0] if commits else None

    def log(
        self,
        include: Iterable[str],
        *,
        exclude: Iterable[str] = (),
        path: str | None = None,
        since: str | None = None,
        until: str | None = None,
        first_parent: bool = False,
        topo: bool = False,
    ) -> list[CommitInfo]:
        """Commits newest first, as ``git log`` walks them."""
        include = list(include)
        if not include:
            return []
        args = ["log", "-z", f"--format={_LOG_FORMAT}"]
        if since:
            args.append(f"--since={since}")
        if until:
            args.append(f"--until={until}")
        if first_parent:
            args.append("--first-parent")
        if topo:
            args.append("--topo-order")
        args += [*include, *(f"^{sha}" for sha in exclude), "--"]
        if path:
            args.append(path)
        return _parse_log(self._out(*args))

    def rev_list(self, include: str, *, exclude: Iterable[str] = ()) -> list[str]:
        """SHAs reachable from ``include`` but from none of ``exclude``, newest first."""
        out = self._out("rev-list", include, *(f"^{sha}" for sha in exclude), "--")
        return out.split()

    def merge_base(self, a: str, b: str) -> str | None:
        result = self._git("merge-base", a, b, ok=(0, 1))
        return result.stdout.decode().strip() or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = self._git("merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
        return result.returncode == 0

    def last_commit_for(self, commit: str, path: str) -> str | None:
        out = self._out("log", "-1", "--format=%H", commit, "--", path).strip()
        return out or None

    # ------------------------------------------------------------------ trees and blobs

    def files(self, commit: str) -> dict[str, tuple[str, str]]:
        """Every file of the commit's tree: path → (mode, blob sha)."""
        out = self._out("ls-tree", "-r", "-z", "--full-tree", commit)
        found: dict[str, tuple[str, str]] = {}
        for item in out.split("\0"):
            if not item:
                continue
            meta, path = item.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob":
                found[path] = (mode, sha)
        return found

    def blob_at(self, commit: str, path: str) -> Blob | None:
        path = path.strip("/")
        if not path:
            return None
        out = self._out("ls-tree", "-z", "--full-tree", commit, "--", path)
        for item in out.split("\0"):
            if not item:
                continue
            meta, found = item.split("\t", 1)
            mode, kind, sha = meta.split()
            if found == path and kind == "blob":
                return Blob(sha=sha, mode=mode, data=self._git("cat-file", "blob", sha).stdout)
        return None

    def blob(self, sha: str) -> bytes | None:
        result = self._git("cat-file", "blob", sha, ok=(0, 128))
        return result.stdout if result.returncode == 0 else None

    def tree(self, commit: str, path: str, *, recursive: bool) -> list[TreeEntry] | None:
        """Entries under ``path`` (None when it is not a directory of the commit)."""
        path = path.strip("/")
        treeish = f"{commit}:{path}" if path else f"{commit}^{{tree}}"
        kind = self._git("cat-file", "-t", treeish, ok=(0, 128))
        if kind.returncode != 0 or kind.stdout.strip() != b"tree":
            return None
        args = ["ls-tree", "-z", *(["-r", "-t"] if recursive else []), treeish]
        entries: list[TreeEntry] = []
        for item in self._out(*args).split("\0"):
            if not item:
                continue
            meta, name = item.split("\t", 1)
            mode, kind_name, sha = meta.split()
            full = f"{path}/{name}" if path else name
            entries.append(
                TreeEntry(
                    sha=sha, name=name.rsplit("/", 1)[-1], type=kind_name, path=full, mode=mode
                )
            )
        return entries

    # ------------------------------------------------------------------ diffs

    def changed_paths(self, commit: CommitInfo) -> tuple[list[str], list[str], list[str]]:
        """(added, modified, removed) against the first parent, as a Push Hook lists them."""
        base = commit.parents[0] if commit.parents else EMPTY_TREE
        out = self._out("diff-tree", "-r", "-z", "--no-renames", "--name-status", base, commit.sha)
        items = [item for item in out.split("\0") if item]
        added: list[str] = []
        modified: list[str] = []
        removed: list[str] = []
        for status, path in zip(items[::2], items[1::2], strict=True):
            {"A": added, "D": removed}.get(status[0], modified).append(path)
        return added, modified, removed

    def diff(self, base: str | None, head: str) -> list[FileChange]:
        """File changes from ``base`` (None: the empty tree) to ``head``, renames detected."""
        base = base or EMPTY_TREE
        raw = self._out("diff-tree", "-r", "-z", "-M", "--raw", base, head)
        patch = self._out("diff-tree", "-r", "-p", "-M", "--no-color", "--no-ext-diff", base, head)
        chunks = _split_patch(patch)
        fields = raw.split("\0")
        changes: list[FileChange] = []
        i = 0
        while i < len(fields) and fields[i]:
            meta = fields[i].lstrip(":").split()
            status = meta[4]
            if status[0] in "RC":
                old_path, new_path = fields[i + 1], fields[i + 2]
                i += 3
            else:
                old_path = new_path = fields[i + 1]
                i += 2
            text = chunks[len(changes)] if len(changes) < len(chunks) else ""
            body, additions, deletions = _hunks(text)
            changes.append(
                FileChange(
                    old_path=old_path,
                    new_path=new_path,
                    a_mode=meta[0] if meta[0] != "000000" else "0",
                    b_mode=meta[1] if meta[1] != "000000" else "0",
                    new_file=status[0] == "A",
                    renamed_file=status[0] == "R",
                    deleted_file=status[0] == "D",
                    diff=body,
                    additions=additions,
                    deletions=deletions,
                )
            )
        return changes

    # ------------------------------------------------------------------ writes

    def write_commit(
        self,
        *,
        parent: str | None,
        actions: Sequence[Action],
        message: str,
        author: Signature,
        committer: Signature,
    ) -> str:
        """One commit applying ``actions`` in order on ``parent``; raises ``ActionError``."""
        staged = _Staged(files=self.files(parent) if parent else {})
        for action in actions:
            self._apply(staged, action, parent)
        _check_paths(staged.files)
        with tempfile.TemporaryDirectory(prefix="gitlab-sandbox-") as tmp:
            shas = self._hash_blobs(Path(tmp), staged.contents)
            for path, sha in shas.items():
                staged.files[path] = (staged.files[path][0], sha)
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            lines = "".join(f"{mode} {sha}\t{path}\0" for path, (mode, sha) in staged.files.items())
            self._git("read-tree", "--empty", env=index_env)
            self._git("update-index", "-z", "--index-info", data=lines.encode(), env=index_env)
            tree = self._git("write-tree", env=index_env).stdout.decode().strip()
        return self.commit_tree(
            tree,
            parents=[parent] if parent else [],
            message=message,
            author=author,
            committer=committer,
        )

    def commit_tree(
        self,
        tree: str,
        *,
        parents: Sequence[str],
        message: str,
        author: Signature,
        committer: Signature,
    ) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {**author.env("AUTHOR"), **committer.env("COMMITTER")}
        return self._git(*args, "-F", "-", data=message.encode(), env=env).stdout.decode().strip()

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The tree of a three-way merge, or None when it conflicts (nothing is written)."""
        result = self._git(
            "merge-tree", "--write-tree", "--no-messages", ours, theirs, ok=(0, 1, 128)
        )
        if result.returncode != 0:
            return None
        return result.stdout.decode().split()[0]

    def _apply(self, staged: _Staged, action: Action, parent: str | None) -> None:
        path = _clean_path(action.file_path)
        files = staged.files
        if action.last_commit_id and action.action in ("update", "delete", "move") and parent:
            source = _clean_path(action.previous_path or path) if action.action == "move" else path
            last = self.last_commit_for(parent, source)
            if last is None or not last.startswith(action.last_commit_id):
                raise ActionError(
                    "You are attempting to update a file that has changed since you started "
                    "editing it."
                )
        if action.action == "create":
            if path in files:
                raise ActionError("A file with this name already exists")
            _set(staged, path, EXEC_MODE if action.execute_filemode else FILE_MODE, action.content)
        elif action.action == "update":
            if path not in files:
                raise ActionError("A file with this name doesn't exist")
            mode = files[path][0]
            if action.execute_filemode is not None:
                mode = EXEC_MODE if action.execute_filemode else FILE_MODE
            _set(staged, path, mode, action.content)
        elif action.action == "delete":
            if path not in files:
                raise ActionError("A file with this name doesn't exist")
            del files[path]
            staged.contents.pop(path, None)
        elif action.action == "move":
            source = _clean_path(action.previous_path or "")
            if source not in files:
                raise ActionError("A file with this name doesn't exist")
            if path in files and path != source:
                raise ActionError("A file with this name already exists")
            mode, sha = files.pop(source)
            pending = staged.contents.pop(source, None)
            content = action.content if action.content is not None else pending
            files[path] = (mode, sha)
            if content is not None:
                staged.contents[path] = content
        elif action.action == "chmod":
            if path not in files:
                raise ActionError("A file with this name doesn't exist")
            mode = EXEC_MODE if action.execute_filemode else FILE_MODE
            files[path] = (mode, files[path][1])

    def _hash_blobs(self, tmp: Path, contents: Mapping[str, bytes]) -> dict[str, str]:
        if not contents:
            return {}
        paths: list[str] = []
        for i, data in enumerate(contents.values()):
            blob = tmp / f"blob-{i}"
            blob.write_bytes(data)
            paths.append(str(blob))
        out = self._out(
            "hash-object", "-w", "--no-filters", "--stdin-paths", data="\n".join(paths).encode()
        )
        return dict(zip(contents, out.split(), strict=True))


def _set(staged: _Staged, path: str, mode: str, content: bytes | None) -> None:
    staged.files[path] = (mode, staged.files.get(path, (mode, ""))[1])
    staged.contents[path] = content or b""


def _clean_path(path: str) -> str:
    cleaned = path.strip("/")
    parts = cleaned.split("/")
    if (
        not cleaned
        or any(part in ("", ".", "..", ".git") for part in parts)
        or any(ord(c) < 32 for c in cleaned)
    ):
        raise ActionError(f"Your changes could not be committed: invalid file path {path!r}")
    return cleaned


def _check_paths(files: Mapping[str, tuple[str, str]]) -> None:
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise ActionError("A file with this name already exists")


def _parse_log(out: str) -> list[CommitInfo]:
    commits: list[CommitInfo] = []
    for record in out.split("\0"):
        record = record.lstrip("\n")
        if not record:
            continue
        sha, parents, an, ae, ad, cn, ce, cd, message = record.split(_FIELD, 8)
        commits.append(
            CommitInfo(
                sha=sha,
                parents=tuple(parents.split()),
                author=Signature(an, ae, datetime.fromisoformat(ad)),
                committer=Signature(cn, ce, datetime.fromisoformat(cd)),
                message=message,
            )
        )
    return commits


def _split_patch(patch: str) -> list[str]:
    chunks: list[str] = []
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git "):
            chunks.append("")
        if chunks:
            chunks[-1] += line
    return chunks


def _hunks(chunk: str) -> tuple[str, int, int]:
    """GitLab's ``diff`` is the hunks only (from the first ``@@``), with +/- line counts."""
    start = chunk.find("\n@@")
    if start < 0:
        return "", 0, 0
    body = chunk[start + 1 :]
    additions = deletions = 0
    for line in body.splitlines():
        if line.startswith("+"):
            additions += 1
        elif line.startswith("-"):
            deletions += 1
    return body, additions, deletions
