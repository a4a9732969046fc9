"""dpkg-query: which version of a Debian package this machine has, for derivation keys."""

from __future__ import annotations

from functools import cache

from builder.tools.run import run_tool


@cache
def installed_version(package: str) -> str:
    """The installed version of `package`; its tools' output may change with it."""
    return run_tool("dpkg-query", ["-W", "-f", "${Version}", package], package="dpkg").strip()
