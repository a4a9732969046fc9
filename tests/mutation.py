"""A small mutation tester: does any test notice when the code is subtly wrong?

Each mutant changes one thing in one module (a comparison, and/or, +/-, a constant off by
one, True/False, a dropped call, a returned value, a negated condition) and runs that
module's fast tests with `pytest -x`. A mutant no test kills is a behaviour nothing pins.
Mutants run in copies of the tree under a temporary directory, so the checkout is never
written, even when interrupted. Usage: `nox -s mutation [-- --jobs N] [builder/secrets.py ...]`.
Exits 1 if a survivor is not explained in EQUIVALENT below.
"""

from __future__ import annotations

import argparse
import ast
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The module groups the issue names (14, part 8); typed_yaml is the site loader's generic half.
GROUPS: dict[str, tuple[str, ...]] = {
    "secrets": ("builder/secrets.py",),
    "mycelium": ("builder/mycelium.py",),
    "det": ("builder/det",),
    "store": ("builder/store",),
    "site": ("builder/site", "builder/typed_yaml"),
}

# Fast tests for each module, by path prefix (the longest prefix wins). Fastest first,
# since `pytest -x` stops at the first failure.
SITE_TESTS = (
    "tests/unit/test_site_rules.py",
    "tests/unit/test_site_model.py",
    "tests/unit/test_site_network.py",
    "tests/unit/test_site_load.py",
    "tests/unit/test_schema.py",
    "tests/unit/test_site_properties.py",
)
TESTS: dict[str, tuple[str, ...]] = {
    "builder/secrets.py": (
        "tests/unit/test_secret_recipes.py",
        "tests/unit/test_secrets.py",
        "tests/unit/test_master_key.py",
    ),
    "builder/mycelium.py": ("tests/unit/test_mycelium.py",),
    "builder/det/tarfmt.py": ("tests/unit/test_tarfmt.py",),
    "builder/det/iso9660.py": ("tests/unit/test_iso9660_layout.py", "tests/unit/test_det_writers.py"),
    "builder/det": ("tests/unit/test_det_formats.py", "tests/unit/test_det_writers.py"),
    "builder/store": (
        "tests/unit/test_store_tree.py",
        "tests/unit/test_store_build.py",
        "tests/unit/test_store.py",
    ),
    "builder/site": SITE_TESTS,
    "builder/typed_yaml": (*SITE_TESTS, "tests/unit/test_lock.py"),
}

# Survivors that are not bugs: (file, source line stripped, mutation) -> why no test can
# tell the mutant from the original.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    (
        "builder/det/tarfmt.py",
        "for name in sorted(members, key=str.encode):",
        "drop keyword key",
    ): "UTF-8 preserves code point order, so sorting by str equals sorting by its bytes",
    (
        "builder/det/tarfmt.py",
        'with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:',
        "drop keyword format",
    ): "PAX is tarfile's default format (since Python 3.8); explicit so a new default cannot change bytes",
    (
        "builder/det/tarfmt.py",
        'with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:',
        "drop keyword encoding",
    ): "the default is the file system encoding, UTF-8 wherever the tests run (PEP 538/540)",
    (
        "builder/det/compress.py",
        "params = zstandard.ZstdCompressionParameters.from_level(",
        "drop keyword threads",
    ): "threads=0 (single-threaded) is zstandard's default; explicit because threads change frames",
    (
        "builder/det/compress.py",
        "ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG, threads=0, write_checksum=1",
        "1 -> 2",
    ): "write_checksum is a flag: 2 is as true as 1",
    (
        "builder/det/compress.py",
        'with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=GZIP_LEVEL, mtime=0) as out:',
        "drop keyword filename",
    ): "without it GzipFile takes fileobj.name, and a BytesIO has none: the name stays empty",
    (
        "builder/det/iso9660.py",
        "_RR_PX, _RR_NM, _RR_TF = 0x01, 0x08, 0x80",
        "8 -> 9",
    ): "the added bit 0x01 is PX, which the RR flags always set anyway",
    (
        "builder/det/iso9660.py",
        "_RR_PX, _RR_NM, _RR_TF = 0x01, 0x08, 0x80",
        "128 -> 129",
    ): "the added bit 0x01 is PX, which the RR flags always set anyway",
    (
        "builder/det/iso9660.py",
        "flags = _RR_PX | _RR_TF | (_RR_NM if name is not None else 0)",
        "0 -> 1",
    ): "1 is _RR_PX, already in the flags",
    (
        "builder/det/iso9660.py",
        '0o040000 | mode if kind != "file" else 0o100000 | mode,',
        "16384 -> 16385",
    ): "directories always get mode 0o555, whose bit 0 the mutant adds again",
    (
        "builder/det/iso9660.py",
        "zip(self.files, self.names, self.extents, strict=True), key=lambda item: item[1]",
        "drop keyword strict",
    ): "names and extents are built from files, one each: the lengths always match",
    (
        "builder/det/iso9660.py",
        "zip(self.files, self.names, self.extents, strict=True), key=lambda item: item[1]",
        "True -> False",
    ): "names and extents are built from files, one each: the lengths always match",
    (
        "builder/det/iso9660.py",
        "return _sectors(len(self.directory(0, 0))) * SECTOR",
        "0 -> 1",
    ): "a directory's size is measured: extent and size are fixed-width fields, so any value gives the same length",
    (
        "builder/det/iso9660.py",
        "probe = [_Volume(j, label, entries, [0] * len(entries), epoch) for j in (False, True)]",
        "0 -> 1",
    ): "the probe only measures directories; extents are fixed-width, so their value does not change the size",
    (
        "builder/det/iso9660.py",
        "shutil.copyfileobj(source, out, 1 << 20)",
        "LShift -> RShift",
    ): "a buffer size: the bytes copied are the same (0 means copyfileobj's default)",
    (
        "builder/det/iso9660.py",
        "shutil.copyfileobj(source, out, 1 << 20)",
        "1 -> 2",
    ): "a buffer size: the bytes copied are the same",
    (
        "builder/det/iso9660.py",
        "shutil.copyfileobj(source, out, 1 << 20)",
        "20 -> 21",
    ): "a buffer size: the bytes copied are the same",
    (
        "builder/det/jsonfmt.py",
        'text = json.dumps(value, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False)',
        "drop keyword separators",
    ): 'with indent set, json.dumps already defaults to (",", ": "); explicit to read the format here',
    (
        "builder/det/yamlfmt.py",
        "def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:",
        "False -> True",
    ): "PyYAML's emitter always passes flow, and indentless is ignored (False goes to super)",
    (
        "builder/det/yamlfmt.py",
        "return str(yaml.dump(value, Dumper=_Dumper, sort_keys=sort_keys, explicit_start=False, **_STYLE))",
        "drop keyword explicit_start",
    ): "no explicit start is yaml.dump's default",
    (
        "builder/store/blobs.py",
        "target.parent.mkdir(parents=True, exist_ok=True)",
        "drop keyword parents",
    ): "partial_dir.mkdir(parents=True) just made .blobs, the only parent that could be missing",
    (
        "builder/store/blobs.py",
        "target.parent.mkdir(parents=True, exist_ok=True)",
        "True -> False",
    ): "parents: partial_dir.mkdir(parents=True) just made .blobs, the only parent that could be missing",
    (
        "builder/store/derivation.py",
        "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)",
        "384 -> 385",
    ): "fchmod sets the final mode at once; 0o601 still keeps the file unreadable to others meanwhile",
    (
        "builder/store/progress.py",
        "self.bar = Progress(",
        "drop keyword transient",
    ): "transient=False is rich's default; explicit because the final bar must stay on screen",
    (
        "builder/store/store.py",
        "if not path.exists() and not path.is_symlink():",
        "drop not",
    ): "only a dangling symlink tells them apart, and rmtree refuses a symlink either way (callers pass mkdtemp directories)",
    (
        "builder/store/store.py",
        "self.root.mkdir(mode=0o700, parents=True, exist_ok=True)",
        "drop keyword mode",
    ): "the chmod(0o700) on the next line sets the mode whatever mkdir made",
    (
        "builder/store/store.py",
        "self.root.mkdir(mode=0o700, parents=True, exist_ok=True)",
        "448 -> 449",
    ): "the chmod(0o700) on the next line sets the mode whatever mkdir made",
    (
        "builder/store/store.py",
        "root_file.unlink(missing_ok=True)",
        "drop keyword missing_ok",
    ): "the file was just listed, under the store's exclusive lock: only an outside hand could remove it first",
    (
        "builder/store/store.py",
        "root_file.unlink(missing_ok=True)",
        "True -> False",
    ): "the file was just listed, under the store's exclusive lock: only an outside hand could remove it first",
    (
        "builder/store/store.py",
        "lock.unlink(missing_ok=True)",
        "drop keyword missing_ok",
    ): "the lock was just listed, under the store's exclusive lock: only an outside hand could remove it first",
    (
        "builder/store/store.py",
        "lock.unlink(missing_ok=True)",
        "True -> False",
    ): "the lock was just listed, under the store's exclusive lock: only an outside hand could remove it first",
    (
        "builder/store/tree.py",
        "_CHUNK = 1 << 20",
        "1 -> 2",
    ): "a read size: the digest of the file is the same",
    (
        "builder/store/tree.py",
        "_CHUNK = 1 << 20",
        "20 -> 21",
    ): "a read size: the digest of the file is the same",
    (
        "builder/site/checks.py",
        'paths = [f"nodes[{index}]" for index in range(decoder.lengths.get("nodes", 0))]',
        "0 -> 1",
    ): "without a nodes list no nodes[0] value decoded, so a path nodes[0] finds nothing to check",
    (
        "builder/site/model.py",
        "return Retention(daily=7, weekly=8, monthly=24)",
        "drop keyword daily",
    ): "7 is Retention's default daily count; spelled out so the three read together",
    (
        "builder/site/scalars.py",
        "fields = text.split(None, 2)",
        "2 -> 3",
    ): "only the type and the blob are used; the whole line is re-joined from text.split()",
    (
        "builder/typed_yaml/decode.py",
        "close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)",
        "drop keyword n",
    ): "only the best match (close[0]) is used; get_close_matches puts it first",
    (
        "builder/typed_yaml/decode.py",
        "close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)",
        "1 -> 2",
    ): "only the best match (close[0]) is used; get_close_matches puts it first",
    (
        "builder/typed_yaml/decode.py",
        "close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)",
        "drop keyword cutoff",
    ): "0.6 is difflib's default cutoff; explicit because the hints depend on it",
    (
        "builder/typed_yaml/document.py",
        'return path.read_text(encoding="utf-8")',
        "drop keyword encoding",
    ): "the default is the locale's encoding, UTF-8 wherever the tests run (PEP 538/540)",
    (
        "builder/typed_yaml/document.py",
        "return yaml.compose(text, Loader=yaml.SafeLoader)",
        "drop keyword Loader",
    ): "composing builds nodes only: yaml.Loader and SafeLoader share the scanner, parser and composer",
    (
        "builder/secrets.py",
        "return HKDF(algorithm=hashes.SHA256(), length=size, salt=None, info=info.encode()).derive(",
        "drop keyword salt",
    ): "salt=None is HKDF's default in cryptography; explicit because RFC 5869's empty salt is intended",
    (
        "builder/secrets.py",
        "os.fsync(fd)",
        "drop statement",
    ): "fsync only matters if the machine loses power before the key reaches the disk",
    (
        "builder/secrets.py",
        "return load_master_key(path, create=False)",
        "False -> True",
    ): "after link() found the key there, create=True has nothing to create: the key exists",
}

COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".nox", "dist", ".meshseed", "__pycache__", ".hypothesis", "*_cache", "build", "*.egg-info"
)

COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
BINARY_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.Pow: ast.Mult,
}
# Logging is not behaviour the tests pin; dropping a log call is not a mutant.
LOGGERS = {"log", "logger", "_log", "logging"}

Rewrite = Callable[[ast.AST], ast.AST]


@dataclass(frozen=True)
class Mutant:
    file: str
    index: int  # the index-th mutation site of the file, in walk order
    line: int
    description: str
    source_line: str

    def key(self) -> tuple[str, str, str]:
        return (self.file, self.source_line, self.description)


def _children(node: ast.AST) -> Iterator[ast.AST]:
    """Child nodes, leaving out annotations: a mutated type hint changes no behaviour."""
    for name, value in ast.iter_fields(node):
        if name in {"annotation", "returns"}:
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield child


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    for child in _children(node):
        yield from _walk(child)


def _is_docstring_or_log(node: ast.Expr) -> bool:
    if isinstance(node.value, ast.Constant):
        return True
    call = node.value
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
        target = call.func.value
        return isinstance(target, ast.Name) and target.id in LOGGERS
    return False


def _set(node: ast.AST, **fields: object) -> ast.AST:
    for name, value in fields.items():
        setattr(node, name, value)
    return node


def _setter(**fields: object) -> Rewrite:
    return lambda node: _set(node, **fields)


def _operator_mutations(node: ast.AST) -> Iterator[tuple[str, Rewrite]]:
    if isinstance(node, ast.Compare):
        for position, op in enumerate(node.ops):
            for new in COMPARE_SWAPS.get(type(op), ()):
                ops = [*node.ops]
                ops[position] = new()
                yield f"{type(op).__name__} -> {new.__name__}", _setter(ops=ops)
    elif isinstance(node, ast.BoolOp):
        new_op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield f"{type(node.op).__name__} -> {type(new_op).__name__}", lambda n: _set(n, op=new_op)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:
        swapped = BINARY_SWAPS[type(node.op)]
        yield f"{type(node.op).__name__} -> {swapped.__name__}", lambda n: _set(n, op=swapped())
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = node.operand
        yield "drop not", lambda n: operand


def _constant_mutations(node: ast.AST) -> Iterator[tuple[str, Rewrite]]:
    if not isinstance(node, ast.Constant):
        return
    value = node.value
    if isinstance(value, bool):
        yield f"{value} -> {not value}", lambda n: _set(n, value=not value)
    elif isinstance(value, int):
        yield f"{value} -> {value + 1}", lambda n: _set(n, value=value + 1)


def _statement_mutations(node: ast.AST) -> Iterator[tuple[str, Rewrite]]:
    if isinstance(node, ast.If | ast.While | ast.IfExp) and not isinstance(
        node.test, ast.Compare | ast.BoolOp
    ):
        test = node.test
        yield "negate condition", lambda n: _set(n, test=ast.UnaryOp(ast.Not(), test))
    elif isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
        yield "return None", lambda n: _set(n, value=ast.Constant(None))
    elif isinstance(node, ast.Expr) and not _is_docstring_or_log(node):
        yield "drop statement", lambda n: ast.Pass()
    elif isinstance(node, ast.AugAssign | ast.Raise):
        yield f"drop {type(node).__name__.lower()}", lambda n: ast.Pass()


def _keyword_mutations(node: ast.AST) -> Iterator[tuple[str, Rewrite]]:
    if isinstance(node, ast.Call):
        for keyword in node.keywords:
            if keyword.arg is not None:
                kept = [other for other in node.keywords if other is not keyword]
                yield f"drop keyword {keyword.arg}", _setter(keywords=kept)


def mutations(node: ast.AST) -> Iterator[tuple[str, Rewrite]]:
    """The ways to mutate one node: a description and a function returning the new node."""
    yield from _operator_mutations(node)
    yield from _constant_mutations(node)
    yield from _statement_mutations(node)
    yield from _keyword_mutations(node)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def sites(tree: ast.AST) -> Iterator[tuple[ast.AST, str, Rewrite]]:
    for node in _walk(tree):
        for description, rewrite in mutations(node):
            yield node, description, rewrite


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, rewrite: Rewrite) -> None:
        self.target, self.rewrite = target, rewrite

    def visit(self, node: ast.AST) -> ast.AST:
        node = self.generic_visit(node)
        return self.rewrite(node) if node is self.target else node


def list_mutants(file: str) -> list[Mutant]:
    source = (ROOT / file).read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    return [
        Mutant(file, index, node.lineno, description, lines[node.lineno - 1].strip())  # type: ignore[attr-defined]
        for index, (node, description, _) in enumerate(sites(tree))
    ]


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse((ROOT / mutant.file).read_text())
    node, _, rewrite = list(sites(tree))[mutant.index]
    return ast.unparse(ast.fix_missing_locations(_Replace(node, rewrite).visit(tree)))


def tests_for(file: str) -> tuple[str, ...]:
    prefix = max((p for p in TESTS if file == p or file.startswith(p + "/")), key=len)
    return TESTS[prefix]


def pytest_run(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float]:
    """Exit status of `pytest -x` over `tests` in a copy of the tree, and seconds taken."""
    # PYTHONPATH: every process the tests start imports the copy, not the checkout.
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = -1
    return status, time.monotonic() - started


def run(mutants: list[Mutant], jobs: int, workdir: Path) -> list[tuple[Mutant, bool]]:
    copies: queue.Queue[Path] = queue.Queue()
    for number in range(jobs):
        copy = workdir / f"tree-{number}"
        shutil.copytree(ROOT, copy, ignore=COPY_IGNORE, symlinks=True)
        copies.put(copy)
    limits: dict[tuple[str, ...], float] = {}
    for tests in sorted({tests_for(m.file) for m in mutants}):
        status, seconds = pytest_run(copies.queue[0], tests, timeout=600)
        if status != 0:
            sys.exit(f"mutation: the unmutated tree fails {' '.join(tests)}; fix that first")
        limits[tests] = max(60.0, 5 * seconds)

    def one(mutant: Mutant) -> tuple[Mutant, bool]:
        copy = copies.get()
        target = copy / mutant.file
        original = target.read_bytes()
        try:
            target.write_text(mutated_source(mutant))
            tests = tests_for(mutant.file)
            status, _ = pytest_run(copy, tests, limits[tests])
        finally:
            target.write_bytes(original)
            copies.put(copy)
        return mutant, status != 0

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, mutants))


def group_of(file: str) -> str:
    return next(
        name for name, paths in GROUPS.items() if any(file == p or file.startswith(p + "/") for p in paths)
    )


def python_files(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        full = ROOT / path
        if full.is_dir():
            found += sorted(p.relative_to(ROOT).as_posix() for p in full.rglob("*.py"))
        elif full.exists():
            found.append(path)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="modules or folders (default: every group)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    args = parser.parse_args()
    targets = args.paths or [path for paths in GROUPS.values() for path in paths]
    mutants = [m for file in python_files(targets) for m in list_mutants(file)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="meshseed-mutation-") as workdir:
        results = run(mutants, args.jobs, Path(workdir))
    unexplained = 0
    for name in GROUPS:
        mine = [(m, killed) for m, killed in results if group_of(m.file) == name]
        if not mine:
            continue
        killed = sum(k for _, k in mine)
        equivalent = sum(1 for m, k in mine if not k and m.key() in EQUIVALENT)
        print(
            f"{name}: {killed}/{len(mine)} killed ({100 * killed / len(mine):.1f}%), "
            f"{equivalent} survivors explained as equivalent"
        )
        for mutant, was_killed in mine:
            if not was_killed:
                reason = EQUIVALENT.get(mutant.key())
                unexplained += reason is None
                note = f"equivalent: {reason}" if reason else "SURVIVED"
                print(f"  {mutant.file}:{mutant.line}: {mutant.description}: {mutant.source_line}  [{note}]")
    print(f"{len(results)} mutants in {time.monotonic() - started:.0f} s")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
