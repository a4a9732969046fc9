"""Node seeds: valid for cloud-init, consistent across the cluster, pinned by golden files."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pycdlib
import pytest
import yaml

from tests.conftest import EXAMPLE_SITE, REPO
from tests.integration.cli import meshseed
from tests.pinned import test_sha256, write_test_lock
from tests.tools import require
from tests.unit.sites import site

GOLDEN = REPO / "tests" / "golden" / "example-site"
SEED_TEXT = ("meta-data", "network-config", "user-data")


def build(root: Path, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = meshseed("build", *args, cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def pinned_example(tmp_path: Path, master_key_file: Path) -> Path:
    root = tmp_path / "example"
    root.mkdir()
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    write_test_lock(root)
    build(root, master_key_file)
    return root / "dist" / "nodes"


def user_data(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def written(data: dict[str, Any], path: str) -> dict[str, Any]:
    return next(entry for entry in data["write_files"] if entry["path"] == path)


def cloud_init_modules() -> set[str]:
    """Every top-level key some cloud-init module reads, from cloud-init's own schema."""
    require("cloud-init", "cloud-init")
    script = (
        "from cloudinit.config.schema import get_schema\n"
        "keys = set()\n"
        "for name, spec in get_schema()['$defs'].items():\n"
        "    if name.startswith('cc_'): keys.update(spec.get('properties', {}))\n"
        "print('\\n'.join(sorted(keys)))\n"
    )
    output = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True, check=True)
    return set(output.stdout.split())


def test_every_user_data_passes_cloud_init_schema(pinned_example: Path) -> None:
    cloud_init = require("cloud-init", "cloud-init")
    known = cloud_init_modules()
    for node in sorted(pinned_example.iterdir()):
        result = subprocess.run(
            [cloud_init, "schema", "--config-file", str(node / "user-data")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "deprecat" not in (result.stdout + result.stderr).lower()
        assert set(user_data(node / "user-data")) <= known, set(user_data(node / "user-data")) - known


def test_every_network_config_renders(pinned_example: Path, tmp_path: Path) -> None:
    cloud_init = require("cloud-init", "cloud-init")
    for node in sorted(pinned_example.iterdir()):
        out = tmp_path / node.name
        result = subprocess.run(
            [
                cloud_init,
                "devel",
                "net-convert",
                "-p",
                str(node / "network-config"),
                "-k",
                "yaml",
                "-d",
                str(out),
                "-D",
                "debian",
                "-O",
                "eni",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rendered = "\n".join(p.read_text() for p in out.rglob("*") if p.is_file())
        config = yaml.safe_load((node / "network-config").read_text())["network"]["ethernets"]
        (uplink,) = config.values()
        assert f"address {uplink['addresses'][0]}" in rendered
        assert f"gateway {uplink['gateway6']}" in rendered
        # RA and DHCPv6 are off: the site's resolvers are the only ones the node gets.
        assert "dns-nameservers 2620:fe::fe 2606:4700:4700::1111" in rendered


def test_seed_iso_holds_the_three_files(pinned_example: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.open(str(pinned_example / "edx1" / "seed.iso"))
    try:
        for name in SEED_TEXT:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            assert out.getvalue() == (pinned_example / "edx1" / name).read_bytes()
    finally:
        iso.close()


def test_golden_seeds_of_the_example_site(pinned_example: Path, update_golden: bool) -> None:
    for node in sorted(pinned_example.iterdir()):
        for name in SEED_TEXT:
            golden = GOLDEN / node.name / name
            if update_golden:
                golden.parent.mkdir(parents=True, exist_ok=True)
                golden.write_bytes((node / name).read_bytes())
            assert (node / name).read_text() == golden.read_text(), (
                f"{node.name}/{name} differs from its golden file"
            )


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_seeds_agree_on_peers_join_urls_and_token(
    servers: int, tmp_path: Path, master_key_file: Path
) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "site.yaml").write_text(site(servers=servers, agents=2))
    write_test_lock(root)
    build(root, master_key_file)
    nodes = json.loads((root / "dist" / "nodes.json").read_text())
    overlay = {n["name"]: n["overlay_address"] for n in nodes}
    public = {n["name"]: n["public_ipv6"] for n in nodes}
    configs, peers = {}, {}
    for name in overlay:
        data = user_data(root / "dist" / "nodes" / name / "user-data")
        configs[name] = yaml.safe_load(written(data, "/etc/rancher/k3s/config.yaml")["content"])
        unit = written(data, "/etc/systemd/system/mycelium.service")["content"]
        peers[name] = unit.split("--peers ")[1].split("\n")[0].split()
    # Servers share the server token and the agent token they accept; agents and the
    # backup node join with the agent token, and no byte of their seeds is the server's.
    servers_ = {name: config for name, config in configs.items() if name.startswith("s")}
    others = {name: config for name, config in configs.items() if not name.startswith("s")}
    assert len({config["token"] for config in servers_.values()}) == 1
    server_token = next(iter(servers_.values()))["token"]
    agent_token = next(iter(servers_.values()))["agent-token"]
    assert len(server_token) == len(agent_token) == 64 and server_token != agent_token
    assert {config["agent-token"] for config in servers_.values()} == {agent_token}
    assert {config["token"] for config in others.values()} == {agent_token}
    for name, config in others.items():
        seed = root / "dist" / "nodes" / name
        assert all(
            server_token not in path.read_text(errors="replace") for path in seed.iterdir() if path.is_file()
        )
        assert "agent-token" not in config
    first = [name for name, config in configs.items() if config.get("cluster-init")]
    assert first == ["s1"]
    for name, config in configs.items():
        assert config["node-ip"] == overlay[name]
        if name != "s1":
            assert config["server"] == f"https://[{overlay['s1']}]:6443"
        role = name[0]
        assert config["node-label"] == [
            f"meshseed/role={ {'s': 'server', 'a': 'agent', 'b': 'backup'}[role] }"
        ]
        if role == "b":
            assert config["node-taint"] == ["meshseed/role=backup:NoSchedule"]
        if role == "s":
            assert set(config["tls-san"]) >= set(overlay.values()) | set(public.values())
            assert config["cluster-cidr"].startswith("fd") and config["service-cidr"].endswith("/108")
        expected = [
            f"{scheme}://[{public[other]}]:9651"
            for other in overlay
            if other != name
            for scheme in ("tcp", "quic")
        ]
        assert sorted(peers[name]) == sorted(expected)


def test_without_pins_seeds_are_base_only_and_say_so(tmp_path: Path, master_key_file: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    result = build(root, master_key_file, "--json")
    assert "images.lock pins no k3s or Mycelium yet" in result.stderr
    assert json.loads(result.stdout)["warnings"]
    data = user_data(root / "dist" / "nodes" / "edx1" / "user-data")
    assert not [
        entry for entry in data["write_files"] if "k3s" in entry["path"] or "mycelium" in entry["path"]
    ]


def test_secrets_are_private_and_pins_are_in_the_seed(pinned_example: Path) -> None:
    data = user_data(pinned_example / "edx1" / "user-data")
    assert written(data, "/etc/mycelium/priv_key.bin")["permissions"] == "0600"
    assert written(data, "/etc/rancher/k3s/config.yaml")["permissions"] == "0600"
    setup = written(data, "/usr/local/lib/meshseed/node-setup")["content"]
    for name in ("k3s", "k3s-install.sh", "mycelium"):
        assert test_sha256(name) in setup
    assert (pinned_example / "edx1" / "user-data").stat().st_mode & 0o777 == 0o600


def test_ipv6_only_nodes_download_from_the_mirror_and_resolve_with_the_sites_resolvers(
    pinned_example: Path,
) -> None:
    data = user_data(pinned_example / "edx1" / "user-data")
    setup = written(data, "/usr/local/lib/meshseed/node-setup")["content"]
    # github.com has no IPv6 address: every download goes to the mirror, same path.
    assert "https://mirror.campus.example.org/pinned/github.com/k3s-io/k3s/releases/download/" in setup
    assert "https://github.com" not in setup
    resolv = written(data, "/etc/rancher/k3s/resolv.conf")["content"]
    assert resolv == "nameserver 2620:fe::fe\nnameserver 2606:4700:4700::1111\n"
    config = yaml.safe_load(written(data, "/etc/rancher/k3s/config.yaml")["content"])
    assert config["resolv-conf"] == "/etc/rancher/k3s/resolv.conf"


def test_a_download_mode_site_without_a_way_out_is_refused(tmp_path: Path, master_key_file: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    text = EXAMPLE_SITE.read_text()
    (root / "site.yaml").write_text(
        text.replace("downloads:\n  mirror: https://mirror.campus.example.org/pinned\n", "")
    )
    write_test_lock(root)
    result = meshseed("build", cwd=root, master_key=master_key_file)
    assert result.returncode == 2, result.stderr
    assert "site.yaml: downloads: the nodes are IPv6-only" in result.stderr
    assert "downloads.mirror" in result.stderr and "--airgap" in result.stderr
    assert "Traceback" not in result.stderr and not (root / "dist").exists()
    for way_out in ("downloads: {nat64: true}\n", "downloads: {ipv4: true}\n"):
        (root / "site.yaml").write_text(
            text.replace("downloads:\n  mirror: https://mirror.campus.example.org/pinned\n", way_out)
        )
        result = meshseed("build", cwd=root, master_key=master_key_file)
        assert result.returncode == 0, result.stderr


# The kubelet's own list of what protect-kernel-defaults checks (k8s.io/component-helpers
# node/utils/sysctl: VMOvercommitMemory, VMPanicOnOOM, KernelPanic, KernelPanicOnOops,
# RootMaxKeys, RootMaxBytes), with the values it requires.
KUBELET_CHECKS = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}


def test_k3s_is_hardened_and_the_kernel_set_as_the_kubelet_expects(pinned_example: Path) -> None:
    for seed in sorted(pinned_example.iterdir()):
        data = user_data(seed / "user-data")
        config = yaml.safe_load(written(data, "/etc/rancher/k3s/config.yaml")["content"])
        assert config["protect-kernel-defaults"] is True, seed.name
        sysctls = dict(
            (part.strip() for part in line.split("=", 1))
            for line in written(data, "/etc/sysctl.d/90-meshseed.conf")["content"].splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        )
        assert {key: sysctls.get(key) for key in KUBELET_CHECKS} == KUBELET_CHECKS, seed.name
        # Secrets encrypted in etcd (and its snapshots), on every server; agents have no etcd.
        assert config.get("secrets-encryption") is (
            True if "cluster-init" in config or "agent-token" in config else None
        )
