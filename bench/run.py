"""`nox -s bench`: wall time and peak RSS of meshseed builds, against the targets.

Each measurement runs the real `meshseed build` in a child process; wall time is taken
around it, peak RSS from the kernel's accounting of that child (wait4). The figures go
to bench/results.json and a table; a ratio below 1 means the target is met.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.unit.sites import site  # noqa: E402 - the test suite's synthetic site generator

GIB = 1 << 30


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    peak_rss: int
    built: int
    cached: int
    target_seconds: float | None = None
    target_rss: int | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "peak_rss_bytes": self.peak_rss,
            "built": self.built,
            "cached": self.cached,
            "target_seconds": self.target_seconds,
            "target_rss_bytes": self.target_rss,
            "seconds_ratio": round(self.seconds / self.target_seconds, 3) if self.target_seconds else None,
            "rss_ratio": round(self.peak_rss / self.target_rss, 3) if self.target_rss else None,
        }


def measure(name: str, workdir: Path, key: Path, **targets: float | int | None) -> Row:
    meshseed = shutil.which("meshseed")
    assert meshseed, "meshseed is not installed in this environment"
    env = {**os.environ, "MESHSEED_MASTER_KEY_FILE": str(key)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [meshseed, "build", "--json"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout = process.stdout.read() if process.stdout else b""
    stderr = process.stderr.read() if process.stderr else b""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {name} failed:\n{stderr.decode()}")
    counts = json.loads(stdout)["counts"]
    return Row(
        name,
        seconds,
        usage.ru_maxrss * 1024,
        counts["built"],
        counts["cached"],
        targets.get("target_seconds"),  # type: ignore[arg-type]
        targets.get("target_rss"),  # type: ignore[arg-type]
    )


def main() -> int:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meshseed-bench-") as scratch:
        base = Path(scratch)
        key = base / "master.key"
        key.write_bytes(bytes(range(32)))
        key.chmod(0o600)
        example = base / "example"
        example.mkdir()
        shutil.copy(ROOT / "site.yaml", example / "site.yaml")
        rows.append(measure("example: cold build", example, key))
        rows.append(measure("example: no-op rebuild", example, key, target_seconds=0.5))
        site_file = example / "site.yaml"
        site_file.write_text(site_file.read_text().replace("admin2@example.org", "admin2@example.net"))
        rows.append(measure("example: one node's SSH key changed", example, key))
        for nodes in (100, 1000):
            work = base / f"synthetic-{nodes}"
            work.mkdir()
            (work / "site.yaml").write_text(site(servers=5, agents=nodes - 6, backups=1))
            targets = {"target_seconds": 60.0, "target_rss": GIB} if nodes == 1000 else {}
            rows.append(measure(f"{nodes} nodes: cold build", work, key, **targets))
            rows.append(measure(f"{nodes} nodes: no-op rebuild", work, key))
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "rows": [row.as_json() for row in rows],
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"{'benchmark':<40} {'wall s':>8} {'peak RSS MiB':>13} {'built':>6} {'cached':>7}  vs target")
    for row in rows:
        data = row.as_json()
        ratios = []
        if data["seconds_ratio"] is not None:
            ratios.append(f"time {data['seconds_ratio']:.3f}x of {row.target_seconds:g}s")
        if data["rss_ratio"] is not None:
            ratios.append(f"RSS {data['rss_ratio']:.3f}x of 1 GiB")
        mib = row.peak_rss / (1 << 20)
        figures = f"{row.seconds:>8.3f} {mib:>13.1f} {row.built:>6} {row.cached:>7}"
        print(f"{row.name:<40} {figures}  {', '.join(ratios)}")
    print("wrote bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
