"""Seeds booted for real: QEMU (TCG) guests of Debian 12 with cloud-init.

Two servers of a test site boot side by side on a private link between the VMs (no
traffic leaves the machine), each with its seed and its role's air-gap payload, built
by `meshseed build --airgap` from a lock resolved against a local registry and a local
artifact server. The payload's k3s and Mycelium are test doubles (tests/e2e/doubles.py).
Then, on day two, the site changes and `meshseed apply` brings both running servers to
the new build over SSH. A third boot with a tampered payload must refuse to install
anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.det.iso9660 import IsoFile, write_iso
from tests.e2e.day_two import (
    NEW_PEER,
    apply,
    change_site,
    events,
    kubectl_log,
    power_off,
    seed_file,
    ssh_config,
    wait_for_sshd,
    wait_healthy,
)
from tests.e2e.doubles import K3S
from tests.e2e.guest import guest
from tests.e2e.project import SITE, build_project, e2e_store
from tests.e2e.vm import Guest, wait_all
from tests.integration.cli import meshseed
from tests.integration.oci_fixtures import Registry, TestImage, free_port
from tests.sshd_nodes import user_key
from tests.tools import require
from tests.unit.sites import KEY

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guest_files() -> Path:
    return guest(e2e_store())


@pytest.fixture
def login_key(tmp_path: Path) -> Path:
    """The operator's SSH key, which the site authorises on every node."""
    return user_key(tmp_path / "operator")


@pytest.fixture
def project(
    tmp_path: Path,
    master_key_file: Path,
    registry: Registry,
    test_images: dict[str, TestImage],
    login_key: Path,
) -> Path:
    """A site, its lock (doubles as binaries) and its --airgap build: dist/nodes."""
    public_key = Path(f"{login_key}.pub").read_text().strip()
    dist = build_project(
        tmp_path / "project",
        site=SITE.replace(KEY, public_key),
        master_key=master_key_file,
        registry=registry,
        test_images=test_images,
    )
    return dist / "nodes"


def boot(name: str, nodes: Path, files: Path, work: Path, **options: object) -> Guest:
    return Guest(
        name=name,
        work=work,
        kernel=files / "vmlinuz",
        initrd=files / "initrd.img",
        disk=files / "disk.img",
        drives=[nodes / name / "seed.iso", nodes / name / "payload.img"],
        **options,  # type: ignore[arg-type]
    )


def test_two_servers_boot_into_the_overlay_join_and_take_a_change_by_apply(
    project: Path, guest_files: Path, tmp_path: Path, master_key_file: Path, login_key: Path
) -> None:
    work = tmp_path / "vms"
    work.mkdir()
    # The machines keep the seeds they were first booted with; dist/ is built again on
    # day two.
    seeds = work / "seeds"
    for name in ("s1", "s2"):
        shutil.copytree(project / name, seeds / name)
    link = (work / "s1.sock", work / "s2.sock")
    # Each stays up until it has met the other: s1 until it served s2's join, s2 until it
    # has an answer; s1 lingers on for its Mycelium double's crash and restart
    # (5 s after k3s starts, then RestartSec=5), with room to spare.
    first = boot(
        "s1",
        seeds,
        guest_files,
        work,
        mac="52:54:00:00:0e:01",
        link=link,
        linger=40,
        await_file="/var/lib/meshseed-test/served.log",
    )
    second = boot(
        "s2",
        seeds,
        guest_files,
        work,
        mac="52:54:00:00:0e:02",
        link=link[::-1],
        linger=10,
        await_file="/var/lib/meshseed-test/join.log",
    )
    try:
        first.start()
        second.start()
        wait_all([first, second])
    finally:
        first.stop()
        second.stop()
    nodes = json.loads((project.parent / "nodes.json").read_text())
    overlay = {n["name"]: n["overlay_address"] for n in nodes}
    # `project` is the build's dist/nodes; the site is two levels up.
    known = meshseed("known-hosts", cwd=project.parent.parent, master_key=master_key_file)
    assert known.returncode == 0, known.stderr
    listed = known.stdout.splitlines()
    host_keys = {line.split()[-1]: line.split()[1:3] for line in listed}
    for vm in (first, second):
        console = vm.console()
        assert "meshseed: verified k3s (" in console, console[-3000:]
        assert f"meshseed: Mycelium is up: {overlay[vm.name]}" in console
        assert "meshseed: k3s server started" in console
        assert "ERROR" not in console.split("meshseed: verified", 1)[1]
        result = json.loads(vm.read("/var/lib/cloud/data/result.json"))
        assert result["v1"]["errors"] == [], result
        assert vm.stat("/etc/mycelium/priv_key.bin") == (0o600, 0, 0)
        assert vm.stat("/etc/rancher/k3s/config.yaml") == (0o600, 0, 0)
        assert vm.stat("/usr/local/bin/k3s")[0] == 0o755
        assert vm.stat("/usr/local/bin/mycelium")[0] == 0o755
        assert vm.exists("/etc/systemd/system/multi-user.target.wants/mycelium.service")
        assert vm.exists("/etc/systemd/system/k3s.service.d/10-meshseed.conf")
        assert vm.exists("/var/lib/rancher/k3s/agent/images/images.tar.zst")
        assert vm.read("/etc/hostname").strip() == vm.name
        # The derived host key, and no generated one beside it.
        assert vm.read("/etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == host_keys[vm.name]
        assert not vm.exists("/etc/ssh/ssh_host_rsa_key") and not vm.exists("/etc/ssh/ssh_host_ecdsa_key")
        mycelium_log = vm.read("/var/lib/mycelium/order.log")
        k3s_log = vm.read("/var/lib/meshseed-test/order.log")
        mycelium_started = float(mycelium_log.split()[1])
        install_started = float(k3s_log.splitlines()[0].split()[1])
        k3s_started = float(k3s_log.splitlines()[1].split()[1])
        assert mycelium_started < install_started < k3s_started
        assert "INSTALL_K3S_EXEC=server INSTALL_K3S_SKIP_DOWNLOAD=true" in k3s_log
        args = vm.read("/var/lib/mycelium/mycelium.args")
        assert "--key-file /etc/mycelium/priv_key.bin --tun-name mycelium --peers" in args
        config = vm.read("/var/lib/meshseed-test/k3s-config.yaml")
        assert f"node-ip: {overlay[vm.name]}" in config
    manifests = sorted((project.parent / "manifests").glob("*.yaml"))
    assert len(manifests) >= 10
    for vm in (first, second):
        for manifest in manifests:
            # The same bytes on every server, where k3s applies them.
            assert vm.read(f"/var/lib/rancher/k3s/server/manifests/{manifest.name}") == manifest.read_text()
        assert vm.stat("/var/lib/rancher/k3s/server/manifests/couchdb-secrets.yaml")[0] == 0o600
    # Mycelium's double crashed once after k3s started; systemd restarted it, and k3s
    # was restarted after it, so that flannel makes its VXLAN device anew.
    for vm in (first,):
        events = [line.split() for line in vm.read("/var/lib/mycelium/order.log").splitlines()]
        starts = [float(event[1]) for event in events if event[0] == "mycelium"]
        (crash,) = [float(event[1]) for event in events if event[0] == "crash"]
        assert len(starts) == 2 and starts[0] < crash < starts[1], events
        k3s_starts = [
            float(line.split()[1])
            for line in vm.read("/var/lib/meshseed-test/order.log").splitlines()
            if line.startswith("k3s ")
        ]
        assert k3s_starts[0] < crash and k3s_starts[-1] > starts[1], (k3s_starts, starts)
        assert vm.exists("/var/lib/meshseed/setup.done")
        assert vm.exists("/etc/systemd/system/multi-user.target.wants/meshseed-node-setup.service")
        assert not vm.exists("/etc/motd.d/meshseed")
    assert "cluster-init: true" in first.read("/var/lib/meshseed-test/k3s-config.yaml")
    assert f"server: https://[{overlay['s1']}]:6443" in second.read("/var/lib/meshseed-test/k3s-config.yaml")
    joined = second.read("/var/lib/meshseed-test/join.log")
    assert f"joined {overlay['s1']} k3s-double {overlay['s1']}" in joined, joined
    assert first.read("/var/lib/meshseed-test/served.log").startswith("served "), "s1 served no one"
    # The join above crossed both host firewalls (over the overlay, from a cluster node);
    # both are loaded after boot.
    for vm in (first, second):
        rules = vm.read("/var/lib/meshseed-test/nft.txt")
        assert "table inet meshseed" in rules and "chain from_public" in rules, rules
        assert overlay["s2"] in rules and overlay["s1"] in rules, rules
    day_two([first, second], project.parent.parent, master_key_file, login_key, nodes)


def day_two(
    vms: list[Guest], root: Path, master_key: Path, login_key: Path, nodes: list[dict[str, str]]
) -> None:
    """A new Mycelium peer on both servers and a changed manifest, built and applied to the
    running servers: the files land on both, the nodes change one after the other, and a
    second apply changes nothing. The second boot does nothing of the setup again."""
    before = {vm.name: vm.read("/var/lib/meshseed-test/order.log") for vm in vms}
    manifests = root / "dist" / "manifests"
    old_manifests = {path.name: path.read_bytes() for path in manifests.glob("*.yaml")}
    change_site(root, {vm.name: str(vm.mac) for vm in vms}, master_key)
    new_manifests = {path.name: path.read_bytes() for path in sorted(manifests.glob("*.yaml"))}
    changed_manifests = sorted(
        name for name, data in new_manifests.items() if old_manifests.get(name) != data
    )
    assert changed_manifests, "the alerts change changed no manifest"
    addresses = {n["name"]: n["public_ipv6"] for n in nodes}
    booted = [vm.name for vm in vms]
    for vm in vms:
        vm.ssh_port, vm.linger = free_port(), 1800
        vm.boot_again()
    try:
        config = ssh_config(root.parent / "day-two", {vm.name: vm for vm in vms}, addresses, login_key)
        for vm in vms:
            wait_for_sshd(vm)
        plan = wait_healthy(root, master_key, config, booted)
        assert plan["left_out"] == ["s3", "b1"], plan
        for node in plan["plan"]:
            paths = [change["path"] for change in node["changes"]]
            assert "/etc/systemd/system/mycelium.service" in paths, node
            assert node["restart"][0] in {"meshseed-firewall.service", "mycelium.service"}, node
            assert node["restart"][-1] == "k3s.service" and "mycelium.service" in node["restart"], node
            assert sorted(Path(m["path"]).name for m in node["manifests"]) == changed_manifests, node
        # s3 and b1 were never booted, so the cluster is not healthy: --force.
        report = apply(root, master_key, config, booted, "--force")
        assert report["changed"] == ["s1", "s2"] and report["failed"] is None, report
        assert report["manifests"] == changed_manifests, report
        assert all(problem.split()[0] in {"s3", "b1"} for problem in report["problems"]), report
        again = apply(root, master_key, config, booted)
        assert all(not node["changes"] and not node["manifests"] for node in again["plan"]), again
        assert again["changed"] == [] and again["manifests"] == [], again
        for vm in vms:
            power_off(config, addresses[vm.name])
        wait_all(vms)
    finally:
        for vm in vms:
            vm.stop()
    k3s_started, mycelium_started = {}, {}
    for vm in vms:
        console = vm.console()
        assert "meshseed: verified" not in console and "meshseed: installing" not in console, console[-3000:]
        order = vm.read("/var/lib/meshseed-test/order.log")
        assert order.startswith(before[vm.name]) and "install " not in order[len(before[vm.name]) :], order
        assert NEW_PEER in vm.read("/var/lib/mycelium/mycelium.args")
        unit = "/etc/systemd/system/mycelium.service"
        written = vm.read(unit)
        assert written == seed_file(root / "dist", vm.name, unit) and NEW_PEER in written
        for name, data in new_manifests.items():
            assert vm.read(f"/var/lib/rancher/k3s/server/manifests/{name}").encode() == data, name
        # On the node's own clock: Mycelium restarted before k3s, both during apply.
        k3s_started[vm.name] = events(order, "k3s")[-1]
        mycelium_started[vm.name] = events(vm.read("/var/lib/mycelium/order.log"), "mycelium")[-1]
        assert mycelium_started[vm.name] < k3s_started[vm.name]
    first, second = vms
    # One node after the other, each told by the other's clock: s2 saw s1 drained and
    # uncordoned before its own Mycelium restarted; s1 was back (its k3s restarted) before
    # it drained s2.
    seen_by_s2 = kubectl_log(second.read("/var/lib/meshseed-test/kubectl.log"))
    seen_by_s1 = kubectl_log(first.read("/var/lib/meshseed-test/kubectl.log"))
    assert [(verb, node) for verb, node, _ in seen_by_s2] == [("drain", "s1"), ("uncordon", "s1")]
    assert [(verb, node) for verb, node, _ in seen_by_s1] == [("drain", "s2"), ("uncordon", "s2")]
    assert seen_by_s2[1][2] < mycelium_started["s2"]
    assert k3s_started["s1"] < seen_by_s1[0][2]


def test_a_tampered_payload_installs_nothing(project: Path, guest_files: Path, tmp_path: Path) -> None:
    work = tmp_path / "vms"
    work.mkdir()
    tampered = tmp_path / "tampered"
    shutil.copytree(project / "s3", tampered / "s3")
    payload = tampered / "s3" / "payload.img"
    bad_k3s = K3S.replace("TEST DOUBLE", "TAMPERED DOUBLE").encode()
    files = {"k3s": IsoFile("k3s", bad_k3s, 0o755)}
    for name in ("k3s-install.sh", "mycelium.tar.gz", "images.tar.zst"):
        extracted = subprocess.run(
            [
                require("isoinfo", "genisoimage"),
                "-R",
                "-i",
                str(project / "s3" / "payload.img"),
                "-x",
                f"/{name}",
            ],
            capture_output=True,
            check=True,
        ).stdout
        files[name] = IsoFile(name, extracted)
    payload.chmod(0o644)
    payload.write_bytes(write_iso(files, label="meshseed-payload", epoch=315532800))
    vm = boot("s3", tampered, guest_files, work, linger=5)
    try:
        vm.start()
        console = vm.wait()
    finally:
        vm.stop()
    found = hashlib.sha256(bad_k3s).hexdigest()
    assert f"meshseed: ERROR: k3s has sha256 {found}, the seed pins" in console, console[-3000:]
    assert "meshseed: k3s was not started" in console
    # Final, not retried, and visible: a failed unit and the login banner.
    assert console.count("has sha256") == 1, console[-3000:]
    assert "has sha256" in vm.read("/etc/motd.d/meshseed")
    assert not vm.exists("/var/lib/meshseed/setup.done")
    assert not vm.exists("/usr/local/bin/k3s")
    assert not vm.exists("/var/lib/meshseed-test/order.log")
    assert "ERROR" in vm.read("/var/log/meshseed-setup.log")
