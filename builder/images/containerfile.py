"""Images defined by a Containerfile: built with buildah (default) or a Docker Engine.

Base images come only from the store, by digest: each one named in `base_images` is a
build argument (`FROM ${NAME}`, the name upper-cased, '-' as '_') pointing at its
OCI layout, so a build never pulls anything.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from builder.det.jsonfmt import compact_json
from builder.errors import MeshseedError
from builder.images.reference import IMAGE_NAMESPACE
from builder.images.spec import ImageSpec, source_files
from builder.oci.media import CONTAINERD_NAME, OCI_REF_NAME
from builder.store.derivation import BuildContext, Derivation
from builder.tools.buildah import Buildah

BASE_TAGS_FILE = "index.json"


def build_arg_name(image: str) -> str:
    return image.upper().replace("-", "_")


def containerfile_derivation(spec: ImageSpec, bases: dict[str, Derivation], epoch: int) -> Derivation:
    assert spec.containerfile is not None
    missing = sorted(set(spec.base_images) - set(bases))
    if missing:
        names = ", ".join(missing)
        raise MeshseedError(f"{spec.folder / 'image.yaml'}: base_images: {names} is neither ours nor locked")
    return Derivation(
        name=f"image-own-{spec.name}",
        build=build_with_buildah if spec.backend == "buildah" else build_with_docker,
        inputs={
            "name": spec.name,
            "tag": spec.tag,
            "containerfile": spec.containerfile,
            "bases": {name: bases[name].name for name in spec.base_images},
            "epoch": epoch,
            "tool": spec.backend.value,
            # A buildah upgrade may change the bytes, so its version is part of the key.
            "tool_version": Buildah(spec.folder).version() if spec.backend == "buildah" else None,
        },
        deps=tuple(bases[name] for name in spec.base_images),
        sources=source_files(spec),
        dist_path=f"images/{spec.name}",
    )


def _base_reference(layout: Path, scratch: Path, name: str) -> str:
    """`oci:bases/NAME:TAG`, relative to `scratch`, where a link to the store's layout is made."""
    link = scratch / "bases" / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(layout.absolute())
    index = json.loads((layout / "index.json").read_text())
    tag = index["manifests"][0].get("annotations", {}).get(OCI_REF_NAME)
    return f"oci:bases/{name}" + (f":{tag}" if tag else "")


def _context(ctx: BuildContext, scratch: Path) -> Path:
    """The build context: the declared sources only, checked against their digests."""
    context = scratch / "context"
    for name in ctx.derivation.sources:
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ctx.source(name))
    return context


def build_with_buildah(ctx: BuildContext) -> None:
    # buildah's storage lives in the store's work area, beside this build's output.
    with tempfile.TemporaryDirectory(prefix="buildah-", dir=ctx.out.parent) as scratch_dir:
        scratch = Path(scratch_dir)
        context = _context(ctx, scratch)
        build_args = {
            build_arg_name(name): _base_reference(ctx.dep(derivation), scratch, name)
            for name, derivation in ctx.inputs["bases"].items()
        }
        Buildah(scratch / "storage").build(
            context / ctx.inputs["containerfile"],
            context,
            cwd=scratch,
            layout="layout",
            tag=ctx.inputs["tag"],
            timestamp=ctx.inputs["epoch"],
            build_args=build_args,
        )
        _adopt_layout(ctx, scratch / "layout")


def _adopt_layout(ctx: BuildContext, layout: Path) -> None:
    """Copy buildah's layout into the output, naming the image for containerd as ours are."""
    for path in sorted(layout.rglob("*")):
        if path.is_file() and path.name != "index.json":
            ctx.write(path.relative_to(layout).as_posix(), path.read_bytes())
    index: dict[str, Any] = json.loads((layout / "index.json").read_text())
    for manifest in index["manifests"]:
        manifest.setdefault("annotations", {})[CONTAINERD_NAME] = (
            f"{IMAGE_NAMESPACE}/{ctx.inputs['name']}:{ctx.inputs['tag']}"
        )
    ctx.write("index.json", compact_json(index))


def build_with_docker(ctx: BuildContext) -> None:
    """Build through the Docker Engine API; the base images are loaded from the store first."""
    try:
        import docker  # noqa: PLC0415 - only this backend needs the SDK
        from docker.errors import DockerException  # noqa: PLC0415
    except ImportError:
        raise MeshseedError("the docker backend needs the Docker SDK", hint="pip install docker") from None
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        raise MeshseedError(
            f"{ctx.inputs['name']}: backend docker needs a running Docker Engine ({error})",
            hint="install and start one (Debian package docker.io), or use backend: buildah",
        ) from None
    with tempfile.TemporaryDirectory(prefix="docker-", dir=ctx.out.parent) as scratch_dir:
        scratch = Path(scratch_dir)
        context = _context(ctx, scratch)
        build_args = {}
        for name, derivation in ctx.inputs["bases"].items():
            archive = shutil.make_archive(str(scratch / name), "tar", ctx.dep(derivation))
            with Path(archive).open("rb") as stream:
                (loaded,) = client.images.load(stream.read())
            build_args[build_arg_name(name)] = loaded.id
        image, _ = client.images.build(
            path=str(context),
            dockerfile=ctx.inputs["containerfile"],
            buildargs={**build_args, "SOURCE_DATE_EPOCH": str(ctx.inputs["epoch"])},
            tag=f"{IMAGE_NAMESPACE}/{ctx.inputs['name']}:{ctx.inputs['tag']}",
            rm=True,
            pull=False,
        )
        with ctx.open_output("image.tar") as out:
            for chunk in image.save(named=True):
                out.write(chunk)
