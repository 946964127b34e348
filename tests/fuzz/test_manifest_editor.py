"""The manifest editor against YAML nobody would write by hand but somebody will: random documents
(block and flow style, quotes, tags, anchors, aliases, merge keys, comments, CRLF, several
documents) with the app's image somewhere, several times, pinned, or not at all.

``tests/unit/domain/test_manifests.py`` checks exact output for realistic layouts; this checks,
for arbitrary ones, that ``set_version`` either refuses with ``ManifestError`` or changes the
version characters at the places ``read_version`` reports and not one other byte.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.domain.catalog import App
from bot.domain.images import is_tag
from bot.domain.manifests import ManifestError, read_version, set_version

# A failing example may hold long documents: show it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

ORDERS = "registry.example.com/shop/orders"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _app(**extra: str) -> App:
    return App(
        name="orders",
        team="payments",
        source="shop/orders",
        image=extra.pop("image", ORDERS),
        manifests=extra.pop("manifests", "apps/orders/{env}/deployment.yaml"),
        **extra,
    )


WORKLOAD = _app()
DOCKER_HUB = _app(image="docker.io/library/nginx")
KUSTOMIZE = _app(manifests="apps/orders/{env}/kustomization.yaml")
HELM = _app(manifests="apps/orders/{env}/values.yaml", version_key="image.tag")
HELM_IMAGE = _app(manifests="apps/orders/{env}/values.yaml", version_key="image")
LINE_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")

# --------------------------------------------------------------------------------------------
# A small YAML tree and its writer. No generated text contains "Q": new versions start with
# "QV", so every "QV…" in an edited file was put there by the edit.

Style = Literal["plain", "single", "double", "literal", "folded"]


@dataclass
class Scalar:
    text: str
    style: Style = "plain"
    tag: str | None = None
    anchor: str | None = None


@dataclass
class Alias:
    name: str


@dataclass
class Mapping:
    entries: list[tuple[str, Node]]
    flow: bool = False
    anchor: str | None = None
    comments: dict[int, str] = field(default_factory=dict)


@dataclass
class Sequence:
    items: list[Node]
    flow: bool = False
    anchor: str | None = None


Node = Scalar | Alias | Mapping | Sequence


def _props(anchor: str | None, tag: str | None = None) -> str:
    return "".join(f"{p} " for p in (f"&{anchor}" if anchor else None, tag) if p)


ONE_LINE = re.compile("[\t\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
"""What YAML allows as is on one line; anything else only double quotes can write (escaped)."""


def _double(text: str) -> str:
    out = ""
    for ch in text:
        if ch in '"\\':
            out += "\\" + ch
        elif not ONE_LINE.fullmatch(ch):
            out += f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
        else:
            out += ch
    return '"' + out + '"'


def inline(node: Node) -> str:
    """Flow style: on one line."""
    if isinstance(node, Alias):
        return f"*{node.name}"
    if isinstance(node, Scalar):
        props = _props(node.anchor, node.tag)
        if node.style == "single":
            return props + "'" + node.text.replace("'", "''") + "'"
        if node.style in ("double", "literal", "folded"):
            return props + _double(node.text)
        return props + node.text
    if isinstance(node, Mapping):
        body = ", ".join(f"{key}: {inline(value)}" for key, value in node.entries)
        return _props(node.anchor) + "{" + body + "}"
    return _props(node.anchor) + "[" + ", ".join(inline(item) for item in node.items) + "]"


def _is_block(node: Node) -> bool:
    if isinstance(node, Mapping):
        return not node.flow and bool(node.entries)
    if isinstance(node, Sequence):
        return not node.flow and bool(node.items)
    return False


def block(node: Node, indent: int, step: int) -> list[str]:
    """Block style: the lines of a mapping or sequence at ``indent``."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, Mapping):
        for index, (key, value) in enumerate(node.entries):
            comment = f"  # {node.comments[index]}" if index in node.comments else ""
            if _is_block(value):
                assert isinstance(value, Mapping | Sequence)
                lines.append(f"{pad}{key}:{(' ' + _props(value.anchor)).rstrip()}{comment}")
                inner = indent if isinstance(value, Sequence) and step == 3 else indent + step
                lines += block(value, inner, step)
            elif isinstance(value, Scalar) and value.style in ("literal", "folded"):
                mark = "|" if value.style == "literal" else ">"
                lines.append(f"{pad}{key}: {_props(value.anchor, value.tag)}{mark}-{comment}")
                lines += [" " * (indent + step) + part for part in value.text.split("\n")]
            else:
                lines.append(f"{pad}{key}: {inline(value)}{comment}")
        return lines
    assert isinstance(node, Sequence)
    for item in node.items:
        if _is_block(item):
            assert isinstance(item, Mapping | Sequence)
            inner = block(item, indent + 2, step)
            if item.anchor or isinstance(item, Sequence):
                lines.append(f"{pad}-{(' ' + _props(item.anchor)).rstrip()}")
                lines += inner
            else:  # compact: the first entry on the dash's line
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
        else:
            lines.append(f"{pad}- {inline(item)}")
    return lines


def document(node: Node, step: int) -> list[str]:
    if not _is_block(node):
        return [inline(node)]
    assert isinstance(node, Mapping | Sequence)
    return ([f"&{node.anchor}"] if node.anchor else []) + block(node, 0, step)


# --------------------------------------------------------------------------------------------
# Generating trees


@dataclass
class Context:
    """The app whose image is placed, and the anchors defined so far in the document, in
    order: an alias may only name one of these."""

    app: App
    version: str
    """The version most places hold: files whose places disagree are refused, and are rarer."""
    anchors: list[str] = field(default_factory=list)

    def anchor(self, draw: st.DrawFn) -> str | None:
        if draw(st.integers(min_value=0, max_value=5)) != 0:
            return None
        # Sometimes an anchor name is reused: valid YAML, later aliases see the new node.
        name = draw(st.sampled_from([f"a{len(self.anchors)}", "a0", "img"]))
        self.anchors.append(name)
        return name

    def tag(self, draw: st.DrawFn) -> str:
        return self.version if draw(st.integers(min_value=0, max_value=5)) else draw(old_versions)

    def alias(self, draw: st.DrawFn) -> Alias | None:
        if not self.anchors or draw(st.integers(min_value=0, max_value=4)) != 0:
            return None
        return Alias(draw(st.sampled_from(self.anchors)))


KEYS = ("apiVersion", "kind", "metadata", "name", "spec", "template", "labels", "ports", "env")
KEYS += ("resources", "args", "value", "repository", "pullPolicy", "x-y", "a", "b", "c1")
SAFE = "abcdefghijklmnopqrstuvwxyz0123456789._/-"
plain_words = st.text(alphabet=SAFE, min_size=1, max_size=12).filter(
    lambda w: w[0].isalnum() and not w.endswith((".", ":"))
)
# Old versions: anything a tag can be, YAML's non-strings included (1.10, 1e3, 0x1F, yes).
old_versions = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True).filter(
        lambda v: "Q" not in v
    ),
    st.sampled_from(["1.10", "1e3", "0x1F", "0o17", "yes", "null", "latest", "1_000", ".inf"]),
)
odd_strings = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="Q"), max_size=12
).filter(lambda t: "\ufeff" not in t)
NEAR_MISSES = (f"{ORDERS}-sidecar", "registry.example.com/shop", "Registry.example.com/shop/orders")


@st.composite
def scalars(draw: st.DrawFn, ctx: Context, *, text: str | None = None) -> Scalar:
    if text is None:
        text = draw(st.one_of(plain_words, odd_strings, old_versions))
    styles: list[Style] = ["double"]
    if ONE_LINE.fullmatch(text):
        styles += ["single", "double"]
    if re.fullmatch(r"[A-Za-z0-9_./:@-]+", text) and not text.startswith(("-", ":")):
        styles += ["plain", "plain", "plain", "plain", "literal"]
    tag = draw(st.sampled_from([None] * 8 + ["!!str", "!custom"]))
    return Scalar(text, style=draw(st.sampled_from(styles)), tag=tag, anchor=ctx.anchor(draw))


def repositories(app: App) -> st.SearchStrategy[str]:
    """Mostly the app's image as a manifest writes it, sometimes a near miss."""
    own = ["nginx", "library/nginx", "docker.io/library/nginx"] if app is DOCKER_HUB else [ORDERS]
    return st.integers(min_value=0, max_value=3).flatmap(
        lambda n: st.sampled_from(own if n else [*NEAR_MISSES, "nginx", ORDERS])
    )


@st.composite
def image_values(draw: st.DrawFn, ctx: Context) -> Node:
    """The app's image (or a near miss), tagged, untagged or pinned, in any style."""
    alias = ctx.alias(draw)
    if alias is not None:
        return alias
    repository = draw(repositories(ctx.app))
    reference = draw(st.sampled_from(["{r}:{v}"] * 5 + ["{r}", "{r}", "{r}@{d}", "{r}:{v}@{d}"]))
    text = reference.format(r=repository, v=ctx.tag(draw), d=DIGEST)
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # an escape, or a space
        text = text.replace(":", "\\x3a") if draw(st.booleans()) else text + " "
    return draw(scalars(ctx, text=text))


@st.composite
def trees(draw: st.DrawFn, ctx: Context, depth: int) -> Node:
    """Filler: anything, with the app's image sometimes somewhere inside."""
    choice = draw(st.integers(min_value=0, max_value=9 if depth > 0 else 2))
    alias = ctx.alias(draw) if choice == 0 else None
    if alias is not None:
        return alias
    if choice <= 2:
        return draw(scalars(ctx))
    if choice == 3:
        return draw(containers(ctx, depth - 1))
    anchor = ctx.anchor(draw)
    flow = draw(st.integers(min_value=0, max_value=3)) == 0
    if choice <= 6:
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True))
        entries: list[tuple[str, Node]] = [(k, draw(trees(ctx, depth - 1))) for k in keys]
        merge = ctx.alias(draw)
        if merge is not None:
            entries.append(("<<", merge))
        return Mapping(entries, flow=flow, anchor=anchor, comments=draw(comments(len(entries))))
    items = draw(st.lists(trees(ctx, depth - 1), max_size=3))
    return Sequence(items, flow=flow, anchor=anchor)


@st.composite
def comments(draw: st.DrawFn, count: int) -> dict[int, str]:
    """Comments after entries, some of which mention the image and a version."""
    text = st.one_of(
        st.builds(lambda v: f"{ORDERS}:{v}", old_versions),
        st.text(alphabet=SAFE + " :'\"", max_size=20),
    )
    return draw(st.dictionaries(st.integers(min_value=0, max_value=max(count - 1, 0)), text))


@st.composite
def containers(draw: st.DrawFn, ctx: Context, depth: int) -> Mapping:
    """A mapping holding a container list, as a pod spec does."""
    key = draw(st.sampled_from(["containers", "initContainers", "ephemeralContainers"]))
    # Everything is drawn in the order it is written, so that aliases follow their anchors.
    anchor = ctx.anchor(draw)
    items: list[Node] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        keys = ["name", "image"]
        if depth > 0 and draw(st.booleans()):
            keys.append(draw(st.sampled_from([k for k in KEYS if k != "name"])))
        entries: list[tuple[str, Node]] = []
        for field_name in draw(st.permutations(keys)):
            if field_name == "name":
                entries.append(("name", draw(scalars(ctx, text="app"))))
            elif field_name == "image":
                entries.append(("image", draw(image_values(ctx))))
            else:
                entries.append((field_name, draw(trees(ctx, depth - 1))))
        items.append(Mapping(entries, flow=draw(st.integers(0, 4)) == 0))
    sequence = Sequence(items, flow=draw(st.integers(0, 4)) == 0, anchor=anchor)
    return Mapping([(key, sequence)], comments=draw(comments(1)))


@st.composite
def workloads(draw: st.DrawFn, ctx: Context) -> Node:
    head: list[tuple[str, Node]] = [("apiVersion", Scalar("apps/v1")), ("kind", Scalar("Job"))]
    spec = draw(containers(ctx, 2))
    others = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    spec.entries += [(k, draw(trees(ctx, 1))) for k in others]
    pod: Node = spec
    for key in draw(st.lists(st.sampled_from(["spec", "template", "jobTemplate"]), max_size=3)):
        pod = Mapping([(key, pod)])
    return Mapping([*head, ("spec", pod)])


@st.composite
def kustomizations(draw: st.DrawFn, ctx: Context) -> Node:
    images: list[Node] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        fields: list[tuple[str, Node]] = [("name", draw(scalars(ctx, text="orders")))]
        if draw(st.booleans()):
            fields.append(("newName", draw(scalars(ctx, text=draw(repositories(ctx.app))))))
        else:
            fields[0] = ("name", draw(scalars(ctx, text=draw(repositories(ctx.app)))))
        if draw(st.integers(min_value=0, max_value=5)):
            fields.append(("newTag", draw(scalars(ctx, text=ctx.tag(draw)))))
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            fields.append(("digest", draw(scalars(ctx, text=DIGEST))))
        images.append(Mapping(fields, flow=draw(st.booleans())))
    resources = Sequence([Scalar("deployment.yaml")], flow=draw(st.booleans()))
    top: list[tuple[str, Node]] = [("images", Sequence(images, flow=draw(st.booleans())))]
    if draw(st.booleans()):
        return Mapping([("resources", resources), *top])
    return Mapping([*top, ("resources", resources)])


@st.composite
def helm_values(draw: st.DrawFn, ctx: Context) -> Node:
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True))
    split = draw(st.integers(min_value=0, max_value=len(keys)))
    before = [(k, draw(trees(ctx, 1))) for k in keys[:split]]
    if ctx.app is HELM_IMAGE:  # version_key: image, a whole image reference
        image = draw(image_values(ctx))
    else:  # version_key: image.tag
        repository = ("repository", Scalar(ORDERS))
        tag = ("tag", draw(scalars(ctx, text=ctx.tag(draw))))
        entries = [repository, tag] if draw(st.booleans()) else [tag, repository]
        image = Mapping(entries, flow=draw(st.booleans()))
    after = [(k, draw(trees(ctx, 1))) for k in keys[split:]]
    return Mapping([*before, ("image", image), *after])


MAIN = {
    "workload": workloads,
    "kustomization": kustomizations,
    "helm_values": helm_values,
}


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, App]:
    app = draw(st.sampled_from([WORKLOAD, DOCKER_HUB, KUSTOMIZE, HELM, HELM_IMAGE]))
    documents = st.sampled_from(["main", "main", "tree", "empty"])
    step = draw(st.sampled_from([2, 3, 4]))
    version = draw(old_versions)
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append(f"# {ORDERS}:{draw(old_versions)} is in a comment")
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        lines += ["%YAML 1.2", "---"]
    written = False
    kinds = draw(st.lists(documents, min_size=1, max_size=3))
    if "main" not in kinds:  # mostly files where the version is somewhere
        kinds[draw(st.integers(min_value=0, max_value=len(kinds) - 1))] = "main"
    for index, kind in enumerate(kinds):
        if index:
            ends = ["---", "--- # next", "...\n---"] if written else ["---"]
            lines.append(draw(st.sampled_from(ends)))
        elif draw(st.booleans()) and lines[-1:] != ["---"]:
            lines.append("---")
        ctx = Context(app, version)  # anchors do not cross documents
        written = kind != "empty"
        if written:
            main = MAIN[app.manifest_kind](ctx)
            lines += document(draw(main if kind == "main" else trees(ctx, 3)), step)
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = newline.join("\n".join(lines).split("\n"))
    if draw(st.booleans()):
        text += newline
    return text, app


# --------------------------------------------------------------------------------------------
# The properties

new_versions = st.from_regex(r"QV[A-Za-z0-9_.-]{0,10}", fullmatch=True)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def line_at(text: str, index: int) -> int:
    """1-based line of ``text[index]``, counting line breaks as YAML does."""
    return len(LINE_BREAKS.findall(text[:index])) + 1


def undo(edited: str, *, version: str, old: str) -> set[str]:
    """Every text that ``edited`` could have been before each ``version`` was written in: the
    old version in its place, or nothing where the tag was added (``repo`` → ``repo:QV…``)."""
    found = [m.start() for m in re.finditer(re.escape(version), edited)]
    texts = set()
    for choices in itertools.product(("replaced", "added"), repeat=len(found)):
        text = edited
        for start, choice in sorted(zip(found, choices, strict=True), reverse=True):
            if choice == "replaced":
                text = text[:start] + old + text[start + len(version) :]
            elif text[start - 1 : start] == ":":
                text = text[: start - 1] + text[start + len(version) :]
            else:
                break
        else:
            texts.add(text)
    return texts


@SETTINGS
@given(case=manifests(), version=new_versions)
def test_set_version_changes_the_version_where_it_is_read_and_nothing_else(
    case: tuple[str, App], version: str
) -> None:
    text, app = case
    assert "Q" not in text
    try:
        edited = set_version(text, app=app, version=version)
    except ManifestError as exc:
        refused = exc
    else:
        event("edited")
        check_edit(text, edited, app=app, version=version)
        return
    event(f"refused: {_gist(refused)}")
    assert str(refused).strip()
    assert "\n" not in str(refused), "the reason is shown on one line"


def _gist(error: ManifestError) -> str:
    """What kind of refusal, for ``--hypothesis-show-statistics``."""
    return re.sub(r"[\"“].*|\d.*|line.*", "", str(error))[:40]


def check_edit(text: str, edited: str, *, app: App, version: str) -> None:

    before = read_version(text, app=app)  # whatever set_version could find, this can read
    after = read_version(edited, app=app)
    assert after.version == version
    assert after.digest is None
    assert [(m.document, m.path, m.line) for m in after.matches] == [
        (m.document, m.path, m.line) for m in before.matches
    ]
    written = [m.start() for m in re.finditer(re.escape(version), edited)]
    assert 1 <= len(written) <= len(before.matches)
    assert {line_at(edited, start) for start in written} <= {m.line for m in before.matches}
    assert text in undo(edited, version=version, old=before.version), "more than the version"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=manifests())
def test_read_version_reads_or_refuses(case: tuple[str, App]) -> None:
    text, app = case
    try:
        found = read_version(text, app=app)
    except ManifestError as exc:  # and nothing else
        event(f"refused: {_gist(exc)}")
        return
    event("read")
    assert found.matches
    assert all(m.version == found.version and m.digest == found.digest for m in found.matches)
    lines = len(LINE_BREAKS.split(text))
    assert all(1 <= m.line <= lines for m in found.matches)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=manifests(), version=st.text(max_size=140))
def test_set_version_to_anything_but_a_tag_is_refused(case: tuple[str, App], version: str) -> None:
    text, app = case
    try:
        edited = set_version(text, app=app, version=version)
    except ManifestError:
        return
    assert is_tag(version)
    assert read_version(edited, app=app).version == version
