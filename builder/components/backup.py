"""The backup node: every component's backup jobs as CronJobs there, and their rotation."""

from __future__ import annotations

from typing import Any

from builder.cluster.component import (
    BACKUP_IMAGE,
    BACKUP_PATH,
    METRICS_MOUNT,
    METRICS_PATH,
    Cluster,
    Component,
    Namespace,
)
from builder.cluster.flows import Flow, Pods
from builder.images.reference import OWN_PULL_POLICY, is_own
from builder.site import Role

NAMESPACE = "backup"
BACKUP_GROUP = 1000


class Backup(Component):
    name = "backup"
    own_images = (BACKUP_IMAGE,)
    namespaces = (Namespace(NAMESPACE, restricted=True),)
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
        rotate = _rotation(cluster, [job.kind for job in cluster.backup_jobs])
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
            # What each job leaves a success time for (the rotation is no kind of backup).
            "kinds": [job.kind for job in cluster.backup_jobs],
        }

    def image_roles(self, cluster: Cluster) -> dict[str, frozenset[Role]]:
        # The rotation, when the build makes our image; the jobs' images come from backup_jobs().
        return {BACKUP_IMAGE: frozenset({Role.BACKUP})} if BACKUP_IMAGE in cluster.own_images else {}

    def flows(self, cluster: Cluster) -> list[Flow]:
        return [
            Flow(Pods(NAMESPACE, f"backup-{job.kind}"), job.source, job.ports) for job in cluster.backup_jobs
        ]


def _secret_key(name: str) -> str:
    return name.replace("_", "-")


def _pull_policy(image: str) -> str | None:
    """Never for our images, which come with the node's media; upstream ones keep the default."""
    return OWN_PULL_POLICY if is_own(image) else None


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
