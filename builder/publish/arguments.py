"""The arguments of `publish` and `verify` (kept apart from the commands, which load
cryptography and httpx only when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.lock import DEFAULT_LOCK
from builder.store.store import DEFAULT_STORE

DEFAULT_CHUNK_MIB = 8


def add_publish_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--registry", required=True, metavar="REG", help="e.g. ghcr.io/org or 127.0.0.1:5000/meshseed"
    )
    sub.add_argument(
        "--key", type=Path, metavar="FILE", help="cosign.key to sign and attest with ($COSIGN_PASSWORD)"
    )
    sub.add_argument(
        "--dist", type=Path, default=Path("dist"), metavar="DIR", help="the build to publish (default: dist)"
    )
    sub.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="DIR", help="the store directory")
    sub.add_argument("--lock", type=Path, default=DEFAULT_LOCK, metavar="FILE", help="default: images.lock")
    sub.add_argument(
        "--upstream", action="store_true", help="also copy the pinned upstream images the build fetched"
    )
    sub.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_MIB,
        metavar="MIB",
        help="upload blobs larger than this in chunks of it (default: 8)",
    )
    sub.add_argument("--json", action="store_true", help="print the pushed references as JSON")


def add_verify_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--key", type=Path, required=True, metavar="FILE", help="cosign.pub")
    sub.add_argument(
        "target",
        metavar="REF",
        help="an image reference (repo:tag, repo@digest, repo:tag@digest) or a SHA256SUMS file",
    )
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
