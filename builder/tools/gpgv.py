"""gpgv: check an archive's signed Release file against a keyring."""

from __future__ import annotations

import tempfile
from pathlib import Path

from builder.tools.run import run_tool


def verified_content(clearsigned: bytes, keyring: Path) -> bytes:
    """The content of a clearsigned file (Debian's InRelease), if its signature checks out."""
    with tempfile.TemporaryDirectory(prefix="meshseed-gpgv-") as scratch:
        signed, content = Path(scratch) / "InRelease", Path(scratch) / "Release"
        signed.write_bytes(clearsigned)
        run_tool("gpgv", ["--keyring", str(keyring), "--output", str(content), str(signed)], package="gpgv")
        return content.read_bytes()
