"""`meshseed verify`: check a published image's signature and attestations against a
public key, as `cosign verify` and `cosign verify-attestation` would; or check a signed
dist/SHA256SUMS and the files it lists.

Every refusal is a MeshseedError with status 1 that names the reason.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from builder.attest import provenance, sbom
from builder.attest.statement import subject_digests
from builder.digest import parse_digest, parse_sha256_hex
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
    """Check SHA256SUMS against its signature, then the whole tree beside it: every file
    it lists matches, and nothing is there that it does not list (a planted manifest would
    otherwise ride along with a valid signature). Returns the count of files checked."""
    data = sums.read_bytes()
    if not is_valid(key, data, signature.read_text().strip()):
        raise MeshseedError(f"{sums}: {signature.name} does not verify with this key")
    listed = _listing(sums, data)
    root = sums.parent
    _refuse_unlisted(root, sums.name, listed, allowed={sums.name, signature.name})
    for name, expected in sorted(listed.items()):
        path = root / name
        try:
            with path.open("rb") as stream:
                actual = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as error:
            raise MeshseedError(f"{path}: listed in {sums.name} but unreadable: {error.strerror}") from None
        if actual != expected:
            raise MeshseedError(f"{path}: sha256 is {actual}, {sums.name} says {expected}")
    return len(listed)


def _listing(sums: Path, data: bytes) -> dict[str, str]:
    """Each listed path with its sha256; a path must be plain, relative and inside the tree."""
    listed: dict[str, str] = {}
    for number, line in enumerate(data.decode(errors="replace").splitlines(), start=1):
        expected, _, name = line.partition("  ")
        where = f"{sums}:{number}"
        parse_sha256_hex(expected, where)
        pure = PurePosixPath(name)
        if not name or pure.is_absolute() or ".." in pure.parts or str(pure) != name or name in listed:
            raise MeshseedError(f"{where}: {name!r} is not a plain relative path listed once")
        listed[name] = expected
    return listed


def _refuse_unlisted(root: Path, listing: str, listed: dict[str, str], *, allowed: set[str]) -> None:
    """Every path under `root` must be a listed regular file or a directory that holds one."""
    holders = {str(parent) for name in listed for parent in PurePosixPath(name).parents}
    extra = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and relative in holders:
            continue
        if stat.S_ISREG(info.st_mode) and (relative in listed or relative in allowed):
            continue
        extra.append(relative + ("/" if stat.S_ISDIR(info.st_mode) else ""))
        if stat.S_ISLNK(info.st_mode):
            extra[-1] += " (a symlink)"
    if extra:
        shown = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
        raise MeshseedError(f"{root}: holds what {listing} does not list: {shown}")
