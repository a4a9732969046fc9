"""Compression with pinned libraries and levels, so compressed bytes never drift.

gzip is Python's zlib at a fixed level with mtime 0 and no file name; zstd is the
`zstandard` binding at a fixed level and window, single-threaded (threads change the
frame layout). zstd's level is low on purpose: what it mostly compresses are image
layers, already gzipped, where higher levels only cost time. Its window stays at most
2^25 bytes, the largest k3s' decoder accepts for air-gap bundles.
Derivations that compress put `compressor_versions()` into their inputs, so a library
upgrade that could change the bytes also changes the key.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard

# Level 1: image layers are most of what is gzipped, and there it is twice as fast as
# level 6 for about 9% more bytes.
GZIP_LEVEL = 1
ZSTD_LEVEL = 3
ZSTD_WINDOW_LOG = 23


def _zstd() -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG, threads=0, write_checksum=1
    )
    return zstandard.ZstdCompressor(compression_params=params)


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=GZIP_LEVEL, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


@contextlib.contextmanager
def zstd_writer(target: BinaryIO) -> Iterator[BinaryIO]:
    """A stream that compresses into `target`; the frame is finished when the block ends."""
    with _zstd().stream_writer(target, closefd=False) as writer:
        yield writer


def zstd_bytes(data: bytes) -> bytes:
    return _zstd().compress(data)


def compressor_versions() -> dict[str, str]:
    zstd_version = ".".join(map(str, zstandard.ZSTD_VERSION))
    return {
        "gzip": f"zlib {zlib.ZLIB_RUNTIME_VERSION} level {GZIP_LEVEL}",
        "zstd": f"zstd {zstd_version} level {ZSTD_LEVEL} window 2^{ZSTD_WINDOW_LOG}",
    }
