"""Reading and writing images.lock; only `meshseed lock` writes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.debian.package import PinnedClosure, PinnedPackage
from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json
from builder.digest import Digest, parse_digest, parse_sha256_hex
from builder.errors import ExitStatus, MeshseedError, bad_input
from builder.lock.model import DEFAULT_LOCK, LOCK_VERSION, Lock, LockedFile, LockedImage
from builder.typed_yaml.document import read_text


def read_lock(path: Path = DEFAULT_LOCK) -> Lock:
    if not path.exists():
        raise MeshseedError(
            f"{path}: missing", hint="run `meshseed lock` (it needs access to the registries)"
        )
    text = read_text(path, "lock file", "run `meshseed lock`")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_input(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    try:
        return _lock_from_json(data, str(path))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise bad_input(
            f"{path}: not a lock meshseed can read ({type(error).__name__}: {error})",
            hint="regenerate it with `meshseed lock`; it is never edited by hand",
        ) from None


def _lock_from_json(data: dict[str, Any], file: str) -> Lock:
    if data["version"] != LOCK_VERSION:
        raise ValueError(f"version {data['version']!r}, this meshseed reads version {LOCK_VERSION}")

    def digest(value: object, key: str) -> Digest:
        return parse_digest(value, f"{file}: {key}", status=ExitStatus.BAD_INPUT)

    def sha256(value: object, key: str) -> str:
        return parse_sha256_hex(value, f"{file}: {key}", status=ExitStatus.BAD_INPUT)

    images = {}
    for name, entry in data["images"].items():
        images[name] = LockedImage(
            entry["reference"],
            digest(entry["digest"], f"images.{name}.digest"),
            entry["media_type"],
            {
                platform: digest(value, f"images.{name}.platforms.{platform}")
                for platform, value in entry["platforms"].items()
            },
            tuple(entry["roles"]),
            entry.get("tutor"),
        )
    binaries = {
        name: LockedFile(entry["url"], sha256(entry["sha256"], f"binaries.{name}.sha256"), int(entry["size"]))
        for name, entry in data["binaries"].items()
    }
    debian = {
        name: PinnedClosure(
            part["request_sha256"],
            tuple(
                PinnedPackage(
                    **{**package, "sha256": sha256(package["sha256"], f"debian.{name}.{package['name']}")}
                )
                for package in part["packages"]
            ),
        )
        for name, part in data.get("debian", {}).items()
    }
    return Lock(
        data["upstream_sha256"],
        data["k3s"]["version"],
        data["mycelium"]["version"],
        tuple(data["platforms"]),
        images,
        binaries,
        debian,
    )


def write_lock(lock: Lock, path: Path) -> None:
    write_atomically(path, canonical_json(lock.as_json()).encode())
