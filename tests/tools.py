"""Finding the real programs tests run: skip with the package name, or fail under CI."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip a test that cannot run here; under CI=true fail it, since CI installs everything.

    A skip in CI would turn a broken setup into a green run that tested nothing.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require(program: str, package: str) -> str:
    """The path of `program`; skips (or fails under CI=true) naming the Debian package."""
    path = shutil.which(program)
    if path is None:
        unavailable(f"{program} is not installed (Debian package: {package})")
    return path
