"""A client for the OCI distribution API, in pure Python over httpx.

It pulls anonymously or with credentials (HTTP Basic, or the bearer-token challenge that
Docker Hub and GHCR send), retries 429 and 5xx answers with backoff, resumes interrupted
blob downloads with Range requests and hashes everything it receives as it streams.
Content whose sha256 does not match its digest is an error that names the blob and the
registry, and is deleted. Pushing is in `builder.oci.push`, over `request`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from builder.digest import Digest
from builder.errors import MeshseedError
from builder.oci.media import ACCEPT
from builder.oci.reference import DOCKER_HUB, Reference, sha256_digest

log = logging.getLogger("meshseed.registry")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry sent it."""

    data: bytes
    media_type: str
    digest: Digest


def is_loopback(host: str) -> bool:
    """This machine, by name or address: the only place plain HTTP cannot be overheard."""
    return host in {"localhost", "::1"} or host.startswith("127.")


def default_endpoint(registry: str) -> str:
    if registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    # Like Docker, talk plain HTTP only to registries on this machine.
    local = is_loopback(urlsplit(f"//{registry}").hostname or "")
    return f"{'http' if local else 'https'}://{registry}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


@dataclass
class Registries:
    """Where each registry is reached: its own endpoint or a `--mirror REGISTRY=URL`."""

    mirrors: Mapping[str, str] = field(default_factory=dict)
    # (user, password) for a registry, or None to go anonymously.
    credentials: Callable[[str], tuple[str, str] | None] = lambda _registry: None
    retries: int = 5
    backoff: float = 0.5
    timeout: float = 60.0
    _clients: dict[str, RegistryClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, registry: str) -> RegistryClient:
        with self._lock:
            if registry not in self._clients:
                endpoint = self.mirrors.get(registry, default_endpoint(registry)).rstrip("/")
                self._clients[registry] = RegistryClient(
                    registry,
                    endpoint,
                    retries=self.retries,
                    backoff=self.backoff,
                    timeout=self.timeout,
                    credentials=self.credentials(registry),
                )
            return self._clients[registry]


class RegistryClient:
    def __init__(
        self,
        registry: str,
        endpoint: str,
        *,
        retries: int,
        backoff: float,
        timeout: float,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._credentials = credentials
        # Bearer tokens by scope; the Basic header once the registry has asked for it.
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None
        self._sleep: Callable[[float], None] = time.sleep
        endpoint_url = httpx.URL(endpoint)
        self._origin = _origin(endpoint_url)
        # A token service on plain HTTP would hand the password (and the token) to anyone
        # on the path; only a registry that is itself plain HTTP on this machine may use one.
        self._plain_tokens = endpoint_url.scheme == "http" and is_loopback(endpoint_url.host)

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry} at {self.endpoint})"

    def close(self) -> None:
        self._http.close()

    def where(self) -> str:
        return (
            self.registry
            if self.endpoint == default_endpoint(self.registry)
            else f"{self.registry} ({self.endpoint})"
        )

    # -- requests -------------------------------------------------------------------------

    def _token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if realm is None:
            raise MeshseedError(f"{self.where()}: asks for a token without saying where to get one")
        if not realm.startswith("https://") and not (self._plain_tokens and realm.startswith("http://")):
            raise MeshseedError(
                f"{self.where()}: refused the token service {realm}: it is not https",
                hint="a registry reached over https must hand out its tokens over https",
            )
        params["scope"] = scope
        log.info("GET %s (token for %s)", realm, params["scope"])
        try:
            auth = httpx.BasicAuth(*self._credentials) if self._credentials else None
            response = self._http.get(realm, params=params, auth=auth)
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as error:
            raise MeshseedError(f"{self.where()}: token request to {realm} failed: {error}") from None
        if response.status_code != 200:
            raise MeshseedError(
                f"{self.where()}: token request to {realm} failed: HTTP {response.status_code}"
            )
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise MeshseedError(f"{self.where()}: the token service at {realm} sent no token")
        return token

    def request(
        self,
        method: str,
        path: str,
        repository: str,
        headers: Mapping[str, str],
        *,
        content: bytes | None = None,
        push: bool = False,
    ) -> httpx.Response:
        """Send with auth and retries; returns a streaming response the caller must close.

        `path` is below /v2/, or an absolute URL (an upload's Location). `push` asks for a
        token that may write to `repository`. A body is sent again on a retry, so only
        requests that may be repeated get one (every PUT and PATCH of the distribution API
        names its range or digest).
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.endpoint}/v2/{path}"
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        attempt = 0
        # An upload Location may point anywhere; credentials and tokens are the registry's
        # own, so another host gets neither, nor an answer to its challenge.
        own = _origin(httpx.URL(url)) == self._origin
        authenticated = not own
        while True:
            request_headers = dict(headers)
            if own and scope in self._tokens:
                request_headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            elif own and self._basic:
                request_headers["Authorization"] = self._basic
            log.info("%s %s", method, url)
            try:
                request = self._http.build_request(method, url, headers=request_headers, content=content)
                response = self._http.send(request, stream=True)
            except httpx.TransportError as error:
                if attempt >= self.retries:
                    raise MeshseedError(f"{self.where()}: {method} {url} failed: {error}") from None
                self._pause(attempt, None)
                attempt += 1
                continue
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and not authenticated:
                response.close()
                # No credentials yet, or a token that expired during a long pull: answer the
                # challenge once; a second 401 is the registry's final word.
                authenticated = True
                self._authenticate(challenge, scope, repository)
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                retry_after = response.headers.get("retry-after")
                response.close()
                self._pause(attempt, retry_after)
                attempt += 1
                continue
            return response

    def _authenticate(self, challenge: str, scope: str, repository: str) -> None:
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "bearer":
            self._tokens[scope] = self._token(challenge, scope)
        elif kind == "basic" and self._credentials:
            token = base64.b64encode(":".join(self._credentials).encode()).decode()
            self._basic = f"Basic {token}"
        else:
            raise MeshseedError(
                f"{self.where()}: {repository} needs credentials",
                hint="set MESHSEED_REGISTRY_USER and MESHSEED_REGISTRY_PASSWORD (and MESHSEED_REGISTRY_HOST "
                "to a registry --registry does not name), or log in with `podman login`",
            )

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.isdecimal():
            delay = max(delay, min(float(retry_after), 60.0))
        log.info("%s: retrying in %.1fs", self.where(), delay)
        self._sleep(delay)

    def failure(self, response: httpx.Response, what: str) -> MeshseedError:
        response.read()
        detail = response.text[:200].strip()
        return MeshseedError(
            f"{self.where()}: {what}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
        )

    # -- manifests ------------------------------------------------------------------------

    def manifest(self, reference: Reference, tag_or_digest: str) -> Manifest:
        """Fetch a manifest or index; when asked by digest, its bytes must hash to it."""
        repository = reference.repository
        response = self.request(
            "GET", f"{repository}/manifests/{tag_or_digest}", repository, {"Accept": ACCEPT}
        )
        try:
            if response.status_code != 200:
                raise self.failure(response, f"manifest {reference.name}:{tag_or_digest}")
            data = response.read()
        finally:
            response.close()
        digest = sha256_digest(data)
        if tag_or_digest.startswith("sha256:") and digest != tag_or_digest:
            raise MeshseedError(
                f"{self.where()}: manifest {reference.name}@{tag_or_digest} has the wrong content "
                f"(it hashes to {digest}); nothing was kept"
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    # -- blobs ----------------------------------------------------------------------------

    def download_blob(self, reference: Reference, digest: Digest, partial: Path) -> None:
        """Stream a blob into `partial`, hashing as it arrives and resuming what an earlier
        attempt left there. On return `partial` holds exactly the blob; on a digest mismatch
        it is deleted and the error names the blob and the registry.
        """
        repository, attempts = reference.repository, 0
        while True:
            have = partial.stat().st_size if partial.exists() else 0
            hasher = _sha256_of(partial) if have else hashlib.sha256()
            headers = {"Range": f"bytes={have}-"} if have else {}
            response = self.request("GET", f"{repository}/blobs/{digest}", repository, headers)
            try:
                if response.status_code == 416 and have:
                    partial.unlink()
                    continue
                if response.status_code not in (200, 206):
                    raise self.failure(response, f"blob {digest} of {reference.name}")
                resumed = response.status_code == 206 and _range_start(response) == have
                if not resumed:
                    hasher = hashlib.sha256()
                with partial.open("ab" if resumed else "wb") as out:
                    # Raw bytes as they arrive: a cut connection keeps what came, and no
                    # Content-Encoding is undone, since the digest covers the bytes as stored.
                    for chunk in response.iter_raw():
                        hasher.update(chunk)
                        out.write(chunk)
                break
            except (httpx.TransportError, httpx.StreamError) as error:
                attempts += 1
                if attempts > self.retries:
                    raise MeshseedError(f"{self.where()}: blob {digest} kept failing: {error}") from None
                self._pause(attempts - 1, None)
            finally:
                response.close()
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            partial.unlink(missing_ok=True)
            raise MeshseedError(
                f"{self.where()}: blob {digest} of {reference.name} has the wrong content "
                f"(it hashes to {actual}); nothing was kept"
            )


def _range_start(response: httpx.Response) -> int:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return int(match[1]) if match else -1


def _sha256_of(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest
