"""The etcd snapshot transfer as the build renders it with our backup image: the sender on
the servers, the receiver on the backup node, their token, the rotation of the etcd kind,
the NetworkPolicies (judged as kube-router applies them) and EtcdSnapshotTooOld (promtool)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from builder import backup_pull
from builder.cluster.flows import Flow
from builder.manifests import registry
from builder.render.node import ETCD_SNAPSHOTS
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE
from tests.integration.debian_fixtures import DebRepo
from tests.integration.generated import Documents, build_example_with_backup_image, named, read_manifest
from tests.integration.policy_cluster import overlays_of
from tests.integration.test_alert_rules import backup_series, promtool_test
from tests.integration.test_policy_simulator import judge, model, pod
from tests.policy_model import Request

RECEIVER_PORT = 8470


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, deb_repo: DebRepo) -> Path:
    return build_example_with_backup_image(tmp_path_factory.mktemp("etcd"), deb_repo)


@pytest.fixture(scope="module")
def docs(dist: Path) -> Documents:
    return [
        doc for path in sorted((dist / "manifests").glob("*.yaml")) for doc in read_manifest(dist, path.stem)
    ]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(workload["spec"]["template"]["spec"])


def test_the_sender_reads_the_snapshots_on_a_server_as_root_and_nothing_more(
    docs: Documents, dist: Path
) -> None:
    sender = named(docs, "CronJob", "etcd-snapshot-send")
    assert sender["metadata"]["namespace"] == "etcd-snapshots"
    spec = pod_spec(sender)
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    (snapshots,) = [volume for volume in spec["volumes"] if "hostPath" in volume]
    # The directory the servers' k3s config names (the golden seeds show it), read-only.
    assert snapshots["hostPath"]["path"] == ETCD_SNAPSHOTS["etcd-snapshot-dir"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == snapshots["name"]]
    assert mount["readOnly"] is True
    namespace = named(docs, "Namespace", "etcd-snapshots")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    # The token reaches it from a Secret, never in the manifest's plain text.
    (token,) = [variable for variable in container["env"] if variable["name"] == "ETCD_SNAPSHOT_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "etcd-snapshot-token", "key": "token"}


def test_the_receiver_runs_our_agent_on_the_backup_node_into_the_backup_volume(docs: Documents) -> None:
    receiver = named(docs, "Deployment", "backup-etcd")
    spec = pod_spec(receiver)
    assert spec["nodeSelector"] == {"meshseed/role": "backup"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["image"].startswith("meshseed.local/backup@sha256:")
    assert container["args"][:3] == ["etcd-receive", "--port", str(RECEIVER_PORT)]
    assert container["args"][3:5] == ["--out", "/backups/etcd"]
    claims = {volume["persistentVolumeClaim"]["claimName"] for volume in spec["volumes"]}
    assert claims == {"backups", "backup-metrics"}
    rotation = pod_spec(named(docs, "CronJob", "backup-rotate"))["containers"][0]["args"]
    assert "/backups/etcd" in rotation
    secrets = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "etcd-snapshot-token"]
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["backup", "etcd-snapshots"]
    assert secrets[0]["stringData"]["token"] == secrets[1]["stringData"]["token"]


def test_backup_pull_fetches_every_kind_the_backup_node_keeps(docs: Documents) -> None:
    rotation = pod_spec(named(docs, "CronJob", "backup-rotate"))["containers"][0]["args"]
    kept = {arg.removeprefix("/backups/") for arg in rotation if arg.startswith("/backups/")}
    assert {"couchdb", "etcd", "garage"} <= kept
    assert kept <= set(backup_pull.KINDS)


def test_only_the_sender_reaches_the_receiver(docs: Documents) -> None:
    site = load_site(EXAMPLE_SITE)
    images = {"mysql": "mysql@sha256:0", "mongodb": "mongo@sha256:0", "openedx": "openedx@sha256:0"}
    gathered = registry.gather(site, overlays_of(docs), images, own_images={"backup": "backup"})
    flows: tuple[Flow, ...] = gathered.flows
    cluster = model(docs)
    assert judge(cluster, flows) == []
    receiver = next(p for p in cluster.pods if p.name == "backup-etcd")
    sender = next(p for p in cluster.pods if p.name == "etcd-snapshot-send")

    def allowed(source: Any, address: ipaddress.IPv6Address) -> bool:
        request = Request(source, address, "TCP", RECEIVER_PORT)
        return all(cluster.allowed(request, landing) for landing in cluster.landings(request))

    assert allowed(sender, receiver.address)
    assert not allowed(pod(cluster, "lms", "edx1"), receiver.address)
    assert not allowed(next(p for p in cluster.pods if p.name == "prometheus"), receiver.address)


def test_no_etcd_snapshot_for_26_hours_alerts(docs: Documents, tmp_path: Path) -> None:
    config = named(docs, "ConfigMap", "prometheus-config")
    rules = str(config["data"]["alerts.yml"])
    alert = [
        {
            "exp_labels": {"severity": "critical"},
            "exp_annotations": {"summary": "No etcd snapshot on the backup node in the last 26 hours"},
        }
    ]
    etcd_alert = [
        {
            **alert[0],
            "exp_labels": {**alert[0]["exp_labels"], "kind": "etcd", "instance": "vault", "job": "node"},
        }
    ]
    cases = [
        # k3s's newest snapshot keeps up: nothing fires, and BackupTooOld leaves etcd alone.
        {
            "interval": "1m",
            "input_series": [backup_series("etcd", "0+60x1800")],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "EtcdSnapshotTooOld", "exp_alerts": []},
            ],
        },
        # The newest snapshot stays at time 0: too old after 26 hours (and 15 minutes).
        {
            "interval": "1m",
            "input_series": [backup_series("etcd", "0x1800")],
            "alert_rule_test": [
                {"eval_time": "25h", "alertname": "EtcdSnapshotTooOld", "exp_alerts": []},
                {"eval_time": "26h20m", "alertname": "EtcdSnapshotTooOld", "exp_alerts": etcd_alert},
                {
                    "eval_time": "26h20m",
                    "alertname": "BackupTooOld",
                    "exp_alerts": [
                        {
                            "exp_labels": {"kind": kind, "severity": "critical"},
                            "exp_annotations": {
                                "summary": f"No successful {kind} backup in the last 26 hours"
                            },
                        }
                        for kind in ("couchdb", "mysql", "mongodb", "garage")
                    ],
                },
            ],
        },
        # None ever arrived.
        {
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "EtcdSnapshotTooOld",
                    "exp_alerts": [{**alert[0], "exp_labels": {"kind": "etcd", "severity": "critical"}}],
                }
            ],
        },
    ]
    promtool_test(rules, cases, tmp_path)
