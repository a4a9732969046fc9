"""The backup node: every component's backup jobs as CronJobs there, and their rotation;
and the etcd snapshots k3s takes on the servers, sent to the backup node's receiver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import (
    BACKUP_IMAGE,
    BACKUP_PATH,
    METRICS_MOUNT,
    METRICS_PATH,
    Cluster,
    Component,
    Namespace,
    SecretSpec,
)
from builder.cluster.flows import Flow, Pods
from builder.images.reference import OWN_PULL_POLICY, is_own
from builder.render.node import ETCD_SNAPSHOT_DIR
from builder.secrets import Recipe, Scope
from builder.site import Role

NAMESPACE = "backup"
BACKUP_GROUP = 1000
# The etcd snapshots: a CronJob on the servers sends the newest one to the receiver, our
# agent's `backup etcd-receive` on the backup node. The sender reads k3s's snapshots as
# root from the host, which the restricted profile forbids: a namespace of its own holds it.
ETCD_KIND = "etcd"
SENDER_NAMESPACE = "etcd-snapshots"
SENDER = Pods(SENDER_NAMESPACE, "etcd-snapshot-send")
RECEIVER = Pods(NAMESPACE, "backup-etcd")
# Daily, after k3s's 00:00 snapshot (server time, UTC); before the rotation at 04:30.
SEND_AT = (1, 30)


class Backup(Component):
    name = "backup"
    own_images = (BACKUP_IMAGE,)
    namespaces = (
        Namespace(NAMESPACE, restricted=True),
        Namespace(
            SENDER_NAMESPACE,
            restricted=False,
            privileged_because="etcd-snapshot-send reads k3s's etcd snapshots on the servers "
            "(hostPath, read-only), which only root may read",
        ),
    )
    ports: ClassVar[Mapping[str, int]] = {"etcd_receiver": 8470}
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        # The senders' proof to the receiver: no other pod may put a snapshot among the backups.
        "etcd_snapshot_token": SecretSpec("etcd-snapshot-token", Recipe(Scope.CLUSTER, 32, bytes.hex)),
    }
    files: ClassVar[Mapping[str, str]] = {"etcd-snapshot-send.py": "etcd-snapshot-send.py.j2"}
    manifests = ("backup", "backup-secrets")
    alert_rules = "alerts.yml.j2"

    def enabled(self, cluster: Cluster) -> bool:
        return cluster.backup_node is not None

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        jobs = [
            {
                "kind": job.kind,
                "image": job.image,
                "pull_policy": _pull_policy(job.image),
                "uid": job.uid,
                "schedule": job.schedule,
                "command": list(job.command),
                "args": list(job.args),
                "env": dict(job.env),
                "credentials": {variable: _secret_key(name) for variable, name in job.credentials.items()},
            }
            for job in cluster.backup_jobs
        ]
        etcd = _etcd(cluster)
        kinds = [job.kind for job in cluster.backup_jobs] + ([ETCD_KIND] if etcd else [])
        rotate = _rotation(cluster, kinds)
        return {
            "namespace": NAMESPACE,
            "node": cluster.backup_node,
            "path": BACKUP_PATH,
            "capacity": "200Gi",
            # The last success times, apart from the backups: node-exporter reads them.
            "metrics_path": METRICS_PATH,
            "metrics_mount": METRICS_MOUNT,
            # Our agent's group; every job writes group-writable files (umask 002).
            "group": BACKUP_GROUP,
            "jobs": jobs + ([rotate] if rotate else []),
            "scripts": dict(cluster.backup_scripts),
            # The secrets the jobs read: secret name -> key in backup-credentials.
            "credentials": {
                name: _secret_key(name) for job in cluster.backup_jobs for name in job.credentials.values()
            },
            "max_age_hours": 26,
            # What each job leaves a success time for (the rotation is no kind of backup);
            # the etcd kind has an alert of its own (EtcdSnapshotTooOld).
            "kinds": [job.kind for job in cluster.backup_jobs],
            "etcd": etcd,
        }

    def image_roles(self, cluster: Cluster) -> dict[str, frozenset[Role]]:
        # The rotation and the etcd receiver, when the build makes our image, and the etcd
        # sender (the openedx image's Python) on the servers; the jobs' images come from
        # backup_jobs().
        etcd = _etcd(cluster)
        roles = {BACKUP_IMAGE: frozenset({Role.BACKUP})} if BACKUP_IMAGE in cluster.own_images else {}
        return roles | ({"openedx": frozenset({Role.SERVER})} if etcd else {})

    def flows(self, cluster: Cluster) -> list[Flow]:
        jobs = [
            Flow(Pods(NAMESPACE, f"backup-{job.kind}"), job.source, job.ports) for job in cluster.backup_jobs
        ]
        etcd = [Flow(SENDER, RECEIVER, (cluster.ports["etcd_receiver"],))] if _etcd(cluster) else []
        return jobs + etcd


def _secret_key(name: str) -> str:
    return name.replace("_", "-")


def _pull_policy(image: str) -> str | None:
    """Never for our images, which come with the node's media; upstream ones keep the default."""
    return OWN_PULL_POLICY if is_own(image) else None


def _etcd(cluster: Cluster) -> dict[str, Any] | None:
    """The etcd snapshot transfer: with our agent to receive and the openedx image's Python
    to send; without either, left out (and so is its alert)."""
    receiver = cluster.own_images.get(BACKUP_IMAGE)
    sender = cluster.images.get("openedx")
    if cluster.backup_node is None or receiver is None or sender is None:
        return None
    hour, minute = SEND_AT
    port = cluster.ports["etcd_receiver"]
    return {
        "kind": ETCD_KIND,
        "namespace": SENDER_NAMESPACE,
        "sender": SENDER.name,
        "sender_image": sender,
        "sender_pull_policy": _pull_policy(sender),
        "schedule": f"{minute} {hour} * * *",
        "snapshot_dir": ETCD_SNAPSHOT_DIR,
        "receiver": RECEIVER.name,
        "receiver_image": receiver,
        "receiver_pull_policy": _pull_policy(receiver),
        "port": port,
        "url": f"http://{RECEIVER.name}.{NAMESPACE}.svc.cluster.local:{port}/etcd",
        "max_age_hours": 26,
    }


def _rotation(cluster: Cluster, kinds: list[str]) -> dict[str, Any] | None:
    """The daily rotation of every kind's snapshots, by our backup agent when the build makes it."""
    image = cluster.own_images.get(BACKUP_IMAGE)
    if image is None:
        return None
    retention = cluster.site.backups.retention
    return {
        "kind": "rotate",
        "image": image,
        "pull_policy": _pull_policy(image),
        "uid": 1000,
        "schedule": "30 4 * * *",
        "command": [],
        "args": [
            "rotate",
            *(argument for kind in kinds for argument in ("--root", f"/backups/{kind}")),
            "--daily",
            str(retention.daily),
            "--weekly",
            str(retention.weekly),
            "--monthly",
            str(retention.monthly),
        ],
        "env": {},
        "credentials": {},
    }


COMPONENT = Backup()
