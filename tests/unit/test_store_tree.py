"""Tree descriptions, mode classes, blobs and the store's files, pinned to what they write:
the exact entry record, digests, modes, messages and what garbage collection removes."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from builder.errors import MeshseedError
from builder.store import store as store_module
from builder.store.blobs import BlobStore
from builder.store.store import Store, storage_error
from builder.store.tree import Entry, ModeClass, file_sha256, scan, set_modes, tree_digest, walk


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (stat.S_IFREG | 0o644, ModeClass.REGULAR),
        (stat.S_IFREG | 0o640, ModeClass.REGULAR),
        (stat.S_IFREG | 0o604, ModeClass.REGULAR),
        (stat.S_IFREG | 0o444, ModeClass.REGULAR),
        (stat.S_IFREG | 0o600, ModeClass.PRIVATE),
        (stat.S_IFREG | 0o400, ModeClass.PRIVATE),
        (stat.S_IFREG | 0o755, ModeClass.EXECUTABLE),
        (stat.S_IFREG | 0o700, ModeClass.EXECUTABLE),
        (stat.S_IFREG | 0o655, ModeClass.REGULAR),  # only the owner's x bit counts
        (stat.S_IFDIR | 0o700, ModeClass.DIRECTORY),
        (stat.S_IFLNK | 0o777, ModeClass.SYMLINK),
    ],
)
def test_mode_classes(mode: int, expected: ModeClass) -> None:
    assert ModeClass.of(mode) is expected


def test_dist_and_frozen_modes() -> None:
    assert {m.value: (m.dist_mode(), m.frozen_mode()) for m in ModeClass} == {
        "regular": (0o644, 0o444),
        "executable": (0o755, 0o555),
        "private": (0o600, 0o400),
        "directory": (0o755, 0o555),
        "symlink": (0o777, 0o777),
    }


def test_file_sha256_reads_large_files_whole(tmp_path: Path) -> None:
    data = os.urandom(1 << 16) * 40  # 2.5 MiB: more than one read
    path = tmp_path / "big"
    path.write_bytes(data)
    assert file_sha256(path) == sha(data)
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == sha(b"")


def make_tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "a" / "b").write_bytes(b"bee")
    (root / "a-b").write_bytes(b"dash")
    (root / "skip").mkdir()
    (root / "skip" / "x").write_bytes(b"")
    (root / "run").write_bytes(b"#!")
    (root / "run").chmod(0o755)
    (root / "key").write_bytes(b"k")
    (root / "key").chmod(0o600)
    (root / "link").symlink_to("a/b")


def test_walk_is_in_byte_order_of_relative_paths(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in walk(tmp_path)] == [
        "a",
        "a-b",  # "-" sorts before "/" as bytes; as path parts it would come after a/b
        "a/b",
        "key",
        "link",
        "run",
        "skip",
        "skip/x",
    ]
    assert [p.name for p in walk(tmp_path, skip=frozenset({"skip", "a"}))] == ["a-b", "key", "link", "run"]


def test_scan_describes_each_kind(tmp_path: Path) -> None:
    make_tree(tmp_path)
    entries = scan(tmp_path, skip=frozenset({"skip"}), known={"run": "f" * 64})
    assert entries == [
        Entry("a", ModeClass.DIRECTORY, "", 0),
        Entry("a-b", ModeClass.REGULAR, sha(b"dash"), 4),
        Entry("a/b", ModeClass.REGULAR, sha(b"bee"), 3),
        Entry("key", ModeClass.PRIVATE, sha(b"k"), 1),
        Entry("link", ModeClass.SYMLINK, sha(b"a/b"), 3),
        Entry("run", ModeClass.EXECUTABLE, "f" * 64, 2),  # taken from `known`, not read
    ]


def test_scan_refuses_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="fifo: an output may hold only files, directories and symlinks"):
        scan(tmp_path)


def test_tree_digest_is_the_sha256_of_the_compact_listing() -> None:
    entries = [Entry("a", ModeClass.DIRECTORY, "", 0), Entry("a/b", ModeClass.REGULAR, "00", 3)]
    listing = b'[["a","directory","",0],["a/b","regular","00",3]]\n'
    assert tree_digest(entries) == "sha256:" + sha(listing)


def test_set_modes_freezes_and_thaws_everything_but_links(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    target_mode = stat.S_IMODE((root / "a" / "b").lstat().st_mode)

    def modes() -> dict[str, int]:
        return {
            p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in [root, *walk(root)]
            if not p.is_symlink()
        }

    set_modes(root, frozen=True)
    assert modes() == {
        ".": 0o555,
        "a": 0o555,
        "a-b": 0o444,
        "a/b": 0o444,
        "key": 0o400,
        "run": 0o555,
        "skip": 0o555,
        "skip/x": 0o444,
    }
    set_modes(root, frozen=False)
    assert modes() == {
        ".": 0o755,
        "a": 0o755,
        "a-b": 0o644,
        "a/b": 0o644,
        "key": 0o600,
        "run": 0o755,
        "skip": 0o755,
        "skip/x": 0o644,
    }
    assert target_mode == 0o644


def test_blob_paths_and_lock(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    digest = "sha256:" + sha(b"layer")
    assert blobs.path_of(digest) == tmp_path / ".blobs" / "sha256" / sha(b"layer")
    assert not blobs.has(digest)
    seen = []

    def download(partial: Path) -> None:
        assert partial == tmp_path / ".blobs" / "partial" / sha(b"layer")
        lock = tmp_path / ".blobs" / "partial" / f"{sha(b'layer')}.lock"
        seen.append(stat.S_IMODE(lock.stat().st_mode))
        fd = os.open(lock, os.O_RDWR)
        try:  # the lock is held while downloading
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        partial.write_bytes(b"layer")

    path = blobs.ensure(digest, download)
    assert (path, seen, path.read_bytes()) == (blobs.path_of(digest), [0o600], b"layer")
    assert blobs.has(digest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert not (tmp_path / ".blobs" / "partial" / sha(b"layer")).exists()


def test_a_blob_that_arrived_while_waiting_for_the_lock_is_not_downloaded(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    digest = "sha256:" + sha(b"x")
    target = blobs.path_of(digest)
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        target.write_bytes(b"x")  # another build finished it meanwhile
        real_flock(fd, operation)

    def download(partial: Path) -> None:
        raise AssertionError("downloaded twice")

    original = fcntl.flock
    fcntl.flock = flock  # type: ignore[assignment]
    try:
        assert blobs.ensure(digest, download) == target
    finally:
        fcntl.flock = original


def test_blob_garbage_collection(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    assert blobs.collect_garbage() == 0  # no .blobs yet
    kept = blobs.ensure("sha256:" + sha(b"kept"), lambda p: p.write_bytes(b"kept"))
    blobs.ensure("sha256:" + sha(b"gone"), lambda p: p.write_bytes(b"gone!"))
    os.link(kept, tmp_path / "entry-file")
    (tmp_path / ".blobs" / "partial" / "resumable").write_bytes(b"half")
    (tmp_path / ".blobs" / "stray-file").write_bytes(b"")
    assert blobs.collect_garbage() == 5
    assert blobs.has("sha256:" + sha(b"kept"))
    assert not blobs.has("sha256:" + sha(b"gone"))
    assert (tmp_path / ".blobs" / "partial" / "resumable").exists()


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (errno.ENOSPC, "no space left (disk full, quota or file size limit)"),
        (errno.EDQUOT, "no space left (disk full, quota or file size limit)"),
        (errno.EFBIG, "no space left (disk full, quota or file size limit)"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EIO, "Input/output error"),
    ],
)
def test_storage_errors(number: int, reason: str) -> None:
    error = storage_error(OSError(number, os.strerror(number), "/s/x"), "writing x")
    assert str(error) == f"writing x: {reason} (/s/x) (the store is unchanged; fix this and build again)"
    assert storage_error(OSError(number, os.strerror(number)), "w").message == f"w: {reason}"


def test_storage_error_without_strerror() -> None:
    assert storage_error(OSError("odd"), "w").message == "w: odd"


def test_prepare_makes_a_private_store(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    Store(root).prepare()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert sorted(p.name for p in root.iterdir()) == [".blobs", ".checked", ".locks", ".roots", ".tmp"]
    root.chmod(0o755)
    Store(root).prepare()  # again: nothing to create, but the mode is put right
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_prepare_failure_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(MeshseedError) as caught:
        Store(tmp_path / "file" / "store").prepare()
    assert caught.value.message.startswith(f"cannot prepare the store at {tmp_path}/file/store: ")


def test_shared_and_exclusive_store_locks(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.prepare()
    lock = tmp_path / ".locks" / "store.lock"

    def try_lock(kind: int) -> bool:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with store.shared():
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert (try_lock(fcntl.LOCK_SH), try_lock(fcntl.LOCK_EX)) == (True, False)
    with store.exclusive():
        assert try_lock(fcntl.LOCK_SH) is False
    assert try_lock(fcntl.LOCK_EX)
    with store.key_lock("abc"):
        fd = os.open(tmp_path / ".locks" / "abc.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def committed(store: Store, name: str = "k-out", known: dict[str, str] | None = None) -> Path:
    work = store.new_build_dir(name)
    (work / "data").write_bytes(b"data")
    (work / "data").chmod(0o644)
    (work / "bin").mkdir()
    store.commit(name, work, known)
    return store.path_of(name)


def test_commit_writes_the_entry_record(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    path = committed(store, known={"data": "d" * 64})
    record = (path / ".entry.json").read_text()
    entries = [["bin", "directory", "", 0], ["data", "regular", "d" * 64, 4]]
    digest = "sha256:" + sha(json.dumps(entries, separators=(",", ":")).encode() + b"\n")
    assert (
        record
        == json.dumps(
            {
                "digest": digest,
                "entries": [
                    {"mode": "directory", "path": "bin", "sha256": "", "size": 0},
                    {"mode": "regular", "path": "data", "sha256": "d" * 64, "size": 4},
                ],
                "name": "k-out",
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    stored = store.read("k-out")
    assert (stored.path, stored.digest) == (path, digest)
    assert stored.entries == (
        Entry("bin", ModeClass.DIRECTORY, "", 0),
        Entry("data", ModeClass.REGULAR, "d" * 64, 4),
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o555
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []


def test_commit_replaces_an_entry_in_the_way(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    committed(store)
    work = store.new_build_dir("k-out")
    (work / "new").write_bytes(b"")
    store.commit("k-out", work)
    assert [e.path for e in store.read("k-out").entries] == ["new"]
    assert sorted(p.name for p in store.path_of("k-out").iterdir()) == [".entry.json", "new"]


def test_new_build_dir_removes_leftovers_of_this_key_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    tmp = tmp_path / "s" / ".tmp"
    (tmp / "k-out.old1" / "sub").mkdir(parents=True)
    (tmp / "k-out.old1" / "sub").chmod(0o555)
    (tmp / "other.old2").mkdir()
    fresh = store.new_build_dir("k-out")
    assert fresh.parent == tmp and fresh.name.startswith("k-out.")
    assert sorted(p.name for p in tmp.iterdir()) == sorted([fresh.name, "other.old2"])


def test_entries_lists_committed_names_only(tmp_path: Path) -> None:
    assert Store(tmp_path / "missing").entries() == []
    store = Store(tmp_path / "s")
    store.prepare()
    committed(store, "b-two")
    committed(store, "a-one")
    assert store.entries() == ["a-one", "b-two"]
    assert store.has("a-one") and not store.has("c-three")


def test_verify_messages(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    path = committed(store)
    path.chmod(0o755)
    record = json.loads((path / ".entry.json").read_text())
    # The listing is right but the recorded digest is not.
    (path / ".entry.json").chmod(0o644)
    (path / ".entry.json").write_text(json.dumps({**record, "digest": "sha256:00"}))
    assert store.verify("k-out") == "its digest is not sha256:00"
    (path / ".entry.json").write_text("{not json")
    assert store.verify("k-out") == ".entry.json is missing or unreadable"
    (path / ".entry.json").write_text(json.dumps({"digest": "x"}))
    assert store.verify("k-out") == ".entry.json is missing or unreadable"
    (path / ".entry.json").unlink()
    assert store.verify("k-out") == ".entry.json is missing or unreadable"


def test_verify_names_the_changed_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    work = store.new_build_dir("k-out")
    (work / "data").write_bytes(b"data")
    (work / "data").chmod(0o644)
    path = store.commit("k-out", work).path
    (path / "data").chmod(0o600)
    assert store.verify("k-out") == (
        f"data changed (recorded regular sha256:{sha(b'data')}, found private sha256:{sha(b'data')})"
    )


def test_remove_takes_the_entry_out_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    store.remove("never-there")
    committed(store)
    store.remove("k-out")
    assert not store.path_of("k-out").exists()
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []


def test_add_root_writes_its_record(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    dist = tmp_path / "dist"
    store.add_root(dist, ["b", "a"])
    name = sha(str(dist.resolve()).encode())[:32]
    root_file = tmp_path / "s" / ".roots" / f"{name}.json"
    assert (
        root_file.read_text()
        == json.dumps({"entries": ["a", "b"], "result": str(dist.resolve())}, indent=2, sort_keys=True) + "\n"
    )


def test_live_entries_drop_stale_and_broken_roots(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    roots = tmp_path / "s" / ".roots"
    live, stale = tmp_path / "live", tmp_path / "stale"
    live.mkdir()
    (live / "build.json").write_text("{}")
    stale.mkdir()
    store.add_root(live, ["a", "b"])
    store.add_root(stale, ["c"])
    (roots / "broken.json").write_text("{")
    (roots / "other.txt").write_text("{")
    assert store.live_entries() == {"a", "b"}
    assert sorted(p.name for p in roots.iterdir()) == sorted(
        [f"{sha(str(live.resolve()).encode())[:32]}.json", "other.txt"]
    )


def test_collect_garbage_counts_bytes_and_keeps_shared_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    blob = store.blobs.ensure("sha256:" + sha(b"blob"), lambda p: p.write_bytes(b"blob"))
    work = store.new_build_dir("k-dead")
    (work / "own").write_bytes(b"12345")
    os.link(blob, work / "shared")
    store.commit("k-dead", work)
    record_size = (store.path_of("k-dead") / ".entry.json").stat().st_size
    with store.key_lock("k"):
        pass
    (tmp_path / "s" / ".tmp" / "left.over").mkdir()
    dead, freed = store.collect_garbage()
    # own file and record, then the blob once nothing links it: 5 + record + 4
    assert (dead, freed) == (["k-dead"], 5 + record_size + 4)
    assert sorted(p.name for p in (tmp_path / "s" / ".locks").iterdir()) == ["store.lock"]
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []
    assert not store.blobs.has("sha256:" + sha(b"blob"))


def test_thaw_and_remove_thaws_directories_but_not_link_targets(tmp_path: Path) -> None:
    store_module._thaw_and_remove(tmp_path / "absent")
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o555)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("")
    (tree / "link").symlink_to(outside)
    (tree / "sub").chmod(0o555)
    tree.chmod(0o555)
    store_module._thaw_and_remove(tree)
    assert not tree.exists()
    assert stat.S_IMODE(outside.stat().st_mode) == 0o555  # a link's target is not thawed


def test_directories_are_thawed_before_removal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root may delete inside read-only directories; everyone else needs them writable first.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub").chmod(0o555)
    tree.chmod(0o555)
    modes: dict[str, int] = {}
    real_rmtree = store_module.shutil.rmtree

    def rmtree(path: Path, ignore_errors: bool = False) -> None:
        modes.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")]})
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(store_module.shutil, "rmtree", rmtree)
    store_module._thaw_and_remove(tree)
    assert modes == {"tree": 0o700, "sub": 0o700}
    assert not tree.exists()


def test_entries_are_writable_while_they_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Moving a directory to another parent rewrites its ".." link: it must be writable.
    store = Store(tmp_path / "s")
    store.prepare()
    moves: list[tuple[str, str, int]] = []
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        moves.append((self.parent.name, Path(target).parent.name, stat.S_IMODE(self.stat().st_mode)))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    committed(store)
    store.remove("k-out")
    assert [(source, mode) for source, _, mode in moves] == [(".tmp", 0o700), ("s", 0o700)]


def test_gc_survives_a_stray_file_among_leftovers(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    (tmp_path / "s" / ".tmp" / "stray").write_text("")
    assert store.collect_garbage() == ([], 0)


def test_an_interrupted_removal_leaves_a_leftover_gc_can_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s")
    store.prepare()
    committed(store)

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_thaw_and_remove", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.remove("k-out")
    (leftover,) = (tmp_path / "s" / ".tmp").iterdir()
    assert leftover.name.startswith("k-out.") and leftover.name.endswith(".dead")
    assert (leftover / "entry" / "data").read_bytes() == b"data"
    monkeypatch.undo()
    store.collect_garbage()
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []
