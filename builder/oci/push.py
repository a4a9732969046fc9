"""Pushing to an OCI distribution registry: blobs (skipped when present, mounted from
another repository when possible, uploaded monolithically when small and in chunks when
large, resumed from the registry's own account of an interrupted upload) and manifests.

Nothing is pushed that the registry already has, so pushing the same content twice
changes nothing there.
"""

from __future__ import annotations

import logging
import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin

import httpx

from builder.digest import Digest, parse_digest
from builder.errors import MeshseedError
from builder.oci.media import ACCEPT
from builder.oci.reference import sha256_digest
from builder.oci.registry import Manifest, RegistryClient

log = logging.getLogger("meshseed.push")

CHUNK = 8 << 20
OCTETS = {"Content-Type": "application/octet-stream"}
_RANGE = re.compile(r"^(?:bytes=)?0-(-?\d+)$")


@dataclass(frozen=True)
class Blob:
    digest: Digest
    size: int
    path: Path


class Pusher:
    """Pushes into one registry through `client`; counts what it did, for the report."""

    def __init__(self, client: RegistryClient, chunk_size: int = CHUNK) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.counts = {"present": 0, "mounted": 0, "uploaded": 0, "resumed": 0, "restarted": 0}

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: Digest) -> bool:
        path = f"{repository}/blobs/{parse_digest(digest, f'{self.client.where()}: a blob of {repository}')}"
        return self._status("HEAD", path, repository, f"blob {digest}") == 200

    def fetch_blob(self, repository: str, digest: Digest, limit: int = 16 << 20) -> bytes | None:
        """A small blob's bytes (signatures, attestations), or None if the registry lacks it
        or it is larger than `limit`; content that does not hash to `digest` is refused."""
        path = f"{repository}/blobs/{parse_digest(digest, f'{self.client.where()}: a blob of {repository}')}"
        with closing(self.client.request("GET", path, repository, {}, push=True)) as response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self.client.failure(response, f"reading blob {digest} of {repository}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    return None
        if sha256_digest(data) != digest:
            raise MeshseedError(f"{self.client.where()}: blob {digest} of {repository} has the wrong content")
        return data

    def push_blob(self, repository: str, blob: Blob, mount_from: str | None = None) -> None:
        if self.has_blob(repository, blob.digest):
            self.counts["present"] += 1
            return
        location = self._start_upload(repository, blob.digest, mount_from)
        if location is None:
            self.counts["mounted"] += 1
            return
        if blob.size <= self.chunk_size:
            self._finish(repository, location, blob, blob.path.read_bytes())
        else:
            self._finish(repository, self._send_chunks(repository, location, blob), blob, None)
        self.counts["uploaded"] += 1

    def _start_upload(self, repository: str, digest: str, mount_from: str | None) -> str | None:
        """An upload URL, or None when the registry mounted the blob from `mount_from`."""
        query = "?" + urlencode({"mount": digest, "from": mount_from}) if mount_from else ""
        with closing(
            self.client.request("POST", f"{repository}/blobs/uploads/{query}", repository, {}, push=True)
        ) as response:
            if response.status_code == 201 and mount_from:
                return None
            if response.status_code != 202:
                raise self.client.failure(response, f"starting an upload of {digest} to {repository}")
            return self._location(response)

    def _send_chunks(self, repository: str, location: str, blob: Blob) -> str:
        """PATCH the blob in chunks; after a failed chunk, ask the registry how much it has
        and go on from there. Returns the upload URL to finish."""
        offset, setbacks = 0, 0
        with blob.path.open("rb") as source:
            while offset < blob.size:
                source.seek(offset)
                chunk = source.read(self.chunk_size)
                headers = {**OCTETS, "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                try:
                    with closing(
                        self.client.request("PATCH", location, repository, headers, content=chunk, push=True)
                    ) as response:
                        if response.status_code == 202:
                            location = self._location(response)
                            offset = self._received(response, offset + len(chunk))
                            continue
                        response.read()
                        problem = f"HTTP {response.status_code}"
                except MeshseedError as error:
                    problem = error.message
                setbacks += 1
                if setbacks > self.client.retries:
                    raise MeshseedError(
                        f"{self.client.where()}: uploading {blob.digest} kept failing: {problem}"
                    )
                location, offset = self._recover(repository, location, blob.digest)
                log.info("upload of %s goes on at byte %d after: %s", blob.digest, offset, problem)
        return location

    def _recover(self, repository: str, location: str, digest: str) -> tuple[str, int]:
        """After a failed chunk, go on from what the registry says it holds; or, when it no
        longer knows the upload, start it again. (distribution's upload URLs carry the
        offset they expect, so an upload whose answer was lost cannot be continued.)"""
        with closing(self.client.request("GET", location, repository, {}, push=True)) as response:
            if response.status_code == 204:
                self.counts["resumed"] += 1
                return self._location(response), self._received(response, None)
            response.read()
        self.counts["restarted"] += 1
        fresh = self._start_upload(repository, digest, None)
        assert fresh is not None  # without a mount source the registry always opens an upload
        return fresh, 0

    def _finish(self, repository: str, location: str, blob: Blob, content: bytes | None) -> None:
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}{urlencode({'digest': blob.digest})}"
        headers = OCTETS if content is not None else {}
        with closing(
            self.client.request("PUT", url, repository, headers, content=content, push=True)
        ) as response:
            if response.status_code != 201:
                raise self.client.failure(response, f"finishing the upload of {blob.digest} to {repository}")

    def _location(self, response: httpx.Response) -> str:
        location: str = response.headers.get("location", "")
        if not location:
            raise MeshseedError(f"{self.client.where()}: an upload answer without a Location")
        return urljoin(self.client.endpoint + "/", location)

    def _received(self, response: httpx.Response, expected: int | None) -> int:
        """The bytes the registry holds, from its Range header (`0-<last byte>`)."""
        match = _RANGE.match(response.headers.get("range", ""))
        if match is None:
            if expected is None:
                raise MeshseedError(f"{self.client.where()}: an upload status without a Range")
            return expected
        return int(match[1]) + 1

    # -- manifests ------------------------------------------------------------------------

    def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest `reference` (tag or digest) resolves to, or None if there is none."""
        found = self._manifest("HEAD", repository, reference)
        if found is None or "docker-content-digest" not in found[0].headers:
            return None
        where = f"{self.client.where()}: {repository}:{reference}'s Docker-Content-Digest"
        return parse_digest(found[0].headers["docker-content-digest"], where)

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        found = self._manifest("GET", repository, reference)
        if found is None:
            return None
        response, data = found
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(data, media_type, sha256_digest(data))

    def _manifest(self, method: str, repository: str, reference: str) -> tuple[httpx.Response, bytes] | None:
        """The answer to a HEAD or GET of a manifest and its body; None if there is none."""
        path = f"{repository}/manifests/{reference}"
        with closing(
            self.client.request(method, path, repository, {"Accept": ACCEPT}, push=True)
        ) as response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self.client.failure(response, f"{method} {repository}:{reference}")
            return response, response.read() if method == "GET" else b""

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> bool:
        """Store a manifest under `reference` (a tag or its digest); False if it was there."""
        digest = sha256_digest(data)
        if self.manifest_digest(repository, reference) == digest:
            return False
        with closing(
            self.client.request(
                "PUT",
                f"{repository}/manifests/{reference}",
                repository,
                {"Content-Type": media_type},
                content=data,
                push=True,
            )
        ) as response:
            if response.status_code != 201:
                raise self.client.failure(response, f"storing {repository}:{reference}")
            stored = response.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise MeshseedError(
                f"{self.client.where()}: stored {repository}:{reference} as {stored}, not {digest}; "
                "the registry rewrote the manifest"
            )
        return True

    # -- helpers --------------------------------------------------------------------------

    def _status(self, method: str, path: str, repository: str, what: str) -> int:
        with closing(self.client.request(method, path, repository, {}, push=True)) as response:
            if response.status_code not in (200, 404):
                raise self.client.failure(response, what)
            return response.status_code
