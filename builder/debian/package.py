"""A Debian package, as dpkg records it installed and, once pinned, as the lock fetches it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DebianPackage:
    """A package by name, version and architecture: what an image's dpkg status lists."""

    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class PinnedPackage(DebianPackage):
    """A package whose .deb is fetched by URL (the snapshot archive as fallback) and sha256."""

    sha256: str
    size: int
    url: str
    snapshot_url: str


@dataclass(frozen=True)
class PinnedClosure:
    """The package closure of one request; `request_sha256` covers what was asked for."""

    request_sha256: str
    packages: tuple[PinnedPackage, ...]
