"""`meshseed lock`: resolve images/upstream.yaml into images.lock.

Tags are looked up here, once, and never again: every image is recorded by the digest
its tag pointed to, with the manifest digest of each wanted platform, and every binary
by URL, sha256 and size.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from builder.artifacts import Artifacts
from builder.digest import hex_part, parse_digest
from builder.errors import MeshseedError
from builder.lock import REQUIRED_PLATFORM, Lock, LockedFile, LockedImage, Upstream
from builder.oci.fetch import platform_of
from builder.oci.media import INDEXES, MANIFESTS
from builder.oci.reference import parse_reference
from builder.oci.registry import Registries

log = logging.getLogger("meshseed.lock")


def k3s_image_name(reference: str) -> str:
    """A lock entry name for a k3s system image: `k3s-` and the repository's last part."""
    return "k3s-" + parse_reference(reference).repository.rsplit("/", 1)[-1]


def resolve_image(
    registries: Registries, image: str, roles: tuple[str, ...], platforms: tuple[str, ...], scratch: Path
) -> LockedImage:
    reference = parse_reference(image)
    assert reference.tag is not None
    client = registries.client(reference.registry)
    top = client.manifest(reference, reference.tag)
    media_type = str(json.loads(top.data).get("mediaType") or top.media_type)
    shown = f"{client.where()}: {reference}"
    if media_type in INDEXES:
        found = {platform_of(entry): entry.get("digest") for entry in json.loads(top.data)["manifests"]}
        pinned = {
            platform: parse_digest(found[platform], f"{shown}: the {platform} manifest's digest")
            for platform in platforms
            if platform in found
        }
    elif media_type in MANIFESTS:
        config = parse_digest(json.loads(top.data)["config"].get("digest"), f"{shown}: config digest")
        target = scratch / hex_part(config)
        client.download_blob(reference, config, target)
        config_json = json.loads(target.read_bytes())
        pinned = {f"{config_json.get('os')}/{config_json.get('architecture')}": top.digest}
    else:
        raise MeshseedError(f"{image}: unsupported media type {media_type!r}")
    if REQUIRED_PLATFORM not in pinned:
        raise MeshseedError(f"{image}: published without a {REQUIRED_PLATFORM} image")
    log.info("%s -> %s", image, top.digest)
    return LockedImage(str(reference), top.digest, media_type, pinned, tuple(sorted(roles)))


def resolve_lock(upstream: Upstream, registries: Registries, artifacts: Artifacts) -> Lock:
    with tempfile.TemporaryDirectory(prefix="meshseed-lock-") as scratch_dir:
        scratch = Path(scratch_dir)
        binaries = {}
        for name, url in upstream.binaries().items():
            downloaded = artifacts.download(url, scratch / name)
            binaries[name] = LockedFile(url, downloaded.sha256, downloaded.size)
        listing = scratch / "k3s-images.txt"
        artifacts.download(upstream.k3s.images_list.format(version=upstream.k3s.version), listing)
        wanted: dict[str, tuple[str, tuple[str, ...]]] = {}
        for line in listing.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                wanted[k3s_image_name(line.strip())] = (line.strip(), tuple(upstream.k3s.roles))
        for image in upstream.images:
            if image.name in wanted:
                raise MeshseedError(f"images/upstream.yaml: {image.name!r} clashes with a k3s system image")
            wanted[image.name] = (image.image, tuple(image.roles))
        settings = {image.name: image.tutor for image in upstream.images}
        images = {
            name: replace(
                resolve_image(registries, reference, roles, upstream.platforms, scratch),
                tutor=settings.get(name),
            )
            for name, (reference, roles) in sorted(wanted.items())
        }
    return Lock(
        upstream.sha256,
        upstream.k3s.version,
        upstream.mycelium.version,
        upstream.platforms,
        images,
        binaries,
    )
