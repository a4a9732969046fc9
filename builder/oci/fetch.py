"""The fetch-image derivation: one locked image, by digest, into an OCI image layout.

The output is a complete OCI layout for the platforms asked for: the top-level index
(exactly as published, so the image keeps its pinned digest), the platform manifests,
configs and layers. Layers come from the store's shared blob store as hard links, so a
layer several images share is on disk once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from builder.det.jsonfmt import compact_json
from builder.digest import Digest, blob_relpath, parse_digest
from builder.errors import MeshseedError
from builder.oci.media import CONTAINERD_NAME, INDEXES, MANIFESTS, OCI_REF_NAME
from builder.oci.reference import Reference, parse_reference
from builder.oci.registry import Manifest, RegistryClient
from builder.store.derivation import BuildContext

LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'


@runtime_checkable
class RegistryAccess(Protocol):
    """What a fetch needs: a client for each registry (`Registries`, with its mirrors)."""

    def client(self, registry: str) -> RegistryClient: ...


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int

    def as_json(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        value: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            value["annotations"] = annotations
        return value


def blob_path(digest: Digest) -> str:
    return blob_relpath(digest)


def layout_index(images: list[tuple[str, Descriptor]]) -> str:
    """index.json naming each image (full reference, tag) for containerd's import."""
    manifests = []
    for name, descriptor in sorted(images):
        tag = parse_reference(name).tag
        annotations = {CONTAINERD_NAME: name, **({OCI_REF_NAME: tag} if tag else {})}
        manifests.append(descriptor.as_json(annotations))
    return compact_json({"schemaVersion": 2, "manifests": manifests})


def fetch_inputs(reference: str, digest: Digest, platforms: Mapping[str, Digest]) -> dict[str, Any]:
    """`platforms` maps os/arch to the manifest digest the lock pinned for it."""
    return {"reference": reference, "digest": digest, "platforms": dict(sorted(platforms.items()))}


def _media_type(manifest: Manifest) -> str:
    declared = json.loads(manifest.data).get("mediaType")
    return str(declared or manifest.media_type)


def build_fetch(ctx: BuildContext) -> None:
    reference = parse_reference(ctx.inputs["reference"])
    registries = ctx.derivation.fetcher
    if not isinstance(registries, RegistryAccess):
        raise MeshseedError(f"{ctx.derivation.name}: no registry access was configured")
    client = registries.client(reference.registry)
    top = client.manifest(reference, ctx.inputs["digest"])
    top_type = _media_type(top)
    ctx.write(blob_path(top.digest), top.data)
    if top_type in INDEXES:
        listed = {platform_of(entry): entry for entry in json.loads(top.data).get("manifests", [])}
        for platform, pinned in ctx.inputs["platforms"].items():
            entry = listed.get(platform)
            if entry is None or entry["digest"] != pinned:
                raise MeshseedError(
                    f"{reference}@{top.digest}: does not list {platform} as {pinned}",
                    hint="the lock and the registry disagree; run `meshseed lock`",
                )
            _fetch_manifest(ctx, client, reference, client.manifest(reference, pinned))
    elif top_type in MANIFESTS:
        _fetch_manifest(ctx, client, reference, top)
    else:
        raise MeshseedError(f"{reference}@{top.digest}: unsupported media type {top_type!r}")
    name = str(Reference(reference.registry, reference.repository, reference.tag))
    ctx.write("index.json", layout_index([(name, Descriptor(top_type, top.digest, len(top.data)))]))
    ctx.write("oci-layout", LAYOUT_VERSION)


def platform_of(entry: dict[str, Any]) -> str:
    platform = entry.get("platform", {})
    text = f"{platform.get('os')}/{platform.get('architecture')}"
    return text + (f"/{platform['variant']}" if platform.get("variant") else "")


def _fetch_manifest(
    ctx: BuildContext, client: RegistryClient, reference: Reference, manifest: Manifest
) -> None:
    ctx.write(blob_path(manifest.digest), manifest.data)
    body = json.loads(manifest.data)
    shown = f"{client.where()}: manifest {reference.name}@{manifest.digest}"
    described = [("config", body["config"]), *(("layer", layer) for layer in body.get("layers", []))]
    for kind, descriptor in described:
        digest = parse_digest(descriptor.get("digest"), f"{shown}: {kind} digest")

        def download(partial: Path, digest: Digest = digest) -> None:
            client.download_blob(reference, digest, partial)

        path = ctx.blobs.ensure(digest, download)
        if path.stat().st_size != descriptor["size"]:
            raise MeshseedError(f"{client.where()}: blob {digest} is not {descriptor['size']} bytes")
        if not (ctx.out / blob_path(digest)).exists():
            ctx.link_blob(blob_path(digest), digest, path)
