"""The arguments of `publish` and `verify` (kept apart from the commands, which load
cryptography and httpx only when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.store.store import DEFAULT_STORE

DEFAULT_CHUNK = "8M"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def size(text: str) -> int:
    """`8M`, `256K` or a number of bytes; at least 64 KiB (the registry's smallest useful chunk)."""
    unit = _UNITS.get(text[-1:].upper(), 1)
    number = text[:-1] if unit > 1 else text
    if not number.isdecimal() or int(number) * unit < 64 << 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size of at least 64K (e.g. 8M, 512K)")
    return int(number) * unit


def add_publish_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--registry",
        required=True,
        metavar="REG",
        help="e.g. ghcr.io/org; a leading https:// or http:// sets the scheme "
        "(default: https, but http for this machine); $MESHSEED_REGISTRY_USER and "
        "$MESHSEED_REGISTRY_PASSWORD log in here only",
    )
    _add_insecure(sub)
    sub.add_argument(
        "--key", type=Path, metavar="FILE", help="cosign.key to sign and attest with ($COSIGN_PASSWORD)"
    )
    sub.add_argument(
        "--dist", type=Path, default=Path("dist"), metavar="DIR", help="the build to publish (default: dist)"
    )
    store_help = f"the store (default: {DEFAULT_STORE})"
    sub.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="DIR", help=store_help)
    sub.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help="default: images.lock if there is one here, else the one shipped with meshseed",
    )
    sub.add_argument(
        "--upstream", action="store_true", help="also copy the pinned upstream images the build fetched"
    )
    sub.add_argument(
        "--chunk-size",
        type=size,
        default=size(DEFAULT_CHUNK),
        metavar="SIZE",
        help=f"upload blobs larger than SIZE in chunks of SIZE (default: {DEFAULT_CHUNK})",
    )
    sub.add_argument("--json", action="store_true", help="print the pushed references as JSON")


def _add_insecure(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--insecure",
        action="store_true",
        help="allow http:// to a registry on another machine (warned about)",
    )


def add_verify_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--key", type=Path, required=True, metavar="FILE", help="cosign.pub")
    sub.add_argument(
        "target",
        metavar="REF",
        help="an image reference (repo:tag, repo@digest, repo:tag@digest) or a SHA256SUMS file",
    )
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_insecure(sub)
