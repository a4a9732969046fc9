"""Image references: `registry/repository:tag` or `...@sha256:...`, normalised as Docker does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.digest import Digest, digest_of, is_digest

DOCKER_HUB = "docker.io"
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def pinned(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def sha256_digest(data: bytes) -> Digest:
    """The OCI digest of some content: `sha256:<hex>`."""
    return digest_of(data)


def parse_reference(text: str) -> Reference:
    """Parse and normalise: `couchdb:3.4` becomes `docker.io/library/couchdb:3.4`."""
    rest, _, digest = text.partition("@")
    if digest and not is_digest(digest):
        raise ValueError(f"{text!r}: {digest!r} is not a sha256 digest")
    name, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{text!r}: {tag!r} is not a valid tag")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
    else:
        registry, path = DOCKER_HUB, parts
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    if not path or not all(_COMPONENT.fullmatch(part) for part in path):
        raise ValueError(f"{text!r} is not a valid image reference")
    return Reference(registry, "/".join(path), tag, Digest(digest) if digest else None)


def parse_mirror(text: str) -> tuple[str, str]:
    registry, sep, url = text.partition("=")
    if not sep or not registry or not url.startswith(("http://", "https://")):
        raise ValueError(f"{text!r}: write a mirror as REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000")
    return registry, url
