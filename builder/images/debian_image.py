"""Build path 1: an image from pinned Debian packages plus the project's files.

No daemon, no root, no maintainer scripts: each .deb is fetched by sha256 (from the
archive, else snapshot.debian.org), unpacked in pure Python into one layer with the
dpkg database, and the image's own files become a second layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import PurePosixPath
from typing import Any

from builder.artifacts import Downloader
from builder.debian.fetch import fetch_debs
from builder.debian.package import PinnedClosure
from builder.debian.rootfs import Package, write_rootfs
from builder.det.compress import compressor_versions
from builder.det.jsonfmt import canonical_json
from builder.det.tarfmt import tar_info
from builder.images.reference import IMAGE_NAMESPACE
from builder.images.spec import ImageSpec, source_files
from builder.oci.image import ImageWriter
from builder.store.derivation import BuildContext, Derivation
from builder.store.tree import file_sha256


def _config(spec: ImageSpec) -> dict[str, Any]:
    assert spec.config is not None
    run = spec.config
    config: dict[str, Any] = {"User": run.user, "WorkingDir": run.workdir, "Entrypoint": list(run.entrypoint)}
    if run.cmd:
        config["Cmd"] = list(run.cmd)
    if run.env:
        config["Env"] = list(run.env)
    if run.labels:
        config["Labels"] = dict(label.split("=", 1) for label in run.labels)
    if run.ports:
        config["ExposedPorts"] = {port: {} for port in run.ports}
    return config


def debian_image_derivation(
    spec: ImageSpec, pinned: PinnedClosure, epoch: int, artifacts: Downloader
) -> Derivation:
    assert spec.debian is not None
    packages = [dataclasses.asdict(package) for package in pinned.packages]
    sources = source_files(spec)
    source_digest = hashlib.sha256(
        canonical_json({name: file_sha256(path) for name, path in sources.items()}, pretty=False).encode()
    ).hexdigest()
    return Derivation(
        name=f"image-own-{spec.name}",
        build=build_debian_image,
        inputs={
            "name": spec.name,
            "tag": spec.tag,
            "architecture": spec.debian.architecture,
            "config": _config(spec),
            "packages": packages,
            "files": [{"src": f.src, "dest": f.dest} for f in spec.files],
            "executables": sorted(name for name, path in sources.items() if path.stat().st_mode & 0o111),
            "epoch": epoch,
            "lock_digest": "sha256:"
            + hashlib.sha256(canonical_json(packages, pretty=False).encode()).hexdigest(),
            "source_digest": "sha256:" + source_digest,
            "tools": compressor_versions(),
        },
        sources=sources,
        fetcher=artifacts,
        dist_path=f"images/{spec.name}",
    )


def _project_layer(ctx: BuildContext, out: Any, epoch: int) -> None:
    """The image's own files, below their `dest`, sorted, owned by root."""
    members: dict[str, tuple[int, bytes | None]] = {}
    for entry in ctx.inputs["files"]:
        for name in sorted(ctx.derivation.sources):
            if name != entry["src"] and not name.startswith(entry["src"].rstrip("/") + "/"):
                continue
            relative = PurePosixPath(name).relative_to(entry["src"]) if name != entry["src"] else None
            target = PurePosixPath(entry["dest"]) / relative if relative else PurePosixPath(entry["dest"])
            executable = name in ctx.inputs["executables"]
            members[str(target).lstrip("/")] = (0o755 if executable else 0o644, ctx.source(name))
            for parent in target.parents:
                if str(parent) != "/":
                    members.setdefault(str(parent).lstrip("/"), (0o755, None))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as layer:
        for name in sorted(members, key=str.encode):
            mode, data = members[name]
            if data is None:
                layer.addfile(tar_info(name, tarfile.DIRTYPE, mode, epoch))
            else:
                layer.addfile(tar_info(name, tarfile.REGTYPE, mode, epoch, size=len(data)), io.BytesIO(data))


def build_debian_image(ctx: BuildContext) -> None:
    epoch = ctx.inputs["epoch"]
    packages = ctx.inputs["packages"]
    paths = fetch_debs(ctx, packages)
    debs = [Package(package["name"], path) for package, path in zip(packages, paths, strict=True)]
    writer = ImageWriter(ctx, epoch)
    with writer.layer("meshseed: Debian packages " + " ".join(p.name for p in debs)) as out:
        write_rootfs(debs, out, epoch=epoch)
    if ctx.inputs["files"]:
        with writer.layer("meshseed: project files") as out:
            _project_layer(ctx, out, epoch)
    writer.finish(
        architecture=ctx.inputs["architecture"],
        config=ctx.inputs["config"],
        annotations={
            "org.opencontainers.image.title": ctx.inputs["name"],
            "org.opencontainers.image.version": ctx.inputs["tag"],
            "org.opencontainers.image.revision": ctx.inputs["source_digest"],
            "dev.meshseed.lock.digest": ctx.inputs["lock_digest"],
        },
        name=f"{IMAGE_NAMESPACE}/{ctx.inputs['name']}",
        tag=ctx.inputs["tag"],
    )
