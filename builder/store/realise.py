"""Realise a graph of derivations: build what is missing, in parallel, into the store.

Threads do the work: the heavy parts (hashing, compression, external tools) release
the GIL, and threads need no pickling of build functions. Each derivation runs once its
dependencies are in the store; the first failure stops new work from starting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from builder.errors import MeshseedError
from builder.store.derivation import BuildContext, Derivation
from builder.store.intact import ensure_intact, remember_intact
from builder.store.store import Store, StoredOutput, storage_error


class Status(StrEnum):
    BUILT = "built"
    CACHED = "cached"
    REPAIRED = "repaired"


@dataclass(frozen=True)
class Result:
    derivation: Derivation
    status: Status
    output: StoredOutput
    seconds: float


class Progress(Protocol):
    def planned(self, total: int, cached: int) -> None: ...
    def started(self, derivation: Derivation) -> None: ...
    def finished(self, result: Result) -> None: ...
    def close(self) -> None: ...


def closure(targets: Iterable[Derivation]) -> list[Derivation]:
    """Every derivation the targets need, dependencies first, each once (by key)."""
    ordered: list[Derivation] = []
    seen: set[str] = set()

    def visit(derivation: Derivation, path: tuple[str, ...]) -> None:
        if derivation.name in path:
            raise MeshseedError(f"dependency cycle: {' -> '.join((*path, derivation.name))}")
        if derivation.key in seen:
            return
        for dep in derivation.deps:
            visit(dep, (*path, derivation.name))
        seen.add(derivation.key)
        ordered.append(derivation)

    for target in targets:
        visit(target, ())
    names = [d.name for d in ordered]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MeshseedError(f"two different derivations share the name {duplicates[0]!r}")
    return ordered


def _build_one(store: Store, derivation: Derivation, repair: bool) -> Result:
    started = time.monotonic()
    with store.key_lock(derivation.key):
        status = Status.BUILT
        if store.has(derivation.store_name):
            problem = store.verify(derivation.store_name) if repair else None
            if problem is None:
                return Result(derivation, Status.CACHED, store.read(derivation.store_name), 0.0)
            store.remove(derivation.store_name)
            status = Status.REPAIRED
        for dep in derivation.deps:
            try:
                ensure_intact(store, dep.store_name)
            except MeshseedError as error:
                error.message = f"its dependency {dep.name} cannot be trusted: {error.message}"
                raise
        work = store.new_build_dir(derivation.store_name)
        try:
            context = BuildContext(
                derivation,
                work,
                {dep.name: store.path_of(dep.store_name) for dep in derivation.deps},
                store.blobs,
            )
            derivation.build(context)
            output = store.commit(derivation.store_name, work, context.known_digests)
            remember_intact(store, output)
        except OSError as error:
            store.discard(work)
            raise storage_error(error, f"building {derivation.name} failed") from error
        except BaseException:
            store.discard(work)
            raise
    return Result(derivation, status, output, time.monotonic() - started)


def realise(
    store: Store, targets: Iterable[Derivation], *, jobs: int, progress: Progress, repair: bool = False
) -> list[Result]:
    """Make every target and its dependencies present in the store, and say how each got there."""
    ordered = closure(targets)
    missing = {d.key: {dep.key for dep in d.deps} for d in ordered}
    dependents: dict[str, list[Derivation]] = {d.key: [] for d in ordered}
    for derivation in ordered:
        for dep in derivation.deps:
            dependents[dep.key].append(derivation)
    ready = deque(d for d in ordered if not d.deps)
    progress.planned(len(ordered), sum(1 for d in ordered if store.has(d.store_name)))
    results: dict[str, Result] = {}
    failure: BaseException | None = None

    def settle(result: Result) -> None:
        results[result.derivation.key] = result
        progress.finished(result)
        for dependent in dependents[result.derivation.key]:
            missing[dependent.key].discard(result.derivation.key)
            if not missing[dependent.key]:
                ready.append(dependent)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build") as pool:
        running: dict[Future[Result], Derivation] = {}
        while ready or running:
            while ready and failure is None:
                derivation = ready.popleft()
                # A committed entry never changes, so reading it needs no lock and no thread.
                if not repair and store.has(derivation.store_name):
                    settle(Result(derivation, Status.CACHED, store.read(derivation.store_name), 0.0))
                    continue
                progress.started(derivation)
                running[pool.submit(_build_one, store, derivation, repair)] = derivation
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                derivation = running.pop(future)
                try:
                    settle(future.result())
                except BaseException as error:  # noqa: BLE001 - reported once all running work ends
                    failure = failure or _explain(derivation, error)
    if failure is not None:
        raise failure
    return [results[d.key] for d in ordered]


def _explain(derivation: Derivation, error: BaseException) -> BaseException:
    if isinstance(error, MeshseedError):
        error.message = f"{derivation.name}: {error.message}"
        return error
    if isinstance(error, Exception):
        wrapped = MeshseedError(f"building {derivation.name} failed: {type(error).__name__}: {error}")
        wrapped.__cause__ = error
        return wrapped
    return error
