"""Attach a signature and attestations to a pushed image, as cosign does.

Each goes into the image's `.sig` or `.att` object as one more layer; a layer this key
already made for the same payload is left alone, so signing a build again changes
nothing in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from builder.oci.media import OCI_MANIFEST
from builder.oci.push import Blob, Pusher
from builder.oci.reference import sha256_digest
from builder.sign import dsse, simplesigning
from builder.sign.attached import (
    ATTESTATION_SUFFIX,
    PREDICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIGNATURE_SUFFIX,
    Layer,
    attached_object,
    attached_tag,
    layers_of,
    with_layer,
)
from builder.sign.gojson import go_json
from builder.sign.signature import is_valid, sign


@dataclass(frozen=True)
class Target:
    """A pushed image: its repository on the registry (`registry/path`) and digest."""

    registry_path: str  # path below /v2/, e.g. meshseed/backup
    name: str  # as users write it, e.g. 127.0.0.1:5000/meshseed/backup
    digest: str


def sign_image(pusher: Pusher, key: ec.EllipticCurvePrivateKey, target: Target, scratch: Path) -> bool:
    """Add a signature of `target` by `key`; False if it already had one."""
    payload = simplesigning.payload(target.name, target.digest)
    public = key.public_key()

    def already(old: dict[str, Any], data: bytes) -> bool:
        signature = old.get("annotations", {}).get(SIGNATURE_ANNOTATION, "")
        return old.get("digest") == sha256_digest(payload) and is_valid(public, data, signature)

    layer = Layer(simplesigning.MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: sign(key, payload)})
    return _attach(pusher, target, SIGNATURE_SUFFIX, layer, already=already, scratch=scratch)


def attest_image(
    pusher: Pusher,
    key: ec.EllipticCurvePrivateKey,
    target: Target,
    statement: dict[str, Any],
    scratch: Path,
) -> bool:
    """Add a DSSE attestation of `statement` by `key`; False if it already had it."""
    payload = go_json(statement)
    public = key.public_key()
    predicate_type = statement["predicateType"]

    def already(old: dict[str, Any], data: bytes) -> bool:
        same_kind = old.get("annotations", {}).get(PREDICATE_ANNOTATION) == predicate_type
        return same_kind and dsse.open_envelope(data, public) == payload

    annotations = {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: predicate_type}
    layer = Layer(dsse.MEDIA_TYPE, dsse.seal(key, payload), annotations)
    return _attach(pusher, target, ATTESTATION_SUFFIX, layer, already=already, scratch=scratch)


def _attach(
    pusher: Pusher,
    target: Target,
    suffix: str,
    layer: Layer,
    *,
    already: Callable[[dict[str, Any], bytes], bool],
    scratch: Path,
) -> bool:
    repository = target.registry_path
    tag = attached_tag(target.digest, suffix)
    existing = pusher.manifest(repository, tag)
    old_layers = layers_of(existing.data if existing else None)
    for old in old_layers:
        blob = pusher.fetch_blob(repository, old["digest"]) if old.get("digest") else None
        if blob is not None and already(old, blob):
            return False
    layers = with_layer(old_layers, layer)
    if layers is None:
        return False
    attached = attached_object(layers)
    for data in (layer.data, attached.config):
        path = scratch / sha256_digest(data).replace(":", "-")
        path.write_bytes(data)
        pusher.push_blob(repository, Blob(sha256_digest(data), len(data), path))
    pusher.put_manifest(repository, tag, attached.manifest, OCI_MANIFEST)
    return True
