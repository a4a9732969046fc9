"""The OCI objects cosign attaches to an image: `sha256-<hex>.sig` and `sha256-<hex>.att`.

Each is an OCI image manifest whose layers are the signatures (simple-signing payloads,
the signature in an annotation) or the attestations (DSSE envelopes), with the config
go-containerregistry gives an image made of just those layers. Adding a signature adds a
layer to what is there, as cosign does; a layer that is already there is not added twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.oci.media import OCI_MANIFEST
from builder.oci.reference import sha256_digest
from builder.sign.gojson import go_json

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
SIGNATURE_SUFFIX = "sig"
ATTESTATION_SUFFIX = "att"
# go-containerregistry's zero time: cosign's objects carry no timestamps.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def attached_tag(digest: str, suffix: str) -> str:
    """`sha256:abc...` -> `sha256-abc....sig` (or `.att`)."""
    return digest.replace(":", "-") + "." + suffix


@dataclass(frozen=True)
class Layer:
    media_type: str
    data: bytes
    annotations: Mapping[str, str]

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "size": len(self.data),
            "digest": self.digest,
            "annotations": dict(sorted(self.annotations.items())),
        }


@dataclass(frozen=True)
class AttachedObject:
    manifest: bytes
    config: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def attached_object(layers: list[dict[str, Any]]) -> AttachedObject:
    """The manifest and config of an object made of these layer descriptors, in order."""
    config = go_json(
        {
            "architecture": "",
            "created": _ZERO_TIME,
            "history": [{"created": _ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            "config": {},
        }
    )
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": layers,
        }
    )
    return AttachedObject(manifest, config)


def layers_of(manifest: bytes | None) -> list[dict[str, Any]]:
    """The layer descriptors of an existing attached object (none if there is none)."""
    if manifest is None:
        return []
    layers = json.loads(manifest).get("layers", [])
    return [layer for layer in layers if isinstance(layer, dict)]


def with_layer(existing: list[dict[str, Any]], layer: Layer) -> list[dict[str, Any]] | None:
    """`existing` plus `layer`, or None when an identical layer is already there."""
    descriptor = layer.descriptor()
    if any(_same(old, descriptor) for old in existing):
        return None
    return [*existing, descriptor]


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("mediaType", "size", "digest", "annotations")
    return all(old.get(key) == new[key] for key in keys)
