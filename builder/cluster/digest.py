"""The digest of configuration texts that a pod annotation carries, so a change rolls it."""

from __future__ import annotations

import hashlib


def digest(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()
