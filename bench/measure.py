"""What every bench row measures: wall time and the child's own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    peak_rss: int
    ran: str = ""
    # Either an absolute target, or a baseline measured in the same run and a factor.
    target_seconds: float | None = None
    target_rss: int | None = None
    baseline: str | None = None
    baseline_seconds: float | None = None
    baseline_factor: float | None = None
    size: int | None = None
    baseline_size: int | None = None
    # Uncompressed sizes, for rows whose `size` is a compressed file.
    raw_size: int | None = None
    baseline_raw_size: int | None = None

    def as_json(self) -> dict[str, object]:
        value: dict[str, object] = {
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "peak_rss_bytes": self.peak_rss,
            "ran": self.ran,
        }
        if self.target_seconds:
            value["seconds_vs_target"] = round(self.seconds / self.target_seconds, 3)
            value["target_seconds"] = self.target_seconds
        if self.target_rss:
            value["rss_vs_target"] = round(self.peak_rss / self.target_rss, 3)
            value["target_rss_bytes"] = self.target_rss
        if self.baseline_seconds:
            value.update(
                baseline=self.baseline,
                baseline_seconds=round(self.baseline_seconds, 3),
                seconds_vs_baseline=round(self.seconds / self.baseline_seconds, 3),
                target_factor=self.baseline_factor,
            )
        if self.size is not None:
            value["size_bytes"] = self.size
        if self.size is not None and self.baseline_size:
            value.update(
                baseline_size_bytes=self.baseline_size,
                size_vs_baseline=round(self.size / self.baseline_size, 3),
            )
        if self.raw_size is not None:
            value["raw_size_bytes"] = self.raw_size
        if self.baseline_raw_size is not None:
            value["baseline_raw_size_bytes"] = self.baseline_raw_size
        return value

    def verdict(self) -> str:
        parts = []
        if self.target_seconds:
            parts.append(f"{self.seconds / self.target_seconds:.3f}x of {self.target_seconds:g} s")
        if self.target_rss:
            parts.append(
                f"RSS {self.peak_rss / self.target_rss:.3f}x of {self.target_rss / (1 << 20):.0f} MiB"
            )
        if self.baseline_seconds:
            ratio = self.seconds / self.baseline_seconds
            baseline = f"{self.baseline} ({self.baseline_seconds:.2f} s)"
            parts.append(f"{ratio:.2f}x of {baseline}, target {self.baseline_factor}x")
        if self.size is not None and self.baseline_size:
            ratio = self.size / self.baseline_size
            parts.append(
                f"image {self.size / 1e6:.1f} MB vs {self.baseline_size / 1e6:.1f} MB ({ratio:.2f}x)"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class Finished:
    seconds: float
    peak_rss: int
    returncode: int


def run_measured(
    argv: list[str],
    *,
    stdout: IO[bytes],
    stderr: IO[bytes],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: IO[bytes] | None = None,
) -> Finished:
    """Run a command to its end; its wall seconds and its own peak RSS in bytes (from wait4,
    which also counts the descendants it waited for)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Finished(seconds, usage.ru_maxrss * 1024, process.returncode)


def timed(
    name: str,
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: IO[bytes] | None = None,
) -> tuple[float, int, bytes]:
    """Run a command; its wall seconds, its own peak RSS in bytes (from wait4) and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        finished = run_measured(argv, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        if finished.returncode:
            sys.exit(f"bench: {name} failed:\n{err.read().decode()}")
        return finished.seconds, finished.peak_rss, out.read()
