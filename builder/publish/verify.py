"""`meshseed verify`: check a published image's signature and attestations against a
public key, as `cosign verify` and `cosign verify-attestation` would; or check a signed
dist/SHA256SUMS and the files it lists.

Every refusal is a MeshseedError with status 1 that names the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from builder.attest import provenance, sbom
from builder.attest.statement import subject_digests
from builder.digest import parse_digest
from builder.errors import MeshseedError
from builder.oci.push import Pusher
from builder.oci.reference import Reference
from builder.sign import dsse, simplesigning
from builder.sign.attached import (
    ATTESTATION_SUFFIX,
    PREDICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIGNATURE_SUFFIX,
    attached_tag,
    layers_of,
)
from builder.sign.signature import is_valid

REQUIRED_ATTESTATIONS = {"provenance": provenance.PREDICATE_TYPE, "sbom": sbom.PREDICATE_TYPE}


@dataclass
class Verified:
    reference: str
    digest: str
    attestations: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "signature": "valid",
            "attestations": self.attestations,
        }


def refused(reference: str, reason: str) -> MeshseedError:
    return MeshseedError(f"{reference}: not verified: {reason}")


def verify_image(pusher: Pusher, reference: Reference, key: ec.EllipticCurvePublicKey) -> Verified:
    shown = str(reference)
    repository = reference.repository
    asked = reference.tag or reference.digest or "latest"
    resolved = pusher.manifest_digest(repository, asked)
    if resolved is None:
        raise refused(shown, f"the registry has no {reference.name}:{asked}")
    if reference.tag and reference.digest and resolved != reference.digest:
        raise refused(
            shown, f"the tag {reference.tag} was moved: it now names {resolved}, not {reference.digest}"
        )
    digest = reference.digest or resolved
    _check_signature(pusher, shown, repository, digest, key)
    verified = Verified(shown, digest)
    for kind, predicate_type in REQUIRED_ATTESTATIONS.items():
        _check_attestation(pusher, shown, repository, digest, key, kind=kind, predicate_type=predicate_type)
        verified.attestations.append(kind)
    return verified


def _layers(pusher: Pusher, repository: str, digest: str, suffix: str) -> list[dict[str, Any]]:
    found = pusher.manifest(repository, attached_tag(digest, suffix))
    return layers_of(found.data if found else None)


def _check_signature(
    pusher: Pusher, shown: str, repository: str, digest: str, key: ec.EllipticCurvePublicKey
) -> None:
    layers = [
        layer
        for layer in _layers(pusher, repository, digest, SIGNATURE_SUFFIX)
        if layer.get("mediaType") == simplesigning.MEDIA_TYPE
    ]
    if not layers:
        raise refused(shown, f"unsigned: no {attached_tag(digest, SIGNATURE_SUFFIX)} signature")
    other_digests = []
    for layer in layers:
        payload = pusher.fetch_blob(
            repository, parse_digest(layer.get("digest"), f"{shown}: a signature layer")
        )
        signature = layer.get("annotations", {}).get(SIGNATURE_ANNOTATION, "")
        if payload is None or not is_valid(key, payload, signature):
            continue
        claim = simplesigning.read_payload(payload)
        if claim is not None and claim.manifest_digest == digest:
            return
        other_digests.append(claim.manifest_digest if claim else "an unreadable payload")
    if other_digests:
        raise refused(shown, f"the signature was made for another digest ({other_digests[0]}), not {digest}")
    raise refused(
        shown,
        f"none of its {len(layers)} signature(s) verifies with this key "
        "(signed with another key, or the payload or its signature annotation was altered)",
    )


def _check_attestation(
    pusher: Pusher,
    shown: str,
    repository: str,
    digest: str,
    key: ec.EllipticCurvePublicKey,
    *,
    kind: str,
    predicate_type: str,
) -> None:
    layers = [
        layer
        for layer in _layers(pusher, repository, digest, ATTESTATION_SUFFIX)
        if layer.get("mediaType") == dsse.MEDIA_TYPE
        and layer.get("annotations", {}).get(PREDICATE_ANNOTATION, predicate_type) == predicate_type
    ]
    subjects: list[str] = []
    for layer in layers:
        envelope = pusher.fetch_blob(
            repository, parse_digest(layer.get("digest"), f"{shown}: an attestation layer")
        )
        payload = dsse.open_envelope(envelope, key) if envelope is not None else None
        if payload is None:
            continue
        statement = json.loads(payload)
        if statement.get("predicateType") != predicate_type:
            continue
        found = subject_digests(statement)
        if digest in found:
            return
        subjects += found
    if subjects:
        raise refused(shown, f"the {kind} attestation's subject is {subjects[0]}, not {digest}")
    raise refused(shown, f"no {kind} attestation ({predicate_type}) signed by this key")


def verify_checksums(sums: Path, signature: Path, key: ec.EllipticCurvePublicKey) -> int:
    """Check SHA256SUMS against its signature, then every file it lists; returns the count."""
    data = sums.read_bytes()
    if not is_valid(key, data, signature.read_text().strip()):
        raise MeshseedError(f"{sums}: {signature.name} does not verify with this key")
    count = 0
    for line in data.decode().splitlines():
        expected, _, name = line.partition("  ")
        path = sums.parent / name
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            raise MeshseedError(f"{path}: listed in {sums.name} but unreadable: {error.strerror}") from None
        if actual != expected:
            raise MeshseedError(f"{path}: sha256 is {actual}, {sums.name} says {expected}")
        count += 1
    return count
