"""DSSE envelopes (Dead Simple Signing Envelope), as cosign stores attestations.

The signature covers the pre-authentication encoding (PAE) of the payload type and the
payload, never the JSON around them, so the envelope's layout is free but the PAE is not.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives.asymmetric import ec

from builder.sign.gojson import go_json
from builder.sign.signature import is_valid, sign

MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def seal(key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = IN_TOTO) -> bytes:
    """An envelope with one signature and an empty key id, as `cosign attest` writes it."""
    return go_json(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": sign(key, pae(payload_type, payload))}],
        }
    )


def open_envelope(
    envelope: bytes, key: ec.EllipticCurvePublicKey, expected_type: str = IN_TOTO
) -> bytes | None:
    """The payload if it is of `expected_type` and one of the envelope's signatures is
    `key`'s over its PAE; else None."""
    try:
        data = json.loads(envelope)
        payload_type, payload = data["payloadType"], base64.b64decode(data["payload"], validate=True)
        signatures = [entry["sig"] for entry in data["signatures"]]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if payload_type != expected_type:
        return None
    message = pae(payload_type, payload)
    return payload if any(is_valid(key, message, signature) for signature in signatures) else None
