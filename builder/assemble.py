"""Assemble dist/ from store outputs, with build.json and SHA256SUMS, and swap it in whole.

Files are copied (not linked) so that dist/ has ordinary permissions and can be moved
or uploaded on its own. Each byte copied is checked against the digest recorded in the
store, so a corrupt entry is caught here rather than shipped. dist/ carries a marker
(`.meshseed-dist`, listed in SHA256SUMS like every file); a directory without it was not
made here and is never replaced or removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.compose import Composite, composed_target, decode, join
from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError, bad_input
from builder.store.realise import Result
from builder.store.store import storage_error
from builder.store.tree import Entry, ModeClass, file_sha256
from builder.version import builder_version

BUILD_RECORD = "build.json"
CHECKSUMS = "SHA256SUMS"
# Marks a directory as made by `meshseed build`: only such a directory is ever replaced.
MARKER = ".meshseed-dist"
MARKER_TEXT = b"made by meshseed build; `meshseed build -o` replaces this directory whole\n"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Placement:
    """A file of dist/: a store entry copied, or (`composite`) store files joined as an
    entry's recipe says (builder/compose.py)."""

    result: Result
    entry: Entry
    composite: Composite | None = None

    @property
    def is_directory(self) -> bool:
        return self.entry.mode is ModeClass.DIRECTORY

    @property
    def sha256(self) -> str:
        return self.composite.sha256 if self.composite is not None else self.entry.sha256

    @property
    def mode(self) -> int:
        if self.composite is not None:
            return 0o600 if self.composite.private else 0o644
        return self.entry.mode.dist_mode()


def _placements(results: Iterable[Result]) -> dict[str, Placement]:
    placed: dict[str, Placement] = {}
    for result in results:
        if result.derivation.dist_path is None:
            continue
        for base, entry in itertools.product(
            (result.derivation.dist_path, *result.derivation.dist_also), result.output.entries
        ):
            composed = composed_target(entry.path) if entry.mode is not ModeClass.DIRECTORY else None
            target = str(PurePosixPath(base, composed or entry.path))
            if target in placed and entry.mode is not ModeClass.DIRECTORY:
                other = placed[target].result.derivation.name
                raise MeshseedError(f"{result.derivation.name} and {other} both write dist/{target}")
            composite = decode(result.output.path / entry.path) if composed else None
            placed.setdefault(target, Placement(result, entry, composite))
    return placed


def _copy_checked(source: Path, target: Path, entry: Entry, result: Result) -> None:
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, entry.mode.dist_mode())
        with source.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                os.write(fd, chunk)
    except FileNotFoundError:
        raise MeshseedError(
            f"store entry {result.derivation.store_name} is incomplete: {entry.path} is missing",
            hint="run `meshseed build --repair`",
        ) from None
    finally:
        os.close(fd)
    if digest.hexdigest() != entry.sha256:
        raise MeshseedError(
            f"store entry {result.derivation.store_name} is corrupt: {entry.path} has "
            f"sha256:{digest.hexdigest()}, recorded sha256:{entry.sha256}",
            hint="run `meshseed build --repair`",
        )


def build_record(results: Iterable[Result]) -> dict[str, object]:
    return {
        "builder": builder_version(),
        "derivations": [
            {"name": r.derivation.name, "key": r.derivation.key, "digest": r.output.digest}
            for r in sorted(results, key=lambda r: r.derivation.name)
        ],
    }


def _checksums(files: dict[str, str]) -> str:
    """sha256sum's format, one line per file, sorted by path."""
    return "".join(f"{files[path]}  {path}\n" for path in sorted(files, key=str.encode))


def _is_current(out: Path, expected: dict[str, tuple[str, int]]) -> bool:
    """Whether `out` already holds exactly the expected files (sha256, mode): a no-op build."""
    if not (out / BUILD_RECORD).is_file():
        return False
    found = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if not p.is_dir()}
    if found.keys() != expected.keys():
        return False
    for relative, (sha256, mode) in expected.items():
        path = found[relative]
        if path.is_symlink() or path.stat().st_mode & 0o777 != mode:
            return False
        if file_sha256(path) != sha256:
            return False
    return True


def made_by_meshseed(directory: Path) -> bool:
    """Whether meshseed made `directory` (it holds the marker), so it may be replaced or removed."""
    marker = directory / MARKER
    return not marker.is_symlink() and marker.is_file() and marker.read_bytes() == MARKER_TEXT


def _check_replaceable(out: Path) -> None:
    """Refuse to replace a directory meshseed did not make: a build.json in it proves nothing."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise bad_input(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not made_by_meshseed(out):
        raise bad_input(
            f"{out}: is not empty and was not made by meshseed (it has no {MARKER}); refusing to replace it",
            hint="choose another -o directory, or empty this one yourself",
        )


@contextlib.contextmanager
def _output_lock(out: Path) -> Iterator[None]:
    """One assembler per output at a time; whatever staging dirs it finds are then stale."""
    fd = os.open(out.parent / f".{out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in [*out.parent.glob(f".{out.name}.*.new"), *out.parent.glob(f".{out.name}.*.old")]:
            # mkdtemp's random part has no dot: `.dist.v2.x.new` belongs to another output.
            if "." in stale.name[len(out.name) + 2 : -4] or stale.is_symlink() or not stale.is_dir():
                continue
            # Ours are marked from the start (or still empty); anything else is not ours to delete.
            if made_by_meshseed(stale):
                shutil.rmtree(stale, ignore_errors=True)
            elif not any(stale.iterdir()):
                stale.rmdir()
        yield
    finally:
        os.close(fd)


def assemble(results: list[Result], out: Path) -> bool:
    """Write dist/ to `out`; False if it was already exactly right and was left alone."""
    placed = _placements(results)
    record = canonical_json(build_record(results)).encode()
    files = {target: placement.sha256 for target, placement in placed.items() if not placement.is_directory}
    files[BUILD_RECORD] = hashlib.sha256(record).hexdigest()
    files[MARKER] = hashlib.sha256(MARKER_TEXT).hexdigest()
    checksums = _checksums(files).encode()
    expected = {t: (p.sha256, p.mode) for t, p in placed.items() if not p.is_directory}
    expected[BUILD_RECORD] = (files[BUILD_RECORD], 0o644)
    expected[MARKER] = (files[MARKER], 0o644)
    expected[CHECKSUMS] = (hashlib.sha256(checksums).hexdigest(), 0o644)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _output_lock(out):
            _check_replaceable(out)
            if _is_current(out, expected):
                return False
            outputs = {result.derivation.name: result.output.path for result in results}
            _assemble_into(placed, outputs, {BUILD_RECORD: record, CHECKSUMS: checksums}, out)
            return True
    except OSError as error:
        raise storage_error(error, f"cannot write {out}") from None


def _join_checked(destination: Path, composite: Composite, mode: int, outputs: dict[str, Path]) -> None:
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(fd, mode)
        join(composite, outputs, stream)


def _assemble_into(
    placed: dict[str, Placement], outputs: dict[str, Path], generated: dict[str, bytes], out: Path
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".new", dir=out.parent))
    try:
        staging.chmod(0o755)
        # First of all, so that a build killed half way leaves a directory known to be ours.
        (staging / MARKER).write_bytes(MARKER_TEXT)
        (staging / MARKER).chmod(0o644)
        for target, placement in sorted(placed.items()):
            destination = staging / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            result, entry = placement.result, placement.entry
            source = result.output.path / entry.path
            if entry.mode is ModeClass.DIRECTORY:
                destination.mkdir(exist_ok=True)
            elif entry.mode is ModeClass.SYMLINK:
                destination.symlink_to(source.readlink())
            elif placement.composite is not None:
                _join_checked(destination, placement.composite, placement.mode, outputs)
            else:
                _copy_checked(source, destination, entry, result)
        for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir() and not p.is_symlink())]:
            directory.chmod(0o755)
        for name, data in generated.items():
            (staging / name).write_bytes(data)
            (staging / name).chmod(0o644)
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    retired.rmdir()
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)
