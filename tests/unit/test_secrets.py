"""Derived secrets and the master key file."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from builder.errors import ExitStatus, MeshseedError
from builder.secrets import (
    DEFAULT_MASTER_KEY,
    MASTER_KEY_ENV,
    RECIPES,
    Purpose,
    Scope,
    SecretDeriver,
    load_master_key,
    master_key_path,
)
from tests.conftest import TEST_MASTER_KEY


def rfc5869_hkdf_sha256(key: bytes, info: bytes, length: int) -> bytes:
    """HKDF written out from RFC 5869 (empty salt), to check the derivation independently."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_pinned_values_for_the_test_master_key() -> None:
    """A change to the derivation would change every deployed secret: it must not pass silently."""
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    assert deriver.derive(Purpose.K3S_TOKEN).text == (
        "f3f2ddbb3b8ef865f9b2654ecb272fe401f44615fd5d1ba32cd3a6591eed00d2"
    )
    assert deriver.derive(Purpose.COUCHDB_ADMIN_PASSWORD).text == "xI9h8TgENyY_O6SWISRgBYvY2kXp6lHA"
    assert deriver.derive(Purpose.COUCHDB_UUID).text == "4e3eaf502b496188a4546b1c30df0ba4"
    assert deriver.derive(Purpose.MYCELIUM_KEY, "edx1").text == (
        "2b0b056b0446c4739976aca4de8c4c1676fcf28b666daf7c0a6e16905317b4bb"
    )


@pytest.mark.parametrize("purpose", list(Purpose))
def test_derivation_is_hkdf_sha256_with_a_labelled_info(purpose: Purpose) -> None:
    node = "edx2" if RECIPES[purpose].scope is Scope.NODE else None
    info = f"meshseed/v1/campus/{purpose.value}" + (f"/{node}" if node else "")
    expected = rfc5869_hkdf_sha256(TEST_MASTER_KEY, info.encode(), RECIPES[purpose].size)
    assert SecretDeriver(TEST_MASTER_KEY, "campus").derive(purpose, node).raw == expected


def test_secrets_differ_by_key_cluster_purpose_and_node() -> None:
    base = SecretDeriver(TEST_MASTER_KEY, "campus")
    values = {
        base.derive(Purpose.K3S_TOKEN).raw[:16],
        base.derive(Purpose.COUCHDB_ERLANG_COOKIE).raw[:16],
        base.derive(Purpose.MYCELIUM_KEY, "edx1").raw[:16],
        base.derive(Purpose.MYCELIUM_KEY, "edx2").raw[:16],
        SecretDeriver(bytes(32), "campus").derive(Purpose.K3S_TOKEN).raw[:16],
        SecretDeriver(TEST_MASTER_KEY, "other").derive(Purpose.K3S_TOKEN).raw[:16],
    }
    assert len(values) == 6


def test_formats_suit_their_consumers() -> None:
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    cookie = deriver.derive(Purpose.COUCHDB_ERLANG_COOKIE).text
    assert cookie.isalnum()
    assert len(deriver.derive(Purpose.COUCHDB_UUID).text) == 32
    django = deriver.derive(Purpose.LMS_DJANGO_SECRET_KEY).text
    assert len(django) >= 48
    assert set(django) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_scope_is_enforced() -> None:
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    with pytest.raises(ValueError, match="node secret"):
        deriver.derive(Purpose.MYCELIUM_KEY)
    with pytest.raises(ValueError, match="cluster secret"):
        deriver.derive(Purpose.K3S_TOKEN, "edx1")


def test_secret_repr_hides_the_value() -> None:
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    secret = deriver.derive(Purpose.K3S_TOKEN)
    assert secret.text not in repr(secret)
    assert secret.text not in f"{secret}"
    assert TEST_MASTER_KEY.hex() not in repr(deriver)


def test_first_use_creates_a_private_key_and_says_to_back_it_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ".meshseed" / "master.key"
    key = load_master_key(path, create=True)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "Back it up" in capsys.readouterr().err
    assert load_master_key(path, create=True) == key
    assert capsys.readouterr().err == ""
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]


def test_key_readable_by_others_is_refused(master_key_file: Path) -> None:
    master_key_file.chmod(0o640)
    with pytest.raises(MeshseedError) as caught:
        load_master_key(master_key_file, create=False)
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert str(caught.value) == (
        f"{master_key_file}: the master key is readable by group or others (mode 0640) "
        f"(chmod 600 {master_key_file})"
    )


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_of_wrong_size_is_refused(master_key_file: Path, size: int) -> None:
    master_key_file.write_bytes(b"k" * size)
    with pytest.raises(MeshseedError, match=rf"exactly 32 bytes, this file has {size} \(restore") as caught:
        load_master_key(master_key_file, create=True)
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert master_key_file.read_bytes() == b"k" * size


def test_missing_key_at_a_named_path_is_not_replaced(tmp_path: Path) -> None:
    with pytest.raises(MeshseedError, match="no master key here"):
        load_master_key(tmp_path / "typo.key", create=False)
    assert not (tmp_path / "typo.key").exists()


def test_key_path_precedence() -> None:
    assert master_key_path(Path("a.key"), {MASTER_KEY_ENV: "b.key"}) == (Path("a.key"), False)
    assert master_key_path(None, {MASTER_KEY_ENV: "b.key"}) == (Path("b.key"), False)
    assert master_key_path(None, {}) == (DEFAULT_MASTER_KEY, True)
