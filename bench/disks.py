"""Disk rows of `nox -s bench -- --disks`: the server role's bootable disk image, ours
against two other ways of building one from the same Debian packages.

- Ours: `meshseed build --disks` of the example site. Its lock pins the test images and
  the test doubles of k3s and Mycelium, served from this machine (as the boot tests do; the
  real ones cannot be fetched here), which an `--airgap` build fetches first; the timed
  builds then start with no .deb and no disk in the store. The server image's own seconds
  are those the build logs for its derivations: `disk-rootfs` (downloading the .debs
  included; every role's image shares it) and `disk-role-server`, with one job, so that
  they do not share the cores with each other. The warm rows time whole rebuilds.
- mmdebstrap: the package names of disks/node.yaml from the Debian mirror (downloads
  included), then a plain assembly: sfdisk, mkfs.fat and mtools for the EFI system
  partition with systemd-boot, `mke2fs -d` for the root, `zstd -3` of the raw disk.
- mkosi: Debian's mkosi with the same names, then the same `zstd -3`. A bootable image
  where mkosi can make one; where it cannot (it loop-mounts the EFI system partition, which
  a kernel without vfat cannot do), the root-only GPT image it can make, and the row says so.

Both baselines get our build's payload (k3s, Mycelium, the role's image bundle) copied
into their root, so that all three images carry the same bytes. The baselines download
everything each time. Sizes are the raw disk and its zstd-compressed file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.measure import Finished, Row, run_measured, timed
from tests.e2e.doubles import INSTALL, K3S, mycelium_archive
from tests.e2e.project import UPSTREAM, mirror_options, tag_image
from tests.integration.debian_fixtures import serve_directory
from tests.integration.oci_fixtures import build_test_images, serve_registry
from tests.integration.upstream_text import (
    IMAGES_LIST,
    IMAGES_LIST_PATH,
    INSTALL_PATH,
    K3S_PATH,
    MYCELIUM_PATH,
    cluster_image_tags,
)

ROOT = Path(__file__).resolve().parent.parent
NODE_SPEC = ROOT / "disks" / "node.yaml"
UPSTREAM_FILE = "upstream.yaml"
ROLE = "server"
MMDEBSTRAP = "mmdebstrap + assembly"
SUITE = "bookworm"
# What mmdebstrap would otherwise leave from the build machine, as ours removes it.
HOOKS = (
    'rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub',
    'rm -f "$1/etc/hostname" "$1/etc/resolv.conf"',
)
# The payload's place in our image (builder/disk/role.py), where the baselines put it too.
PAYLOAD_DIR = "usr/lib/meshseed/payload"
# An EFI system partition with systemd-boot, the kernel and its initrd, then the root with
# 10% and 256 MiB to spare, as ours sizes it; `zstd -3` as ours compresses.
ASSEMBLE = r"""
set -eu
work=$1 rootfs=$2 payload=$3
root=$work/root
mkdir "$root"
tar -xpf "$rootfs" -C "$root" --numeric-owner
if [ -n "$payload" ]; then mkdir -p "$root/usr/lib/meshseed"; cp -a "$payload" "$root/usr/lib/meshseed/"; fi
kernel=$(ls "$root"/boot/vmlinuz-* | head -n 1)
version=${kernel##*/vmlinuz-}
mkdir -p "$work/loader/entries"
printf 'default debian.conf\ntimeout 0\n' > "$work/loader/loader.conf"
printf 'title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTLABEL=root rw console=ttyS0\n' \
  > "$work/loader/entries/debian.conf"
esp=$work/esp.img
mkfs.fat -C -F 32 -n ESP "$esp" 131072 > /dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$kernel" ::/vmlinuz
mcopy -i "$esp" "$root/boot/initrd.img-$version" ::/initrd.img
mcopy -i "$esp" "$work/loader/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/loader/entries/debian.conf" ::/loader/entries/debian.conf
used=$(du -s --block-size=1M "$root" | cut -f 1)
root_mib=$((used * 11 / 10 + 256))
mke2fs -q -F -t ext4 -L root -d "$root" "$work/root.img" "${root_mib}M"
rm -rf "$root"
disk=$work/disk.raw
truncate -s $((1 + 128 + root_mib + 1))M "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
start=2048, size=$((128 * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$((129 * 2048)), size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root
EOF
dd if="$esp" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=129 conv=notrunc,sparse status=none
rm -f "$esp" "$work/root.img"
"""
COMPRESS = ["zstd", "-q", "-3", "--single-thread", "--force"]
# mount's complaint in mkosi's log when it cannot mount the EFI system partition it made
# (a kernel without vfat: "unknown filesystem type 'vfat'").
_MOUNT_ERROR = re.compile(r"^mount: .*$", re.MULTILINE)
_BUILT = re.compile(r"^built\s+(\S+) \(([\d.]+)s\)$", re.MULTILINE)
_PLANNED = re.compile(r"^(\d+) derivations, (\d+) cached, (\d+) to build$", re.MULTILINE)


@dataclass(frozen=True)
class Disk:
    """One built disk image: what it took and how large it is."""

    seconds: float
    peak_rss: int
    raw_bytes: int
    compressed_bytes: int


def package_names() -> list[str]:
    return list(yaml.safe_load(NODE_SPEC.read_text())["debian"]["packages"])


def apt_sources() -> list[str]:
    sources = yaml.safe_load(NODE_SPEC.read_text())["debian"]["sources"]
    return [f"deb {source['url']} {source['suite']} main" for source in sources]


def _compress(raw: Path) -> tuple[float, Path]:
    seconds, _, _ = timed("zstd", [*COMPRESS, str(raw), "-o", f"{raw}.zst"])
    return seconds, Path(f"{raw}.zst")


def _disk(seconds: float, peak_rss: int, raw: Path, compressed: Path) -> Disk:
    return Disk(seconds, peak_rss, raw.stat().st_size, compressed.stat().st_size)


def mmdebstrap_disk(work: Path, payload: Path | None) -> Disk:
    """mmdebstrap of disks/node.yaml's names, then the plain assembly (ASSEMBLE)."""
    work.mkdir(parents=True)
    rootfs = work / "rootfs.tar"
    argv = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=custom",
        "--format=tar",
        f"--include={','.join(package_names())}",
        *(f"--customize-hook={hook}" for hook in HOOKS),
        SUITE,
        str(rootfs),
        *apt_sources(),
    ]
    install_s, install_rss, _ = timed("mmdebstrap", argv)
    assembly = ["sh", "-c", ASSEMBLE, "assemble", str(work), str(rootfs), str(payload or "")]
    assemble_s, assemble_rss, _ = timed("image assembly", assembly)
    rootfs.unlink()
    compress_s, compressed = _compress(work / "disk.raw")
    seconds = install_s + assemble_s + compress_s
    return _disk(seconds, max(install_rss, assemble_rss), work / "disk.raw", compressed)


def _mkosi(work: Path, packages: list[str], payload: Path | None, *, bootable: bool) -> tuple[Finished, str]:
    """One mkosi build into `work`/disk.raw; what it took and its log."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "workspace").mkdir(parents=True)
    argv = [
        "mkosi",
        # nspawn would otherwise ask systemd, which not every build machine runs, for a scope.
        "--nspawn-keep-unit",
        "--distribution=debian",
        f"--release={SUITE}",
        f"--mirror={apt_sources()[0].split()[1]}",
        "--format=gpt_ext4",
        f"--bootable={'yes' if bootable else 'no'}",
        f"--package={','.join(packages)}",
        f"--output={work / 'disk.raw'}",
        f"--workspace-dir={work / 'workspace'}",
        "--force",
    ]
    if payload is not None:
        tree = work / "extra" / "usr" / "lib" / "meshseed"
        shutil.copytree(payload, tree / payload.name)
        argv.append(f"--extra-tree={work / 'extra'}")
    log = work / "mkosi.log"
    with log.open("wb") as out:
        finished = run_measured([*argv, "build"], stdout=out, stderr=out)
    shutil.rmtree(work / "workspace", ignore_errors=True)
    return finished, log.read_text(errors="replace")


def mkosi_disk(work: Path, payload: Path | None) -> tuple[Disk | None, str]:
    """mkosi's image of the same package names, and what it is: bootable, or root only and
    why not bootable, or why none. mkosi's bootable image has an initrd of its own making
    (dracut, which conflicts with initramfs-tools, so that is left out of its list)."""
    if shutil.which("mkosi") is None:
        return None, "mkosi is not installed"
    packages = package_names()
    finished, log = _mkosi(work, [p for p in packages if p != "initramfs-tools"], payload, bootable=True)
    kind = "bootable"
    if finished.returncode:
        why = _MOUNT_ERROR.search(log)
        reason = why[0] if why else _last_line(log)
        print(f"bench: mkosi could not make a bootable image: {reason}", file=sys.stderr)
        kind = "root only: no vfat here" if "'vfat'" in reason else "root only: bootable failed"
        finished, log = _mkosi(work, packages, payload, bootable=False)
        if finished.returncode:
            return None, f"mkosi failed: {_last_line(log)}"
    compress_s, compressed = _compress(work / "disk.raw")
    return _disk(finished.seconds + compress_s, finished.peak_rss, work / "disk.raw", compressed), kind


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class Project:
    """The example site with a lock pinning the test doubles, served from this machine."""

    root: Path
    env: dict[str, str]

    @property
    def store(self) -> Path:
        return self.root / ".meshseed" / "store"

    def build(self, log_name: str) -> tuple[Finished, str]:
        """`meshseed build --disks` with one job, so that the derivations' logged seconds are
        each their own; what it took and its log (a line per derivation built)."""
        meshseed = shutil.which("meshseed")
        assert meshseed is not None
        log = self.root.parent / f"{log_name}.log"
        argv = [
            meshseed,
            "build",
            "--disks",
            "--jobs",
            "1",
            "--images-dir",
            str(ROOT / "images"),
            "--upstream",
            UPSTREAM_FILE,
        ]
        with log.open("wb") as out:
            finished = run_measured(argv, cwd=self.root, env=self.env, stdout=out, stderr=out)
        text = log.read_text(errors="replace")
        if finished.returncode:
            sys.exit(f"bench: meshseed build --disks failed:\n{text[-4000:]}")
        return finished, text

    def entry(self, name: str) -> Path:
        (entry,) = self.store.glob(f"*-{name}")
        return entry


@contextmanager
def our_project(base: Path, key: Path) -> Iterator[Project]:
    """The example site, its lock pinned with `meshseed lock --only upstream` against a
    local registry (the test images under every tag the manifests name) and a local
    artifact server (the doubles of k3s and Mycelium); the Debian pins are images.lock's."""
    meshseed = shutil.which("meshseed")
    assert meshseed is not None
    with ExitStack() as stack:
        registry = stack.enter_context(serve_registry(base / "registry"))
        images = build_test_images(registry, base / "oci-images")
        for tag in sorted(cluster_image_tags()):
            tag_image(registry, images["hello"], tag)
        artifacts = base / "artifacts"
        files = {
            K3S_PATH: K3S.encode(),
            INSTALL_PATH: INSTALL.encode(),
            IMAGES_LIST_PATH: IMAGES_LIST,
            MYCELIUM_PATH: mycelium_archive({}),
        }
        for relative, data in files.items():
            (artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
            (artifacts / relative).write_bytes(data)
        artifact_url = stack.enter_context(serve_directory(artifacts))
        root = base / "project"
        root.mkdir(parents=True)
        shutil.copy(ROOT / "site.yaml", root / "site.yaml")
        shutil.copy(ROOT / "images.lock", root / "images.lock")
        (root / "disks").mkdir()
        shutil.copy(NODE_SPEC, root / "disks" / NODE_SPEC.name)
        (root / UPSTREAM_FILE).write_text(UPSTREAM)
        pins = tuple(mirror_options(registry, artifact_url))
        env = {**os.environ, "MESHSEED_MASTER_KEY_FILE": str(key)}
        timed("meshseed lock", [meshseed, "lock", "--only", "upstream", *pins], cwd=root, env=env)
        # The mirror options send the .debs to the artifact server too, which holds only
        # the doubles; so the images and doubles are fetched first, as the boot tests do,
        # and the disk builds fetch the packages from Debian.
        timed("meshseed build --airgap", [meshseed, "build", "--airgap", *pins], cwd=root, env=env)
        yield Project(root, env)


def _built_seconds(log: str) -> dict[str, float]:
    return {name: float(seconds) for name, seconds in _BUILT.findall(log)}


def _ran(log: str) -> str:
    planned = _PLANNED.search(log)
    return f"{planned[3]} of {planned[1]}" if planned else ""


def collect_payload(project: Project, target: Path) -> Path:
    """What our server image adds to the packages (the staged binaries and the role's
    image bundle), from the store, as one folder `payload` for the baselines to copy."""
    folder = target / "payload"
    folder.mkdir(parents=True)
    for entry in [project.entry(f"airgap-{ROLE}"), *project.store.glob("*-binary-*")]:
        for file in entry.rglob("*"):
            if file.is_file() and not file.name.startswith("."):
                shutil.copyfile(file, folder / file.name)
    return folder


def _our_disk(project: Project, finished: Finished, log: str) -> Disk:
    """The server image's share of a cold build: the root file system (which every role's
    image shares) and the server's own image, as the build logged them."""
    seconds = _built_seconds(log)
    layout = json.loads((project.entry(f"disk-role-{ROLE}") / "layout.json").read_text())
    compressed = project.root / "dist" / "disks" / f"{ROLE}.raw.zst"
    return Disk(
        seconds["disk-rootfs"] + seconds[f"disk-role-{ROLE}"],
        finished.peak_rss,
        int(layout["size"]),
        compressed.stat().st_size,
    )


def _has_disks_option() -> bool:
    meshseed = shutil.which("meshseed")
    if meshseed is None:
        return False
    usage = subprocess.run([meshseed, "build", "--help"], capture_output=True, text=True, check=False)
    return "--disks" in usage.stdout


def baseline_disks(base: Path, payload: Path | None) -> tuple[Disk, Disk | None, str]:
    """Both baselines' images, measured and then removed: mmdebstrap's, and mkosi's (or
    None) with what it is."""
    mmdebstrap = mmdebstrap_disk(base / "mmdebstrap", payload)
    mkosi, kind = mkosi_disk(base / "mkosi", payload)
    for work in ("mmdebstrap", "mkosi"):
        shutil.rmtree(base / work, ignore_errors=True)
    return mmdebstrap, mkosi, kind


def _alone(name: str, disk: Disk) -> Row:
    ran = f"{disk.compressed_bytes / 1e6:.0f} MB zst"
    return Row(name, disk.seconds, disk.peak_rss, ran, size=disk.compressed_bytes, raw_size=disk.raw_bytes)


def _versus(ours: Disk, baseline: str, theirs: Disk) -> Row:
    return Row(
        f"{ROLE} disk: ours, cold",
        ours.seconds,
        ours.peak_rss,
        "rootfs+role",
        baseline=baseline,
        baseline_seconds=theirs.seconds,
        baseline_factor=1.0,
        size=ours.compressed_bytes,
        baseline_size=theirs.compressed_bytes,
        raw_size=ours.raw_bytes,
        baseline_raw_size=theirs.raw_bytes,
    )


def _baseline_rows(mmdebstrap: Disk, mkosi: Disk | None, kind: str, ours: Disk | None) -> list[Row]:
    """Each baseline alone, then ours against it when there is ours."""
    rows = [_alone(f"{ROLE} disk: {MMDEBSTRAP}", mmdebstrap)]
    if mkosi is not None:
        rows.append(_alone(f"{ROLE} disk: mkosi ({kind})", mkosi))
    else:
        print(f"bench: no mkosi row: {kind}", file=sys.stderr)
    if ours is not None:
        rows.append(_versus(ours, MMDEBSTRAP, mmdebstrap))
        if mkosi is not None:
            rows.append(_versus(ours, f"mkosi ({kind})", mkosi))
    return rows


def disk_rows(base: Path, key: Path) -> list[Row]:
    needed = ("mmdebstrap", "mke2fs", "mkfs.fat", "mcopy", "sfdisk", "zstd", "meshseed")
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        print(f"bench: skipping the disk rows (needs {', '.join(missing)})", file=sys.stderr)
        return []
    if not _has_disks_option():
        print("bench: no rows for our disk images: this meshseed has no `build --disks`", file=sys.stderr)
        return _baseline_rows(*baseline_disks(base, None), None)
    with our_project(base / "ours", key) as project:
        cold, cold_log = project.build("cold")
        ours = _our_disk(project, cold, cold_log)
        rows = _baseline_rows(*baseline_disks(base, collect_payload(project, base / "payload")), ours)
        rows.append(Row("build --disks: example site, cold", cold.seconds, cold.peak_rss, _ran(cold_log)))
        noop, noop_log = project.build("no-op")
        rows.append(Row("build --disks: no-op rebuild", noop.seconds, noop.peak_rss, _ran(noop_log)))
        site = project.root / "site.yaml"
        site.write_text(site.read_text().replace("admin2@example.org", "admin2@example.net"))
        keyed, keyed_log = project.build("ssh-key")
        rows.append(
            Row("build --disks: one node's SSH key changed", keyed.seconds, keyed.peak_rss, _ran(keyed_log))
        )
    return rows
