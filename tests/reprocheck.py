"""Build the example site three times under different conditions and demand identical dist/ trees.

Run by `nox -s repro`. The builds make our images too (`--images`, as `nox -s build-images`
does; their Debian packages come from deb.debian.org by the committed pins), and so the
archive of them the backup node gets. The builds differ in working and output directory, TZ, LANG and
LC_ALL, umask, PYTHONHASHSEED, --jobs, hostname (with `unshare --uts`, as root) and
wall-clock time (with `faketime`, when installed), and a third build reuses the second's
warm store. Any differing byte fails the check, listing the first differing files, with a
diffoscope report when diffoscope is installed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.lock import read_lock, write_lock  # noqa: E402 - needs ROOT on the path
from tests.pinned import write_test_lock  # noqa: E402 - needs ROOT on the path

MASTER_KEY = bytes(range(32))


@dataclass
class Variant:
    name: str
    workdir: Path
    env: dict[str, str]
    umask: int
    jobs: int
    hostname: str | None = None
    fake_time: str | None = None
    output: str = "dist"
    wrapper: list[str] = field(default_factory=list)


def command(variant: Variant, meshseed: str) -> list[str]:
    argv = [meshseed, "build", "--images", "--jobs", str(variant.jobs), "-o", variant.output]
    if variant.fake_time and shutil.which("faketime"):
        argv = ["faketime", variant.fake_time, *argv]
    if variant.hostname and os.geteuid() == 0 and shutil.which("unshare"):
        script = f'hostname {variant.hostname} && exec "$@"'
        argv = ["unshare", "--uts", "sh", "-c", script, "sh", *argv]
    return argv


def run(variant: Variant, meshseed: str, key_file: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in {"SOURCE_DATE_EPOCH", "LANGUAGE"}}
    env.update(variant.env, MESHSEED_MASTER_KEY_FILE=str(key_file))
    argv = command(variant, meshseed)
    print(f"repro: {variant.name}: {' '.join(argv)} (umask {variant.umask:03o}, in {variant.workdir})")
    result = subprocess.run(
        argv,
        cwd=variant.workdir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(variant.umask) and None,
    )
    if result.returncode != 0:
        sys.exit(f"repro: {variant.name} failed:\n{result.stderr}")
    return variant.workdir / variant.output


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mode & 0o777, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def compare(reference: Path, other: Path) -> list[str]:
    first, second = tree(reference), tree(other)
    return sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))


def main() -> int:
    meshseed = shutil.which("meshseed")
    if meshseed is None:
        sys.exit("repro: meshseed is not installed in this environment")
    with tempfile.TemporaryDirectory(prefix="meshseed-repro-") as scratch:
        base = Path(scratch)
        key_file = base / "master.key"
        key_file.write_bytes(MASTER_KEY)
        key_file.chmod(0o600)
        first_dir = base / "first" / "a" / "deeply" / "nested" / "build"
        second_dir = base / "second"
        for directory in (first_dir, second_dir):
            directory.mkdir(parents=True)
            shutil.copy(ROOT / "site.yaml", directory / "site.yaml")
            # Test pins, so that full seeds and the manifests (Tutor included) are built too,
            # and the committed pins of our images' packages.
            lock = write_test_lock(directory)
            write_lock(
                dataclasses.replace(lock, debian=read_lock(ROOT / "images.lock").debian),
                directory / "images.lock",
            )
            shutil.copytree(
                ROOT / "images" / "backup",
                directory / "images" / "backup",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        variants = [
            Variant(
                "cold, UTC",
                first_dir,
                {"TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "1"},
                umask=0o022,
                jobs=1,
            ),
            Variant(
                "cold, elsewhere",
                second_dir,
                {
                    "TZ": "Pacific/Chatham",
                    "LANG": "tr_TR.UTF-8",
                    "LC_ALL": "tr_TR.UTF-8",
                    "PYTHONHASHSEED": "4242",
                },
                umask=0o077,
                jobs=4,
                hostname="repro-elsewhere",
                fake_time="2031-05-17 03:04:05",
            ),
            Variant(
                "warm store",
                second_dir,
                {"TZ": "America/St_Johns", "LANG": "de_DE.UTF-8", "PYTHONHASHSEED": "7"},
                umask=0o002,
                jobs=2,
                output="dist-warm",
                fake_time="1999-12-31 23:59:59",
            ),
        ]
        outputs = [run(variant, meshseed, key_file) for variant in variants]
        failed = False
        for variant, output in zip(variants[1:], outputs[1:], strict=True):
            differing = compare(outputs[0], output)
            if differing:
                failed = True
                print(f"repro: FAILED: {variant.name} differs from {variants[0].name} in:")
                for name in differing[:10]:
                    print(f"  {name}")
                if shutil.which("diffoscope"):
                    subprocess.run(
                        ["diffoscope", str(outputs[0] / differing[0]), str(output / differing[0])],
                        check=False,
                    )
        if failed:
            return 1
        files = len(tree(outputs[0]))
        print(f"repro: ok: {len(variants)} builds, {files} files, byte-identical")
        return 0


if __name__ == "__main__":
    sys.exit(main())
