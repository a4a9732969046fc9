"""The build's use of the node-loss model: fail when losing any one server leaves a
user-facing path down, except for the known gaps, which become warnings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from builder.det.yamlfmt import FAST_LOADER
from builder.errors import MeshseedError
from builder.ha.gaps import KNOWN_GAPS
from builder.ha.model import NodeLoss, every_loss
from builder.ha.workloads import NodeInfo, read_cluster
from builder.site import Role, Site


def site_nodes(site: Site) -> tuple[NodeInfo, ...]:
    return tuple(NodeInfo(node.name, node.role) for node in site.nodes)


def read_manifests(directory: Path) -> list[Mapping[str, Any]]:
    return [
        document
        for path in sorted(directory.glob("*.yaml"))
        for document in yaml.load_all(path.read_text(), Loader=FAST_LOADER)
        if isinstance(document, Mapping)
    ]


def analyse(documents: Iterable[Mapping[str, Any]], nodes: Sequence[NodeInfo]) -> tuple[NodeLoss, ...]:
    return every_loss(read_cluster(documents, nodes))


def verdict(losses: Sequence[NodeLoss]) -> tuple[str, ...]:
    """The warnings of a passing model; raises naming each path, workload and reason when
    losing a server leaves a user-facing path down."""
    servers = [loss for loss in losses if loss.node.role is Role.SERVER]
    failures = [
        f"losing {loss.node.name}: {o.subject} is down: {o.reason}" for loss in servers for o in loss.failures
    ]
    if failures:
        raise MeshseedError(
            f"losing a single server leaves a user-facing path down ({len(failures)} found)",
            hint="; ".join(failures),
        )
    used = {g for loss in servers for o in loss.paths for g in o.known_gaps}
    warnings = [
        f"known gap ({gap.closed_by}): losing the server that runs {gap.namespace}/{gap.service} "
        "takes Open edX down until that server returns"
        for gap in KNOWN_GAPS
        if gap in used
    ]
    warnings += [
        f"builder/ha/gaps.py lists {gap.namespace}/{gap.service} as a known gap, but losing a server "
        "no longer takes it down: remove the entry"
        for gap in KNOWN_GAPS
        if gap not in used
    ]
    return tuple(warnings)
