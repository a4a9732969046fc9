"""Derivations: a name, declared inputs and a pure function from them to an output tree.

The key of a derivation is the sha256 of the canonical JSON of everything that can
change its output: the builder's version, the name, the build function, the declared
inputs (site values, file digests, lock entries, tool versions), the keys of the
derivations it depends on, and, for derivations that use secrets, a fingerprint of the
master key. The build function sees only these, through `BuildContext`, so an input
that is not in the key cannot reach the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from builder.det.jsonfmt import canonical_json
from builder.digest import Digest, hex_part
from builder.errors import MeshseedError
from builder.secrets import SecretDeriver
from builder.store.blobs import BlobStore
from builder.store.tree import file_sha256
from builder.version import builder_version

Json = Any
BuildFunction = Callable[["BuildContext"], None]


class Fetcher(Protocol):
    """Network access handed to a build function: a registry client factory, a file
    downloader. The store only carries it; each build function checks it is the kind it
    needs (`RegistryAccess`, `Downloader`), as the store cannot know those without
    importing the packages that build on it."""


@dataclass(frozen=True, eq=False)
class Derivation:
    """One node of the build graph. `dist_path` says where its output goes in dist/."""

    name: str
    build: BuildFunction
    inputs: Mapping[str, Json]
    deps: tuple[Derivation, ...] = ()
    sources: Mapping[str, Path] = field(default_factory=dict)
    secrets: SecretDeriver | None = None
    dist_path: str | None = None
    # Further places in dist/ that get a copy of the output (a role's payload, per node).
    dist_also: tuple[str, ...] = ()
    # How to reach registries and artifact servers. Not part of the key: everything
    # fetched is checked against a digest that is.
    fetcher: Fetcher | None = None
    # The builder source this build depends on (folders or files of the package), when
    # that is a narrow part: a slow build, such as a disk image, is then not redone for
    # every change elsewhere in meshseed. Empty: all of it.
    code: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        description = {
            "builder": builder_version(self.code),
            "name": self.name,
            "function": f"{self.build.__module__}.{self.build.__qualname__}",
            "inputs": self.inputs,
            "sources": {name: self.source_digests[name] for name in sorted(self.sources)},
            "deps": {dep.name: dep.key for dep in self.deps},
            "secrets": self.secrets.fingerprint() if self.secrets else None,
        }
        return hashlib.sha256(canonical_json(description, pretty=False).encode()).hexdigest()

    @cached_property
    def source_digests(self) -> dict[str, str]:
        return {name: file_sha256(path) for name, path in self.sources.items()}

    @property
    def store_name(self) -> str:
        return f"{self.key}-{self.name}"


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingWriter(io.RawIOBase):
    """Writes through to `target` and takes the sha256 of what passes (an output file's
    digest, an image layer's diff_id), so nothing need be read back to hash it."""

    def __init__(self, target: Sink) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.position += len(data)
        return self.target.write(data)


@dataclass
class BuildContext:
    """What a build function may read, and where it writes."""

    derivation: Derivation
    out: Path
    dep_outputs: Mapping[str, Path]
    blobs: BlobStore
    # sha256 of output files this build already knows (hard-linked verified blobs,
    # streams it hashed while writing), so the store need not read them again.
    known_digests: dict[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> Mapping[str, Json]:
        return self.derivation.inputs

    @property
    def secrets(self) -> SecretDeriver:
        if self.derivation.secrets is None:
            raise RuntimeError(f"{self.derivation.name} did not declare that it uses secrets")
        return self.derivation.secrets

    def source(self, name: str) -> bytes:
        """A declared source file's content, checked against the digest in the key."""
        data = self.derivation.sources[name].read_bytes()
        if hashlib.sha256(data).hexdigest() != self.derivation.source_digests[name]:
            raise MeshseedError(
                f"{self.derivation.sources[name]} changed while {self.derivation.name} was being built",
                hint="run the build again",
            )
        return data

    def dep(self, name: str) -> Path:
        return self.dep_outputs[name]

    @contextlib.contextmanager
    def open_output(self, relative: str, *, private: bool = False) -> Iterator[BinaryIO]:
        """A file of the output to stream into (mode 0644, or 0600 when private, whatever
        the umask is); its sha256 is taken on the way."""
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as raw:
            os.fchmod(raw.fileno(), 0o600 if private else 0o644)
            hashing = HashingWriter(raw)
            yield hashing  # type: ignore[misc]
        self.known_digests[relative] = hashing.sha256.hexdigest()

    def link_blob(self, relative: str, digest: Digest, source: Path) -> None:
        """Put a verified blob from the blob store into the output, as a hard link."""
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, path)
        self.known_digests[relative] = hex_part(digest)

    def write(
        self, relative: str, data: bytes | str, *, private: bool = False, executable: bool = False
    ) -> Path:
        """Write a file of the output with an explicit mode, whatever the umask is."""
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = data.encode() if isinstance(data, str) else data
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600 if private else 0o755 if executable else 0o644)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return path
