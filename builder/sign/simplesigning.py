"""cosign's "simple signing" payload: what a signature says about an image.

The payload names the repository (`critical.identity.docker-reference`) and the image's
manifest digest; the signature covers these exact bytes, which are stored as the layer of
the `.sig` object. Verifiers read the digest from the payload, so it must be the image's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from builder.sign.gojson import go_json

MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_TYPE = "cosign container image signature"


@dataclass(frozen=True)
class SignedClaim:
    docker_reference: str
    manifest_digest: str


def payload(repository: str, manifest_digest: str) -> bytes:
    """The bytes cosign signs for `repository@manifest_digest` (Go field order, null optional)."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        }
    )


def read_payload(data: bytes) -> SignedClaim | None:
    """The claim in a payload, or None if it is not a cosign simple-signing payload."""
    try:
        critical = json.loads(data)["critical"]
        if critical["type"] != SIGNATURE_TYPE:
            return None
        return SignedClaim(
            critical["identity"]["docker-reference"], critical["image"]["docker-manifest-digest"]
        )
    except (ValueError, KeyError, TypeError):
        return None
