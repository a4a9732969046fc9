"""Derivation keys, build contexts, realisation order and progress output, pinned to the
exact key description, modes, statuses, messages and lines they produce."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from builder.errors import MeshseedError
from builder.secrets import SecretDeriver
from builder.store.blobs import BlobStore
from builder.store.derivation import BuildContext, Derivation, HashingWriter
from builder.store.progress import BarProgress, LineProgress, SilentProgress, progress_for
from builder.store.realise import Result, Status, closure, realise
from builder.store.store import Store
from builder.version import builder_version
from tests.conftest import TEST_MASTER_KEY


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def noop(ctx: BuildContext) -> None:
    ctx.write("out", ctx.derivation.name)


def test_key_is_the_sha256_of_the_documented_description(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"bee")
    (tmp_path / "a").write_bytes(b"ay")
    dep = Derivation(name="dep", build=noop, inputs={})
    secrets = SecretDeriver(TEST_MASTER_KEY, "lab")
    derivation = Derivation(
        name="main",
        build=noop,
        inputs={"z": 1, "a": ["x"]},
        deps=(dep,),
        sources={"second": tmp_path / "b", "first": tmp_path / "a"},
        secrets=secrets,
    )
    description = {
        "builder": builder_version(),
        "deps": {"dep": dep.key},
        "function": f"{__name__}.noop",
        "inputs": {"a": ["x"], "z": 1},
        "name": "main",
        "secrets": secrets.fingerprint(),
        "sources": {"first": sha(b"ay"), "second": sha(b"bee")},
    }
    expected = sha(json.dumps(description, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    assert derivation.key == expected
    assert derivation.store_name == f"{expected}-main"
    assert derivation.source_digests == {"first": sha(b"ay"), "second": sha(b"bee")}
    plain = {"builder": builder_version(), "deps": {}, "function": f"{__name__}.noop", "inputs": {}}
    plain |= {"name": "dep", "secrets": None, "sources": {}}
    assert dep.key == sha(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode() + b"\n")


def test_hashing_writer_passes_bytes_through() -> None:
    target = io.BytesIO()
    writer = HashingWriter(target)
    assert writer.writable()
    assert writer.write(b"abc") == 3
    assert writer.write(b"de") == 2
    assert writer.tell() == 5
    assert (target.getvalue(), writer.sha256.hexdigest()) == (b"abcde", sha(b"abcde"))


def context(tmp_path: Path, derivation: Derivation | None = None) -> BuildContext:
    out = tmp_path / "out"
    out.mkdir()
    return BuildContext(
        derivation or Derivation(name="d", build=noop, inputs={"k": 1}),
        out,
        {"dep": tmp_path / "dep-out"},
        BlobStore(tmp_path),
    )


def test_context_reads_inputs_deps_and_refuses_undeclared_secrets(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert ctx.inputs == {"k": 1}
    assert ctx.dep("dep") == tmp_path / "dep-out"
    with pytest.raises(RuntimeError, match="d did not declare that it uses secrets"):
        ctx.secrets  # noqa: B018
    deriver = SecretDeriver(TEST_MASTER_KEY, "lab")
    keyed = BuildContext(
        Derivation(name="s", build=noop, inputs={}, secrets=deriver), tmp_path, {}, ctx.blobs
    )
    assert keyed.secrets is deriver


@pytest.mark.parametrize(
    ("options", "mode"),
    [
        ({}, 0o644),
        ({"private": True}, 0o600),
        ({"executable": True}, 0o755),
        ({"private": True, "executable": True}, 0o600),
    ],
)
def test_write_gives_explicit_modes_whatever_the_umask(
    tmp_path: Path, options: dict[str, bool], mode: int
) -> None:
    ctx = context(tmp_path)
    old = os.umask(0o077)
    try:
        path = ctx.write("sub/dir/file", "text é", **options)
    finally:
        os.umask(old)
    assert path == ctx.out / "sub/dir/file"
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == ("text é".encode(), mode)


def test_write_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(tmp_path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    ctx.write("f", b"0123456789")
    monkeypatch.undo()
    assert (ctx.out / "f").read_bytes() == b"0123456789"
    path = ctx.write("f", b"short")  # truncates what was there
    assert path.read_bytes() == b"short"


def test_open_output_records_the_digest_and_mode(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    old = os.umask(0o077)
    try:
        with ctx.open_output("deep/er/layer.tar") as stream:
            stream.write(b"part one ")
            stream.write(b"part two")
    finally:
        os.umask(old)
    path = ctx.out / "deep/er/layer.tar"
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == (b"part one part two", 0o644)
    with ctx.open_output("deep/er/other") as stream:
        stream.write(b"")
    assert ctx.known_digests == {"deep/er/layer.tar": sha(b"part one part two"), "deep/er/other": sha(b"")}


def test_link_blob_hard_links_and_records_the_hex_digest(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    blob = tmp_path / "blob"
    blob.write_bytes(b"layer")
    ctx.link_blob("blobs/sha256/x", "sha256:" + sha(b"layer"), blob)
    ctx.link_blob("blobs/sha256/y", "sha256:" + sha(b"layer"), blob)
    linked = ctx.out / "blobs/sha256/x"
    assert linked.stat().st_ino == blob.stat().st_ino
    assert ctx.known_digests == {"blobs/sha256/x": sha(b"layer"), "blobs/sha256/y": sha(b"layer")}


def test_source_is_checked_against_the_key(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.write_bytes(b"one")
    derivation = Derivation(name="t", build=noop, inputs={}, sources={"s": source})
    assert derivation.key
    ctx = context(tmp_path, derivation)
    assert ctx.source("s") == b"one"
    source.write_bytes(b"two")
    with pytest.raises(MeshseedError) as caught:
        ctx.source("s")
    assert str(caught.value) == f"{source} changed while t was being built (run the build again)"


def chain() -> tuple[Derivation, Derivation, Derivation]:
    a = Derivation(name="a", build=noop, inputs={})
    b = Derivation(name="b", build=noop, inputs={}, deps=(a,))
    c = Derivation(name="c", build=noop, inputs={}, deps=(a, b))
    return a, b, c


def test_closure_visits_each_derivation_once() -> None:
    _a, b, c = chain()
    same_a = Derivation(name="a", build=noop, inputs={})
    assert [d.name for d in closure([c, same_a, b])] == ["a", "b", "c"]


def test_closure_reports_a_name_that_depends_on_itself() -> None:
    inner = Derivation(name="x", build=noop, inputs={"inner": True})
    outer = Derivation(
        name="x", build=noop, inputs={}, deps=(Derivation(name="y", build=noop, inputs={}, deps=(inner,)),)
    )
    with pytest.raises(MeshseedError, match=r"^dependency cycle: x -> y -> x$"):
        closure([outer])


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def planned(self, total: int, cached: int) -> None:
        self.events.append(("planned", total, cached))

    def started(self, derivation: Derivation) -> None:
        self.events.append(("started", derivation.name))

    def finished(self, result: Result) -> None:
        self.events.append(("finished", result.derivation.name, result.status))

    def close(self) -> None:
        self.events.append(("close",))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.prepare()
    return store


def test_realise_reports_plan_and_each_result_in_order(store: Store) -> None:
    a, b, c = chain()
    first = Recorder()
    results = realise(store, [c], jobs=1, progress=first)
    assert [(r.derivation.name, r.status) for r in results] == [
        ("a", Status.BUILT),
        ("b", Status.BUILT),
        ("c", Status.BUILT),
    ]
    assert all(r.seconds > 0 for r in results)
    assert first.events == [
        ("planned", 3, 0),
        ("started", "a"),
        ("finished", "a", Status.BUILT),
        ("started", "b"),
        ("finished", "b", Status.BUILT),
        ("started", "c"),
        ("finished", "c", Status.BUILT),
    ]
    again = Recorder()
    cached = realise(store, [c], jobs=0, progress=again)
    assert [(r.status, r.seconds, r.output.path) for r in cached] == [
        (Status.CACHED, 0.0, store.path_of(d.store_name)) for d in (a, b, c)
    ]
    assert again.events == [("planned", 3, 3)] + [("finished", n, Status.CACHED) for n in "abc"]


def test_repair_checks_every_entry_and_rebuilds_only_the_broken(store: Store) -> None:
    _a, b, c = chain()
    realise(store, [c], jobs=1, progress=SilentProgress())
    broken = store.path_of(b.store_name)
    broken.chmod(0o755)
    (broken / "out").chmod(0o644)
    (broken / "out").write_text("tampered")
    recorder = Recorder()
    results = realise(store, [c], jobs=1, progress=recorder, repair=True)
    assert [r.status for r in results] == [Status.CACHED, Status.REPAIRED, Status.CACHED]
    assert ("started", "a") in recorder.events  # with repair, cached entries are verified too
    assert (store.path_of(b.store_name) / "out").read_text() == "b"


def test_a_missing_record_is_rebuilt_on_repair(store: Store) -> None:
    a = Derivation(name="a", build=noop, inputs={})
    realise(store, [a], jobs=1, progress=SilentProgress())
    assert [r.status for r in realise(store, [a], jobs=1, progress=SilentProgress(), repair=True)] == [
        Status.CACHED
    ]


def boom(ctx: BuildContext) -> None:
    raise MeshseedError("it broke", hint="a hint")


def interrupted(ctx: BuildContext) -> None:
    raise KeyboardInterrupt


def test_a_failure_names_the_derivation_and_stops_new_work(store: Store) -> None:
    failing = Derivation(name="failing", build=boom, inputs={})
    after = Derivation(name="after", build=noop, inputs={}, deps=(failing,))
    recorder = Recorder()
    with pytest.raises(MeshseedError) as caught:
        realise(store, [after], jobs=1, progress=recorder)
    assert (caught.value.message, caught.value.hint) == ("failing: it broke", "a hint")
    assert recorder.events == [("planned", 2, 0), ("started", "failing")]
    assert store.entries() == []


def test_independent_work_is_not_started_after_a_failure(store: Store) -> None:
    error = MeshseedError("bad value")

    def slow(ctx: BuildContext) -> None:
        # Finish only once the failure has been recorded (`_explain` renames the error),
        # so that what this completion makes ready meets a realise that has failed.
        deadline = time.monotonic() + 10
        while not error.message.startswith("fails: ") and time.monotonic() < deadline:
            time.sleep(0.001)
        ctx.write("x", "")

    def failing_fast(ctx: BuildContext) -> None:
        raise error

    first = Derivation(name="slow", build=slow, inputs={})
    derivations = [
        first,
        Derivation(name="fails", build=failing_fast, inputs={}),
        Derivation(name="later", build=noop, inputs={}, deps=(first,)),
    ]
    recorder = Recorder()
    with pytest.raises(MeshseedError, match=r"^fails: bad value$"):
        realise(store, derivations, jobs=2, progress=recorder)
    assert ("started", "later") not in recorder.events
    assert ("finished", "slow", Status.BUILT) in recorder.events  # running work ends first


def wrong_value(ctx: BuildContext) -> None:
    raise ValueError("bad value")


def test_other_errors_are_wrapped_with_the_derivation_name(store: Store) -> None:
    with pytest.raises(MeshseedError, match=r"^building fails failed: ValueError: bad value$") as caught:
        realise(
            store, [Derivation(name="fails", build=wrong_value, inputs={})], jobs=1, progress=SilentProgress()
        )
    assert isinstance(caught.value.__cause__, ValueError)


def test_an_interrupt_is_not_wrapped(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        realise(
            store, [Derivation(name="i", build=interrupted, inputs={})], jobs=1, progress=SilentProgress()
        )
    assert list((store.root / ".tmp").iterdir()) == []


def result(name: str, status: Status, seconds: float) -> Result:
    derivation = Derivation(name=name, build=noop, inputs={})
    return Result(derivation, status, None, seconds)  # type: ignore[arg-type]


def test_line_progress_prints_plan_and_work_done() -> None:
    stream = io.StringIO()
    progress = LineProgress(stream)
    progress.planned(5, 2)
    progress.started(result("x", Status.BUILT, 0).derivation)
    progress.finished(result("x", Status.BUILT, 1.234))
    progress.finished(result("y", Status.CACHED, 0))
    progress.finished(result("z", Status.REPAIRED, 0.5))
    progress.close()
    assert (
        stream.getvalue() == "5 derivations, 2 cached, 3 to build\nbuilt    x (1.23s)\nrepaired z (0.50s)\n"
    )


def test_bar_progress_shows_running_work_and_results() -> None:
    stream = io.StringIO()
    progress = BarProgress(stream)
    assert progress.bar.tasks[0].total is None  # unknown until planned
    progress.planned(3, 1)
    names = ["one", "two", "three", "four", "five"]
    for name in names:
        progress.started(result(name, Status.BUILT, 0).derivation)
    assert progress.bar.tasks[0].fields["running"] == "three, four, five"
    assert progress.bar.tasks[0].total == 3
    progress.finished(result("five", Status.BUILT, 2))
    progress.finished(result("gone", Status.CACHED, 0))
    assert progress.running == ["one", "two", "three", "four"]
    assert progress.bar.tasks[0].fields["running"] == "two, three, four"
    assert progress.bar.tasks[0].completed == 2
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "built five (2.00s)"
    assert "gone" not in stream.getvalue()
    # The bar was started, and stays on screen when stopped.
    assert lines[-1].startswith("building ") and " 2/3 " in lines[-1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_for_picks_by_output() -> None:
    assert type(progress_for(True, Terminal())) is SilentProgress
    assert type(progress_for(False, Terminal())) is BarProgress
    assert type(progress_for(False, io.StringIO())) is LineProgress


def test_jobs_bound_the_builds_running_at_once(store: Store) -> None:
    lock = threading.Lock()
    running: list[int] = [0]
    peak: list[int] = [0]
    threads: set[str] = set()

    def tracked(ctx: BuildContext) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            threads.add(threading.current_thread().name)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        ctx.write("x", ctx.derivation.name)

    derivations = [Derivation(name=f"d{i}", build=tracked, inputs={}) for i in range(4)]
    realise(store, derivations, jobs=0, progress=SilentProgress())
    assert peak == [1]  # jobs below 1 still build, one at a time
    assert all(name.startswith("build_") for name in threads)


class FlushRecorder(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue()))
        super().flush()


def test_line_progress_flushes_each_result() -> None:
    stream = FlushRecorder()
    progress = LineProgress(stream)
    progress.finished(result("x", Status.BUILT, 1))
    assert stream.flushed_at == [len("built    x (1.00s)\n")]


def open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_writes_and_blob_locks_leave_no_descriptor_open(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    before = open_descriptors()
    ctx.write("a", "x")
    digest = "sha256:" + sha(b"b")
    ctx.blobs.ensure(digest, lambda partial: partial.write_bytes(b"b"))
    assert open_descriptors() == before
    lock = os.open(tmp_path / ".blobs" / "partial" / f"{sha(b'b')}.lock", os.O_RDWR)
    try:  # and the blob's lock is free again
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(lock)


def test_derivations_results_are_frozen_and_compared_by_identity(store: Store) -> None:
    first, twin = (Derivation(name="d", build=noop, inputs={"k": [1]}) for _ in range(2))
    assert first != twin and first.key == twin.key
    assert len({first, twin}) == 2  # hashable despite the list in the inputs
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.name = "other"  # type: ignore[misc]
    (built,) = realise(store, [first], jobs=1, progress=SilentProgress())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seconds = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.output.digest = ""  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.output.entries[0].size = 0  # type: ignore[misc]
    assert 0 < built.seconds < 60


def test_a_failed_repair_leaves_no_corrupt_entry(store: Store) -> None:
    attempts: list[int] = []

    def once(ctx: BuildContext) -> None:
        attempts.append(1)
        if len(attempts) > 1:
            raise MeshseedError("cannot build twice")
        ctx.write("out", "first")

    derivation = Derivation(name="once", build=once, inputs={})
    realise(store, [derivation], jobs=1, progress=SilentProgress())
    entry = store.path_of(derivation.store_name)
    entry.chmod(0o755)
    (entry / "out").chmod(0o644)
    (entry / "out").write_text("corrupt")
    with pytest.raises(MeshseedError, match="once: cannot build twice"):
        realise(store, [derivation], jobs=1, progress=SilentProgress(), repair=True)
    assert not store.has(derivation.store_name)
    assert not entry.exists()


def test_a_dependent_starts_while_other_work_still_runs(store: Store) -> None:
    started = threading.Event()
    seen: list[bool] = []

    def slow(ctx: BuildContext) -> None:
        seen.append(started.wait(5))
        ctx.write("x", "")

    def dependent(ctx: BuildContext) -> None:
        started.set()
        ctx.write("x", "")

    fast = Derivation(name="fast", build=noop, inputs={})
    derivations = [
        Derivation(name="slow", build=slow, inputs={}),
        fast,
        Derivation(name="after-fast", build=dependent, inputs={}, deps=(fast,)),
    ]
    realise(store, derivations, jobs=2, progress=SilentProgress())
    assert seen == [True]
