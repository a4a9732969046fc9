"""Downloading pinned files (k3s, its install script, Mycelium) over HTTP(S).

Every download is hashed as it streams and checked against the sha256 the lock pins;
`--artifact-mirror URL` fetches `URL/<host>/<path>` instead of the original address,
for tests and for air-gapped users with a local copy.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from builder.errors import MeshseedError
from builder.store.derivation import BuildContext

log = logging.getLogger("meshseed.artifacts")
_RETRY = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    size: int


@runtime_checkable
class Downloader(Protocol):
    """What a build needs to fetch a pinned file: `Artifacts`, or a stand-in in tests."""

    def download(self, url: str, target: Path, *, sha256: str | None = None) -> Downloaded: ...


def downloader(ctx: BuildContext) -> Downloader:
    """The downloader the derivation was planned with."""
    fetcher = ctx.derivation.fetcher
    if not isinstance(fetcher, Downloader):
        raise MeshseedError(f"{ctx.derivation.name}: no artifact download was configured")
    return fetcher


@dataclass
class Artifacts:
    mirror: str | None = None
    retries: int = 5
    backoff: float = 0.5
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60.0, follow_redirects=True))

    def source(self, url: str) -> str:
        if self.mirror is None:
            return url
        parts = urlsplit(url)
        return f"{self.mirror.rstrip('/')}/{parts.netloc}{parts.path}"

    def download(self, url: str, target: Path, *, sha256: str | None = None) -> Downloaded:
        """Stream `url` into `target`; with `sha256`, a mismatch deletes it and is an error."""
        source = self.source(url)
        for attempt in range(self.retries + 1):
            log.info("GET %s", source)
            try:
                with self._http.stream("GET", source) as response:
                    if response.status_code in _RETRY and attempt < self.retries:
                        time.sleep(self.backoff * 2**attempt)
                        continue
                    if response.status_code != 200:
                        raise MeshseedError(f"{source}: HTTP {response.status_code}")
                    digest, size = hashlib.sha256(), 0
                    with target.open("wb") as out:
                        for chunk in response.iter_bytes(_CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                break
            except (httpx.TransportError, httpx.StreamError) as error:
                if attempt == self.retries:
                    raise MeshseedError(f"{source}: download failed: {error}") from None
                time.sleep(self.backoff * 2**attempt)
        if sha256 is not None and digest.hexdigest() != sha256:
            target.unlink(missing_ok=True)
            raise MeshseedError(
                f"{source}: has sha256 {digest.hexdigest()}, the lock pins {sha256}; nothing was kept"
            )
        return Downloaded(digest.hexdigest(), size)


def build_binary(ctx: BuildContext) -> None:
    """The fetch-binary derivation: one pinned file, checked against the lock's sha256."""
    artifacts = downloader(ctx)
    name = ctx.inputs["file"]
    target = ctx.out / name
    downloaded = artifacts.download(ctx.inputs["url"], target, sha256=ctx.inputs["sha256"])
    if downloaded.size != ctx.inputs["size"]:
        raise MeshseedError(
            f"{ctx.inputs['url']}: {downloaded.size} bytes, the lock pins {ctx.inputs['size']}"
        )
    target.chmod(0o755 if ctx.inputs["executable"] else 0o644)
    ctx.known_digests[name] = downloaded.sha256
