"""The `meshseed` command line: parse arguments, call the pipeline, print the result."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from builder import __version__
from builder.build import (
    Fetching,
    Loaded,
    Request,
    build,
    build_summary,
    check,
    check_summary,
    load,
    node_losses,
    open_deriver,
    plan_summary,
)
from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json
from builder.errors import ExitStatus, MeshseedError, bad_input
from builder.ha import report as ha_report
from builder.ha import verdict
from builder.images.spec import IMAGES_DIR
from builder.inventory import node_facts, node_records
from builder.lock import (
    DEFAULT_LOCK,
    DEFAULT_UPSTREAM,
    EMPTY_LOCK,
    LockFiles,
    UpstreamPart,
    load_lock,
    load_upstream,
    read_lock,
    write_lock,
)
from builder.lock.disk_spec import DISK_SPEC
from builder.lock.requests import DebianRequest, disk_request, image_requests
from builder.manifests.registry import secret_recipes
from builder.oci.reference import parse_mirror
from builder.publish.arguments import add_publish_arguments, add_verify_arguments
from builder.resources import pinning_root
from builder.secrets import Scope, create_master_key, master_key_path
from builder.site import DEFAULT_SITE, Role, load_site
from builder.site.schema import site_schema
from builder.ssh_login import Login
from builder.store.intact import ensure_intact
from builder.store.progress import SilentProgress, progress_for
from builder.store.realise import realise
from builder.store.store import DEFAULT_STORE, Store
from builder.typed_yaml.decode import did_you_mean

log = logging.getLogger("meshseed")
Command = Callable[[argparse.Namespace], int]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def cmd_validate(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    for warning in site.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counts = ", ".join(_count(len(site.with_role(role)), role) for role in Role)
    print(f"{args.site}: ok (cluster {site.cluster}: {counts})")
    return ExitStatus.OK


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(canonical_json(site_schema()))
    return ExitStatus.OK


def cmd_nodes(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    records = node_records(node_facts(site), open_deriver(args.master_key, site))
    if args.output:
        write_atomically(args.output, canonical_json(records).encode())
        print(f"wrote {args.output}", file=sys.stderr)
    elif args.json:
        sys.stdout.write(canonical_json(records))
    else:
        columns = ("name", "role", "public_ipv6", "overlay_address")
        widths = [max(len(c), *(len(r[c]) for r in records)) for c in columns]
        for row in [dict(zip(columns, columns, strict=True)), *records]:
            print("  ".join(row[c].ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    return ExitStatus.OK


def cmd_known_hosts(args: argparse.Namespace) -> int:
    from builder.ssh_host_keys import known_hosts  # noqa: PLC0415 - loads cryptography

    site = load_site(args.site)
    sys.stdout.write(known_hosts(site, open_deriver(args.master_key, site)))
    return ExitStatus.OK


def cmd_secret(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    purpose = args.purpose
    recipe = secret_recipes()[purpose]
    node_scoped = recipe.scope is Scope.NODE
    if node_scoped and args.node is None:
        raise bad_input(f"{purpose} is a per-node secret", hint="name the node with --node")
    if not node_scoped and args.node is not None:
        raise bad_input(f"{purpose} is one secret for the whole cluster", hint="drop --node")
    if args.node is not None and args.node not in {node.name for node in site.nodes}:
        raise bad_input(f"{args.site}: no node named {args.node!r}")
    print(open_deriver(args.master_key, site).derive_recipe(purpose, recipe, args.node).text)
    return ExitStatus.OK


def _fetching(args: argparse.Namespace) -> Fetching:
    try:
        mirrors = dict(parse_mirror(text) for text in args.mirror)
    except ValueError as error:
        raise bad_input(str(error)) from None
    return Fetching(mirrors=mirrors, artifact_mirror=args.artifact_mirror)


def _request(args: argparse.Namespace, *, create_master_key: bool = False) -> Request:
    files = _lock_files(args)
    return Request(
        site=args.site,
        store=args.store,
        master_key=args.master_key,
        create_master_key=create_master_key,
        airgap=getattr(args, "airgap", False) or getattr(args, "disks", False),
        disks=getattr(args, "disks", False),
        lock=files.lock,
        upstream=files.upstream,
        fetching=_fetching(args),
        compression=getattr(args, "bundle_compression", "zstd"),
        images=getattr(args, "images", False),
        images_dir=files.images_dir,
        disk_spec=files.disk_spec,
    )


def _lock_files(args: argparse.Namespace) -> LockFiles:
    """--lock, --upstream and --images-dir, by default the site folder's own files, else
    those shipped with meshseed (so an installed meshseed builds with its release's pins).
    Naming any of them means the working directory's: pins are never mixed."""
    named = args.lock or args.upstream or args.images_dir
    root = Path() if named else pinning_root()
    return LockFiles(
        args.lock or root / DEFAULT_LOCK,
        args.upstream or root / DEFAULT_UPSTREAM,
        args.images_dir or root / IMAGES_DIR,
        root / DISK_SPEC,
    )


def cmd_lock(args: argparse.Namespace) -> int:
    """Resolve (or with --check, verify) the upstream part, our images' packages, or both."""
    parts = {args.only} if args.only else {"upstream", "debian"}
    files = _lock_files(args)
    if args.check:
        upstream_part = UpstreamPart.REQUIRED if "upstream" in parts else UpstreamPart.UNCHECKED
        has_disks = "debian" in parts and files.disk_spec.exists()
        load_lock(files, upstream=upstream_part, debian="debian" in parts, disks=has_disks)
        print(f"{files.lock}: current", file=sys.stderr)
        return ExitStatus.OK
    from builder.lock.debian_pin import pin_requests  # noqa: PLC0415 - httpx loads only when fetching

    upstream = load_upstream(files.upstream) if "upstream" in parts else None
    requests: dict[str, DebianRequest] = {}
    if "debian" in parts:
        # A site folder with pins of its own may have no disks/: it builds no disk images.
        disks = disk_request(files.disk_spec) if files.disk_spec.exists() else {}
        requests = image_requests(files.images_dir) | disks
    lock = read_lock(files.lock) if files.lock.exists() else EMPTY_LOCK
    # Never into the installed package: a new lock goes into the working directory.
    target = args.lock or DEFAULT_LOCK
    if upstream is not None:
        from builder.resolve import resolve_lock  # noqa: PLC0415

        fetching = _fetching(args)
        lock = dataclasses.replace(
            resolve_lock(upstream, fetching.registries(), fetching.artifacts()), debian=lock.debian
        )
    if "debian" in parts:
        lock = dataclasses.replace(lock, debian=pin_requests(requests))
    write_lock(lock, target)
    packages = sum(len(part.packages) for part in lock.debian.values())
    print(
        f"wrote {target}: {len(lock.images)} images, {len(lock.binaries)} binaries, "
        f"{packages} Debian packages for {len(lock.debian)} of our images and disks",
        file=sys.stderr,
    )
    return ExitStatus.OK


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch locked images into the store; export one as an OCI image layout with -o."""
    files = _lock_files(args)
    lock = load_lock(files, upstream=UpstreamPart.REQUIRED)
    for name in args.image:
        if name not in lock.images:
            raise bad_input(f"{files.lock}: no image named {name!r}", hint=did_you_mean(name, lock.images))
    if args.output is not None and len(args.image) != 1:
        raise bad_input("-o exports one image; name just one")
    from builder.airgap import AirgapSettings, image_derivation  # noqa: PLC0415 - httpx loads on demand
    from builder.oci.layout import export_layout  # noqa: PLC0415

    fetching = _fetching(args)
    settings = AirgapSettings(fetching.registries(), fetching.artifacts())
    derivations = [
        image_derivation(name, lock.images[name], settings, all_platforms=args.all_platforms)
        for name in args.image
    ]
    store = Store(args.store)
    store.prepare()
    with store.shared():
        results = realise(store, derivations, jobs=args.jobs, progress=SilentProgress())
        if args.output is not None:
            # A cached entry was not read by any build this run: check it before it leaves the store.
            ensure_intact(store, results[0].derivation.store_name)
            export_layout(results[0].output.path, args.output)
    for name, result in zip(args.image, results, strict=True):
        where = args.output if args.output is not None else "store"
        print(f"{where}: {lock.images[name].pinned} ({result.status})", file=sys.stderr)
    return ExitStatus.OK


def cmd_build(args: argparse.Namespace) -> int:
    if args.check and args.repair:
        raise bad_input("--check only compares; build with --repair separately")
    loaded = load(_request(args, create_master_key=True))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.check:
        return _check_build(args, loaded)
    started = time.monotonic()
    warnings = list(loaded.warnings)

    def warn(warning: str) -> None:
        warnings.append(warning)
        print(f"warning: {warning}", file=sys.stderr)

    results = build(
        loaded, args.output, jobs=args.jobs, progress=progress_for(args.json), repair=args.repair, warn=warn
    )
    summary = build_summary(results, args.output, tuple(warnings))
    if args.json:
        sys.stdout.write(canonical_json(summary))
    else:
        counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items() if n)
        print(f"{args.output}: {counts} ({time.monotonic() - started:.2f}s)", file=sys.stderr)
    return ExitStatus.OK


def _entries(number: int) -> str:
    return f"{number} {'entry' if number == 1 else 'entries'}"


def _check_build(args: argparse.Namespace, loaded: Loaded) -> int:
    # The store as the build resolved it (beside the site file unless --store names one).
    root = loaded.store.root
    summary = check_summary(check(loaded, jobs=args.jobs, progress=progress_for(args.json)), root)
    if args.json:
        sys.stdout.write(canonical_json(summary))
    else:
        for name, differences in sorted(summary["differ"].items()):
            for difference in differences:
                print(f"differs: {root / name}: {difference}")
        for name in summary["not_in_store"]:
            print(f"not in the store (nothing to compare): {root / name}")
        print(
            f"{_entries(summary['checked'])} compared with a rebuild, {len(summary['differ'])} differ",
            file=sys.stderr,
        )
    if summary["differ"]:
        print(
            f"error: {_entries(len(summary['differ']))} of the store differ from a clean rebuild: "
            "tampered, or built from a tampered input (remove them from the store and build again)",
            file=sys.stderr,
        )
        return ExitStatus.FAILED
    return ExitStatus.OK


def cmd_plan(args: argparse.Namespace) -> int:
    rows = plan_summary(load(_request(args)))
    if args.json:
        sys.stdout.write(canonical_json(rows))
        return ExitStatus.OK
    for row in rows:
        print(f"{row['status']:<7} {row['key'][:16]}  {row['name']}")
    to_build = sum(row["status"] == "build" for row in rows)
    print(f"{to_build} to build, {len(rows) - to_build} cached", file=sys.stderr)
    return ExitStatus.OK


def cmd_ha(args: argparse.Namespace) -> int:
    loaded = load(_request(args))
    losses = node_losses(loaded, jobs=args.jobs)
    if losses is None:
        raise MeshseedError("the node-loss model reads the manifests, which need images.lock's pins")
    if args.json:
        sys.stdout.write(canonical_json(ha_report.as_json(losses)))
    elif args.markdown:
        sys.stdout.write(ha_report.markdown_table(losses))
    else:
        sys.stdout.write(ha_report.text_table(losses))
    for warning in verdict(losses):
        print(f"warning: {warning}", file=sys.stderr)
    return ExitStatus.OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    path, _ = master_key_path(args.master_key, os.environ, args.site.parent)
    if not create_master_key(path):
        print(f"{path}: a master key is already there; kept it", file=sys.stderr)
    return ExitStatus.OK


def cmd_store_verify(args: argparse.Namespace) -> int:
    store = Store(args.store)
    problems = {name: problem for name in store.entries() if (problem := store.verify(name))}
    if args.json:
        sys.stdout.write(canonical_json({"entries": len(store.entries()), "corrupt": problems}))
    else:
        for name, problem in sorted(problems.items()):
            print(f"corrupt: {args.store / name}: {problem}")
        print(f"{len(store.entries())} entries checked, {len(problems)} corrupt", file=sys.stderr)
    if problems:
        print(
            "error: the store has corrupt entries (`meshseed build --repair` rebuilds them)", file=sys.stderr
        )
        return ExitStatus.FAILED
    return ExitStatus.OK


def cmd_backup_pull(args: argparse.Namespace) -> int:
    from builder.backup_pull import pull  # noqa: PLC0415 - only this command needs ssh
    from builder.ssh_login import login_to  # noqa: PLC0415

    site = load_site(args.site)
    backups = site.with_role(Role.BACKUP)
    if not backups:
        raise MeshseedError(f"{site.source}: no node has role backup", status=ExitStatus.BAD_INPUT)
    node = backups[0]
    # The node's derived host key and no other, whatever ssh_config or known_hosts say.
    with login_to(open_deriver(args.master_key, site), node, _login(args)) as target:
        report = pull(target, args.to, site.backups.local_retention, remote_root=args.remote_root)
    if args.json:
        print(json.dumps(vars(report), indent=2, sort_keys=True))
    else:
        for kind in sorted(set(report.copied) | set(report.present)):
            copied, present = report.copied.get(kind, []), report.present.get(kind, [])
            deleted = report.deleted.get(kind, [])
            print(
                f"{kind}: copied {_count(len(copied), 'snapshot')}, {len(present)} already here"
                + (f", rotated out {len(deleted)}" if deleted else "")
            )
    if report.refused:
        names = [f"{kind}/{name}" for kind, names in sorted(report.refused.items()) for name in names]
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise MeshseedError(
            f"the backup node offers snapshots dated in the future, refused: {', '.join(names[:5])}{more}",
            hint="check the node's clock; a node that names snapshots after now may have been tampered with",
        )
    return ExitStatus.OK


def cmd_replace(args: argparse.Namespace) -> int:
    from builder import replace  # noqa: PLC0415 - only this command needs ssh

    site = load_site(args.site)
    removal = replace.take_out(
        site, args.node, args.through, _login(args), open_deriver(args.master_key, site)
    )
    status = cmd_build(args)
    print(replace.next_steps(load_site(args.site), removal, args.output, disks=args.disks), file=sys.stderr)
    return status


def cmd_apply(args: argparse.Namespace) -> int:
    from builder.apply.run import Options, apply, plan_text  # noqa: PLC0415 - only this command needs ssh

    site = load_site(args.site)
    lock = read_lock(args.lock or pinning_root() / DEFAULT_LOCK)
    options = Options(args.dry_run, args.force, float(args.timeout), args.node_root, args.only)

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    def show_plan(report: Any) -> None:
        if not args.json:
            sys.stdout.write(plan_text(report))
            sys.stdout.flush()

    deriver = open_deriver(args.master_key, site)
    login = _login(args)
    report = apply(site, args.dist, lock, login, deriver, options=options, say=say, show_plan=show_plan)
    if args.json:
        sys.stdout.write(canonical_json(report.as_json()))
    if report.outcome.error is not None:
        raise report.outcome.error
    return ExitStatus.OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from builder.sign.keys import generate, password_from, write_key_pair  # noqa: PLC0415

    private, public = write_key_pair(args.out, generate(password_from(os.environ)))
    print(f"wrote {private} (mode 0600, sealed with $COSIGN_PASSWORD) and {public}")
    return ExitStatus.OK


def cmd_publish(args: argparse.Namespace) -> int:
    from builder.publish.commands import cmd_publish as publish  # noqa: PLC0415 - cryptography, httpx

    return publish(args)


def cmd_verify(args: argparse.Namespace) -> int:
    from builder.publish.commands import cmd_verify as verify  # noqa: PLC0415 - cryptography, httpx

    return verify(args)


def cmd_store_gc(args: argparse.Namespace) -> int:
    store = Store(args.store)
    if not store.root.is_dir():
        print(f"{store.root}: no store here", file=sys.stderr)
        return ExitStatus.OK
    store.prepare()
    removed, freed = store.collect_garbage()
    if args.json:
        sys.stdout.write(canonical_json({"removed": removed, "freed_bytes": freed}))
    else:
        print(f"removed {len(removed)} entries, freed {freed / 1e6:.1f} MB", file=sys.stderr)
    return ExitStatus.OK


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. Below the top level their
    default is SUPPRESS, or a subcommand would reset what was given before its name."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    common.add_argument("--debug", action="store_true", help="log everything and show tracebacks", **unset)
    return common


def _add_master_key(sub: argparse.ArgumentParser) -> None:
    """Only on the commands that read secrets, so that no other seems to take a key."""
    sub.add_argument(
        "--master-key",
        type=Path,
        metavar="FILE",
        help="the 32-byte master key (default: $MESHSEED_MASTER_KEY_FILE, else .meshseed/master.key "
        "next to the site file)",
    )


def _add_site(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "site", nargs="?", type=Path, default=DEFAULT_SITE, help="site file (default: site.yaml)"
    )


def _add_store(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        metavar="DIR",
        help=f"the store (default: {DEFAULT_STORE})",
    )


def _add_site_store(sub: argparse.ArgumentParser) -> None:
    """The store of a command that reads a site: by default beside it, as its key is."""
    sub.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help=f"the store (default: {DEFAULT_STORE} next to the site file)",
    )


def _add_json(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print JSON")


def _add_pins(sub: argparse.ArgumentParser) -> None:
    """Where pinned things are described, and where they are fetched from."""
    shipped = "if there is one here, else the one shipped with meshseed"
    sub.add_argument("--lock", type=Path, metavar="FILE", help=f"default: images.lock {shipped}")
    sub.add_argument("--upstream", type=Path, metavar="FILE", help=f"default: images/upstream.yaml {shipped}")
    sub.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="REGISTRY=URL",
        help="fetch REGISTRY's images from URL instead (repeatable)",
    )
    sub.add_argument("--artifact-mirror", metavar="URL", help="fetch binaries from URL/<host>/<path> instead")
    sub.add_argument(
        "--images-dir", type=Path, metavar="DIR", help=f"our images' folders (default: images/ {shipped})"
    )


def _add_build_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-o", "--output", type=Path, default=Path("dist"), metavar="DIR", help="default: dist")
    cpus = os.cpu_count() or 1
    sub.add_argument(
        "-j", "--jobs", type=_positive, default=cpus, metavar="N", help=f"default: the CPU count ({cpus})"
    )
    sub.add_argument("--json", action="store_true", help="print a JSON summary instead of progress")
    sub.add_argument("--repair", action="store_true", help="re-check store entries and rebuild corrupt ones")
    _add_variant_options(sub)


def _add_variant_options(sub: argparse.ArgumentParser) -> None:
    """What a build makes, so that `plan` takes the same and shows the same derivations."""
    sub.add_argument("--airgap", action="store_true", help="also fetch every pinned image and binary")
    sub.add_argument("--bundle-compression", choices=["zstd", "none"], default="zstd", help="default: zstd")
    sub.add_argument("--images", action="store_true", help="also build our own images (images/*/image.yaml)")
    sub.add_argument(
        "--disks",
        action="store_true",
        help="also build bootable disk images per role and node (disks/node.yaml; implies --airgap)",
    )


def _add_ha_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--markdown", action="store_true", help="print the README's table, one column per node role"
    )
    cpus = os.cpu_count() or 1
    sub.add_argument(
        "-j", "--jobs", type=_positive, default=cpus, metavar="N", help=f"default: the CPU count ({cpus})"
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(top=False)
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="meshseed",
        description="Build everything a highly available Open edX cluster boots from, reproducibly.",
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"meshseed {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, text: str, *extras: Callable[[argparse.ArgumentParser], None]) -> Any:
        sub = commands.add_parser(name, help=text, description=text, parents=[common], allow_abbrev=False)
        sub.set_defaults(run=run)
        for extra in extras:
            extra(sub)
        return sub

    add("validate", cmd_validate, "check a site file and report every problem", _add_site)
    add("schema", cmd_schema, "print the JSON Schema of site.yaml")
    nodes = add(
        "nodes",
        cmd_nodes,
        "list the nodes with their overlay addresses",
        _add_site,
        _add_json,
        _add_master_key,
    )
    nodes.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the JSON to FILE")
    add("known-hosts", cmd_known_hosts, KNOWN_HOSTS_TEXT, _add_site, _add_master_key)
    secret = add("secret", cmd_secret, "print one derived secret, named by purpose", _add_master_key)
    purposes = sorted(secret_recipes())
    secret.add_argument("purpose", choices=purposes, metavar="PURPOSE", help="one of: " + ", ".join(purposes))
    _add_site(secret)
    secret.add_argument("--node", metavar="NAME", help="the node, for per-node secrets")
    text = "build dist/ for a site, reusing what the store already holds"
    build = add(
        "build", cmd_build, text, _add_site, _add_site_store, _add_build_options, _add_pins, _add_master_key
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="rebuild every derivation in a temporary store and report each store entry that "
        "differs from it; writes no dist/ (exit 1 if any differ)",
    )
    text = "show what a build would make and what is cached (takes build's options)"
    add(
        "plan",
        cmd_plan,
        text,
        _add_site,
        _add_site_store,
        _add_json,
        _add_variant_options,
        _add_pins,
        _add_master_key,
    )
    text = "show what losing each node does to every user-facing path and workload"
    add(
        "ha", cmd_ha, text, _add_site, _add_site_store, _add_json, _add_pins, _add_master_key, _add_ha_options
    )
    lock = add("lock", cmd_lock, "resolve images/upstream.yaml into images.lock", _add_pins)
    lock.add_argument("--check", action="store_true", help="only check that images.lock is current")
    lock.add_argument(
        "--only",
        choices=["upstream", "debian"],
        help="lock (or check) only upstream images or only our packages",
    )
    text = "fetch locked images into the store; with -o, export one as an OCI image layout"
    fetch = add("fetch", cmd_fetch, text)
    fetch.add_argument("image", metavar="NAME", nargs="+", help="an image's name in images.lock")
    fetch.add_argument("-o", "--output", type=Path, metavar="DIR", help="where to write the layout")
    fetch.add_argument(
        "--all-platforms",
        action="store_true",
        help="every platform the lock pins, not only the nodes' (what `publish --upstream` mirrors)",
    )
    fetch.add_argument("-j", "--jobs", type=_positive, default=4, metavar="N", help="default: 4")
    _add_store(fetch)
    _add_pins(fetch)

    store = add("store", lambda _: ExitStatus.OK, "inspect and clean the store")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    for name, run, description in (
        ("verify", cmd_store_verify, "re-hash every entry and report corruption"),
        ("gc", cmd_store_gc, "remove entries that no dist/ refers to"),
    ):
        sub = store_commands.add_parser(
            name, help=description, description=description, parents=[common], allow_abbrev=False
        )
        sub.set_defaults(run=run)
        _add_store(sub)
        _add_json(sub)
    text = "push the build's images to a registry with their digests, signed and attested"
    add("publish", cmd_publish, text, add_publish_arguments)
    text = "check a published image's signature and attestations, or a signed SHA256SUMS"
    add("verify", cmd_verify, text, add_verify_arguments)
    _add_keys_commands(
        add("keys", lambda _: ExitStatus.OK, "make the site's master key and the keys that sign images"),
        common,
    )
    _add_backup_commands(
        add("backup", lambda _: ExitStatus.OK, "work with the backup node's snapshots"), common
    )
    add("replace", cmd_replace, REPLACE_TEXT, _add_replace_arguments)
    add("apply", cmd_apply, APPLY_TEXT, _add_site, _add_json, _add_master_key, _add_apply_arguments)
    return parser


def _add_keys_commands(keys: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    text = "make the site's master key, .meshseed/master.key next to the site file, unless it exists"
    init = keys_commands.add_parser("init", help=text, description=text, parents=[common], allow_abbrev=False)
    init.set_defaults(run=cmd_keys_init)
    _add_site(init)
    _add_master_key(init)
    text = "write cosign.key and cosign.pub in cosign's format, the key sealed with $COSIGN_PASSWORD"
    generate = keys_commands.add_parser(
        "generate", help=text, description=text, parents=[common], allow_abbrev=False
    )
    generate.set_defaults(run=cmd_keys_generate)
    generate.add_argument(
        "--out", type=Path, default=Path(), metavar="DIR", help="default: the current directory"
    )


def _add_backup_commands(backup: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    backup_commands = backup.add_subparsers(dest="backup_command", required=True, metavar="COMMAND")
    text = "copy new snapshots from the backup node over SSH, verify them, rotate the local copies"
    pull = backup_commands.add_parser(
        "pull", help=text, description=text, parents=[common], allow_abbrev=False
    )
    pull.set_defaults(run=cmd_backup_pull)
    _add_site(pull)
    _add_json(pull)
    _add_master_key(pull)
    pull.add_argument("--to", type=Path, default=Path("backups"), metavar="DIR", help="default: backups")
    _add_ssh_login(pull, "node")
    pull.add_argument("--remote-root", default="/var/lib/meshseed/backups", help=argparse.SUPPRESS)


def _login(args: argparse.Namespace) -> Login:
    """How to log in, as _add_ssh_login's options describe it."""
    return Login(args.via, args.user, args.ssh_config, tuple(args.ssh_option or ()))


def _add_ssh_login(sub: argparse.ArgumentParser, host: str) -> None:
    """How to log in to the `host` a command works on over SSH (backup pull, replace, apply)."""
    sub.add_argument(
        "--via",
        choices=["public", "overlay"],
        default="public",
        help=f"the {host}'s address to use (default: public)",
    )
    sub.add_argument("--user", default="debian", help=f"login user on the {host} (default: debian)")
    sub.add_argument("--ssh-config", type=Path, metavar="FILE", help="an ssh_config file for ssh -F")
    sub.add_argument("--ssh-option", action="append", metavar="OPTION", help="an ssh -o option (repeatable)")


KNOWN_HOSTS_TEXT = "print a known_hosts file with every node's derived SSH host key"
REPLACE_TEXT = "take a lost node out of the cluster through a healthy server, then build its seed again"


def _add_replace_arguments(sub: argparse.ArgumentParser) -> None:
    """The lost node, the server to work through and how to log in to it; then what a build takes."""
    sub.add_argument("node", metavar="NODE", help="the lost node's name in site.yaml")
    _add_site(sub)
    sub.add_argument(
        "--through", metavar="SERVER", help="the server to work through (default: the first other)"
    )
    _add_ssh_login(sub, "server")
    for extra in (_add_site_store, _add_build_options, _add_pins, _add_master_key):
        extra(sub)
    sub.set_defaults(check=False)


APPLY_TEXT = (
    "make the running cluster match the last build over SSH: nodes one at a time (drain, write, "
    "restart, wait), k3s upgrades included, then the servers' manifests"
)


def _add_apply_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--dist", type=Path, default=Path("dist"), metavar="DIR", help="the build (default: dist)"
    )
    sub.add_argument("--dry-run", action="store_true", help="only print what would change, per node")
    sub.add_argument(
        "--force",
        action="store_true",
        help="apply even to a cluster with a NotReady node or a missing etcd member",
    )
    sub.add_argument(
        "--timeout",
        type=_positive,
        default=600,
        metavar="SECONDS",
        help="how long a node may take to drain, and to come back after its restart (default: 600)",
    )
    sub.add_argument("--lock", type=Path, metavar="FILE", help="the images.lock dist/ was built from")
    sub.add_argument(
        "--only",
        type=_node_names,
        default=(),
        metavar="NODE[,NODE...]",
        help="log in to and change only these nodes (the others still count for the cluster's "
        "health, as the servers see them): for a node that is down, or a change tried on a few first",
    )
    _add_ssh_login(sub, "nodes")
    # Each node's files under this folder ("{node}": its name), for the tests' stand-in nodes.
    sub.add_argument("--node-root", default="", help=argparse.SUPPRESS)


def _node_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of node names")
    return names


def _positive(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    run: Command = args.run
    try:
        return int(run(args))
    except MeshseedError as error:
        if args.debug:
            log.debug("failed", exc_info=True)
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"error: {error.message}" + (f" ({error.hint})" if error.hint else ""), file=sys.stderr)
        return int(error.status)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"error: internal error: {type(error).__name__}: {error} (rerun with --debug)", file=sys.stderr)
        return int(ExitStatus.FAILED)


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
