"""Finding the real programs tests run: skip with the package name, or fail under CI."""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str, package: str) -> str:
    """The path of `program`; skips (or fails under CI=true) naming the Debian package."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (Debian package: {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
