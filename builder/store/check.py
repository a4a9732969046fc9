"""`meshseed build --check`, as Nix has it: rebuild every derivation in a temporary store
and compare the bytes with the store's entries.

An entry whose files were changed no longer matches its own record, which `store verify`
and the check before each build catch. An entry built from a tampered input, or whose
record was rewritten along with its files, matches its record; only building it again
from clean inputs shows it. The rebuild shares nothing with the store, not even its
blobs, and the store itself is only read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.store.derivation import Derivation
from builder.store.realise import Progress, Result, realise
from builder.store.store import ENTRY_RECORD, Store
from builder.store.tree import Entry, scan


@dataclass(frozen=True)
class Checked:
    """One derivation: whether the store has it, and how its entry differs from a rebuild."""

    derivation: Derivation
    in_store: bool
    differences: tuple[str, ...] = ()


def check_store(
    store: Store, targets: Iterable[Derivation], *, jobs: int, progress: Progress
) -> list[Checked]:
    scratch = Path(tempfile.mkdtemp(prefix="check.", dir=store.root / ".tmp"))
    try:
        fresh = Store(scratch / "store")
        fresh.prepare()
        results = realise(fresh, targets, jobs=jobs, progress=progress)
        return [_compare(store, result) for result in results]
    finally:
        store.discard(scratch)


def _compare(store: Store, rebuilt: Result) -> Checked:
    name = rebuilt.derivation.store_name
    if not store.has(name):
        return Checked(rebuilt.derivation, in_store=False)
    try:
        found = {e.path: e for e in scan(store.path_of(name), skip=frozenset({ENTRY_RECORD}))}
    except (OSError, ValueError) as error:
        return Checked(rebuilt.derivation, True, (f"cannot be read: {error}",))
    made = {e.path: e for e in rebuilt.output.entries}
    differences = []
    for path in sorted(found.keys() | made.keys(), key=str.encode):
        if path not in found:
            differences.append(f"{path} is missing (a rebuild makes it)")
        elif path not in made:
            differences.append(f"{path} is extra (a rebuild does not make it)")
        elif found[path] != made[path]:
            differences.append(
                f"{path}: the store has {_shown(found[path])}, a rebuild makes {_shown(made[path])}"
            )
    return Checked(rebuilt.derivation, True, tuple(differences))


def _shown(entry: Entry) -> str:
    return f"{entry.mode} sha256:{entry.sha256} ({entry.size} bytes)"
