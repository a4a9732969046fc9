"""A small HTTP proxy on 127.0.0.1 that rewrites what passes through, for CouchDB-API tests.

Every request goes to the real server; `request` may change the path and body on the way
in, `response` the body on the way out, and `answer` may answer a request itself.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

RequestHook = Callable[[str, dict[str, str], bytes | None], tuple[str, dict[str, str], bytes | None]]
ResponseHook = Callable[[str, str, bytes], bytes]  # (path, content type, body) -> body
AnswerHook = Callable[[str, str, bytes | None], bytes | None]  # (method, path, body) -> JSON or None


def _same_request(
    path: str, headers: dict[str, str], body: bytes | None
) -> tuple[str, dict[str, str], bytes | None]:
    return path, headers, body


def _same_response(_path: str, _content_type: str, body: bytes) -> bytes:
    return body


def _never(_method: str, _path: str, _body: bytes | None) -> bytes | None:
    return None


@contextlib.contextmanager
def rewriting_proxy(
    upstream: str,
    *,
    request: RequestHook = _same_request,
    response: ResponseHook = _same_response,
    answer: AnswerHook = _never,
) -> Iterator[str]:
    target = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK stall every answer by about 40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            path, headers, body = request(self.path, headers, self.rfile.read(length) if length else None)
            direct = answer(self.command, path, body)
            if direct is not None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(direct)))
                self.end_headers()
                self.wfile.write(direct)
                return
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
            connection.request(self.command, path, body=body, headers=headers)
            upstream_answer = connection.getresponse()
            data = response(path, upstream_answer.getheader("Content-Type", ""), upstream_answer.read())
            self.send_response(upstream_answer.status)
            for key, value in upstream_answer.getheaders():
                if key.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "content-encoding",
                ):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - http.server dispatches on these names

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
