"""Reading and writing images.lock; only `meshseed lock` writes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.debian.package import PinnedClosure, PinnedPackage
from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError, bad_input
from builder.lock.model import DEFAULT_LOCK, LOCK_VERSION, Lock, LockedFile, LockedImage
from builder.oci.reference import is_digest
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
        return _lock_from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise bad_input(
            f"{path}: not a lock meshseed can read ({type(error).__name__}: {error})",
            hint="regenerate it with `meshseed lock`; it is never edited by hand",
        ) from None


def _lock_from_json(data: dict[str, Any]) -> Lock:
    if data["version"] != LOCK_VERSION:
        raise ValueError(f"version {data['version']!r}, this meshseed reads version {LOCK_VERSION}")
    images = {}
    for name, entry in data["images"].items():
        digests = [entry["digest"], *entry["platforms"].values()]
        if not all(is_digest(d) for d in digests):
            raise ValueError(f"images.{name} holds a malformed digest")
        images[name] = LockedImage(
            entry["reference"],
            entry["digest"],
            entry["media_type"],
            dict(entry["platforms"]),
            tuple(entry["roles"]),
            entry.get("tutor"),
        )
    binaries = {
        name: LockedFile(entry["url"], entry["sha256"], int(entry["size"]))
        for name, entry in data["binaries"].items()
    }
    debian = {
        name: PinnedClosure(
            part["request_sha256"], tuple(PinnedPackage(**package) for package in part["packages"])
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
