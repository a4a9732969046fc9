"""A proxy that makes pouchdb-server's numeric sequences look like CouchDB 3's opaque strings.

Only the sequence format is faked: every request goes to the real server, and each
`update_seq`, `seq` and `last_seq` in its JSON answers becomes "<n>-g1AAAA<...>"; a
`since` the client sends back is turned into the number again.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.backup.proxy import rewriting_proxy

SEQUENCE_KEYS = frozenset({"update_seq", "seq", "last_seq"})


def opaque(number: int) -> str:
    return f"{number}-g1AAAA" + base64.urlsafe_b64encode(f"shard-{number}".encode()).decode().rstrip("=")


def numeric(value: str) -> str:
    match = re.match(r"^(\d+)(-|$)", value)
    return match.group(1) if match else value


def disguise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: opaque(item) if key in SEQUENCE_KEYS and isinstance(item, int) else disguise(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [disguise(item) for item in value]
    return value


def _since_back(
    path: str, headers: dict[str, str], body: bytes | None
) -> tuple[str, dict[str, str], bytes | None]:
    parts = urlsplit(path)
    query = urlencode([(k, numeric(v) if k == "since" else v) for k, v in parse_qsl(parts.query)])
    return parts.path + (f"?{query}" if query else ""), headers, body


def _disguised(_path: str, content_type: str, body: bytes) -> bytes:
    # CouchDB answers JSON as text/plain to clients that do not ask for JSON.
    if content_type.startswith(("application/json", "text/plain")):
        with contextlib.suppress(ValueError):  # a text attachment, not an answer
            return json.dumps(disguise(json.loads(body))).encode()
    return body


@contextlib.contextmanager
def opaque_sequences(upstream: str) -> Iterator[str]:
    with rewriting_proxy(upstream, request=_since_back, response=_disguised) as url:
        yield url
