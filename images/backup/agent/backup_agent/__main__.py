"""Command line of the backup agent. For now: its version, and a reachability check."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from backup_agent import __version__


def _redacted(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def check(url: str, timeout: float) -> int:
    """Exit 0 if `url` answers as a CouchDB (or CouchDB-API) server does, else 1."""
    request = urllib.request.Request(url.rstrip("/") + "/", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the operator's URL
            body = json.loads(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"backup: cannot reach CouchDB at {_redacted(url)}: {error}", file=sys.stderr)
        return 1
    if not isinstance(body, dict) or "couchdb" not in body:
        print(f"backup: {_redacted(url)} answered, but not as CouchDB does", file=sys.stderr)
        return 1
    print(f"backup: reached CouchDB {body.get('version', '?')} at {_redacted(url)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backup", description="The meshseed backup agent.")
    parser.add_argument("--version", action="version", version=f"backup {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    reach = commands.add_parser("check", help="check that a CouchDB URL can be reached")
    reach.add_argument("--url", required=True, help="CouchDB URL, e.g. http://admin:secret@couchdb:5984")
    reach.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    return check(args.url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
