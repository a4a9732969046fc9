"""Command line of the backup agent: dump, restore, verify and rotate CouchDB snapshots,
and receive the servers' etcd snapshots.

Exit status: 0 on success, 1 when something failed, 2 for bad input (as argparse does).
Credentials come from the URL or COUCHDB_USER/COUCHDB_PASSWORD and are never printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from backup_agent import __version__
from backup_agent.contents import verify
from backup_agent.couch import FIRST_CONTACT_SECONDS, Couch, CouchError
from backup_agent.dump import dump_server
from backup_agent.receiver import serve
from backup_agent.restore import NotEmptyError, restore
from backup_agent.rotation import Retention, rotate_tree
from backup_agent.snapshot import SnapshotError, write_metric

FAILED, BAD_INPUT = 1, 2


def check(url: str, timeout: float) -> int:
    """Exit 0 if `url` answers as a CouchDB (or CouchDB-API) server does, else 1."""
    couch = Couch(url, timeout=timeout)
    try:
        body = couch.json("GET", "/")
    except (CouchError, OSError, ValueError) as error:
        print(f"backup: cannot reach CouchDB at {couch.url}: {error}", file=sys.stderr)
        return FAILED
    if not isinstance(body, dict) or not ({"couchdb", "express-pouchdb"} & set(body)):
        print(f"backup: {couch.url} answered, but not as CouchDB does", file=sys.stderr)
        return FAILED
    print(f"backup: reached CouchDB {body.get('version', '?')} at {couch.url}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="backup", description="The meshseed backup agent.")
    root.add_argument("--version", action="version", version=f"backup {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    url_help = "CouchDB URL, e.g. http://couchdb:5984 (credentials: COUCHDB_USER, COUCHDB_PASSWORD)"

    reach = commands.add_parser("check", help="check that a CouchDB URL can be reached")
    reach.add_argument("--url", required=True, help=url_help)
    reach.add_argument("--timeout", type=float, default=10.0)

    dump = commands.add_parser("couchdb", help="dump every database into a new snapshot under --out")
    dump.add_argument("--url", required=True, help=url_help)
    dump.add_argument(
        "--out", type=Path, required=True, help="the backup tree; the snapshot is OUT/<UTC time>"
    )
    dump.add_argument("--db", action="append", help="only this database (repeatable)")
    dump.add_argument("--metrics", type=Path, help="directory for the last-success metric (node-exporter)")
    dump.add_argument(
        "--wait",
        type=float,
        default=FIRST_CONTACT_SECONDS,
        help="seconds to keep trying the first contact (a new pod may not be let through yet)",
    )

    back = commands.add_parser("restore", help="restore a snapshot into empty databases")
    back.add_argument("--from", dest="snapshot", type=Path, required=True, help="the snapshot directory")
    back.add_argument("--url", required=True, help=url_help)
    back.add_argument("--db", help="only this database")
    back.add_argument("--force", action="store_true", help="restore into databases that hold documents")

    receive = commands.add_parser(
        "etcd-receive", help="store the etcd snapshots the servers send (token: ETCD_SNAPSHOT_TOKEN)"
    )
    receive.add_argument("--listen", default="::", help="the address to listen on (default ::)")
    receive.add_argument("--port", type=int, required=True)
    receive.add_argument("--out", type=Path, required=True, help="the etcd backup tree")
    receive.add_argument(
        "--metrics", type=Path, help="directory for the last-snapshot metric (node-exporter)"
    )

    check_ = commands.add_parser("verify", help="re-hash every file of a snapshot against its manifest")
    check_.add_argument("snapshot", type=Path)

    rotate = commands.add_parser("rotate", help="delete snapshots outside the retention (restic forget)")
    rotate.add_argument(
        "--root", type=Path, action="append", required=True, help="a backup tree (repeatable: one per kind)"
    )
    for rule, default in (("daily", 7), ("weekly", 4), ("monthly", 12)):
        rotate.add_argument(f"--{rule}", type=int, default=default, metavar="N")
    rotate.add_argument("--dry-run", action="store_true")
    return root


def receive(args: argparse.Namespace) -> int:
    """Serve until stopped; the token comes from the environment, never the command line."""
    token = os.environ.get("ETCD_SNAPSHOT_TOKEN", "")
    if len(token) < 32:
        print("backup: etcd-receive needs ETCD_SNAPSHOT_TOKEN (32 characters or more)", file=sys.stderr)
        return BAD_INPUT
    serve(args.listen, args.port, args.out, token, args.metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (SnapshotError, NotEmptyError, CouchError) as error:
        print(f"backup: {error}", file=sys.stderr)
        return FAILED
    except OSError as error:
        # A full disk, a missing directory, a permission: say which file, without a traceback.
        print(f"backup: {error}", file=sys.stderr)
        return FAILED


def run(args: argparse.Namespace) -> int:
    if args.command == "check":
        return check(args.url, args.timeout)
    if args.command == "couchdb":
        now = dt.datetime.now(dt.UTC)
        couch = Couch(args.url)
        couch.wait_until_reachable(args.wait)
        snapshot = dump_server(couch, args.out, now, args.db)
        if args.metrics:
            write_metric(args.metrics, "couchdb", now)
        print(f"backup: wrote {snapshot}")
        return 0
    if args.command == "restore":
        names = restore(Couch(args.url), args.snapshot, only=args.db, force=args.force)
        print(f"backup: restored {', '.join(names)} from {args.snapshot}")
        return 0
    if args.command == "etcd-receive":
        return receive(args)
    if args.command == "verify":
        manifest = verify(args.snapshot)
        print(f"backup: {args.snapshot} is intact ({len(manifest['files'])} files)")
        return 0
    return rotate(args)


def rotate(args: argparse.Namespace) -> int:
    if min(args.daily, args.weekly, args.monthly) < 0:
        print("backup: retention counts cannot be negative", file=sys.stderr)
        return BAD_INPUT
    retention = Retention(args.daily, args.weekly, args.monthly)
    for root in args.root:
        kept, deleted = rotate_tree(root, retention, dry_run=args.dry_run)
        print(json.dumps({"root": str(root), "kept": kept, "deleted": deleted, "dry_run": args.dry_run}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
