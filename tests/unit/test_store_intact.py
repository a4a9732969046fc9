"""A dependency's entry is checked against its record before a build reads it; the check
is remembered by lstat, yet a changed file is caught, even one whose mtime was set back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import MeshseedError
from builder.store.intact import ensure_intact
from builder.store.realise import Status
from builder.store.store import Store
from tests.unit.test_store import CALLS, build, graph, greeting


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.prepare()
    CALLS.clear()
    return store


def tamper(path: Path, data: bytes) -> None:
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.write_bytes(data)


def count_hashing(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    verified: list[str] = []
    verify = store.verify

    def counting(store_name: str) -> str | None:
        verified.append(store_name)
        return verify(store_name)

    monkeypatch.setattr(store, "verify", counting)
    return verified


def test_a_tampered_dependency_is_refused_before_it_is_read(store: Store) -> None:
    build(store, graph("ada", "bob"))
    ada = store.path_of(greeting("ada").store_name)
    tamper(ada / "greeting.txt", b"hello mallory\n")
    with pytest.raises(MeshseedError) as caught:
        build(store, graph("ada", "bob", "cy"))
    assert caught.value.message.startswith(
        f"all: its dependency greet-ada cannot be trusted: store entry {ada.name} is corrupt: "
        "greeting.txt changed (recorded regular sha256:"
    )
    assert caught.value.hint == "run `meshseed build --repair`"
    assert not store.has(graph("ada", "bob", "cy").store_name)
    assert CALLS["all"] == 1
    assert build(store, graph("ada", "bob", "cy"), repair=True)["greet-ada"] is Status.REPAIRED


def test_an_added_file_is_refused(store: Store) -> None:
    build(store, graph("ada"))
    ada = store.path_of(greeting("ada").store_name)
    ada.chmod(0o755)
    (ada / "zz-extra.yaml").write_text("kind: ClusterRoleBinding\n")
    with pytest.raises(MeshseedError, match=r"zz-extra\.yaml was added"):
        build(store, graph("ada", "bob"))


def test_an_unchanged_entry_is_not_hashed_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    build(store, graph("ada"))
    verified = count_hashing(store, monkeypatch)
    for _ in range(3):
        ensure_intact(store, greeting("ada").store_name)
    assert verified == []


def test_a_change_with_the_same_size_inode_and_mtime_is_caught(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(store, graph("ada"))
    victim = store.path_of(greeting("ada").store_name) / "greeting.txt"
    ensure_intact(store, greeting("ada").store_name)
    before = victim.stat()
    victim.chmod(0o644)
    with victim.open("r+b") as stream:  # in place: same inode, same size
        stream.write(b"J")
    victim.chmod(0o444)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.utime(victim.parent, ns=(victim.parent.stat().st_atime_ns, victim.parent.stat().st_mtime_ns))
    after = victim.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    verified = count_hashing(store, monkeypatch)
    with pytest.raises(MeshseedError, match=r"greeting\.txt changed"):
        ensure_intact(store, greeting("ada").store_name)
    assert verified == [greeting("ada").store_name]


def test_a_rewritten_record_is_hashed_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    build(store, graph("ada"))
    record = store.path_of(greeting("ada").store_name) / ".entry.json"
    tamper(record, record.read_bytes().replace(b'"digest":"sha256:', b'"digest":"sha256:0'))
    verified = count_hashing(store, monkeypatch)
    with pytest.raises(MeshseedError, match="its digest is not sha256:0"):
        ensure_intact(store, greeting("ada").store_name)
    assert verified == [greeting("ada").store_name]
