"""Reading and changing an app's version in its GitOps manifest, and nothing else.

A deploy is a merge request whose diff people review and whose revert is the rollback, so the
edit must be the version characters and not one byte more: no re-indented lists, no lost
comments, no re-quoted strings, no line endings or final newline "fixed" on the way. Dumping a
ruamel.yaml round-trip document comes close but not all the way (it re-flows indentation,
spacing before comments and long lines), so the edit is a *splice* into the original text:

1. compose the text (the node graph, with each scalar's character offsets in ``start_mark`` and
   ``end_mark``) and find the scalars that hold the app's version (SPEC 3: a container image,
   a kustomization ``images:`` entry, or a Helm values key);
2. check that each such scalar is written literally (plain or quoted on one line, no escapes),
   so that the offsets of the version characters inside it are known exactly;
3. replace those characters in the text, and only those;
4. compose the result again and compare both node graphs: every node must be the same (kind,
   tag, value, quoting, anchor, aliasing) except the version scalars, which must hold the new
   version; and reading the version back must give the new one.

Anything surprising is refused with a reason a person understands (``ManifestError``) rather
than committed: a deploy that stops with "pinned by digest" costs a minute, a silently wrong
manifest costs an incident.

Decisions worth knowing:

- Images match by repository, normalised as the container runtime does (``nginx`` is
  ``docker.io/library/nginx``); any ``containers``/``initContainers``/``ephemeralContainers``
  list anywhere in a document counts, so Deployments, CronJobs, Pods, ``List`` items and
  workload-like custom resources (Argo Rollouts) are all covered.
- An image without tag runs ``latest``, so that is its version; setting one adds ``:<tag>``.
- A digest (``app@sha256:…`` or ``app:1.2@sha256:…``, kustomize ``digest:``) pins the image:
  it can be read (the version is the tag, else the digest) but not set.
- A Helm ``version_key`` may hold a tag (``image.tag: 1.2``) or a whole image reference of the
  app (``image: registry/app:1.2``); in the latter case only its tag changes.
- A plain (unquoted) version that YAML would read as something else than a string
  (``tag: 1.10`` is the float 1.1 to Helm and kustomize) is written in double quotes: the one
  case where more than the version's characters change, because the alternative deploys the
  wrong version.
- A version shared through a YAML anchor with a value that is not a version location is refused;
  shared only between version locations (``image: *img`` in two containers), it is changed once.
- Several locations must agree; ``read_version`` and ``set_version`` both refuse a file whose
  containers run different versions of the app's image, naming each.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from bot.domain.catalog import App, ManifestKind
from bot.domain.errors import PitcrewError
from bot.domain.images import ImageRef, ImageRefError, is_digest, is_tag

__all__ = [
    "InconsistentVersionsError",
    "ManifestError",
    "ManifestVersion",
    "VersionLocation",
    "compose_documents",
    "detect_manifest_kind",
    "read_version",
    "set_version",
]

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
_LATEST = "latest"
_MAX_POSITIONS = 200_000
"""Aliases can make a small file expand to billions of values; real manifests stay far below."""
_NODE_PROPERTIES = re.compile(r"(?:[&!]\S*\s+)*")
"""An anchor (``&img``) and/or a tag (``!!str``) written before a scalar's text."""

_Path = tuple[str | int, ...]


class ManifestError(PitcrewError):
    """The manifest cannot be read or changed as asked; the message says why, in one line."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        """1-based line the problem is at, when there is one."""


@dataclass(frozen=True, kw_only=True)
class VersionLocation:
    """One place in the file that holds the app's version."""

    document: int
    """0-based index of the YAML document in a multi-document file."""
    path: str
    """Where in that document, e.g. ``spec.template.spec.containers[1].image``."""
    line: int
    """1-based line of the scalar's text (for an alias: where its anchor is written)."""
    version: str
    digest: str | None


@dataclass(frozen=True, kw_only=True)
class ManifestVersion:
    version: str
    """The image tag; for an image pinned by digest alone, the digest (``sha256:…``)."""
    digest: str | None
    """Set when the image is pinned by digest, which ``set_version`` refuses to override."""
    kind: ManifestKind
    matches: tuple[VersionLocation, ...]
    """Every location holding the version, in file order; all agree."""

    @property
    def document(self) -> int:
        return self.matches[0].document

    @property
    def path(self) -> str:
        return self.matches[0].path

    @property
    def line(self) -> int:
        return self.matches[0].line


class InconsistentVersionsError(ManifestError):
    """Locations disagree, so there is no single version to report or to move from."""

    def __init__(self, message: str, *, matches: Sequence[VersionLocation]) -> None:
        super().__init__(message, line=matches[0].line)
        self.matches = tuple(matches)


@dataclass(frozen=True, kw_only=True)
class _Hit:
    """A version location, and where the version's characters sit inside its scalar."""

    location: VersionLocation
    node: ScalarNode
    start: int
    end: int
    separator: str = ""
    """``":"`` when the image has no tag yet, so that setting one must add the colon."""


@dataclass(frozen=True, kw_only=True)
class _Edit:
    start: int
    end: int
    text: str
    value: str
    """The scalar's whole value after the edit."""
    style: str | None


# --------------------------------------------------------------------------------------------
# Public API


def read_version(text: str, *, app: App) -> ManifestVersion:
    """The version of ``app`` that the manifest deploys, and every place it is written."""
    hits = _find(compose_documents(text), app=app)
    first = hits[0].location
    return ManifestVersion(
        version=first.version,
        digest=first.digest,
        kind=app.manifest_kind,
        matches=tuple(h.location for h in hits),
    )


def set_version(text: str, *, app: App, version: str) -> str:
    """``text`` with the app's version changed to ``version``, every other byte unchanged."""
    if not is_tag(version):
        raise ManifestError(
            f'"{version}" cannot be an image tag: use letters, digits, "_", "." and "-", '
            'not starting with "." or "-", at most 128 characters'
        )
    documents = compose_documents(text)
    hits = _find(documents, app=app)
    for hit in hits:
        if hit.location.digest is not None:
            raise ManifestError(
                f"{app.image} is pinned by digest {_short(hit.location.digest)} at line "
                f"{hit.location.line} — cannot set a tag",
                line=hit.location.line,
            )
    if all(hit.location.version == version for hit in hits):
        return text
    _refuse_shared(documents, hits=hits)

    edits: dict[int, _Edit] = {}
    for hit in hits:
        edits.setdefault(id(hit.node), _edit(text, hit=hit, version=version))
    result = text
    for edit in sorted(edits.values(), key=lambda e: e.start, reverse=True):
        result = result[: edit.start] + edit.text + result[edit.end :]

    _verify(documents, result=result, edits=edits, app=app, version=version, hits=hits)
    return result


def compose_documents(text: str) -> list[Node | None]:
    """The node graph of every document (``None`` for an empty one), positions included.

    Malformed YAML is a ``ManifestError`` naming the line, as a person would look for it.
    """
    yaml = YAML(typ="rt")
    # Redefining an anchor is valid YAML (later aliases see the new one): not worth a warning.
    yaml.composer.warn_double_anchors = False
    try:
        return list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}" if line is not None else ""
        raise ManifestError(
            f"invalid YAML{where}: {exc.problem or exc.context}", line=line
        ) from exc
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        raise ManifestError(
            f"invalid YAML at line {line}: character U+{code:04X} is not allowed", line=line
        ) from exc
    except YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}") from exc


def detect_manifest_kind(text: str) -> ManifestKind | None:
    """What the file looks like, to tell people when the catalog describes it otherwise.

    The catalog decides (``App.manifest_kind``: ``version_key`` → Helm values, a file named
    ``kustomization.yaml`` → kustomization, else workload); this only reads the content, for
    hints. ``None``: empty, or not YAML.
    """
    try:
        return _looks_like(compose_documents(text))
    except ManifestError:
        return None


# --------------------------------------------------------------------------------------------
# Finding the version


def _find(documents: Sequence[Node | None], *, app: App) -> list[_Hit]:
    kind = app.manifest_kind
    hits: list[_Hit] = []
    for index, root in enumerate(documents):
        if root is None:
            continue
        if kind == "workload":
            hits.extend(_workload_hits(root, document=index, app=app))
        elif kind == "kustomization":
            hits.extend(_kustomization_hits(root, document=index, app=app))
        else:
            hits.extend(_helm_hits(root, document=index, app=app))
    if not hits:
        raise ManifestError(_nothing_found(documents, app=app))
    versions = {(h.location.version, h.location.digest) for h in hits}
    if len(versions) > 1:
        listed = "; ".join(
            f"{_shown(h.location)} at {h.location.path} (line {h.location.line})" for h in hits
        )
        raise InconsistentVersionsError(
            f"the file holds different versions of {app.image}: {listed}",
            matches=[h.location for h in hits],
        )
    return hits


def _workload_hits(root: Node, *, document: int, app: App) -> Iterator[_Hit]:
    for path, node in _walk(root):
        if not isinstance(node, MappingNode):
            continue
        for key, value in _entries(node):
            name = _scalar_value(key)
            if name not in _CONTAINER_LISTS or not isinstance(value, SequenceNode):
                continue
            for index, container in enumerate(value.value):
                if not isinstance(container, MappingNode):
                    continue
                image = _get(container, "image")
                if not isinstance(image, ScalarNode):
                    continue
                ref = _image_ref(image.value)
                if ref is None or not ref.matches(app.image):
                    continue
                yield _image_hit(
                    image, ref=ref, document=document, path=(*path, name, index, "image")
                )


def _kustomization_hits(root: Node, *, document: int, app: App) -> Iterator[_Hit]:
    images = _get(root, "images") if isinstance(root, MappingNode) else None
    if not isinstance(images, SequenceNode):
        return
    for index, entry in enumerate(images.value):
        if not isinstance(entry, MappingNode):
            continue
        names = [_scalar_value(_get(entry, key)) for key in ("newName", "name")]
        refs = [_image_ref(name) for name in names if name]
        if not any(ref is not None and ref.matches(app.image) for ref in refs):
            continue
        new_tag, digest = _get(entry, "newTag"), _get(entry, "digest")
        pinned = _scalar_value(digest) or None
        if isinstance(new_tag, ScalarNode) and new_tag.value:
            path: _Path = ("images", index, "newTag")
            yield _whole_hit(new_tag, document=document, path=path, digest=pinned)
        elif isinstance(digest, ScalarNode) and pinned:
            path = ("images", index, "digest")
            yield _whole_hit(digest, document=document, path=path, digest=pinned)
        else:
            line = entry.start_mark.line + 1
            raise ManifestError(
                f"the images entry for {app.image} (line {line}) sets no newTag, so its version "
                "comes from elsewhere: add newTag to it",
                line=line,
            )


def _helm_hits(root: Node, *, document: int, app: App) -> Iterator[_Hit]:
    key = app.version_key or ""
    node: Node | None = root
    path: _Path = ()
    line = 1
    for step in key.split("."):
        if isinstance(node, MappingNode):
            item = _item(node, step)
            if item is None:
                return
            line = item[0].start_mark.line + 1  # a null value has no position of its own
            node = item[1]
            path = (*path, step)
        elif isinstance(node, SequenceNode) and step.isdigit() and int(step) < len(node.value):
            node = node.value[int(step)]
            line = node.start_mark.line + 1
            path = (*path, int(step))
        else:
            return
    if node is None:
        return
    if not isinstance(node, ScalarNode):
        what = "a list" if isinstance(node, SequenceNode) else "a mapping"
        example = f" ({key}.tag)" if _get(node, "tag") is not None else ""
        raise ManifestError(
            f"{key} (line {line}) is {what}, not a version: "
            f"point version_key at the key that holds the tag{example}",
            line=line,
        )
    value = node.value
    if node.tag == _NULL or not value:
        raise ManifestError(f"{key} (line {line}) is empty: give it the version once", line=line)
    if is_tag(value):
        yield _whole_hit(node, document=document, path=path, digest=None)
        return
    if is_digest(value):
        yield _whole_hit(node, document=document, path=path, digest=value)
        return
    ref = _image_ref(value)
    if ref is None or not ref.matches(app.image):
        raise ManifestError(
            f'{key} (line {line}) is "{value}": neither a tag nor an image of {app.image}',
            line=line,
        )
    yield _image_hit(node, ref=ref, document=document, path=path)


def _image_hit(node: ScalarNode, *, ref: ImageRef, document: int, path: _Path) -> _Hit:
    start = len(ref.repository)
    if ref.tag is None:
        version, end, separator = ref.digest or _LATEST, start, ":"
    else:
        start += 1
        version, end, separator = ref.tag, start + len(ref.tag), ""
    location = VersionLocation(
        document=document,
        path=_dotted(path),
        line=node.start_mark.line + 1,
        version=version,
        digest=ref.digest,
    )
    return _Hit(location=location, node=node, start=start, end=end, separator=separator)


def _whole_hit(node: ScalarNode, *, document: int, path: _Path, digest: str | None) -> _Hit:
    location = VersionLocation(
        document=document,
        path=_dotted(path),
        line=node.start_mark.line + 1,
        version=node.value,
        digest=digest,
    )
    return _Hit(location=location, node=node, start=0, end=len(node.value))


def _nothing_found(documents: Sequence[Node | None], *, app: App) -> str:
    kind = app.manifest_kind
    if kind == "workload":
        message = f"no container runs {app.image}"
    elif kind == "kustomization":
        message = f"no images: entry names {app.image}"
    else:
        message = f"no value at {app.version_key}"
    looks = _looks_like(documents)
    if looks is not None and looks != kind:
        message += f" (the file looks like {_KIND_HINTS[looks]})"
    return message


_KIND_HINTS: dict[ManifestKind, str] = {
    "workload": "Kubernetes resources: leave version_key out and point manifests at them",
    "kustomization": 'a kustomization: name it "kustomization.yaml" in the catalog',
    "helm_values": "Helm values: set version_key in the catalog, e.g. image.tag",
}


def _looks_like(documents: Sequence[Node | None]) -> ManifestKind | None:
    mappings = [d for d in documents if isinstance(d, MappingNode)]
    if not mappings:
        return None
    kinds = {_scalar_value(_get(d, "kind")) for d in mappings}
    if "Kustomization" in kinds or any(_is_kustomization(d) for d in mappings):
        return "kustomization"
    return "workload" if kinds - {None} else "helm_values"


def _is_kustomization(document: MappingNode) -> bool:
    images = _get(document, "images")
    if _get(document, "kind") is not None or not isinstance(images, SequenceNode):
        return False
    return any(
        isinstance(entry, MappingNode) and _get(entry, "name") is not None for entry in images.value
    )


def _image_ref(text: str) -> ImageRef | None:
    try:
        return ImageRef.parse(text)
    except ImageRefError:
        return None  # a template or a typo: not the app's image, whatever it is


# --------------------------------------------------------------------------------------------
# Changing it


def _edit(text: str, *, hit: _Hit, version: str) -> _Edit:
    node = hit.node
    line = hit.location.line
    start, end = node.start_mark.index, node.end_mark.index
    raw = text[start:end]
    properties = _NODE_PROPERTIES.match(raw)
    offset = properties.end() if properties else 0
    body = raw[offset:]
    value: str = node.value
    if "!" in raw[:offset] and node.tag != _STR:
        raise ManifestError(
            f"the version at line {line} is tagged {node.tag}, not a string: edit it by hand",
            line=line,
        )
    quote = {None: "", "'": "'", '"': '"'}.get(node.style)
    if quote is None:
        raise ManifestError(
            f"the version at line {line} is written as a block scalar: edit it by hand", line=line
        )
    if body != f"{quote}{value}{quote}":
        raise ManifestError(
            f"the version at line {line} is written over several lines or with escapes: "
            "edit it by hand",
            line=line,
        )
    new_value = value[: hit.start] + hit.separator + version + value[hit.end :]
    content = start + offset + len(quote)
    if not quote and _plain_tag(new_value) != _STR:
        # Plain 1.10 would be the number 1.1 to every consumer: quote it rather than deploy that.
        return _Edit(
            start=start + offset, end=end, text=f'"{new_value}"', value=new_value, style='"'
        )
    return _Edit(
        start=content + hit.start,
        end=content + hit.end,
        text=hit.separator + version,
        value=new_value,
        style=node.style,
    )


def _plain_tag(value: str) -> str:
    node = YAML(typ="rt").compose(value)
    return str(node.tag) if isinstance(node, ScalarNode) else ""


def _refuse_shared(documents: Sequence[Node | None], *, hits: Sequence[_Hit]) -> None:
    """An anchored version also used for something else would change that too: refuse."""
    positions: Counter[int] = Counter()
    for root in documents:
        if root is not None:
            for _, node in _walk(root, keys=True):
                positions[id(node)] += 1
    wanted = Counter(id(hit.node) for hit in hits)
    for hit in hits:
        node = hit.node
        if positions[id(node)] > wanted[id(node)]:
            anchor = f"the YAML anchor &{node.anchor}" if node.anchor else "a YAML anchor"
            line = hit.location.line
            raise ManifestError(
                f"the version at line {line} is shared through {anchor} with "
                "other values, which would change too: edit it by hand",
                line=line,
            )


def _verify(
    before: Sequence[Node | None],
    *,
    result: str,
    edits: dict[int, _Edit],
    app: App,
    version: str,
    hits: Sequence[_Hit],
) -> None:
    """Prove that the splice changed the version scalars and nothing else, or refuse it."""
    try:
        after = compose_documents(result)
        problem = _difference(before, after, edits=edits)
        if problem is None:
            reread = read_version(result, app=app)
            if reread.version != version or [m.path for m in reread.matches] != [
                h.location.path for h in hits
            ]:
                problem = f"the version reads back as {reread.version}"
    except ManifestError as exc:
        problem = str(exc)
    if problem is not None:
        raise ManifestError(f"the edit could not be verified ({problem}); nothing was changed")


def _difference(
    before: Sequence[Node | None], after: Sequence[Node | None], *, edits: dict[int, _Edit]
) -> str | None:
    if len(before) != len(after):
        return f"{len(before)} documents became {len(after)}"
    paired: dict[int, Node] = {}
    seen_after: set[int] = set()
    stack: list[tuple[Node | None, Node | None]] = list(zip(before, after, strict=True))
    while stack:
        old, new = stack.pop()
        if old is None or new is None:
            if old is not new:
                return "an empty document changed"
            continue
        line = old.start_mark.line + 1
        if id(old) in paired:
            if paired[id(old)] is not new:
                return f"the aliasing changed near line {line}"
            continue
        if id(new) in seen_after:
            return f"the aliasing changed near line {line}"
        paired[id(old)] = new
        seen_after.add(id(new))
        if type(old) is not type(new) or old.anchor != new.anchor:
            return f"the structure changed at line {line}"
        if isinstance(old, ScalarNode) and isinstance(new, ScalarNode):
            edit = edits.get(id(old))
            expected = (
                (str(old.tag), old.value, old.style)
                if edit is None
                else (_STR, edit.value, edit.style)
            )
            if (str(new.tag), new.value, new.style) != expected:
                return f"the value at line {line} changed"
            continue
        if not isinstance(old, CollectionNode) or not isinstance(new, CollectionNode):
            return f"the structure changed at line {line}"
        if old.tag != new.tag or old.flow_style != new.flow_style:
            return f"the structure changed at line {line}"
        if len(old.value) != len(new.value):
            return f"the structure changed at line {line}"
        if isinstance(old, MappingNode):
            for (old_key, old_value), (new_key, new_value) in zip(
                old.value, new.value, strict=True
            ):
                stack.extend([(old_key, new_key), (old_value, new_value)])
        else:
            stack.extend(zip(old.value, new.value, strict=True))
    return None


# --------------------------------------------------------------------------------------------
# Walking the node graph as a loader would see it


def _entries(
    node: MappingNode, *, merging: frozenset[int] = frozenset()
) -> list[tuple[Node, Node]]:
    """The mapping's effective key/value pairs: merge keys (``<<: *base``) applied, explicit
    keys first. Duplicate keys are refused: consumers disagree on which one wins."""
    merging = merging | {id(node)}
    explicit: list[tuple[Node, Node]] = []
    merged: list[tuple[Node, Node]] = []
    seen: dict[object, int] = {}
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.tag == _MERGE:
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode) and id(source) not in merging:
                    merged.extend(_entries(source, merging=merging))
            continue
        identity = _key_identity(key)
        if identity in seen:
            line = key.start_mark.line + 1
            raise ManifestError(
                f'duplicate key "{_scalar_value(key)}" at line {line} '
                f"(first at line {seen[identity]})",
                line=line,
            )
        seen[identity] = key.start_mark.line + 1
        explicit.append((key, value))
    for key, value in merged:
        identity = _key_identity(key)
        if identity not in seen:
            seen[identity] = key.start_mark.line + 1
            explicit.append((key, value))
    return explicit


def _key_identity(key: Node) -> object:
    return (str(key.tag), key.value) if isinstance(key, ScalarNode) else id(key)


def _item(node: Node | None, key: str) -> tuple[Node, Node] | None:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value in _entries(node):
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value
    return None


def _get(node: Node | None, key: str) -> Node | None:
    item = _item(node, key)
    return None if item is None else item[1]


def _scalar_value(node: Node | None) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _walk(root: Node, *, keys: bool = False) -> Iterator[tuple[_Path, Node]]:
    """Every value (and key, if asked) at every path a loader would build, aliases expanded."""
    budget = _MAX_POSITIONS
    stack: list[tuple[_Path, Node, frozenset[int]]] = [((), root, frozenset())]
    while stack:
        path, node, ancestors = stack.pop()
        budget -= 1
        if budget < 0:
            raise ManifestError("the file expands to too many values through its aliases")
        yield path, node
        if isinstance(node, ScalarNode):
            continue
        if id(node) in ancestors:
            line = node.start_mark.line + 1
            raise ManifestError(f"recursive alias at line {line}", line=line)
        inside = ancestors | {id(node)}
        children: list[tuple[_Path, Node, frozenset[int]]] = []
        if isinstance(node, MappingNode):
            for key, value in _entries(node):
                step = _scalar_value(key)
                if keys:
                    children.append(((*path, "<key>"), key, inside))
                children.append(((*path, step if step is not None else "?"), value, inside))
        elif isinstance(node, SequenceNode):
            children.extend(((*path, i), item, inside) for i, item in enumerate(node.value))
        stack.extend(reversed(children))


def _dotted(path: _Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _shown(location: VersionLocation) -> str:
    if location.digest is None:
        return location.version
    if location.version == location.digest:
        return _short(location.digest)
    return f"{location.version}@{_short(location.digest)}"


def _short(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}…" if len(value) > 12 else digest
