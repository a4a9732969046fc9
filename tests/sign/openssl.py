"""openssl as an independent verifier: it shares no code with meshseed or cryptography's
Python layer choices, so a signature it accepts is a plain ECDSA P-256/SHA-256 one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require


def openssl_verifies(public: Path, data: bytes, signature_der: bytes, work: Path) -> bool:
    openssl = require("openssl", "openssl")
    (work / "data").write_bytes(data)
    (work / "signature").write_bytes(signature_der)
    argv = [openssl, "dgst", "-sha256", "-verify", str(public), "-signature", str(work / "signature")]
    result = subprocess.run([*argv, str(work / "data")], capture_output=True, check=False)
    return result.returncode == 0
