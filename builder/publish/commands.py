"""The `publish` and `verify` commands: parse, call, print."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from builder.det.jsonfmt import canonical_json
from builder.errors import ExitStatus, MeshseedError, bad_input
from builder.lock import DEFAULT_LOCK, LockFiles, UpstreamPart, load_lock
from builder.oci.credentials import credentials_lookup
from builder.oci.push import Pusher
from builder.oci.reference import parse_reference
from builder.oci.registry import Registries, is_loopback
from builder.publish.built import built_images, upstream_images
from builder.publish.run import Destination, Provenance, publish, sign_checksums
from builder.publish.verify import verify_checksums, verify_image
from builder.resources import pinning_root
from builder.sign.keys import load_private_key, password_from
from builder.sign.signature import load_public_key
from builder.store.store import Store
from builder.tools.git import head_commit


def _registries(endpoint: str | None, registry: str, *, named: str | None) -> Registries:
    """Registry clients with credentials; `endpoint` (scheme://host) if the user gave one.
    `named` is the registry `--registry` names, the only one the environment's login is for."""
    return Registries(mirrors={registry: endpoint} if endpoint else {}, credentials=credentials_lookup(named))


def _split_scheme(text: str, *, insecure: bool) -> tuple[str | None, str]:
    """`https://host/path` -> ("https://host", "host/path"); no scheme -> (None, text).
    Plain http to another machine is refused unless `insecure`, and then warned about."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        return None, text
    if scheme not in ("http", "https"):
        raise bad_input(f"{text!r}: only http:// or https:// may come before the registry")
    endpoint = f"{scheme}://{rest.split('/', 1)[0]}"
    if scheme == "http" and not is_loopback(httpx.URL(endpoint).host):
        if not insecure:
            raise bad_input(
                f"{text!r}: plain http to another machine shows everything on the way, logins included",
                hint="use https://, or give --insecure if the network in between is yours",
            )
        print(f"warning: --insecure: talking plain http to {endpoint}", file=sys.stderr)
    return endpoint, rest


def cmd_publish(args: argparse.Namespace) -> int:
    endpoint, registry = _split_scheme(args.registry, insecure=args.insecure)
    key = None
    if args.key is not None:
        try:
            data = args.key.read_bytes()
        except OSError as error:
            raise bad_input(f"{args.key}: {error.strerror}") from None
        key = load_private_key(data, password_from(os.environ), str(args.key))
    else:
        print("warning: no --key: pushing without signatures or attestations", file=sys.stderr)
    store = Store(args.store)
    images = built_images(args.dist, store)
    if not images and not args.upstream:
        raise MeshseedError(
            f"{args.dist}/build.json: the build made no images",
            hint="nox -s build-images",
            status=ExitStatus.BAD_INPUT,
        )
    lock = load_lock(LockFiles(args.lock or pinning_root() / DEFAULT_LOCK), upstream=UpstreamPart.UNCHECKED)
    facts = Provenance(lock, head_commit(Path.cwd()), _source_uri())
    # Everything to push is found before anything is pushed.
    upstream = upstream_images(lock, store) if args.upstream else []
    destination = Destination.parse(registry)
    registries = _registries(endpoint, destination.registry, named=destination.registry)
    chunk = args.chunk_size
    published, counts = publish(images, destination, registries, key=key, facts=facts, chunk_size=chunk)
    if upstream:
        copied, more = publish(upstream, destination, registries, key=None, facts=facts, chunk_size=chunk)
        published += copied
        counts = {name: counts[name] + more[name] for name in counts}
    signature = sign_checksums(args.dist, key) if key is not None else None
    if args.json:
        report = {
            "images": [p.as_json() for p in published],
            "blobs": counts,
            "checksums_signature": str(signature) if signature else None,
        }
        sys.stdout.write(canonical_json(report))
        return ExitStatus.OK
    for item in published:
        print(item.reference)
    blobs = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    changed = sum(bool(p.changed) for p in published)
    print(f"{len(published)} images ({changed} changed); blobs: {blobs or 'none'}", file=sys.stderr)
    if signature:
        print(f"signed {signature}", file=sys.stderr)
    return ExitStatus.OK


def _source_uri() -> str | None:
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"git+{server}/{repository}" if server and repository else None


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        key = load_public_key(args.key.read_bytes(), str(args.key))
    except OSError as error:
        raise bad_input(f"{args.key}: {error.strerror}") from None
    target = Path(args.target)
    if target.is_file():
        count = verify_checksums(target, target.with_name(target.name + ".sig"), key)
        _report(
            args,
            {"file": str(target), "files_checked": count},
            f"{target}: signature valid, {count} files match",
        )
        return ExitStatus.OK
    endpoint, text = _split_scheme(args.target, insecure=args.insecure)
    try:
        reference = parse_reference(text)
    except ValueError as error:
        raise bad_input(str(error)) from None
    # No --registry here: the environment's login goes only to $MESHSEED_REGISTRY_HOST.
    pusher = Pusher(_registries(endpoint, reference.registry, named=None).client(reference.registry))
    verified = verify_image(pusher, reference, key)
    kinds = " and ".join(verified.attestations)
    _report(
        args,
        verified.as_json(),
        f"{verified.reference}: signature valid for {verified.digest}; {kinds} attested",
    )
    return ExitStatus.OK


def _report(args: argparse.Namespace, data: dict[str, object], text: str) -> None:
    if args.json:
        sys.stdout.write(canonical_json(data))
    else:
        print(text)
