"""`meshseed lock` for our images: each image's Debian package closure, pinned by sha256."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import httpx

from builder.debian.closure import Universe, resolve_closure
from builder.debian.index import Source, load_index
from builder.det.jsonfmt import canonical_json
from builder.errors import Problem
from builder.images.spec import Backend, DebianSpec, ImageSpec
from builder.lock import DebianLock, DebianPackage, Lock


def request_sha256(spec: DebianSpec) -> str:
    return hashlib.sha256(canonical_json(dataclasses.asdict(spec), pretty=False).encode()).hexdigest()


def pin_debian(spec: DebianSpec, client: httpx.Client) -> DebianLock:
    candidates = []
    for source in spec.sources:
        candidates += load_index(
            client, Source(source.url, source.suite), spec.architecture, Path(spec.keyring)
        )
    closure = resolve_closure(spec.packages, Universe(candidates, spec.architecture))
    packages = tuple(
        DebianPackage(
            name=c.name,
            version=c.version,
            architecture=c.fields["Architecture"],
            sha256=c.fields["SHA256"],
            size=int(c.fields["Size"]),
            url=f"{c.source.url.rstrip('/')}/{c.fields['Filename']}",
            snapshot_url=f"{spec.snapshot.rstrip('/')}/{c.source.archive_name}/{c.snapshot_time}/{c.fields['Filename']}",
        )
        for c in closure
    )
    return DebianLock(request_sha256(spec), packages)


def pin_images(specs: list[ImageSpec]) -> dict[str, DebianLock]:
    with httpx.Client(timeout=120.0, follow_redirects=True) as client:
        return {spec.name: pin_debian(spec.debian, client) for spec in specs if spec.debian is not None}


def check_debian(specs: list[ImageSpec], lock: Lock, lock_path: Path) -> list[Problem]:
    problems = []
    for spec in specs:
        if spec.backend is not Backend.DEBIAN or spec.debian is None:
            continue
        pinned = lock.debian.get(spec.name)
        if pinned is None:
            problems.append(
                Problem(str(lock_path), 0, f"debian.{spec.name}", "is missing", "run `meshseed lock`")
            )
        elif pinned.request_sha256 != request_sha256(spec.debian):
            problems.append(
                Problem(
                    str(lock_path),
                    0,
                    f"debian.{spec.name}",
                    f"images/{spec.name}/image.yaml asks for other packages or sources than were locked",
                    "run `meshseed lock`",
                )
            )
    return problems
