"""Canonical JSON: sorted keys, fixed separators, UTF-8 and one trailing newline."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any, *, pretty: bool = True) -> str:
    """Encode `value` the one way meshseed encodes it.

    `pretty` output is for files people read (indented); compact output is for hashing.
    Either form is stable: the same value gives the same text on any machine.
    """
    if pretty:
        text = json.dumps(value, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text + "\n"


def compact_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII escapes and no newline: how OCI blobs and layouts are
    written, so a manifest's bytes (and so its digest) are the same on any machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
