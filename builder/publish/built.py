"""The images of the last build, read from the store (publishing never builds).

dist/build.json names each derivation with its key and output digest; an image of ours
is the store entry `<key>-image-own-<name>`, an OCI layout. The entry must still match
the digest the build recorded, so what is published is exactly what was built.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.digest import Digest, blob_relpath, parse_digest
from builder.errors import ExitStatus, MeshseedError
from builder.lock import Lock
from builder.oci.fetch import build_fetch, fetch_inputs
from builder.oci.media import INDEXES
from builder.oci.push import Blob
from builder.oci.reference import parse_reference
from builder.store.derivation import Derivation
from builder.store.store import Store

OWN_IMAGE_PREFIX = "image-own-"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    manifest: bytes
    media_type: str
    digest: Digest
    blobs: tuple[Blob, ...]  # config first, then layers in order; none for an index
    children: tuple[BuiltImage, ...] = ()  # an index's manifests
    repository: str | None = None  # where an upstream image lives upstream (registry/path)

    @property
    def manifest_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest)
        return data

    @property
    def layer_paths(self) -> list[Path]:
        return [blob.path for blob in self.blobs[1:]]


def build_record(dist: Path) -> dict[str, Any]:
    path = dist / "build.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise MeshseedError(
            f"{path}: missing", hint="build first: nox -s build-images", status=ExitStatus.BAD_INPUT
        ) from None
    except (OSError, ValueError) as error:
        raise MeshseedError(f"{path}: unreadable: {error}", status=ExitStatus.BAD_INPUT) from None
    return record


def built_images(dist: Path, store: Store) -> list[BuiltImage]:
    """The images the build at `dist` made."""
    images = []
    for entry in build_record(dist)["derivations"]:
        name: str = entry["name"]
        if not name.startswith(OWN_IMAGE_PREFIX):
            continue
        store_name = f"{entry['key']}-{name}"
        if not store.has(store_name):
            raise MeshseedError(
                f"{store.root}: {store_name} is not in the store", hint="build again: nox -s build-images"
            )
        problem = store.verify(store_name)
        if problem is None and store.read(store_name).digest != entry["digest"]:
            problem = f"it is not the {entry['digest']} the build recorded"
        if problem:
            raise MeshseedError(
                f"{store.root}: {store_name}: {problem}", hint="rebuild it: meshseed build --images --repair"
            )
        images.append(read_layout(name.removeprefix(OWN_IMAGE_PREFIX), store.path_of(store_name)))
    return images


def upstream_images(lock: Lock, store: Store) -> list[BuiltImage]:
    """Every pinned upstream image with all its pinned platforms, as `meshseed fetch
    --all-platforms` left it in the store; a registry takes an index only whole."""
    images, missing = [], []
    for name, locked in sorted(lock.images.items()):
        fetch = Derivation(
            name=f"image-{name}",
            build=build_fetch,
            inputs=fetch_inputs(locked.reference, locked.digest, locked.platforms),
        )
        if not store.has(fetch.store_name) or store.verify(fetch.store_name) is not None:
            missing.append(name)
            continue
        reference = parse_reference(locked.reference)
        image = read_layout(name, store.path_of(fetch.store_name), tag=reference.tag or "latest")
        images.append(dataclasses.replace(image, repository=reference.repository))
    if missing:
        raise MeshseedError(
            f"{store.root}: holds no complete copy of {', '.join(missing)}",
            hint=f"meshseed fetch --all-platforms {' '.join(missing)}",
        )
    return images


def read_layout(name: str, layout: Path, tag: str | None = None) -> BuiltImage:
    """The one image (or index) of an OCI layout; its tag from the ref-name annotation."""
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    if tag is None:
        tag = descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest")
    digest = parse_digest(descriptor.get("digest"), f"{layout}/index.json: {name}")
    return _read(name, tag, layout, digest, descriptor["mediaType"])


def _read(name: str, tag: str, layout: Path, digest: Digest, media_type: str) -> BuiltImage:
    path = layout / blob_relpath(digest)
    if not path.is_file():
        raise MeshseedError(f"{layout}: {name} lists {digest}, which it does not hold")
    manifest = path.read_bytes()
    data = json.loads(manifest)
    where = f"{layout}: {name}'s {'index' if media_type in INDEXES else 'manifest'} {digest}"
    if media_type in INDEXES:
        children = tuple(
            _read(name, tag, layout, parse_digest(entry.get("digest"), where), entry["mediaType"])
            for entry in data["manifests"]
        )
        return BuiltImage(name, tag, manifest, media_type, digest, (), children)
    blobs = []
    for item in [data["config"], *data.get("layers", [])]:
        blob = parse_digest(item.get("digest"), where)
        blobs.append(Blob(blob, item["size"], layout / blob_relpath(blob)))
    return BuiltImage(name, tag, manifest, media_type, digest, tuple(blobs))
