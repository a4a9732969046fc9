"""The master key and the store belong to the site: found next to the site file wherever
meshseed runs from, and a missing key is made only by `build` or `keys init`."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from builder.cli import main
from builder.secrets import MASTER_KEY_ENV, Purpose, SecretDeriver
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site folder, with the working directory somewhere else and no key named."""
    folder = tmp_path / "campus"
    folder.mkdir()
    shutil.copy(EXAMPLE_SITE, folder / "site.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    return folder / "site.yaml"


def place_key(site: Path) -> Path:
    key = site.parent / ".meshseed" / "master.key"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    return key


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_key_next_to_the_site_is_used_from_any_directory(site: Path, capsys: Capture) -> None:
    place_key(site)
    status, out, _ = run(capsys, "secret", "k3s-token", str(site))
    assert status == 0
    assert out.strip() == SecretDeriver(TEST_MASTER_KEY, "campus").derive(Purpose.K3S_TOKEN).text
    assert list(Path().iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [["secret", "k3s-token"], ["nodes"], ["plan"], ["backup", "pull", "--via", "overlay", "--to", "b"]],
)
def test_a_missing_key_is_an_error_and_nothing_is_made(
    site: Path, capsys: Capture, command: list[str]
) -> None:
    status, out, err = run(capsys, *command, str(site))
    key = site.parent / ".meshseed" / "master.key"
    assert (status, out) == (2, "")
    assert err == (
        f"error: {key}: no master key here (restore it from your backup; only `meshseed keys init` "
        "and `meshseed build` make a new one)\n"
    )
    assert not key.exists()
    assert list(Path().iterdir()) == []


def test_keys_init_makes_the_key_next_to_the_site_once(site: Path, capsys: Capture) -> None:
    key = site.parent / ".meshseed" / "master.key"
    status, out, err = run(capsys, "keys", "init", str(site))
    assert (status, out) == (0, "")
    assert err.startswith(f"meshseed: created a new master key at {key}. Back it up now")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    made = key.read_bytes()
    assert len(made) == 32
    assert run(capsys, "keys", "init", str(site)) == (
        0,
        "",
        f"{key}: a master key is already there; kept it\n",
    )
    assert key.read_bytes() == made
    assert run(capsys, "secret", "k3s-token", str(site))[0] == 0
    assert list(Path().iterdir()) == []


def test_keys_init_checks_a_key_it_keeps(site: Path, capsys: Capture) -> None:
    key = place_key(site)
    key.chmod(0o644)
    status, _, err = run(capsys, "keys", "init", str(site))
    assert status == 2
    assert "readable by group or others" in err


def test_keys_init_makes_a_named_key(site: Path, tmp_path: Path, capsys: Capture) -> None:
    named = tmp_path / "vault" / "campus.key"
    assert run(capsys, "keys", "init", str(site), "--master-key", str(named))[0] == 0
    assert len(named.read_bytes()) == 32
    assert not (site.parent / ".meshseed").exists()


def test_build_makes_key_and_store_next_to_the_site(site: Path, tmp_path: Path, capsys: Capture) -> None:
    status, _, err = run(capsys, "build", str(site), "-o", str(tmp_path / "dist"))
    assert status == 0, err
    state = site.parent / ".meshseed"
    assert f"created a new master key at {state / 'master.key'}" in err
    assert (state / "store").is_dir()
    assert list(Path().iterdir()) == []
