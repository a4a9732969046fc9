"""Finding and reading the master key: every way a key file can be wrong is refused, clearly."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import TypeAlias

import pytest

import builder.secrets as secrets_module
from builder.cli import main
from builder.errors import ExitStatus, MeshseedError
from builder.secrets import DEFAULT_MASTER_KEY, MASTER_KEY_ENV, load_master_key, master_key_path
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY

Capture: TypeAlias = pytest.CaptureFixture[str]


def refusal(path: Path, *, create: bool = False) -> str:
    with pytest.raises(MeshseedError) as caught:
        load_master_key(path, create=create)
    assert caught.value.status is ExitStatus.BAD_INPUT
    return str(caught.value)


# Every bit of group or other access counts, execute and write included: the README
# promises that a key anyone but its owner can reach is refused.
@pytest.mark.parametrize("mode", [0o604, 0o640, 0o644, 0o660, 0o602, 0o620, 0o601, 0o610, 0o777])
def test_a_key_others_can_reach_is_refused(master_key_file: Path, mode: int) -> None:
    master_key_file.chmod(mode)
    assert refusal(master_key_file) == (
        f"{master_key_file}: the master key is readable by group or others (mode {mode:04o}) "
        f"(chmod 600 {master_key_file})"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_key_only_its_owner_can_reach_is_read(master_key_file: Path, mode: int) -> None:
    master_key_file.chmod(mode)
    assert load_master_key(master_key_file, create=False) == TEST_MASTER_KEY


def test_a_fifo_at_the_key_path_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "master.key"
    os.mkfifo(fifo, 0o600)
    # A blocking open would hang here for ever; the test finishing at all is part of the check.
    assert refusal(fifo) == f"{fifo}: the master key must be a regular file"
    assert refusal(fifo, create=True) == f"{fifo}: the master key must be a regular file"
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_directory_at_the_key_path_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "master.key"
    directory.mkdir(mode=0o700)
    assert refusal(directory, create=True) == f"{directory}: the master key must be a regular file"


def test_a_symlink_to_a_private_key_is_followed(master_key_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.key"
    link.symlink_to(master_key_file)
    assert load_master_key(link, create=False) == TEST_MASTER_KEY


def test_a_path_through_a_file_is_a_missing_key(master_key_file: Path) -> None:
    inside = master_key_file / "master.key"
    assert refusal(inside) == (
        f"{inside}: no master key here (restore it from your backup; only `meshseed keys init` "
        "and `meshseed build` make a new one)"
    )


def test_an_empty_environment_variable_is_refused_not_taken_as_unset() -> None:
    with pytest.raises(MeshseedError) as caught:
        master_key_path(None, {MASTER_KEY_ENV: ""})
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert str(caught.value) == (
        f"${MASTER_KEY_ENV} is set but empty "
        f"(name the key file in it, or unset it to use {DEFAULT_MASTER_KEY})"
    )
    # The command-line option still wins over a bad variable.
    assert master_key_path(Path("a.key"), {MASTER_KEY_ENV: ""}) == (Path("a.key"), False)


def test_the_default_path_is_used_only_without_option_or_variable() -> None:
    assert master_key_path(None, {"OTHER": "x"}) == (DEFAULT_MASTER_KEY, True)
    assert master_key_path(None, {MASTER_KEY_ENV: "b.key"}) == (Path("b.key"), False)


def test_losing_the_creation_race_reads_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ".meshseed" / "master.key"
    theirs = bytes(range(100, 132))

    def another_process_links_first(source: Path, target: Path) -> None:
        Path(target).write_bytes(theirs)
        Path(target).chmod(0o600)
        raise FileExistsError(target)

    monkeypatch.setattr(os, "link", another_process_links_first)
    assert load_master_key(path, create=True) == theirs
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]
    assert capsys.readouterr().err == ""


def test_a_created_key_is_announced_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "master.key"
    key = load_master_key(path, create=True)
    assert path.read_bytes() == key
    assert capsys.readouterr().err == (
        f"meshseed: created a new master key at {path}. Back it up now: every secret of the "
        "site is derived from it and cannot be recreated without it.\n"
    )


def secret_command(capsys: Capture, *extra: str) -> tuple[int, str, str]:
    status = main(["secret", "k3s-token", str(EXAMPLE_SITE), *extra])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_refuses_a_fifo_with_status_2(tmp_path: Path, capsys: Capture) -> None:
    fifo = tmp_path / "master.key"
    os.mkfifo(fifo, 0o600)
    assert secret_command(capsys, "--master-key", str(fifo)) == (
        2,
        "",
        f"error: {fifo}: the master key must be a regular file\n",
    )


def test_cli_refuses_a_world_readable_key_with_status_2(master_key_file: Path, capsys: Capture) -> None:
    master_key_file.chmod(0o604)
    status, out, err = secret_command(capsys, "--master-key", str(master_key_file))
    assert (status, out) == (2, "")
    assert err == (
        f"error: {master_key_file}: the master key is readable by group or others (mode 0604) "
        f"(chmod 600 {master_key_file})\n"
    )


def test_cli_refuses_an_empty_key_variable_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_SITE, tmp_path / "site.yaml")
    monkeypatch.setenv(MASTER_KEY_ENV, "")
    assert secret_command(capsys) == (
        2,
        "",
        f"error: ${MASTER_KEY_ENV} is set but empty "
        f"(name the key file in it, or unset it to use {EXAMPLE_SITE.parent / DEFAULT_MASTER_KEY})\n",
    )
    assert not (tmp_path / ".meshseed").exists()


def open_fds() -> set[str]:
    return {entry.name for entry in Path("/proc/self/fd").iterdir()}


def test_reading_and_creating_keys_leaves_no_file_open(master_key_file: Path, tmp_path: Path) -> None:
    before = open_fds()
    load_master_key(master_key_file, create=False)
    master_key_file.chmod(0o644)
    with pytest.raises(MeshseedError):
        load_master_key(master_key_file, create=False)
    load_master_key(tmp_path / "new" / "master.key", create=True)
    assert open_fds() == before


def test_a_key_is_created_below_missing_or_existing_directories(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "master.key"
    assert len(load_master_key(deep, create=True)) == 32
    assert stat.S_IMODE(deep.parent.stat().st_mode) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir()
    assert load_master_key(existing / "master.key", create=True) != load_master_key(deep, create=True)


def test_a_symlink_loop_is_a_clear_error(tmp_path: Path) -> None:
    loop = tmp_path / "master.key"
    loop.symlink_to(loop)
    assert refusal(loop, create=True) == (
        f"{loop}: cannot read the master key: Too many levels of symbolic links"
    )


def test_a_read_error_is_a_clear_error(master_key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_open(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    # Shadows the builtin for builder.secrets only: a disk that fails mid-read.
    monkeypatch.setattr(secrets_module, "open", failing_open, raising=False)
    assert refusal(master_key_file) == f"{master_key_file}: cannot read the master key: Input/output error"
