"""Our Debian version order against dpkg's own, on generated versions."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.debian.version import compare_versions
from tests.tools import require

versions = st.from_regex(r"([1-9]:)?[0-9]{1,3}(\.[0-9a-z~+]{1,3}){0,3}(-[0-9a-z~+.]{1,4})?", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(versions, versions)
def test_order_agrees_with_dpkg(left: str, right: str) -> None:
    program = require("dpkg", "dpkg")

    def dpkg(relation: str) -> bool:
        return (
            subprocess.run([program, "--compare-versions", left, relation, right], check=False).returncode
            == 0
        )

    expected = 0 if dpkg("eq") else (-1 if dpkg("lt") else 1)
    assert compare_versions(left, right) == expected
