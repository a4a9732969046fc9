"""`nox -s build-images` pins k3s, Mycelium and the upstream images first when images.lock
does not, and without the registries says so in one line and builds the rest.

The session runs from the noxfile itself (nox is stood in for: the test environment has no
nox), with a recording `meshseed` that answers as a connected or an offline machine would."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

FAKE_MESHSEED = """#!/bin/sh
echo "$*" >> "$MESHSEED_RECORD"
case "$*" in
    "lock --check --only upstream")
        echo "images.lock: upstream_sha256: no upstream images are locked yet (run \\`meshseed lock\\`)" >&2
        echo "error: images.lock: does not match images/upstream.yaml" >&2
        exit "$CHECK_STATUS" ;;
    "lock --only upstream")
        if [ "$REGISTRIES" = reachable ]; then
            echo "wrote images.lock: 21 images, 3 binaries, 37 Debian packages for 1 of our images" >&2
            exit 0
        fi
        echo "meshseed.registry: retrying in 0.5s" >&2
        echo "error: https://github.com/k3s-io/k3s/releases/download/v1.33.4+k3s1/k3s: download failed: [Errno -2] Name or service not known" >&2
        exit 1 ;;
esac
exit 0
"""


def load_noxfile(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    def session(*args: Any, **kwargs: Any) -> Any:
        if args and callable(args[0]):
            return args[0]
        return lambda function: function

    stub = types.ModuleType("nox")
    stub.options = types.SimpleNamespace()  # type: ignore[attr-defined]
    stub.session = session  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nox", stub)
    spec = importlib.util.spec_from_file_location("meshseed_noxfile", REPO / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Session:
    """What build_images uses of a nox session, recorded."""

    def __init__(self, bin_dir: Path, record: Path) -> None:
        self.bin = str(bin_dir)
        self.posargs = ["-j", "2"]
        self.record = record
        self.said: list[str] = []

    def install(self, *args: str) -> None:
        with self.record.open("a") as stream:
            stream.write("install\n")

    def run(self, *args: str) -> None:
        with self.record.open("a") as stream:
            stream.write("session.run " + " ".join(args) + "\n")

    def log(self, text: str) -> None:
        self.said.append(text)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Session:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "meshseed").write_text(FAKE_MESHSEED)
    (bin_dir / "meshseed").chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("MESHSEED_RECORD", str(record))
    return Session(bin_dir, record)


def build_images(monkeypatch: pytest.MonkeyPatch) -> Callable[[Session], None]:
    function: Callable[[Session], None] = load_noxfile(monkeypatch).build_images
    return function


def test_a_lock_without_upstream_pins_is_locked_first(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECK_STATUS", "1")
    monkeypatch.setenv("REGISTRIES", "reachable")
    build_images(monkeypatch)(session)
    assert session.record.read_text().splitlines() == [
        "install",
        "lock --check --only upstream",
        "lock --only upstream",
        "session.run meshseed build --images -j 2",
    ]
    assert session.said == [
        "images.lock did not pin k3s, Mycelium and the upstream images: "
        "wrote images.lock: 21 images, 3 binaries, 37 Debian packages for 1 of our images"
    ]


def test_without_the_registries_it_says_so_in_one_line_and_builds(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECK_STATUS", "1")
    monkeypatch.setenv("REGISTRIES", "unreachable")
    build_images(monkeypatch)(session)
    assert session.record.read_text().splitlines()[-1] == "session.run meshseed build --images -j 2"
    assert session.said == [
        "images.lock did not pin k3s, Mycelium and the upstream images, and `meshseed lock` failed "
        "(https://github.com/k3s-io/k3s/releases/download/v1.33.4+k3s1/k3s: download failed: "
        "[Errno -2] Name or service not known); building what can be built without them"
    ]


@pytest.mark.parametrize("status", ["0", "2"])
def test_a_pinned_or_unreadable_lock_is_left_to_the_build(
    session: Session, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    monkeypatch.setenv("CHECK_STATUS", status)
    build_images(monkeypatch)(session)
    assert session.record.read_text().splitlines() == [
        "install",
        "lock --check --only upstream",
        "session.run meshseed build --images -j 2",
    ]
    assert session.said == []
