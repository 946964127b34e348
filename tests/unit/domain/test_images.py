"""Image references as the container runtime reads them: registries with ports, Docker Hub
defaults, tags and digests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import PitcrewError
from bot.domain.images import ImageRef, ImageRefError, is_tag, normalize_repository

DIGEST = "sha256:" + "a1" * 32


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("nginx", "nginx", None, None),
        ("nginx:1.25", "nginx", "1.25", None),
        ("library/nginx:1.25-alpine", "library/nginx", "1.25-alpine", None),
        (
            "registry.example.com/shop/orders:1.4.1",
            "registry.example.com/shop/orders",
            "1.4.1",
            None,
        ),
        ("host:5000/app:1.2", "host:5000/app", "1.2", None),
        ("host:5000/app", "host:5000/app", None, None),
        ("localhost/app:v1", "localhost/app", "v1", None),
        ("[::1]:5000/app:1", "[::1]:5000/app", "1", None),
        (f"app@{DIGEST}", "app", None, DIGEST),
        (f"host:5000/app:1.2@{DIGEST}", "host:5000/app", "1.2", DIGEST),
        (
            "ghcr.io/org/team/app:2024.01.31_build-7",
            "ghcr.io/org/team/app",
            "2024.01.31_build-7",
            None,
        ),
    ],
)
def test_parse_splits_repository_tag_and_digest(
    text: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageRef.parse(text)

    assert ref == ImageRef(repository=repository, tag=tag, digest=digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("repository", "canonical"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("library/nginx", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("bitnami/redis", "docker.io/bitnami/redis"),
        ("Registry.Example.com/shop/orders", "registry.example.com/shop/orders"),
        ("localhost/app", "localhost/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("host:5000/app", "host:5000/app"),
    ],
)
def test_repositories_are_normalised_like_the_runtime_does(repository: str, canonical: str) -> None:
    assert normalize_repository(repository) == canonical


@pytest.mark.parametrize(
    ("image", "app_image", "expected"),
    [
        ("nginx:1.25", "docker.io/library/nginx", True),
        ("docker.io/library/nginx:1.25", "nginx", True),
        ("registry.example.com/shop/orders:1.4.1", "registry.example.com/shop/orders", True),
        (f"registry.example.com/shop/orders@{DIGEST}", "registry.example.com/shop/orders", True),
        ("REGISTRY.example.com/shop/orders:1", "registry.example.com/shop/orders", True),
        ("host:5000/app:1.2", "host:5000/app", True),
        ("host:5000/app:1.2", "host:5001/app", False),
        ("host:5000/app:1.2", "host/app", False),
        ("registry.example.com/shop/orders-api:1", "registry.example.com/shop/orders", False),
        ("registry.example.com/shop/orders:1", "registry.example.com/orders", False),
        ("orders:1", "registry.example.com/shop/orders", False),
    ],
)
def test_matches_compares_repositories_only(image: str, app_image: str, expected: bool) -> None:
    assert ImageRef.parse(image).matches(app_image) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "app:",
        "app@",
        "app:bad tag",
        "app:.hidden",
        "app@sha256:abc",
        "-app:1",
        "app/",
        "Shop/Orders:1",
        "app:1:2",
        "registry.example.com/shop/orders:1.4.1 # comment",
    ],
)
def test_parse_refuses_what_no_runtime_accepts(text: str) -> None:
    with pytest.raises(ImageRefError) as caught:
        ImageRef.parse(text)
    assert isinstance(caught.value, PitcrewError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.4.2", True),
        ("v1.4.2-rc.1", True),
        ("_build", True),
        ("a" * 128, True),
        ("a" * 129, False),
        (".1", False),
        ("-1", False),
        ("1.2/3", False),
        ("1.2 3", False),
        ("1.2;rm", False),
        ("", False),
    ],
)
def test_is_tag(text: str, expected: bool) -> None:
    assert is_tag(text) is expected


def test_with_tag_keeps_repository_as_written() -> None:
    ref = ImageRef.parse("host:5000/app:1.2")

    assert str(ref.with_tag("1.3")) == "host:5000/app:1.3"


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,4})?", fullmatch=True)
_registry = st.one_of(
    st.just(""),
    st.from_regex(r"[a-z0-9]{1,6}\.[a-z]{2,4}(?::[0-9]{2,5})?/", fullmatch=True),
    st.from_regex(r"localhost(?::[0-9]{2,5})?/", fullmatch=True),
)
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(st.none(), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True))


@given(
    registry=_registry,
    path=st.lists(_component, min_size=1, max_size=3),
    tag=_tag,
    digest=_digest,
)
def test_parse_round_trips(
    registry: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    repository = registry + "/".join(path)
    text = repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")

    ref = ImageRef.parse(text)

    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)
    assert str(ref) == text
    assert ref.matches(repository)
