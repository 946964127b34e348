"""Container image references, parsed the way the container runtime reads them.

A manifest says ``nginx:1.25`` where the catalog says ``docker.io/library/nginx``, and
``host:5000/app`` is a registry with a port, not an image ``host`` with tag ``5000/app``. Getting
this wrong means editing the wrong container or missing the right one, so the grammar follows
distribution's reference grammar (the one Docker, containerd and Kubernetes use), including its
Docker Hub defaults: no registry means ``docker.io``, and a one-part name there means
``library/<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.domain.errors import PitcrewError

__all__ = [
    "DOCKER_HUB",
    "ImageRef",
    "ImageRefError",
    "is_digest",
    "is_tag",
    "normalize_repository",
]

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io"})

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


class ImageRefError(PitcrewError, ValueError):
    """Text that no container runtime would accept as an image reference."""


def is_tag(text: str) -> bool:
    """Whether ``text`` can be an image tag, which is what a version must be to be deployed."""
    return _TAG.fullmatch(text) is not None


def is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


def normalize_repository(repository: str) -> str:
    """The fully qualified name under which two spellings of one repository compare equal."""
    first, slash, rest = repository.partition("/")
    if not slash or not _is_registry(first):
        domain, remainder = DOCKER_HUB, repository
    else:
        domain, remainder = first.lower(), rest
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in remainder:
            remainder = f"library/{remainder}"
    return f"{domain}/{remainder}"


def _is_registry(component: str) -> bool:
    # The runtime's own rule: only a dot, a port or "localhost" (or uppercase, which a path
    # may not contain) makes the first component a registry host.
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """``repository[:tag][@digest]``, keeping the repository as written so ``str()`` gives
    the original text back, while ``canonical`` is what comparisons use."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not _REPOSITORY.fullmatch(self.repository):
            raise ImageRefError(f'"{self.repository}" is not an image repository')
        if self.tag is not None and not is_tag(self.tag):
            raise ImageRefError(f'"{self.tag}" is not a valid image tag')
        if self.digest is not None and not is_digest(self.digest):
            raise ImageRefError(f'"{self.digest}" is not a valid image digest')

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        name, at, digest = text.partition("@")
        if at and not digest:
            raise ImageRefError(f'"{text}" ends with "@" but names no digest')
        # A colon after the last slash starts the tag; before it, it is a registry port.
        last_slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > last_slash:
            repository, tag = name[:colon], name[colon + 1 :]
        else:
            repository, tag = name, None
        try:
            return cls(repository=repository, tag=tag, digest=digest or None)
        except ImageRefError as exc:
            raise ImageRefError(f'"{text}" is not an image reference: {exc}') from None

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def canonical(self) -> str:
        """``nginx`` → ``docker.io/library/nginx``; registry hosts lowercased."""
        return normalize_repository(self.repository)

    def matches(self, image: str | ImageRef) -> bool:
        """Same repository, whatever the tag, digest or spelling of the registry.

        ``image`` is usually a catalog app's ``image`` (a repository without tag); a full
        reference is accepted too, and only its repository is compared.
        """
        other = image if isinstance(image, ImageRef) else ImageRef.parse(image)
        return self.canonical == other.canonical

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(repository=self.repository, tag=tag, digest=self.digest)
