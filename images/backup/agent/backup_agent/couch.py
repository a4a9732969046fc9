"""A small CouchDB HTTP client on the standard library (the backup image has nothing else).

One keep-alive connection; credentials come from the URL or COUCHDB_USER/COUCHDB_PASSWORD
and never appear in messages.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

CHUNK = 1 << 16
TIMEOUT = 300.0
# How long a new pod keeps trying its first contact: kube-router adds a new pod's address
# to the sources a NetworkPolicy allows only at its next sync, and until then the
# server's side drops the packets (a known race with short-lived Job pods).
FIRST_CONTACT_SECONDS = 60.0
FIRST_CONTACT_TIMEOUT = 5.0


class CouchError(Exception):
    """A request failed; the message names the method and path, never credentials."""


def redacted(url: str) -> str:
    """`url` without user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def db_path(name: str, *rest: str) -> str:
    """The URL path of a database (names may hold `/`, which CouchDB wants escaped)."""
    return "/" + "/".join([quote(name, safe=""), *rest])


def doc_path(db: str, doc_id: str, *rest: str) -> str:
    # Design documents keep their `_design/` prefix unescaped, as CouchDB routes them.
    if doc_id.startswith("_design/"):
        encoded = "_design/" + quote(doc_id.removeprefix("_design/"), safe="")
    else:
        encoded = quote(doc_id, safe="")
    return db_path(db, encoded, *(quote(part, safe="") for part in rest))


class Couch:
    def __init__(self, url: str, environ: Mapping[str, str] = os.environ, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CouchError(f"not an http(s) URL: {redacted(url)}")
        self.url = redacted(url)
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        user = parts.username or environ.get("COUCHDB_USER")
        password = parts.password or environ.get("COUCHDB_PASSWORD")
        self._headers = {"Accept": "application/json"}
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._connection: http.client.HTTPConnection | None = None

    def clone(self) -> Couch:
        """The same server and credentials on a connection of its own (one per thread)."""
        twin = copy.copy(self)
        twin._connection = None
        return twin

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        return self._connection

    def wait_until_reachable(self, within: float = FIRST_CONTACT_SECONDS) -> None:
        """Ask for the server's welcome until it answers, backing off 1, 2, 4, 8 s..., for
        `within` seconds at most; then fail naming the last error."""
        probe = Couch.__new__(Couch)
        probe.__dict__.update(self.__dict__, _connection=None, _timeout=FIRST_CONTACT_TIMEOUT)
        deadline = time.monotonic() + within
        delay = 1.0
        while True:
            try:
                probe.json("GET", "/")
                return
            except (CouchError, OSError, ValueError) as error:
                probe.close()
                if time.monotonic() + delay > deadline:
                    raise CouchError(f"{self.url} did not answer within {within:g} s: {error}") from None
                time.sleep(delay)
                delay = min(delay * 2, 16.0)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> http.client.HTTPResponse:
        """Send a request; the caller reads (and must finish reading) the response."""
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(method, target, body=body, headers=headers)
                return connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
            except OSError as error:
                self.close()
                raise CouchError(f"{method} {self.url}{path}: {error}") from None
        raise AssertionError("unreachable")

    def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        payload: Any = None,
        body: bytes | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        """A JSON request (`payload`, or `body` already encoded) and its decoded answer."""
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
        response = self.request(method, path, params=params, body=body)
        data = response.read()
        if response.status not in ok:
            raise CouchError(f"{method} {self.url}{path}: HTTP {response.status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def stream(self, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """A GET response body in chunks, for attachments of any size."""
        response = self.request("GET", path, params=params)
        if response.status != 200:
            data = response.read()
            raise CouchError(f"GET {self.url}{path}: HTTP {response.status}: {data[:300]!r}")
        while chunk := response.read(CHUNK):
            yield chunk
