"""JSON encoded the way Go's encoding/json writes it, so our objects hash like cosign's.

cosign's payloads, manifests and envelopes are Go structs marshalled with encoding/json:
compact, fields in declaration order (callers build dicts in that order; Go sorts map
keys, so callers sort those), UTF-8 kept as is, and `<`, `>`, `&`, U+2028 and U+2029
escaped as \\u sequences.
"""

from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for character, escape in _GO_ESCAPES.items():
        text = text.replace(character, escape)
    return text.encode()
