"""`meshseed publish`: push the build's images with their digests, sign and attest them,
and sign dist/SHA256SUMS; report every pushed reference with its digest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from builder.assemble import CHECKSUMS
from builder.attest import provenance, sbom
from builder.attest.contents import read_contents
from builder.attest.statement import statement
from builder.det.files import write_atomically
from builder.lock import Lock
from builder.oci.push import Pusher
from builder.oci.registry import Registries
from builder.publish.attach import Target, attest_image, sign_image
from builder.publish.built import BuiltImage
from builder.sign.signature import sign
from builder.version import builder_version

SIGNATURE_FILE = CHECKSUMS + ".sig"


@dataclass(frozen=True)
class Destination:
    """`--registry`: a registry host and an optional path every image goes below."""

    registry: str
    namespace: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        registry, _, namespace = text.strip("/").partition("/")
        return cls(registry, namespace)

    def path_of(self, image: str) -> str:
        return f"{self.namespace}/{image}" if self.namespace else image


@dataclass(frozen=True)
class Provenance:
    """What the provenance names besides the image: the lock, the commit, the builder."""

    lock: Lock
    commit: str | None
    source_uri: str | None = None


@dataclass
class Published:
    name: str
    reference: str
    digest: str
    changed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "digest": self.digest,
            "changed": self.changed,
        }


def publish(
    images: list[BuiltImage],
    destination: Destination,
    registries: Registries,
    *,
    key: ec.EllipticCurvePrivateKey | None,
    facts: Provenance,
    chunk_size: int,
) -> tuple[list[Published], dict[str, int]]:
    pusher = Pusher(registries.client(destination.registry), chunk_size)
    published: list[Published] = []
    # A blob pushed for one image is mounted into the next image's repository, not re-sent.
    pushed_from: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="meshseed-publish-") as scratch:
        for image in images:
            path = destination.path_of(image.repository or image.name)
            target = Target(path, f"{destination.registry}/{path}", image.digest)
            result = Published(image.name, f"{target.name}:{image.tag}@{image.digest}", image.digest)
            if _push_image(pusher, path, image, pushed_from):
                result.changed.append("image")
            if key is not None:
                if sign_image(pusher, key, target, Path(scratch)):
                    result.changed.append("signature")
                for kind, statement_ in _statements(image, target, facts).items():
                    if attest_image(pusher, key, target, statement_, Path(scratch)):
                        result.changed.append(kind)
            published.append(result)
    return published, pusher.counts


def _push_image(pusher: Pusher, path: str, image: BuiltImage, pushed_from: dict[str, str]) -> bool:
    """Push an image (an index: its manifests first, by digest) under its tag; True if the
    registry did not already have it so."""
    changed = False
    for child in image.children:
        changed |= _push_image(pusher, path, dataclasses.replace(child, tag=child.digest), pushed_from)
    for blob in image.blobs:
        pusher.push_blob(path, blob, mount_from=pushed_from.get(blob.digest))
        pushed_from.setdefault(blob.digest, path)
    return pusher.put_manifest(path, image.tag, image.manifest, image.media_type) or changed


def _statements(image: BuiltImage, target: Target, facts: Provenance) -> dict[str, dict[str, Any]]:
    config = json.loads(image.blobs[0].path.read_bytes())
    created = dt.datetime.fromisoformat(config.get("created", "1980-01-01T00:00:00Z").replace("Z", "+00:00"))
    annotations = image.manifest_json.get("annotations", {})
    build = provenance.provenance(
        image=image.name,
        tag=image.tag,
        annotations=annotations,
        lock=facts.lock,
        commit=facts.commit,
        source_uri=facts.source_uri,
        builder_version=builder_version(),
    )
    document = sbom.spdx_document(
        target.name,
        image.digest,
        image.tag,
        read_contents(image.layer_paths),
        created=created,
        tool=f"meshseed-{builder_version()}",
    )
    return {
        "provenance": statement(target.name, image.digest, provenance.PREDICATE_TYPE, build),
        "sbom": statement(target.name, image.digest, sbom.PREDICATE_TYPE, document),
    }


def sign_checksums(dist: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """dist/SHA256SUMS.sig: the base64 signature `cosign verify-blob` and openssl check."""
    signature = dist / SIGNATURE_FILE
    write_atomically(signature, sign(key, (dist / CHECKSUMS).read_bytes()).encode())
    return signature
