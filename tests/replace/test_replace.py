"""`meshseed replace` against a real sshd on 127.0.0.1 standing in for a healthy server,
with a recording k3s on its PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.replace.fake_cluster import FakeServer, cluster_of_the_example_site
from tests.replace.test_bootstrap import seed_k3s_config
from tests.sshd_nodes import keygen


def example(root: Path) -> Path:
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    write_test_lock(root)
    return root / "site.yaml"


def replace(
    root: Path, server: FakeServer, key: Path, node: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`meshseed replace NODE site.yaml ...`, logging in as root through the fake server."""
    return meshseed(
        "replace",
        node,
        "site.yaml",
        *args,
        "--user",
        "root",
        "--ssh-config",
        str(server.client_config),
        cwd=root,
        master_key=key,
    )


def test_replace_removes_exactly_the_lost_node_and_rebuilds_its_seed_to_join(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    site = example(tmp_path)
    cluster_of_the_example_site(fake_server, lost="edx1")
    result = replace(tmp_path, fake_server, master_key_file, "edx1")
    assert result.returncode == 0, result.stderr
    assert fake_server.nodes() == {"edx2", "edx3", "vault"}
    assert fake_server.changes() == [
        ["kubectl", "delete", "node", "edx1", "--wait=true", "--timeout=5m"],
        ["kubectl", "-n", "kube-system", "delete", "secret", "edx1.node-password.k3s", "--ignore-not-found"],
    ]
    assert yaml.safe_load(site.read_text())["bootstrapped"] is True
    config = seed_k3s_config(tmp_path / "dist", "edx1")
    assert "cluster-init" not in config
    nodes = {n["name"]: n for n in yaml.safe_load((tmp_path / "dist" / "nodes.json").read_text())}
    assert config["server"] == f"https://[{nodes['edx2']['overlay_address']}]:6443"
    assert "removed edx1's Node object and etcd member through edx2" in result.stderr
    assert "dist/nodes/edx1/seed.iso" in result.stderr and "joins edx2 as edx1" in result.stderr


def test_a_node_already_gone_from_the_cluster_is_replaced_all_the_same(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    example(tmp_path)
    cluster_of_the_example_site(fake_server)
    (fake_server.state / "nodes" / "vault.json").unlink()
    result = replace(tmp_path, fake_server, master_key_file, "vault", "--through", "edx2")
    assert result.returncode == 0, result.stderr
    assert fake_server.nodes() == {"edx1", "edx2", "edx3"}
    assert [call[:4] for call in fake_server.changes()] == [["kubectl", "-n", "kube-system", "delete"]]
    assert "vault had no Node object left" in result.stderr


def test_a_server_presenting_another_host_key_is_refused(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    site = example(tmp_path)
    cluster_of_the_example_site(fake_server)
    fake_server.host_key.unlink()
    keygen(fake_server.host_key)
    result = replace(tmp_path, fake_server, master_key_file, "edx1")
    assert result.returncode == 1, result.stderr
    assert "Host key verification failed" in result.stderr and "Traceback" not in result.stderr
    assert fake_server.calls() == []
    assert fake_server.nodes() == {"edx1", "edx2", "edx3", "vault"}
    assert site.read_text() == EXAMPLE_SITE.read_text()
    assert not (tmp_path / "dist").exists()


def test_an_unknown_node_is_refused_by_name(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    site = example(tmp_path)
    cluster_of_the_example_site(fake_server)
    result = replace(tmp_path, fake_server, master_key_file, "edx9")
    assert result.returncode == 2, result.stderr
    assert "no node named 'edx9'" in result.stderr
    assert fake_server.calls() == [] and site.read_text() == EXAMPLE_SITE.read_text()


def test_the_server_worked_through_is_never_the_one_removed(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    example(tmp_path)
    cluster_of_the_example_site(fake_server)
    through_itself = replace(tmp_path, fake_server, master_key_file, "edx2", "--through", "edx2")
    assert through_itself.returncode == 2
    assert "refusing to remove edx2 through itself" in through_itself.stderr
    through_an_agent = replace(tmp_path, fake_server, master_key_file, "edx1", "--through", "vault")
    assert through_an_agent.returncode == 2
    assert "only a server can remove a node" in through_an_agent.stderr
    assert fake_server.calls() == []


def test_a_node_that_is_ready_is_not_removed(
    fake_server: FakeServer, tmp_path: Path, master_key_file: Path
) -> None:
    site = example(tmp_path)
    cluster_of_the_example_site(fake_server, lost="edx3", lost_ready="True")
    result = replace(tmp_path, fake_server, master_key_file, "edx3", "--through", "edx2")
    assert result.returncode == 1, result.stderr
    assert "edx3 is Ready in the cluster" in result.stderr
    assert fake_server.changes() == [] and fake_server.nodes() == {"edx1", "edx2", "edx3", "vault"}
    assert site.read_text() == EXAMPLE_SITE.read_text()
