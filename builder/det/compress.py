"""Compression with pinned libraries and levels, so compressed bytes never drift.

gzip is Python's zlib at a fixed level with mtime 0 and no file name; zstd is the
`zstandard` binding at a fixed level, single-threaded (threads change the frame layout).
Derivations that compress put `compressor_versions()` into their inputs, so a library
upgrade that could change the bytes also changes the key.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import BinaryIO

import zstandard

GZIP_LEVEL = 9
ZSTD_LEVEL = 19


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=GZIP_LEVEL, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def zstd_stream(source: BinaryIO, target: BinaryIO) -> None:
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=True)
    compressor.copy_stream(source, target)


def zstd_bytes(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=True).compress(data)


def compressor_versions() -> dict[str, str]:
    return {
        "gzip": f"zlib {zlib.ZLIB_RUNTIME_VERSION} level {GZIP_LEVEL}",
        "zstd": f"zstd {'.'.join(map(str, zstandard.ZSTD_VERSION))} level {ZSTD_LEVEL}",
    }
