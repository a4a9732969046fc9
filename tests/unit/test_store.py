"""Derivation keys, the store's commit protocol, caching, repair and garbage collection."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest

from builder.errors import MeshseedError
from builder.secrets import SecretDeriver
from builder.store.derivation import BuildContext, Derivation
from builder.store.progress import SilentProgress
from builder.store.realise import Status, closure, realise
from builder.store.store import Store
from tests.conftest import TEST_MASTER_KEY

CALLS: Counter[str] = Counter()
BARRIER = threading.Barrier(2, timeout=10)


def write_greeting(ctx: BuildContext) -> None:
    CALLS[ctx.derivation.name] += 1
    ctx.write("greeting.txt", f"hello {ctx.inputs['who']}\n")
    ctx.write("secret.txt", "s3cret\n", private=True)
    ctx.write("bin/run", "#!/bin/sh\n", executable=True)


def concatenate(ctx: BuildContext) -> None:
    CALLS[ctx.derivation.name] += 1
    parts = [(ctx.dep(name) / "greeting.txt").read_text() for name in sorted(ctx.derivation.inputs["parts"])]
    ctx.write("all.txt", "".join(parts))


def wait_for_the_other(ctx: BuildContext) -> None:
    BARRIER.wait()
    ctx.write("done", "")


def fail(ctx: BuildContext) -> None:
    ctx.write("partial", "half")
    raise RuntimeError("the build broke")


def run_out_of_space(ctx: BuildContext) -> None:
    ctx.write("partial", "half")
    raise OSError(errno.ENOSPC, "No space left on device", str(ctx.out / "big"))


def read_template(ctx: BuildContext) -> None:
    ctx.write("copy", ctx.source("template"))


def greeting(who: str, name: str | None = None) -> Derivation:
    return Derivation(name=name or f"greet-{who}", build=write_greeting, inputs={"who": who})


def graph(*people: str) -> Derivation:
    parts = [greeting(who) for who in people]
    return Derivation(
        name="all", build=concatenate, inputs={"parts": [p.name for p in parts]}, deps=tuple(parts)
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.prepare()
    CALLS.clear()
    return store


def build(store: Store, *targets: Derivation, jobs: int = 2, repair: bool = False) -> dict[str, Status]:
    results = realise(store, targets, jobs=jobs, progress=SilentProgress(), repair=repair)
    return {r.derivation.name: r.status for r in results}


def test_key_covers_inputs_deps_sources_and_secrets(tmp_path: Path) -> None:
    base = greeting("ada")
    assert base.key == greeting("ada").key
    assert len(base.key) == 64
    assert greeting("bob", name="greet-ada").key != base.key
    assert Derivation(name="greet-ada", build=concatenate, inputs={"who": "ada"}).key != base.key
    assert graph("ada").key != graph("bob").key
    template = tmp_path / "t"
    template.write_text("one")
    first = Derivation(name="t", build=read_template, inputs={}, sources={"template": template}).key
    template.write_text("two")
    assert Derivation(name="t", build=read_template, inputs={}, sources={"template": template}).key != first
    keyed = [
        Derivation(name="s", build=write_greeting, inputs={}, secrets=SecretDeriver(key, "c")).key
        for key in (TEST_MASTER_KEY, bytes(32))
    ]
    assert keyed[0] != keyed[1]
    assert TEST_MASTER_KEY.hex() not in repr(keyed)


def test_second_build_is_all_cached(store: Store) -> None:
    assert build(store, graph("ada", "bob")) == {
        "greet-ada": Status.BUILT,
        "greet-bob": Status.BUILT,
        "all": Status.BUILT,
    }
    assert build(store, graph("ada", "bob")) == dict.fromkeys(
        ("greet-ada", "greet-bob", "all"), Status.CACHED
    )
    assert CALLS == {"greet-ada": 1, "greet-bob": 1, "all": 1}
    output = store.path_of(graph("ada", "bob").store_name)
    assert (output / "all.txt").read_text() == "hello ada\nhello bob\n"


def test_a_change_rebuilds_only_what_depends_on_it(store: Store) -> None:
    build(store, graph("ada", "bob"))
    assert build(store, graph("ada", "cy")) == {
        "greet-ada": Status.CACHED,
        "greet-cy": Status.BUILT,
        "all": Status.BUILT,
    }


def test_entries_are_read_only_and_keep_mode_classes(store: Store) -> None:
    build(store, greeting("ada"))
    entry = store.path_of(greeting("ada").store_name)
    modes = {
        p.relative_to(entry).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [entry, *entry.rglob("*")]
    }
    assert modes == {
        ".": 0o555,
        ".entry.json": 0o444,
        "bin": 0o555,
        "bin/run": 0o555,
        "greeting.txt": 0o444,
        "secret.txt": 0o400,
    }
    assert [e.mode.value for e in store.read(greeting("ada").store_name).entries] == [
        "directory",
        "executable",
        "regular",
        "private",
    ]


def test_outputs_do_not_depend_on_the_umask(store: Store, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        build(store, greeting("ada"))
    finally:
        os.umask(old)
    other = Store(tmp_path / "other")
    other.prepare()
    build(other, greeting("ada"))
    name = greeting("ada").store_name
    assert store.read(name).digest == other.read(name).digest


def test_independent_derivations_run_in_parallel(store: Store) -> None:
    pair = [Derivation(name=n, build=wait_for_the_other, inputs={}) for n in ("left", "right")]
    assert build(store, *pair, jobs=2) == {"left": Status.BUILT, "right": Status.BUILT}


def test_a_failed_build_leaves_nothing_behind(store: Store) -> None:
    broken = Derivation(name="broken", build=fail, inputs={})
    with pytest.raises(MeshseedError, match="building broken failed: RuntimeError: the build broke"):
        build(store, broken, greeting("ada"))
    assert not store.has(broken.store_name)
    assert list((store.root / ".tmp").iterdir()) == []


def test_disk_full_is_a_clear_error_and_leaves_the_store_consistent(store: Store) -> None:
    full = Derivation(name="full", build=run_out_of_space, inputs={})
    with pytest.raises(MeshseedError) as caught:
        build(store, full)
    assert "no space left (disk full, quota or file size limit)" in str(caught.value)
    assert "full" in str(caught.value)
    assert store.entries() == []
    assert list((store.root / ".tmp").iterdir()) == []


def test_verify_finds_corruption_and_repair_rebuilds(store: Store) -> None:
    build(store, greeting("ada"))
    name = greeting("ada").store_name
    assert store.verify(name) is None
    victim = store.path_of(name) / "greeting.txt"
    victim.chmod(0o644)
    victim.write_text("tampered\n")
    assert store.verify(name).startswith("greeting.txt changed (recorded regular sha256:")  # type: ignore[union-attr]
    assert build(store, greeting("ada")) == {"greet-ada": Status.CACHED}
    assert build(store, greeting("ada"), repair=True) == {"greet-ada": Status.REPAIRED}
    assert store.verify(name) is None
    assert victim.read_text() == "hello ada\n"


def test_verify_reports_missing_and_added_files(store: Store) -> None:
    build(store, greeting("ada"))
    entry = store.path_of(greeting("ada").store_name)
    entry.chmod(0o755)
    (entry / "extra").write_text("")
    assert store.verify(greeting("ada").store_name) == "extra was added"
    (entry / "extra").unlink()
    (entry / "greeting.txt").unlink()
    assert store.verify(greeting("ada").store_name) == "greeting.txt is missing"


def test_source_changed_during_build_is_caught(store: Store, tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.write_text("one")
    derivation = Derivation(name="t", build=read_template, inputs={}, sources={"template": template})
    assert derivation.key
    template.write_text("two")
    with pytest.raises(MeshseedError, match="changed while t was being built"):
        build(store, derivation)


def test_gc_keeps_rooted_entries_only(store: Store, tmp_path: Path) -> None:
    build(store, greeting("old"))
    build(store, greeting("ada"))
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "build.json").write_text("{}")
    store.add_root(dist, [greeting("ada").store_name])
    (store.root / ".tmp" / "leftover.1234").mkdir()
    removed, freed = store.collect_garbage()
    assert removed == [greeting("old").store_name]
    assert freed > 0
    assert store.entries() == [greeting("ada").store_name]
    assert list((store.root / ".tmp").iterdir()) == []
    (dist / "build.json").unlink()
    assert store.collect_garbage()[0] == [greeting("ada").store_name]


def test_closure_orders_dependencies_first_and_rejects_name_clashes() -> None:
    order = [d.name for d in closure([graph("ada", "bob")])]
    assert order == ["greet-ada", "greet-bob", "all"]
    with pytest.raises(MeshseedError, match="share the name 'greet-ada'"):
        closure([greeting("ada"), greeting("bob", name="greet-ada")])


def test_blobs_are_shared_by_hard_links_and_collected_when_unused(store: Store, tmp_path: Path) -> None:
    digest = "sha256:" + hashlib.sha256(b"layer").hexdigest()
    downloads = []

    def download(partial: Path) -> None:
        downloads.append(partial)
        partial.write_bytes(b"layer")

    first = store.blobs.ensure(digest, download)
    assert store.blobs.ensure(digest, download) == first
    assert len(downloads) == 1
    assert stat.S_IMODE(first.stat().st_mode) == 0o444
    linked = tmp_path / "entry-file"
    os.link(first, linked)
    assert store.blobs.collect_garbage() == 0
    linked.unlink()
    assert store.blobs.collect_garbage() == len(b"layer")
    assert not store.blobs.has(digest)


def test_removal_cut_short_leaves_no_entry_that_looks_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(store, greeting("ada"))
    name = greeting("ada").store_name

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("builder.store.store._thaw_and_remove", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.remove(name)
    assert not store.has(name)
    assert name not in store.entries()
