"""The images of the last build, read from the store (publishing never builds).

dist/build.json names each derivation with its key and output digest; an image of ours
is the store entry `<key>-image-own-<name>`, an OCI layout. The entry must still match
the digest the build recorded, so what is published is exactly what was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import ExitStatus, MeshseedError
from builder.oci.push import Blob
from builder.store.store import Store

OWN_IMAGE_PREFIX = "image-own-"
UPSTREAM_IMAGE_PREFIX = "image-"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    manifest: bytes
    media_type: str
    digest: str
    blobs: tuple[Blob, ...]  # config first, then layers in order

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


def built_images(dist: Path, store: Store, prefix: str = OWN_IMAGE_PREFIX) -> list[BuiltImage]:
    """The images the build at `dist` made (or, with UPSTREAM_IMAGE_PREFIX, fetched)."""
    images = []
    for entry in build_record(dist)["derivations"]:
        name: str = entry["name"]
        if not name.startswith(prefix) or (
            prefix == UPSTREAM_IMAGE_PREFIX and name.startswith(OWN_IMAGE_PREFIX)
        ):
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
        images.append(read_layout(name.removeprefix(prefix), store.path_of(store_name)))
    return images


def read_layout(name: str, layout: Path) -> BuiltImage:
    """The one image of an OCI layout, with its tag from the ref-name annotation."""
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = _blob_path(layout, descriptor["digest"]).read_bytes()
    data = json.loads(manifest)
    blobs = [
        Blob(item["digest"], item["size"], _blob_path(layout, item["digest"]))
        for item in [data["config"], *data.get("layers", [])]
    ]
    tag = descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest")
    return BuiltImage(name, tag, manifest, descriptor["mediaType"], descriptor["digest"], tuple(blobs))


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    return layout / "blobs" / algorithm / value
