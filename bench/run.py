"""`nox -s bench`: wall time and peak RSS of meshseed's work, against targets and baselines.

Each measurement runs in a child process: wall time is taken around it, peak RSS from the
kernel's accounting of that one child (wait4). Build rows run the real `meshseed build`;
OCI rows fetch and bundle a 200 MiB image from a local registry, side by side with
`skopeo copy` and with `sha256sum` plus `zstd` on the same bytes. With --disks (slow:
minutes per image), also the server's disk image against mmdebstrap and mkosi
(bench/disks.py). The figures go to bench/results.json and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backup import backup_rows  # noqa: E402
from bench.disks import disk_rows  # noqa: E402
from bench.measure import Row, timed  # noqa: E402
from tests.integration.oci_fixtures import push_image_with_random_layer, serve_registry  # noqa: E402
from tests.pinned import write_test_lock  # noqa: E402 - test pins for k3s and Mycelium
from tests.unit.sites import site  # noqa: E402 - the test suite's synthetic site generator

GIB = 1 << 30
IMAGE_MIB = 200


def build_row(name: str, workdir: Path, key: Path, **targets: float) -> Row:
    meshseed = shutil.which("meshseed")
    assert meshseed, "meshseed is not installed in this environment"
    env = {**os.environ, "MESHSEED_MASTER_KEY_FILE": str(key)}
    seconds, rss, stdout = timed(name, [meshseed, "build", "--json"], cwd=workdir, env=env)
    summary = json.loads(stdout)
    built = summary["counts"]["built"]
    return Row(
        name,
        seconds,
        rss,
        f"{built} of {len(summary['derivations'])}",
        target_seconds=targets.get("target_seconds"),
        target_rss=int(targets["target_rss"]) if "target_rss" in targets else None,
    )


def build_rows(base: Path, key: Path) -> list[Row]:
    """Builds with full seeds: each site gets the tests' lock, which pins k3s and Mycelium
    (with test digests), so that seeds render everything a node needs."""
    rows = []
    example = base / "example"
    example.mkdir()
    shutil.copy(ROOT / "site.yaml", example / "site.yaml")
    write_test_lock(example)
    rows.append(build_row("example: cold build", example, key))
    rows.append(build_row("example: no-op rebuild", example, key, target_seconds=0.5))
    site_file = example / "site.yaml"
    site_file.write_text(site_file.read_text().replace("admin2@example.org", "admin2@example.net"))
    rows.append(build_row("example: one node's SSH key changed", example, key))
    for nodes in (100, 1000):
        work = base / f"synthetic-{nodes}"
        work.mkdir()
        (work / "site.yaml").write_text(site(servers=5, agents=nodes - 6, backups=1))
        write_test_lock(work)
        targets = {"target_seconds": 60.0, "target_rss": float(GIB)} if nodes == 1000 else {}
        rows.append(build_row(f"{nodes} nodes: cold build", work, key, **targets))
        rows.append(build_row(f"{nodes} nodes: no-op rebuild", work, key))
    return rows


def oci_rows(base: Path) -> list[Row]:
    skopeo, zstd, sha256sum = (shutil.which(tool) for tool in ("skopeo", "zstd", "sha256sum"))
    if not (skopeo and zstd and sha256sum and shutil.which("docker-registry") and shutil.which("buildah")):
        print("bench: skipping the OCI rows (needs skopeo, zstd, docker-registry and buildah)")
        return []
    steps = [sys.executable, str(ROOT / "bench" / "oci_steps.py")]
    with serve_registry(base / "registry") as registry:
        image = push_image_with_random_layer(registry, base / "build", "bench/random", IMAGE_MIB)
        reference = f"{registry.host}/{image.repository}:{image.tag}"
        source = f"docker://{reference}"
        skopeo_s, _, _ = timed(
            "skopeo copy",
            [
                skopeo,
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--preserve-digests",
                source,
                f"oci:{base / 'skopeo'}:latest",
            ],
        )
        store = str(base / "store")
        fetch_s, fetch_rss, _ = timed("fetch", [*steps, "fetch", store, reference, image.index_digest])
        bundle_s, bundle_rss, out = timed("bundle", [*steps, "bundle", store, reference, image.index_digest])
    layout = next((base / "store").glob("*-image-bench"))
    blobs = sorted(str(p) for p in (layout / "blobs" / "sha256").iterdir())
    hash_s, _, _ = timed("sha256sum", [sha256sum, *blobs])
    compress_s, _, _ = timed(
        "zstd", ["sh", "-c", f'cat "$@" | {zstd} -q -3 --single-thread -c > /dev/null', "sh", *blobs]
    )
    bundle_file = Path(out.decode().strip()) / "bench.tar.zst"
    assert bundle_file.stat().st_size > IMAGE_MIB << 20
    return [
        Row(
            f"fetch {IMAGE_MIB} MiB image",
            fetch_s,
            fetch_rss,
            baseline="skopeo copy",
            baseline_seconds=skopeo_s,
            baseline_factor=1.3,
        ),
        Row(
            f"bundle {IMAGE_MIB} MiB image (zstd)",
            bundle_s,
            bundle_rss,
            baseline="sha256sum + zstd -3",
            baseline_seconds=hash_s + compress_s,
            baseline_factor=1.5,
        ),
    ]


def _blob_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())


def own_image_rows(base: Path, key: Path) -> list[Row]:
    """The backup image by path 1 (cold store, downloads included), against mmdebstrap
    extracting the same pinned packages (downloads included) imported and committed by buildah."""
    mmdebstrap, buildah, meshseed = (shutil.which(tool) for tool in ("mmdebstrap", "buildah", "meshseed"))
    if not (mmdebstrap and buildah and meshseed):
        print("bench: skipping the backup image rows (needs mmdebstrap and buildah)")
        return []
    lock = json.loads((ROOT / "images.lock").read_text())["debian"]["backup"]["packages"]
    spec = (ROOT / "images" / "backup" / "image.yaml").read_text()
    sources = [line.split("url: ")[1] for line in spec.splitlines() if "url: " in line]
    suites = [line.split("suite: ")[1] for line in spec.splitlines() if "suite: " in line]
    mirrors = [f"deb {url} {suite} main" for url, suite in zip(sources, suites, strict=True)]
    work = base / "image-baseline"
    work.mkdir()
    include = ",".join(f"{p['name']}={p['version']}" for p in lock)
    mm_s, _, _ = timed(
        "mmdebstrap",
        [
            mmdebstrap,
            "--quiet",
            "--variant=extract",
            f"--include={include}",
            "bookworm",
            str(work / "rootfs.tar"),
            *mirrors,
        ],
    )
    storage = ["--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    script = (
        'set -e; c=$("$0" "$@" from scratch); "$0" "$@" add "$c" rootfs.tar / >/dev/null; '
        '"$0" "$@" config --user 65532:65532 '
        '--entrypoint \'["/usr/bin/python3.11","-m","backup_agent"]\' "$c"; '
        '"$0" "$@" commit -q --timestamp 0 "$c" oci:layout:1 >/dev/null'
    )
    buildah_s, _, _ = timed("buildah", ["sh", "-c", script, buildah, *storage], cwd=work)
    project = base / "image-path1"
    project.mkdir()
    shutil.copy(ROOT / "site.yaml", project / "site.yaml")
    env = {**os.environ, "MESHSEED_MASTER_KEY_FILE": str(key)}
    argv = [
        meshseed,
        "build",
        "--images",
        "--json",
        "--lock",
        str(ROOT / "images.lock"),
        "--images-dir",
        str(ROOT / "images"),
    ]
    ours_s, ours_rss, _ = timed("path 1", argv, cwd=project, env=env)
    return [
        Row(
            "backup image: path 1, cold",
            ours_s,
            ours_rss,
            baseline="mmdebstrap + buildah",
            baseline_seconds=mm_s + buildah_s,
            baseline_factor=0.5,
            size=_blob_bytes(project / "dist" / "images" / "backup"),
            baseline_size=_blob_bytes(work / "layout"),
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--disks",
        action="store_true",
        help="also build the server's disk image three ways (ours, mmdebstrap, mkosi): adds minutes",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshseed-bench-") as scratch:
        base = Path(scratch)
        key = base / "master.key"
        key.write_bytes(bytes(range(32)))
        key.chmod(0o600)
        rows = build_rows(base, key) + oci_rows(base) + own_image_rows(base, key) + backup_rows(base)
        if args.disks:
            rows += disk_rows(base / "disks", key)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "rows": [row.as_json() for row in rows],
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"{'benchmark':<40} {'wall s':>8} {'peak RSS MiB':>13} {'ran':>12}  vs target")
    for row in rows:
        mib = row.peak_rss / (1 << 20)
        print(f"{row.name:<40} {row.seconds:>8.3f} {mib:>13.1f} {row.ran:>12}  {row.verdict()}")
    print("wrote bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
