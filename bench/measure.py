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
        if self.size is not None and self.baseline_size:
            value.update(size_bytes=self.size, baseline_size_bytes=self.baseline_size)
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
            parts.append(f"image {self.size / 1e6:.1f} MB vs {self.baseline_size / 1e6:.1f} MB")
        return ", ".join(parts)


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
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            sys.exit(f"bench: {name} failed:\n{err.read().decode()}")
        return seconds, usage.ru_maxrss * 1024, out.read()
