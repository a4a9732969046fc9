"""What CI=true changes in the test suite: nothing may pass there by not running."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.tools import require, unavailable


def test_unavailable_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no frobnicator here$"):
        unavailable("no frobnicator here")


def test_unavailable_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^no frobnicator here$"):
        unavailable("no frobnicator here")


def test_a_missing_program_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    message = "^meshseed-no-such-program is not installed \\(Debian package: meshseed-pkg\\)$"
    with pytest.raises(pytest.fail.Exception, match=message):
        require("meshseed-no-such-program", "meshseed-pkg")
    assert require("sh", "dash") is not None


GOLDEN = ("-q", "--update-golden")


def collect_with_update_golden(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", *GOLDEN, __file__],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_update_golden_is_a_usage_error_under_ci() -> None:
    refused = collect_with_update_golden("true")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--update-golden is refused under CI=true" in refused.stderr
    assert collect_with_update_golden(None).returncode == pytest.ExitCode.OK
