"""images/<name>/image.yaml: what an image of ours is made of and how it runs."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from builder.det.jsonfmt import canonical_json
from builder.errors import bad_input
from builder.typed_yaml.decode import Decoder
from builder.typed_yaml.document import decode_document, read_text
from builder.typed_yaml.scalars import Label, pattern_scalar

IMAGES_DIR = Path("images")
SPEC_FILE = "image.yaml"


class Backend(StrEnum):
    DEBIAN = "debian"
    BUILDAH = "buildah"
    DOCKER = "docker"


PackageName = Annotated[str, pattern_scalar(r"[a-z0-9][a-z0-9+.-]+", "a Debian package name")]
Suite = Annotated[str, pattern_scalar(r"[a-z0-9][a-z0-9-]*", "a suite such as bookworm")]
DebArchitecture = Annotated[str, pattern_scalar(r"amd64|arm64", "amd64 or arm64")]
Url = Annotated[str, pattern_scalar(r"https?://\S+", "an http(s) URL")]
Tag = Annotated[str, pattern_scalar(r"[\w][\w.-]{0,127}", "an image tag")]
AbsolutePath = Annotated[str, pattern_scalar(r"/\S*", "an absolute path")]
RelativePath = Annotated[str, pattern_scalar(r"(?!/)(?!.*\.\.)\S+", "a path inside the image's folder")]
KeyValue = Annotated[str, pattern_scalar(r"[A-Za-z_][\w.-]*=.*", "KEY=value")]
Port = Annotated[str, pattern_scalar(r"\d{1,5}/(tcp|udp)", "a port such as 8080/tcp")]
User = Annotated[str, pattern_scalar(r"\d+(:\d+)?|[a-z_][a-z0-9_-]*", "a user such as 65532:65532")]


@dataclass(frozen=True)
class DebianSource:
    url: Url = field(metadata={"doc": "Archive URL, e.g. http://deb.debian.org/debian."})
    suite: Suite = field(metadata={"doc": "Suite, e.g. bookworm or bookworm-security."})


@dataclass(frozen=True)
class DebianSpec:
    architecture: DebArchitecture = field(metadata={"doc": "Debian architecture of the image."})
    keyring: AbsolutePath = field(
        metadata={"doc": "OpenPGP keyring the archives' InRelease must verify with."}
    )
    snapshot: Url = field(metadata={"doc": "snapshot.debian.org base, the fallback for every .deb."})
    sources: tuple[DebianSource, ...] = field(metadata={"doc": "Archives and suites.", "min_items": 1})
    packages: tuple[PackageName, ...] = field(
        metadata={"doc": "Packages; their closure is installed.", "min_items": 1}
    )

    def request_sha256(self) -> str:
        """What the lock records of this request, so that changing it makes the lock stale."""
        return hashlib.sha256(canonical_json(dataclasses.asdict(self), pretty=False).encode()).hexdigest()


@dataclass(frozen=True)
class FileSpec:
    src: RelativePath = field(metadata={"doc": "File or folder in the image's folder."})
    dest: AbsolutePath = field(metadata={"doc": "Where it goes in the image."})


@dataclass(frozen=True)
class RunConfig:
    entrypoint: tuple[str, ...] = field(metadata={"doc": "The entrypoint, as a list.", "min_items": 1})
    cmd: tuple[str, ...] = field(default=(), metadata={"doc": "Default arguments."})
    user: User = field(default="65532:65532", metadata={"doc": "User to run as; non-root by default."})
    workdir: AbsolutePath = field(default="/", metadata={"doc": "Working directory."})
    env: tuple[KeyValue, ...] = field(default=(), metadata={"doc": "Environment, as KEY=value."})
    labels: tuple[KeyValue, ...] = field(default=(), metadata={"doc": "Labels, as key=value."})
    ports: tuple[Port, ...] = field(default=(), metadata={"doc": "Exposed ports, e.g. 8080/tcp."})


@dataclass(frozen=True)
class ImageSpec:
    name: Label = field(metadata={"doc": "The image's name; its folder has the same name."})
    tag: Tag = field(metadata={"doc": "The tag it is published under."})
    backend: Backend = field(metadata={"doc": "debian (pinned packages), buildah or docker (Containerfile)."})
    config: RunConfig | None = field(default=None, metadata={"doc": "How it runs (debian backend)."})
    debian: DebianSpec | None = field(default=None, metadata={"doc": "Packages (debian backend)."})
    files: tuple[FileSpec, ...] = field(
        default=(), metadata={"doc": "Project files added as a layer on top."}
    )
    containerfile: RelativePath | None = field(
        default=None, metadata={"doc": "Containerfile (buildah, docker)."}
    )
    base_images: tuple[Label, ...] = field(
        default=(), metadata={"doc": "Images the Containerfile builds on, by name in images.lock or ours."}
    )
    folder: Path = field(default=Path(), compare=False, metadata={"internal": True})


def _checks(decoder: Decoder) -> None:
    backend = decoder.values.get("backend")
    line = decoder.lines.get("backend", 1)
    if backend is Backend.DEBIAN:
        for key in ("debian", "config"):
            if key not in decoder.lines:
                decoder.report(line, key, "is required by backend: debian")
    elif backend in (Backend.BUILDAH, Backend.DOCKER) and "containerfile" not in decoder.lines:
        decoder.report(line, "containerfile", f"is required by backend: {backend}")


def load_image_spec(folder: Path) -> ImageSpec:
    path = folder / SPEC_FILE
    spec = decode_document(
        read_text(path, "image description", f"each image folder holds an {SPEC_FILE}"),
        path,
        ImageSpec,
        what="image description",
        empty_hint="an image needs name, tag, backend and what goes in",
        checks=_checks,
        extra={"folder": folder},
    )
    if spec.name != folder.name:
        raise bad_input(f"{path}: name {spec.name!r} must match its folder {folder.name!r}")
    for entry in spec.files:
        if not (folder / entry.src).exists():
            raise bad_input(f"{path}: files: {entry.src} does not exist in {folder}")
    return spec


def image_specs(images_dir: Path = IMAGES_DIR) -> list[ImageSpec]:
    """Every image folder (one holding an image.yaml), sorted by name."""
    if not images_dir.is_dir():
        return []
    return [load_image_spec(path.parent) for path in sorted(images_dir.glob(f"*/{SPEC_FILE}"))]


def image_names(images_dir: Path = IMAGES_DIR) -> list[str]:
    """The names of our images (their folders), without reading their image.yaml."""
    if not images_dir.is_dir():
        return []
    return sorted(path.parent.name for path in images_dir.glob(f"*/{SPEC_FILE}"))


def source_files(spec: ImageSpec) -> dict[str, Path]:
    """Every file the image is built from, by path relative to its folder."""
    # A Containerfile may COPY anything in its folder, its build context.
    roots = [spec.folder] if spec.containerfile else [spec.folder / entry.src for entry in spec.files]
    files = {SPEC_FILE: spec.folder / SPEC_FILE}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" not in path.parts:
                files[path.relative_to(spec.folder).as_posix()] = path
    return files
