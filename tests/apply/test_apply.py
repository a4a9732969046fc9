"""`meshseed apply` against real sshd instances on 127.0.0.1 standing in for the example
site's four nodes, with recording stand-ins for k3s's kubectl and systemctl."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from tests.apply.conftest import PINNED, Built, fake_k3s_binary
from tests.fake_cluster import Call, FakeCluster
from tests.integration.cli import meshseed
from tests.sshd_nodes import PUBLIC_ADDRESSES, client_config

CONFIG = "/etc/rancher/k3s/config.yaml"
MYCELIUM_UNIT = "/etc/systemd/system/mycelium.service"
FIREWALL = "/etc/meshseed/firewall.nft"
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"
K3S = "/usr/local/bin/k3s"


def apply(
    built: Built, cluster: FakeCluster, *args: str, ssh_config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return meshseed(
        "apply",
        "site.yaml",
        *args,
        "--user",
        "root",
        "--ssh-config",
        str(ssh_config or cluster.client_config),
        "--node-root",
        f"{cluster.state}/roots/{{node}}",
        cwd=built.root,
        master_key=built.key,
    )


def on_node(cluster: FakeCluster, node: str, path: str) -> Path:
    return cluster.root(node) / path.lstrip("/")


def drift(cluster: FakeCluster, node: str, path: str, data: bytes = b"# an older build's\n") -> bytes:
    """Make a node's file differ from dist/ (as the previous build left it); its old bytes."""
    file = on_node(cluster, node, path)
    old = file.read_bytes()
    file.write_bytes(data)
    return old


def snapshot(cluster: FakeCluster) -> dict[str, tuple[int, bytes]]:
    roots = cluster.state / "roots"
    return {
        str(path.relative_to(roots)): (path.stat().st_mode & 0o7777, path.read_bytes())
        for path in sorted(roots.rglob("*"))
        if path.is_file()
    }


def acts(cluster: FakeCluster, since: int = 0) -> list[Call]:
    """Every call that changes something (not a read), from the `since`th call on."""
    return [
        call
        for call in cluster.all_calls()[since:]
        if call.argv[0] in {"mv", "systemctl"} or (call.argv[0] == "k3s" and "get" not in call.argv)
    ]


def subject(call: Call) -> str:
    """The node a call acts on: the kubectl's argument, else the node it ran on."""
    if call.argv[0] == "k3s":
        return call.argv[3]
    return call.node


def step(call: Call) -> str:
    """What a call does: kubectl's verb, "mv", or systemctl's verb."""
    return {"k3s": call.argv[2], "mv": "mv", "systemctl": call.argv[1]}[call.argv[0]]


def test_the_plan_lists_per_node_what_differs_and_a_dry_run_changes_nothing(
    cluster: FakeCluster, built: Built
) -> None:
    drift(cluster, "edx2", CONFIG)
    on_node(cluster, "vault", MYCELIUM_UNIT).unlink()
    drift(cluster, "edx1", f"{MANIFESTS}/caddy.yaml")
    on_node(cluster, "edx3", FIREWALL).chmod(0o666)
    before = snapshot(cluster)
    result = apply(built, cluster, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"edx1 (server, k3s {PINNED}): no change",
        f"edx2 (server, k3s {PINNED}): 1 change(s), drain, restart k3s.service",
        f"  update {CONFIG}",
        f"edx3 (server, k3s {PINNED}): 1 change(s), drain, restart meshseed-firewall.service, k3s.service",
        f"  mode {FIREWALL}",
        f"vault (backup, k3s {PINNED}): 1 change(s), drain, restart mycelium.service, k3s-agent.service",
        f"  create {MYCELIUM_UNIT}",
        f"manifest: update {MANIFESTS}/caddy.yaml on edx1",
    ]
    assert acts(cluster) == [] and snapshot(cluster) == before

    as_json = json.loads(apply(built, cluster, "--dry-run", "--json").stdout)
    plans = {plan["node"]: plan for plan in as_json["plan"]}
    assert plans["edx2"]["changes"] == [{"path": CONFIG, "action": "update", "mode": "0600"}]
    assert plans["vault"]["restart"] == ["mycelium.service", "k3s-agent.service"]
    assert plans["edx1"]["manifests"] == [
        {"path": f"{MANIFESTS}/caddy.yaml", "action": "update", "mode": "0644"}
    ]
    assert as_json["healthy"] is True and as_json["dry_run"] is True
    assert acts(cluster) == []


def test_apply_changes_one_node_at_a_time_atomically_then_a_second_apply_changes_nothing(
    cluster: FakeCluster, built: Built
) -> None:
    drift(cluster, "edx1", CONFIG)
    drift(cluster, "edx3", MYCELIUM_UNIT)
    drift(cluster, "vault", FIREWALL)
    drift(cluster, "edx2", f"{MANIFESTS}/caddy-secrets.yaml")
    on_node(cluster, "edx3", f"{MANIFESTS}/caddy-secrets.yaml").unlink()
    result = apply(built, cluster)
    assert result.returncode == 0, result.stderr

    # One node after the other, servers first: each is drained (which cordons it),
    # written, restarted and uncordoned before the next one is touched; the manifests
    # come last.
    node_acts = [call for call in acts(cluster) if not any(MANIFESTS in arg for arg in call.argv)]
    assert [subject(call) for call in node_acts] == [
        *["edx1"] * 4,
        *["edx3"] * 6,
        *["vault"] * 5,
    ]
    assert [call.argv[:2] for call in node_acts if call.node == "edx3" or subject(call) == "edx3"] == [
        ["k3s", "kubectl"],  # drain
        ["mv", "-f"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart"],  # mycelium
        ["systemctl", "restart"],  # k3s
        ["k3s", "kubectl"],  # uncordon
    ]
    edx1 = [call.argv for call in node_acts if subject(call) == "edx1"]
    assert edx1[0][:3] == ["k3s", "kubectl", "drain"] and "--disable-eviction" not in edx1[0]
    assert edx1[0][3:] == ["edx1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=600s"]
    assert edx1[1][0] == "mv"
    assert edx1[2] == ["systemctl", "restart", "k3s.service"]
    assert edx1[3] == ["k3s", "kubectl", "uncordon", "edx1"]
    # kubectl never runs on the node it drains.
    assert all(call.node != subject(call) for call in node_acts if call.argv[0] == "k3s")
    restarts = [(call.node, call.argv[2]) for call in node_acts if call.argv[1] == "restart"]
    assert restarts == [
        ("edx1", "k3s.service"),
        ("edx3", "mycelium.service"),
        ("edx3", "k3s.service"),
        ("vault", "meshseed-firewall.service"),
        ("vault", "k3s-agent.service"),
    ]

    # Written whole: a temporary file in the same directory, with its final mode and bytes
    # before it is renamed over the target.
    dist = built.dist
    manifest = (dist / "manifests" / "caddy-secrets.yaml").read_bytes()
    renames = [call for call in cluster.all_calls() if call.argv[0] == "mv"]
    assert [(call.node, Path(call.argv[-1]).name) for call in renames] == [
        ("edx1", "config.yaml"),
        ("edx3", "mycelium.service"),
        ("vault", "firewall.nft"),
        ("edx2", "caddy-secrets.yaml"),
        ("edx3", "caddy-secrets.yaml"),
    ]
    for call in renames:
        source, target = Path(call.argv[-2]), Path(call.argv[-1])
        assert source.parent == target.parent and source.name.startswith(f".{target.name}.meshseed-")
        assert call.extra["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
        assert int(call.extra["mode"], 8) == target.stat().st_mode & 0o7777
    secret = on_node(cluster, "edx2", f"{MANIFESTS}/caddy-secrets.yaml")
    assert secret.read_bytes() == manifest and secret.stat().st_mode & 0o7777 == 0o600
    assert on_node(cluster, "edx3", f"{MANIFESTS}/caddy-secrets.yaml").read_bytes() == manifest
    config = on_node(cluster, "edx1", CONFIG)
    assert config.stat().st_mode & 0o7777 == 0o600 and b"node-name: edx1" in config.read_bytes()
    assert not list((cluster.state / "roots").rglob(".*meshseed-*"))
    assert all(not cluster.node(name)["spec"].get("unschedulable") for name in cluster.nodes())

    before = snapshot(cluster)
    calls = len(cluster.all_calls())
    again = apply(built, cluster)
    assert again.returncode == 0, again.stderr
    assert "every node matches dist/" in again.stdout
    assert acts(cluster, since=calls) == []
    assert snapshot(cluster) == before


def test_it_stops_at_the_first_node_that_does_not_come_back(cluster: FakeCluster, built: Built) -> None:
    drift(cluster, "edx1", CONFIG)
    drift(cluster, "edx2", CONFIG)
    vault_old = drift(cluster, "vault", CONFIG)
    drift(cluster, "edx3", f"{MANIFESTS}/caddy.yaml")
    cluster.mark("never-ready", "edx2")
    result = apply(built, cluster, "--timeout", "2")
    assert result.returncode == 1
    assert "error: edx2 did not come back: not Ready after the restart" in result.stderr
    assert "left vault untouched" in result.stderr and "Traceback" not in result.stderr
    touched = [subject(call) for call in acts(cluster)]
    assert touched == [*["edx1"] * 4, *["edx2"] * 3]
    assert cluster.node("edx2")["spec"]["unschedulable"] is True
    assert not cluster.node("edx1")["spec"]["unschedulable"]
    assert on_node(cluster, "vault", CONFIG).read_bytes() == b"# an older build's\n" != vault_old
    # The manifests wait for every node.
    assert on_node(cluster, "edx3", f"{MANIFESTS}/caddy.yaml").read_bytes() == b"# an older build's\n"


def test_an_unhealthy_cluster_is_refused_unless_forced(cluster: FakeCluster, built: Built) -> None:
    drift(cluster, "edx1", CONFIG)
    cluster.add_node("vault", "False")
    cluster.add_node("edx3", etcd=False)
    cluster.mark("etcd-unhealthy", "edx2")
    before = snapshot(cluster)
    refused = apply(built, cluster)
    assert refused.returncode == 1
    assert "the cluster is not healthy, so apply changes nothing" in refused.stderr
    for reason in (
        "vault is NotReady (Ready: False)",
        "edx3 is not an etcd member",
        "edx2's etcd is not healthy",
    ):
        assert reason in refused.stderr
    assert "--force" in refused.stderr
    assert acts(cluster) == [] and snapshot(cluster) == before

    (cluster.state / "etcd-unhealthy" / "edx2").unlink()
    forced = apply(built, cluster, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "unhealthy: vault is NotReady" in forced.stdout
    assert on_node(cluster, "edx1", CONFIG).read_bytes() != b"# an older build's\n"


def test_a_node_presenting_another_host_key_is_refused(cluster: FakeCluster, built: Built) -> None:
    drift(cluster, "edx1", CONFIG)
    # edx3's address leads to edx2's sshd, which presents edx2's key.
    ports = {**cluster.ports, PUBLIC_ADDRESSES["edx3"]: cluster.ports[PUBLIC_ADDRESSES["edx2"]]}
    config = client_config(cluster.state.parent / "mixed" / "ssh_config", ports, cluster.login_key)
    before = snapshot(cluster)
    result = apply(built, cluster, ssh_config=config)
    assert result.returncode == 1
    assert "Host key verification failed" in result.stderr and "Traceback" not in result.stderr
    assert acts(cluster) == [] and snapshot(cluster) == before


def install_k3s(cluster: FakeCluster, node: str, version: str) -> None:
    binary = on_node(cluster, node, K3S)
    binary.write_bytes(fake_k3s_binary(version))
    binary.chmod(0o755)


def test_k3s_is_upgraded_servers_first_one_at_a_time(cluster: FakeCluster, built: Built) -> None:
    for node in ("edx1", "edx2", "edx3", "vault"):
        install_k3s(cluster, node, "v1.32.8+k3s1")
    result = apply(built, cluster)
    assert result.returncode == 0, result.stderr
    assert f"edx1 (server, k3s v1.32.8+k3s1 -> {PINNED}): 1 change(s), drain, restart k3s.service" in (
        result.stdout
    )
    restarts = [
        (call.node, call.argv[2]) for call in acts(cluster) if call.argv[:2] == ["systemctl", "restart"]
    ]
    assert restarts == [
        ("edx1", "k3s.service"),
        ("edx2", "k3s.service"),
        ("edx3", "k3s.service"),
        ("vault", "k3s-agent.service"),
    ]
    # Each binary is in place, verified, before its node restarts, and no node starts
    # before the one before it is back.
    steps = [(subject(call), step(call)) for call in acts(cluster)]
    assert steps == [
        (node, done)
        for node in ("edx1", "edx2", "edx3", "vault")
        for done in ("drain", "mv", "restart", "uncordon")
    ]
    assert all(Path(call.argv[-1]).name == "k3s" for call in acts(cluster) if call.argv[0] == "mv")
    pinned = (built.dist / "airgap" / "binaries" / "k3s").read_bytes()
    for node in ("edx1", "edx2", "edx3", "vault"):
        binary = on_node(cluster, node, K3S)
        assert binary.read_bytes() == pinned and binary.stat().st_mode & 0o7777 == 0o755
    again = apply(built, cluster, "--dry-run")
    assert again.returncode == 0 and "every node matches dist/" in again.stdout


def test_a_k3s_downgrade_and_a_skipped_minor_version_are_refused(cluster: FakeCluster, built: Built) -> None:
    install_k3s(cluster, "edx3", "v1.34.1+k3s1")
    before = snapshot(cluster)
    downgrade = apply(built, cluster)
    assert downgrade.returncode == 2
    assert f"edx3 runs k3s v1.34.1+k3s1, newer than the pinned {PINNED}: refusing to downgrade" in (
        downgrade.stderr
    )
    assert acts(cluster) == [] and snapshot(cluster) == before

    install_k3s(cluster, "edx3", "v1.33.4+k3s1")
    install_k3s(cluster, "vault", "v1.31.9+k3s1")
    before = snapshot(cluster)
    skip = apply(built, cluster)
    assert skip.returncode == 2
    assert f"vault runs k3s v1.31.9+k3s1; the pinned {PINNED} skips a minor version" in skip.stderr
    assert "upgrade to a v1.32 release first" in skip.stderr
    assert acts(cluster) == [] and snapshot(cluster) == before


def test_only_changes_the_named_nodes_and_still_counts_the_others_health(
    cluster: FakeCluster, built: Built
) -> None:
    drift(cluster, "edx2", CONFIG)
    drift(cluster, "edx3", MYCELIUM_UNIT)
    vault_config = drift(cluster, "vault", CONFIG)
    # vault cannot be reached at all: its address leads to a port nothing listens on, so
    # any attempt to log in to it would fail the run.
    ports = {**cluster.ports, PUBLIC_ADDRESSES["vault"]: 9}
    config = client_config(cluster.state.parent / "vault-down" / "ssh_config", ports, cluster.login_key)
    cluster.add_node("vault", "False")

    refused = apply(built, cluster, "--only", "edx2,edx3", ssh_config=config)
    assert refused.returncode == 1 and "vault is NotReady (Ready: False)" in refused.stderr
    assert acts(cluster) == []

    result = apply(built, cluster, "--only", "edx2,edx3", "--force", "--json", ssh_config=config)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [plan["node"] for plan in report["plan"]] == ["edx2", "edx3"]
    assert report["left_out"] == ["edx1", "vault"] and report["changed"] == ["edx2", "edx3"]
    assert report["problems"] == ["vault is NotReady (Ready: False)"]
    assert {call.node for call in cluster.all_calls()} <= {"edx2", "edx3"}
    assert [(subject(call), call.argv[2]) for call in acts(cluster) if call.argv[0] == "k3s"] == [
        ("edx2", "drain"),
        ("edx2", "uncordon"),
        ("edx3", "drain"),
        ("edx3", "uncordon"),
    ]
    assert on_node(cluster, "vault", CONFIG).read_bytes() == b"# an older build's\n" != vault_config
    plan = apply(built, cluster, "--only", "edx2,edx3", "--force", "--dry-run", ssh_config=config)
    assert plan.stdout.splitlines()[-2:] == [
        "left out (--only): edx1, vault",
        "unhealthy: vault is NotReady (Ready: False)",
    ]


def test_only_refuses_an_unknown_node_and_a_drain_no_other_server_can_watch(
    cluster: FakeCluster, built: Built
) -> None:
    drift(cluster, "edx1", CONFIG)
    before = snapshot(cluster)
    unknown = apply(built, cluster, "--only", "edx1,edx9")
    assert unknown.returncode == 2
    assert "--only names edx9, not a node of cluster" in unknown.stderr and "edx1, edx2" in unknown.stderr
    alone = apply(built, cluster, "--only", "edx1")
    assert alone.returncode == 2 and "Traceback" not in alone.stderr
    assert "no other server among the nodes applied to can watch edx1" in alone.stderr
    # A dry run only reads, so it needs no watcher.
    assert apply(built, cluster, "--only", "edx1", "--dry-run").returncode == 0
    assert acts(cluster) == [] and snapshot(cluster) == before
