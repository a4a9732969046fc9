"""The node-loss model: what losing any one node does to every workload, Service and
user-facing path, read from the rendered manifests (`meshseed ha`; run by the build)."""

from builder.ha.check import analyse, read_manifests, site_nodes, verdict
from builder.ha.gaps import KNOWN_GAPS, KnownGap
from builder.ha.model import NodeLoss, Outcome, every_loss, lose
from builder.ha.paths import PATHS, Status, Step, UserPath
from builder.ha.workloads import NodeInfo, read_cluster

__all__ = [
    "KNOWN_GAPS",
    "PATHS",
    "KnownGap",
    "NodeInfo",
    "NodeLoss",
    "Outcome",
    "Status",
    "Step",
    "UserPath",
    "analyse",
    "every_loss",
    "lose",
    "read_cluster",
    "read_manifests",
    "site_nodes",
    "verdict",
]
