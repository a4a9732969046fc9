"""`meshseed store gc` never follows a symlink: whatever a link in the store names,
outside it, keeps its mode and its files."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def work(tmp_path: Path, master_key_file: Path) -> Path:
    """A store with entries that no dist/ refers to any more (so gc removes them)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(EXAMPLE_SITE, work / "site.yaml")
    result = meshseed("build", cwd=work, master_key=master_key_file)
    assert result.returncode == 0, result.stderr
    shutil.rmtree(work / "dist")
    return work


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the store with a file, each with a mode gc has no business changing."""
    target = tmp_path / "outside"
    target.mkdir()
    (target / "precious").write_text("keep me\n")
    (target / "precious").chmod(0o640)
    target.chmod(0o750)
    return target


def plant(store: Path, where: str, outside: Path) -> Path:
    """A symlink to `outside` (or its file) at one kind of place in the store; returns the link."""
    if where == "inside an entry":
        entry = next(p for p in store.iterdir() if p.name.endswith("-seed-edx1"))
        entry.chmod(0o755)
        (entry / "to-file").symlink_to(outside / "precious")
        (entry / "to-dir").symlink_to(outside)
        entry.chmod(0o555)
        return entry / "to-dir"
    link = {
        "as an entry": store / f"{'0' * 64}-planted",
        "as a build leftover": store / ".tmp" / f"{'1' * 64}-seed-edx1.abc",
        "as a blob directory": store / ".blobs" / "sha512",
    }[where]
    link.symlink_to(outside)
    return link


PLACES = ["inside an entry", "as an entry", "as a build leftover", "as a blob directory"]


@pytest.mark.parametrize("where", PLACES)
def test_gc_follows_no_symlink(work: Path, outside: Path, master_key_file: Path, where: str) -> None:
    store = work / ".meshseed" / "store"
    link = plant(store, where, outside)
    (store / ".blobs" / "sha256").mkdir(exist_ok=True)
    (store / ".blobs" / "sha256" / ("2" * 64)).symlink_to(outside / "precious")

    result = meshseed("store", "gc", "--json", cwd=work, master_key=master_key_file)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert (mode(outside), mode(outside / "precious")) == (0o750, 0o640)
    assert (outside / "precious").read_text() == "keep me\n"
    # The links themselves are gone, with every entry no dist/ refers to.
    assert not link.is_symlink()
    assert not (store / ".blobs" / "sha256" / ("2" * 64)).is_symlink()
    assert [p for p in store.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("inner", [".tmp", ".blobs"])
def test_gc_refuses_a_store_whose_own_directory_is_a_symlink(
    work: Path, outside: Path, master_key_file: Path, inner: str
) -> None:
    store = work / ".meshseed" / "store"
    shutil.rmtree(store / inner)
    (outside / "sha256").mkdir(mode=0o750)
    (outside / "sha256" / "stray").write_text("not a blob\n")
    (store / inner).symlink_to(outside)

    result = meshseed("store", "gc", cwd=work, master_key=master_key_file)

    assert result.returncode == 1
    assert f"error: .meshseed/store/{inner}: is a symlink; refusing to use the store" in result.stderr
    assert (mode(outside), mode(outside / "precious")) == (0o750, 0o640)
    assert sorted(p.name for p in outside.iterdir()) == ["precious", "sha256"]
    assert (outside / "sha256" / "stray").exists()
