"""Our backup image reaches the backup node with the build, and no registry: the CronJobs
name the built image by its digest and never pull it, the backup role's archive of our
images imports into containerd under that digest, the node's seed disk (or the air-gap
payload) carries the archive, and node-setup puts it where k3s imports it.

The image is a stand-in built from the local test archive (tests/integration/generated.py);
containerd, isoinfo and the generated node-setup run for real.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.build import Request, load
from builder.det.epoch import DEFAULT_EPOCH
from builder.render.node import REFUSED_STATUS
from builder.render.payload import payload_derivation
from builder.store.derivation import BuildContext, Derivation
from builder.store.progress import SilentProgress
from builder.store.realise import realise
from tests.integration.debian_fixtures import DebRepo
from tests.integration.generated import BACKUP_IMAGE_MESSAGE, build_example_with_backup_image, named
from tests.integration.oci_fixtures import Containerd
from tests.tools import require

ARCHIVE = "backup-own.tar"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, deb_repo: DebRepo) -> Path:
    root = tmp_path_factory.mktemp("backup-image")
    build_example_with_backup_image(root, deb_repo)
    return root


def built_reference(root: Path) -> str:
    """The image the build made, by the digest of its manifest in dist/images/backup/."""
    (manifest,) = json.loads((root / "dist" / "images" / "backup" / "index.json").read_text())["manifests"]
    return f"meshseed.local/backup@{manifest['digest']}"


def cronjob_container(root: Path, name: str) -> dict[str, object]:
    docs = [
        doc for doc in yaml.safe_load_all((root / "dist" / "manifests" / "backup.yaml").read_text()) if doc
    ]
    (container,) = named(docs, "CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ]
    return dict(container)


def node_setup(root: Path, node: str) -> str:
    data = yaml.safe_load((root / "dist" / "nodes" / node / "user-data").read_text())
    (script,) = [
        f["content"] for f in data["write_files"] if f["path"] == "/usr/local/lib/meshseed/node-setup"
    ]
    return str(script)


def iso_names(iso: Path) -> list[str]:
    isoinfo = require("isoinfo", "genisoimage")
    listed = subprocess.run([isoinfo, "-R", "-f", "-i", str(iso)], capture_output=True, text=True, check=True)
    return sorted(line.lstrip("/") for line in listed.stdout.split())


def iso_file(iso: Path, name: str) -> bytes:
    isoinfo = require("isoinfo", "genisoimage")
    return subprocess.run(
        [isoinfo, "-R", "-i", str(iso), "-x", f"/{name}"], capture_output=True, check=True
    ).stdout


def test_the_cronjobs_run_the_built_image_by_digest_and_never_pull(root: Path) -> None:
    upstream = yaml.safe_load((root / "images" / "upstream.yaml").read_text())
    assert "backup" not in {image["name"] for image in upstream["images"]}
    assert "backup" not in json.loads((root / "images.lock").read_text())["images"]
    for job in ("backup-couchdb", "backup-rotate"):
        container = cronjob_container(root, job)
        assert container["image"] == built_reference(root), job
        assert container["imagePullPolicy"] == "Never", job
    # The dumps run upstream images, which keep the default policy.
    assert "imagePullPolicy" not in cronjob_container(root, "backup-mysql")


def test_only_the_backup_role_gets_the_archive(root: Path) -> None:
    dist = root / "dist"
    assert sorted(path.name for path in (dist / "own-images").iterdir()) == [ARCHIVE]
    archive = (dist / "own-images" / ARCHIVE).read_bytes()
    assert iso_names(dist / "nodes" / "vault" / "seed.iso") == [
        ARCHIVE,
        "meta-data",
        "network-config",
        "user-data",
    ]
    assert iso_file(dist / "nodes" / "vault" / "seed.iso", ARCHIVE) == archive
    assert f"\nplace {ARCHIVE} seed {hashlib.sha256(archive).hexdigest()}\n" in node_setup(root, "vault")
    for server in ("edx1", "edx2", "edx3"):
        assert ARCHIVE not in iso_names(dist / "nodes" / server / "seed.iso")
        assert "\nplace " not in node_setup(root, server)


def test_the_archive_imports_into_containerd_and_runs_by_digest(root: Path, containerd: Containerd) -> None:
    containerd.ctr("images", "import", str(root / "dist" / "own-images" / ARCHIVE))
    reference = built_reference(root)
    listed = containerd.ctr("images", "ls").stdout.decode().splitlines()[1:]
    rows = {line.split()[0]: line.split() for line in listed}
    digest = reference.split("@")[1]
    # Under the name the pods give, and under its tag.
    assert digest in rows[reference]
    assert digest in rows["meshseed.local/backup:0.1.0"]
    ran = containerd.run(reference, "/bin/sh", "-c", "cat /opt/app/message.txt")
    assert ran.stdout.decode() == BACKUP_IMAGE_MESSAGE


def place_program(script: str, work: Path, place: str) -> Path:
    """The script's own definitions with its paths moved under `work`, then `place`."""
    head = script[: script.index("\nget ")]
    head = re.sub(
        r"^(LOG|STAGE|STEPS|BANNER|IMAGES|SEED)=/\S*",
        lambda m: f"{m.group(1)}={work}/{m.group(1)}",
        head,
        flags=re.M,
    )
    head = head.replace("chmod 0700 /var/lib/meshseed\n", "")
    program = work / "setup.sh"
    program.write_text(f"{head}\n{place}\n")
    return program


def stand_in_disk_tools(bin_dir: Path, seed_iso: Path, calls: Path) -> None:
    """blkid, mountpoint, mount and umount as node-setup uses them on a node, for the seed
    disk: here `mount` reads the real seed.iso with isoinfo into the mount point."""
    isoinfo = require("isoinfo", "genisoimage")
    bin_dir.mkdir()
    tools = {
        "blkid": f'echo "blkid $*" >> {calls}\n[ "$*" = "-L cidata" ] && echo {seed_iso}\n',
        "mountpoint": f'echo "mountpoint $*" >> {calls}\n[ -e "$2/.mounted" ]\n',
        "mount": (
            f'echo "mount $*" >> {calls}\n'
            f'[ "$1 $2" = "-o ro" ] || exit 32\n'
            f'for name in $({isoinfo} -R -f -i "$3"); do {isoinfo} -R -i "$3" -x "$name" > "$4$name"; done\n'
            f'touch "$4/.mounted"\n'
        ),
        "umount": f'echo "umount $*" >> {calls}\nrm -rf "$1"/* "$1/.mounted"\n',
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}")
        (bin_dir / name).chmod(0o755)


def run_program(program: Path, bin_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return subprocess.run(
        ["sh", str(program)], capture_output=True, text=True, check=False, env=env, timeout=300
    )


def test_node_setup_takes_the_archive_from_the_seed_disk_for_k3s(
    root: Path, tmp_path: Path, containerd: Containerd
) -> None:
    script = node_setup(root, "vault")
    (place,) = [line for line in script.splitlines() if line.startswith("place ")]
    calls = tmp_path / "calls"
    stand_in_disk_tools(tmp_path / "bin", root / "dist" / "nodes" / "vault" / "seed.iso", calls)
    program = place_program(script, tmp_path, place)
    result = run_program(program, tmp_path / "bin")
    assert result.returncode == 0, result.stdout + result.stderr
    placed = tmp_path / "IMAGES" / ARCHIVE
    assert placed.read_bytes() == (root / "dist" / "own-images" / ARCHIVE).read_bytes()
    assert sorted(path.name for path in (tmp_path / "IMAGES").iterdir()) == [ARCHIVE]
    assert calls.read_text().splitlines() == [
        f"mountpoint -q {tmp_path}/SEED",
        "blkid -L cidata",
        f"mount -o ro {root}/dist/nodes/vault/seed.iso {tmp_path}/SEED",
        f"umount {tmp_path}/SEED",
    ]
    assert f"placed {ARCHIVE} for k3s to import" in (tmp_path / "LOG").read_text()
    # A second run finds it in place and reads no disk.
    again = run_program(program, tmp_path / "bin")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(calls.read_text().splitlines()) == 4
    assert f"{ARCHIVE} is in place" in (tmp_path / "LOG").read_text()
    # What k3s would find there imports, and the CronJobs' image resolves by its digest.
    containerd.ctr("images", "import", str(placed))
    reference = built_reference(root)
    assert containerd.ctr("images", "ls", "-q", f"name=={reference}").stdout.decode().split() == [reference]


def test_node_setup_refuses_an_archive_that_is_not_the_pinned_one(root: Path, tmp_path: Path) -> None:
    script = node_setup(root, "vault")
    (place,) = [line for line in script.splitlines() if line.startswith("place ")]
    _, name, _, sha256 = place.split()
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / name).write_bytes(b"some other archive\n")
    # The same function, given the payload disk as the air-gap seeds do.
    program = place_program(
        script.replace('PAYLOAD=""', f"PAYLOAD={payload}"), tmp_path, f"place {name} payload {sha256}"
    )
    result = run_program(program)
    assert result.returncode == REFUSED_STATUS, result.stdout + result.stderr
    assert "refusing to install it" in (tmp_path / "BANNER").read_text()
    assert not list((tmp_path / "IMAGES").iterdir())
    # The right one from the payload disk is placed.
    shutil.copy(root / "dist" / "own-images" / name, payload / name)
    result = run_program(program)
    assert result.returncode == 0, result.stdout + result.stderr
    assert hashlib.sha256((tmp_path / "IMAGES" / name).read_bytes()).hexdigest() == sha256


def build_stand_in_binary(ctx: BuildContext) -> None:
    ctx.write(ctx.inputs["file"], f"stand-in {ctx.inputs['file']}\n")


def test_an_airgap_build_carries_the_archive_on_the_payload(root: Path) -> None:
    loaded = load(
        Request(
            site=root / "site.yaml",
            store=None,
            master_key=root / "master.key",
            airgap=True,
            lock=root / "images.lock",
            upstream=root / "images" / "upstream.yaml",
            images=True,
            images_dir=root / "images",
        )
    )
    by_name = {derivation.name: derivation for derivation in loaded.derivations}
    archive = by_name["own-images-backup"]
    assert archive in by_name["payload-backup"].deps
    assert archive not in by_name["payload-server"].deps
    vault = by_name["seed-vault"]
    assert vault.inputs["own_archive"] == {"derivation": "own-images-backup", "source": "payload"}
    assert by_name["seed-edx1"].inputs["own_archive"] is None
    # The payload itself, with stand-ins for the fetched binaries (their fetch is tested elsewhere).
    binaries = {
        name: Derivation(name=f"stand-in-{name}", build=build_stand_in_binary, inputs={"file": name})
        for name in ("k3s", "k3s-install.sh", "mycelium")
    }
    payload = payload_derivation("backup", ["vault"], binaries, None, DEFAULT_EPOCH, archive=archive)
    # The seed, with a stand-in for the fetched bundle of upstream images.
    bundle = Derivation(name="airgap-backup", build=build_stand_in_binary, inputs={"file": "backup.tar.zst"})
    seed = dataclasses.replace(vault, deps=(*(dep for dep in vault.deps if dep.name != bundle.name), bundle))
    loaded.store.prepare()
    with loaded.store.shared():
        results = {
            r.derivation.name: r.output.path
            for r in realise(loaded.store, [payload, seed], jobs=1, progress=SilentProgress())
        }
    image = results["payload-backup"] / "payload.img"
    archive_bytes = (root / "dist" / "own-images" / ARCHIVE).read_bytes()
    assert ARCHIVE in iso_names(image)
    assert iso_file(image, ARCHIVE) == archive_bytes
    # node-setup takes it from the payload disk, and the seed disk does not carry it too.
    script = yaml.safe_load((results["seed-vault"] / "user-data").read_text())
    (setup,) = [
        f["content"] for f in script["write_files"] if f["path"] == "/usr/local/lib/meshseed/node-setup"
    ]
    assert f"\nplace {ARCHIVE} payload {hashlib.sha256(archive_bytes).hexdigest()}\n" in setup
    assert "PAYLOAD=/run/meshseed-payload" in setup
    assert ARCHIVE not in iso_names(results["seed-vault"] / "seed.iso")
