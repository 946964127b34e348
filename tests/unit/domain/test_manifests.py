"""The version in a GitOps manifest: found wherever SPEC 3 allows it, changed byte for byte.

Every expected output below is the input with the version characters swapped and nothing else,
so a failure here is a diff a reviewer would have seen in a deploy merge request.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bot.domain.catalog import App
from bot.domain.manifests import (
    InconsistentVersionsError,
    ManifestError,
    detect_manifest_kind,
    read_version,
    set_version,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "manifests"
ORDERS = "registry.example.com/shop/orders"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def make_app(
    *,
    image: str = ORDERS,
    manifests: str = "apps/orders/{env}/deployment.yaml",
    version_key: str | None = None,
) -> App:
    helm = {} if version_key is None else {"version_key": version_key}
    return App(
        name="orders",
        team="payments",
        source="shop/orders",
        image=image,
        manifests=manifests,
        **helm,
    )


WORKLOAD = make_app()
KUSTOMIZE = make_app(manifests="apps/orders/{env}/kustomization.yaml")
HELM = make_app(manifests="apps/orders/{env}/values.yaml", version_key="image.tag")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode()


def swap(text: str, old: str, new: str, *, count: int = 1) -> str:
    """The expected output: ``old`` replaced by ``new`` at exactly ``count`` places."""
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


# --------------------------------------------------------------------------------------------
# Workloads

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  namespace: orders
spec:
  template:
    spec:
      containers:
      - name: api
        image: registry.example.com/shop/orders:1.4.1
"""

MULTI_DOC = """\
---
apiVersion: v1
kind: ConfigMap
metadata: {name: orders-config, namespace: orders}
data:
  image: registry.example.com/shop/orders:0.1.0
---
# the API
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: orders
spec:
  template:
    spec:
      containers:
        - name: api
          image: 'registry.example.com/shop/orders:1.4.1'   # quoted
...
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: orders-nightly
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: "registry.example.com/shop/orders:1.4.1"}]
"""

PORT = """\
kind: Pod
apiVersion: v1
metadata: {name: orders, namespace: orders}
spec:
  containers:
    - name: api
      image: registry.local:5000/shop/orders:1.4.1
    - name: other
      image: registry.local/shop/orders:9.9.9
"""

DOCKER_HUB = """\
kind: DaemonSet
spec:
  template:
    spec:
      containers:
        - name: proxy
          image: nginx:1.25.3
        - name: exporter
          image: nginx/nginx-prometheus-exporter:1.1
"""

NO_TAG = """\
kind: Job
spec:
  template:
    spec:
      containers:
        - name: once
          image: registry.example.com/shop/orders  # latest, implicitly
"""

LIST = """\
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    spec:
      template:
        spec:
          containers:
            - {name: api, image: registry.example.com/shop/orders:1.4.1}
"""

SHARED_ANCHOR = """\
kind: Deployment
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: &image registry.example.com/shop/orders:1.4.1
      containers:
        - name: api
          image: *image
"""


@pytest.mark.parametrize(
    ("text", "app", "version", "paths"),
    [
        (DEPLOYMENT, WORKLOAD, "1.4.1", ["spec.template.spec.containers[0].image"]),
        (
            fixture("orders-deployment.yaml"),
            WORKLOAD,
            "1.4.1",
            [
                "spec.template.spec.initContainers[0].image",
                "spec.template.spec.containers[0].image",
            ],
        ),
        (
            MULTI_DOC,
            WORKLOAD,
            "1.4.1",
            [
                "spec.template.spec.containers[0].image",
                "spec.jobTemplate.spec.template.spec.containers[0].image",
            ],
        ),
        (
            PORT,
            make_app(image="registry.local:5000/shop/orders"),
            "1.4.1",
            ["spec.containers[0].image"],
        ),
        (PORT, make_app(image="registry.local/shop/orders"), "9.9.9", ["spec.containers[1].image"]),
        (
            DOCKER_HUB,
            make_app(image="docker.io/library/nginx"),
            "1.25.3",
            ["spec.template.spec.containers[0].image"],
        ),
        (NO_TAG, WORKLOAD, "latest", ["spec.template.spec.containers[0].image"]),
        (LIST, WORKLOAD, "1.4.1", ["items[0].spec.template.spec.containers[0].image"]),
        (
            SHARED_ANCHOR,
            WORKLOAD,
            "1.4.1",
            [
                "spec.template.spec.initContainers[0].image",
                "spec.template.spec.containers[0].image",
            ],
        ),
    ],
)
def test_read_version_of_workloads(text: str, app: App, version: str, paths: list[str]) -> None:
    found = read_version(text, app=app)

    assert found.version == version
    assert found.digest is None
    assert found.kind == "workload"
    assert [m.path for m in found.matches] == paths
    assert found.path == paths[0]


def test_read_version_says_where_in_a_multi_document_file() -> None:
    found = read_version(MULTI_DOC, app=WORKLOAD)

    assert [(m.document, m.line) for m in found.matches] == [(1, 18), (2, 32)]
    assert found.document == 1


@pytest.mark.parametrize(
    ("text", "app", "expected"),
    [
        (
            DEPLOYMENT,
            WORKLOAD,
            swap(DEPLOYMENT, "orders:1.4.1", "orders:1.4.2"),
        ),
        (
            fixture("orders-deployment.yaml"),
            WORKLOAD,
            swap(
                swap(
                    fixture("orders-deployment.yaml"),
                    "orders:1.4.1  # same image",
                    "orders:1.4.2  # same image",
                ),
                '"registry.example.com/shop/orders:1.4.1"',
                '"registry.example.com/shop/orders:1.4.2"',
            ),
        ),
        (
            MULTI_DOC,
            WORKLOAD,
            swap(
                swap(
                    MULTI_DOC,
                    "'registry.example.com/shop/orders:1.4.1'",
                    "'registry.example.com/shop/orders:1.4.2'",
                ),
                '"registry.example.com/shop/orders:1.4.1"',
                '"registry.example.com/shop/orders:1.4.2"',
            ),
        ),
        (
            PORT,
            make_app(image="registry.local:5000/shop/orders"),
            swap(PORT, ":5000/shop/orders:1.4.1", ":5000/shop/orders:1.4.2"),
        ),
        (
            DOCKER_HUB,
            make_app(image="nginx"),
            swap(DOCKER_HUB, "nginx:1.25.3", "nginx:1.4.2"),
        ),
        (NO_TAG, WORKLOAD, swap(NO_TAG, "orders  #", "orders:1.4.2  #")),
        (LIST, WORKLOAD, swap(LIST, "orders:1.4.1}", "orders:1.4.2}")),
        (SHARED_ANCHOR, WORKLOAD, swap(SHARED_ANCHOR, "orders:1.4.1", "orders:1.4.2")),
        (
            DEPLOYMENT.replace("\n", "\r\n"),
            WORKLOAD,
            swap(DEPLOYMENT.replace("\n", "\r\n"), "orders:1.4.1", "orders:1.4.2"),
        ),
        (
            DEPLOYMENT.rstrip("\n"),
            WORKLOAD,
            swap(DEPLOYMENT.rstrip("\n"), "orders:1.4.1", "orders:1.4.2"),
        ),
        (
            "\ufeff" + DEPLOYMENT.replace("1.4.1", "1.4.1   "),
            WORKLOAD,
            "\ufeff" + DEPLOYMENT.replace("1.4.1", "1.4.2   "),
        ),
        (
            "# 🚀 déployé\n" + DEPLOYMENT.replace("name: orders", "name: orders # 🎉"),
            WORKLOAD,
            "# 🚀 déployé\n"
            + swap(DEPLOYMENT, "orders:1.4.1", "orders:1.4.2").replace(
                "name: orders", "name: orders # 🎉"
            ),
        ),
    ],
    ids=[
        "deployment",
        "fixture-init-and-main-container-not-env-value-nor-sidecar",
        "multi-doc-quoted-flow-document-end-marker",
        "registry-port",
        "docker-hub-short-name",
        "no-tag-gets-one",
        "list",
        "anchor-shared-by-both-containers",
        "crlf",
        "no-final-newline",
        "bom-and-trailing-whitespace",
        "astral-characters-before-the-version",
    ],
)
def test_set_version_of_workloads_changes_only_the_version(
    text: str, app: App, expected: str
) -> None:
    result = set_version(text, app=app, version="1.4.2")

    assert result == expected
    assert read_version(result, app=app).version == "1.4.2"


def test_set_version_to_the_current_version_changes_nothing() -> None:
    assert set_version(DEPLOYMENT, app=WORKLOAD, version="1.4.1") is DEPLOYMENT


def test_containers_that_disagree_are_named() -> None:
    text = (
        DEPLOYMENT + "      - name: worker\n        image: registry.example.com/shop/orders:1.3.0\n"
    )

    with pytest.raises(InconsistentVersionsError) as caught:
        read_version(text, app=WORKLOAD)

    assert str(caught.value) == (
        f"the file holds different versions of {ORDERS}: "
        "1.4.1 at spec.template.spec.containers[0].image (line 11); "
        "1.3.0 at spec.template.spec.containers[1].image (line 13)"
    )
    assert [m.version for m in caught.value.matches] == ["1.4.1", "1.3.0"]
    with pytest.raises(InconsistentVersionsError):
        set_version(text, app=WORKLOAD, version="1.4.2")


def test_image_pinned_by_digest_is_read_but_not_set() -> None:
    text = swap(DEPLOYMENT, "orders:1.4.1", f"orders:1.4.1@{DIGEST}")

    found = read_version(text, app=WORKLOAD)
    assert (found.version, found.digest) == ("1.4.1", DIGEST)

    with pytest.raises(ManifestError) as caught:
        set_version(text, app=WORKLOAD, version="1.4.2")
    assert str(caught.value) == (
        f"{ORDERS} is pinned by digest sha256:0123456789ab… at line 11 — cannot set a tag"
    )
    assert caught.value.line == 11


def test_image_pinned_by_digest_alone_reads_as_its_digest() -> None:
    text = swap(DEPLOYMENT, "orders:1.4.1", f"orders@{DIGEST}")

    found = read_version(text, app=WORKLOAD)

    assert (found.version, found.digest) == (DIGEST, DIGEST)
    with pytest.raises(ManifestError, match="pinned by digest"):
        set_version(text, app=WORKLOAD, version="1.4.2")


# --------------------------------------------------------------------------------------------
# Kustomizations


def test_kustomization_images_entry_by_new_name() -> None:
    text = fixture("kustomization.yaml")

    found = read_version(text, app=KUSTOMIZE)
    result = set_version(text, app=KUSTOMIZE, version="1.4.2")

    assert (found.version, found.path, found.line) == ("1.4.1", "images[0].newTag", 13)
    assert result == swap(text, 'newTag: "1.4.1"', 'newTag: "1.4.2"')


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "- name: registry.example.com/shop/orders\n  newTag: 1.4.1\n",
            "- name: registry.example.com/shop/orders\n  newTag: 1.4.2\n",
        ),
        (
            "- {name: registry.example.com/shop/orders, newTag: '1.4.1'}\n",
            "- {name: registry.example.com/shop/orders, newTag: '1.4.2'}\n",
        ),
        (
            "- name: orders\n  newName: registry.example.com/shop/orders\n  newTag: v1 # old\n",
            "- name: orders\n  newName: registry.example.com/shop/orders\n  newTag: 1.4.2 # old\n",
        ),
        (
            # A plain number is a float to YAML readers: quoted so that 1.10 does not deploy 1.1.
            "- name: registry.example.com/shop/orders\n  newTag: 1.9\n",
            '- name: registry.example.com/shop/orders\n  newTag: "1.10"\n',
        ),
    ],
)
def test_kustomization_entries(entry: str, expected: str) -> None:
    version = "1.10" if "1.9" in entry else "1.4.2"
    text = "images:\n" + entry

    assert set_version(text, app=KUSTOMIZE, version=version) == "images:\n" + expected


def test_kustomization_entry_pinned_by_digest() -> None:
    text = f"images:\n- name: {ORDERS}\n  newTag: 1.4.1\n  digest: {DIGEST}\n"

    assert read_version(text, app=KUSTOMIZE).digest == DIGEST
    with pytest.raises(ManifestError, match=r"pinned by digest sha256:0123456789ab… at line 3"):
        set_version(text, app=KUSTOMIZE, version="1.4.2")


def test_kustomization_entry_without_new_tag_is_refused() -> None:
    text = f"images:\n- name: orders\n  newName: {ORDERS}\n"

    with pytest.raises(ManifestError, match="sets no newTag"):
        read_version(text, app=KUSTOMIZE)


# --------------------------------------------------------------------------------------------
# Helm values


@pytest.mark.parametrize(
    ("text", "version_key", "expected"),
    [
        (
            fixture("values.yaml"),
            "image.tag",
            swap(fixture("values.yaml"), "tag: '1.4.1'", "tag: '1.4.2'"),
        ),
        (
            'app:\n  image:\n    tag: "1.4.1"\n',
            "app.image.tag",
            'app:\n  image:\n    tag: "1.4.2"\n',
        ),
        (
            "image: {repository: x, tag: v1.4.1}\n",
            "image.tag",
            "image: {repository: x, tag: 1.4.2}\n",
        ),
        (
            f"image: {ORDERS}:1.4.1 # full reference\n",
            "image",
            f"image: {ORDERS}:1.4.2 # full reference\n",
        ),
        (
            f"jobs:\n  - name: a\n    image: '{ORDERS}:1.4.1'\n",
            "jobs.0.image",
            f"jobs:\n  - name: a\n    image: '{ORDERS}:1.4.2'\n",
        ),
        (
            "base: &base\n  tag: 1.4.1\nimage:\n  <<: *base\n",
            "image.tag",
            None,  # shared with base.tag through the merge: refused
        ),
        ("image:\n  tag: 1.3 # a float\n", "image.tag", "image:\n  tag: 1.4.2 # a float\n"),
    ],
)
def test_helm_values(text: str, version_key: str, expected: str | None) -> None:
    app = make_app(manifests="apps/orders/{env}/values.yaml", version_key=version_key)

    if expected is None:
        with pytest.raises(ManifestError, match="shared through a YAML anchor"):
            set_version(text, app=app, version="1.4.2")
        return
    assert set_version(text, app=app, version="1.4.2") == expected


def test_helm_plain_version_that_yaml_would_read_as_a_number_is_quoted() -> None:
    text = "image:\n  tag: v1.9\n"

    assert set_version(text, app=HELM, version="1.10") == 'image:\n  tag: "1.10"\n'
    assert set_version(text, app=HELM, version="1.10.0") == "image:\n  tag: 1.10.0\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image:\n  repository: x\n", "no value at image.tag"),
        ("image:\n  tag:\n", "image.tag (line 2) is empty"),
        ("image:\n  tag:\n    name: x\n", "image.tag (line 2) is a mapping, not a version"),
        ("image:\n  tag: other.example.com/x:1\n", 'is "other.example.com/x:1": neither a tag'),
        (
            "apiVersion: apps/v1\nkind: Deployment\n",
            "no value at image.tag (the file looks like Kubernetes resources",
        ),
    ],
)
def test_helm_values_that_hold_no_version(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        read_version(text, app=HELM)

    assert message in str(caught.value)


def test_helm_version_key_at_a_mapping_suggests_its_tag() -> None:
    app = make_app(manifests="apps/orders/{env}/values.yaml", version_key="image")

    with pytest.raises(ManifestError) as caught:
        read_version(fixture("values.yaml"), app=app)

    assert str(caught.value) == (
        "image (line 4) is a mapping, not a version: "
        "point version_key at the key that holds the tag (image.tag)"
    )


# --------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("text", "app", "version", "message"),
    [
        (DEPLOYMENT, WORKLOAD, "1.4.2; rm -rf /", '"1.4.2; rm -rf /" cannot be an image tag'),
        (DEPLOYMENT, WORKLOAD, "../1.4.2", "cannot be an image tag"),
        (DEPLOYMENT, WORKLOAD, "-rc1", "cannot be an image tag"),
        (DEPLOYMENT, make_app(image="registry.example.com/shop/refunds"), "1", "no container runs"),
        (
            swap(DEPLOYMENT, "image: registry", "image:\n          registry"),
            WORKLOAD,
            "1.4.2",
            None,  # a scalar on the next line is still literal: accepted
        ),
        (
            'image:\n  tag: "1.4\\u002e1"\n',
            HELM,
            "1.4.2",
            "the version at line 2 is written over several lines or with escapes",
        ),
        ("image:\n  tag: |-\n    1.4.1\n", HELM, "1.4.2", "written as a block scalar"),
        ("image:\n  tag: !!float 1.4\n", HELM, "1.5", "is tagged tag:yaml.org,2002:float"),
        (
            "image:\n  tag: &v 1.4.1\nchart:\n  appVersion: *v\n",
            HELM,
            "1.4.2",
            "the version at line 2 is shared through the YAML anchor &v with other values",
        ),
        (
            "x-container: &api\n  name: api\n  image: registry.example.com/shop/orders:1\n"
            "spec:\n  containers:\n    - *api\n",
            WORKLOAD,
            "2",
            "shared through a YAML anchor",
        ),
        (
            "kind: Pod\nspec:\n  containers:\n   - image: x\n  - name: y\n",
            WORKLOAD,
            "1",
            "invalid YAML at line 5",
        ),
        (
            "a: 1\na: 2\nspec: {containers: []}\n",
            WORKLOAD,
            "1",
            'duplicate key "a" at line 2 (first at line 1)',
        ),
        ("a: &a [*a]\n", WORKLOAD, "1", "recursive alias at line 1"),
        ("a: \x07\n", WORKLOAD, "1", "invalid YAML at line 1: character U+0007 is not allowed"),
        (
            fixture("kustomization.yaml"),
            WORKLOAD,
            "1",
            "no container runs registry.example.com/shop/orders (the file looks like a "
            'kustomization: name it "kustomization.yaml" in the catalog)',
        ),
        (
            fixture("values.yaml"),
            WORKLOAD,
            "1",
            "(the file looks like Helm values: set version_key in the catalog, e.g. image.tag)",
        ),
        ("resources: [a.yaml]\n", KUSTOMIZE, "1", f"no images: entry names {ORDERS}"),
        ("", WORKLOAD, "1", "no container runs"),
    ],
)
def test_set_version_refuses_with_a_reason(
    text: str, app: App, version: str, message: str | None
) -> None:
    if message is None:
        assert read_version(set_version(text, app=app, version=version), app=app).version == version
        return
    with pytest.raises(ManifestError) as caught:
        set_version(text, app=app, version=version)
    assert message in str(caught.value)


def test_billion_laughs_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n"

    with pytest.raises(ManifestError, match="too many values through its aliases"):
        read_version(text, app=WORKLOAD)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (DEPLOYMENT, "workload"),
        (fixture("orders-deployment.yaml"), "workload"),
        (fixture("kustomization.yaml"), "kustomization"),
        ("images:\n- name: orders\n  newTag: '1'\n", "kustomization"),
        (fixture("values.yaml"), "helm_values"),
        ("", None),
        ("a: [", None),
    ],
)
def test_detect_manifest_kind(text: str, kind: str | None) -> None:
    assert detect_manifest_kind(text) == kind


# --------------------------------------------------------------------------------------------
# Property: whatever the layout around the version, only the version changes

_V = "\x00V\x00"  # where the version goes in a generated template
_comment = st.text(alphabet="abc XYZ:/.-@#'\"0123456789", max_size=30)
_version = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True)


@st.composite
def workload_templates(draw: st.DrawFn) -> tuple[str, App]:
    """A Deployment laid out in any of the ways people write them, ``_V`` marking the tag."""
    indent = " " * draw(st.sampled_from([2, 3, 4]))
    dash = draw(st.sampled_from(["", indent]))
    image = draw(st.sampled_from([ORDERS, "registry.example.com:5000/shop/orders", "nginx"]))
    app = make_app(image=image if image != "nginx" else "docker.io/library/nginx")

    def comment() -> str:
        return f"  # {draw(_comment)}" if draw(st.booleans()) else ""

    def container(depth: str, name: str, value: str) -> list[str]:
        quote = draw(st.sampled_from(["", "'", '"']))
        return [
            f"{depth}{dash}- name: {name}{comment()}",
            f"{depth}{dash}  image: {quote}{value}{quote}{comment()}",
        ]

    spec = indent * 3
    lines = [f"# {draw(_comment)}"] if draw(st.booleans()) else []
    if draw(st.booleans()):
        lines.append(f"---{comment()}")
    lines += [
        f"apiVersion: apps/v1{comment()}",
        "kind: Deployment",
        "metadata:",
        f"{indent}name: orders{comment()}",
        f"{indent}namespace: orders",
        "spec:",
        f"{indent}template:",
        f"{indent * 2}spec:{comment()}",
    ]
    if draw(st.booleans()):
        lines.append(f"{spec}initContainers:{comment()}")
        lines += container(spec, "migrate", f"{image}:{_V}")
    lines.append(f"{spec}containers:")
    lines += container(spec, "app", f"{image}:{_V}")
    if draw(st.booleans()):
        lines += container(spec, "sidecar", f"{image}-sidecar:{draw(_version)}")
    if draw(st.booleans()):
        lines.append(f"# {image}:{draw(_version)} in a comment is not a version")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines)
    if draw(st.booleans()):
        text += newline
    return text, app


@st.composite
def values_templates(draw: st.DrawFn) -> tuple[str, App]:
    """Helm values with the tag quoted in any style, or plain."""
    quote = draw(st.sampled_from(["", "'", '"']))
    indent = " " * draw(st.sampled_from([2, 4]))
    tag_line = f"{indent}tag: {quote}{_V}{quote}"
    lines = [
        "image:",
        f"{indent}repository: {ORDERS}",
        *draw(st.permutations([tag_line, f"{indent}pullPolicy: IfNotPresent"])),
        f"other: {draw(_version)}",
    ]
    return "\n".join(lines) + "\n", HELM


def spans(template: str, version: str) -> list[tuple[int, int]]:
    """Where the version sits in ``template`` once filled in with ``version``."""
    found, start = [], 0
    parts = template.split(_V)
    for part in parts[:-1]:
        start += len(part)
        found.append((start, start + len(version)))
        start += len(version)
    return found


def yaml_value(plain: str) -> object:
    """What an independent YAML loader makes of an unquoted value."""
    return YAML(typ="safe", pure=True).load(f"x: {plain}")["x"]


def only_versions_changed(before: str, after: str, *, old: list[tuple[int, int]]) -> bool:
    """Character-level diff: each change in ``before`` lies inside (or at) a version span."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for op, i1, i2, _, _ in matcher.get_opcodes():
        if op != "equal" and not any(s - 1 <= i1 and i2 <= e + 1 for s, e in old):
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.one_of(workload_templates(), values_templates()),
    old=_version,
    new=_version,
)
def test_set_version_changes_only_the_version(case: tuple[str, App], old: str, new: str) -> None:
    template, app = case
    text = template.replace(_V, old)

    plain = f"tag: {_V}" in template
    if app.manifest_kind == "helm_values" and plain and yaml_value(old) is None:
        with pytest.raises(ManifestError, match="is empty"):  # tag: null
            set_version(text, app=app, version=new)
        return

    result = set_version(text, app=app, version=new)

    expected = template.replace(_V, new)
    quoted = template.replace(f"tag: {_V}", f'tag: "{_V}"').replace(_V, new)
    if old == new:
        assert result == text
    elif app.manifest_kind == "helm_values" and plain and not isinstance(yaml_value(new), str):
        assert result == quoted
    else:
        assert result == expected
    assert only_versions_changed(text, result, old=spans(template, old))
    assert read_version(result, app=app).version == new
