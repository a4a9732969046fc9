"""Tutor's single stateless datastores, made to survive the loss of their server.

The SMTP relay runs two replicas on different servers (it holds only mail in flight).
Meilisearch keeps its index in an emptyDir instead of a volume bound to one node: after
a node loss it starts empty on another server, and the meilisearch-reindex CronJob
(meilisearch_reindex.py) rebuilds the index with Tutor's commands. The node-loss model
(builder/ha) reads the result: smtp fine, meilisearch degraded.
"""

from __future__ import annotations

from builder.cluster.k8s import Document

SMTP_REPLICAS = 2
MEILISEARCH_NOTE = (
    "its index starts empty: the meilisearch-reindex CronJob rebuilds it with Tutor's commands "
    "within 5 minutes, and search answers fully once they finish"
)


def without_node_bound_volume(document: Document) -> bool:
    """Whether to keep a document of Tutor's: Meilisearch's claim goes."""
    return not (document["kind"] == "PersistentVolumeClaim" and document["metadata"]["name"] == "meilisearch")


def make_reschedulable(document: Document) -> None:
    name = document["metadata"]["name"]
    spec = document["spec"]
    pod = spec["template"]["spec"]
    if name == "smtp":
        spec["replicas"] = SMTP_REPLICAS
        pod["affinity"] = {
            "podAntiAffinity": {
                # Preferred: a rolling update's surge pod may share a node for a moment.
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    elif name == "meilisearch":
        for volume in pod.get("volumes", []):
            if volume.get("persistentVolumeClaim", {}).get("claimName") == "meilisearch":
                volume.pop("persistentVolumeClaim")
                volume["emptyDir"] = {}
        # Tutor's Recreate strategy stays: one Meilisearch at a time.
        template = spec["template"]["metadata"]
        template.setdefault("annotations", {})["meshseed/node-loss"] = MEILISEARCH_NOTE
