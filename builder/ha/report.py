"""The node-loss model's answers as text: `meshseed ha`'s table, its JSON, and the
README's "what survives what" table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from builder.ha.model import NodeLoss, Outcome
from builder.site import Role


def text_table(losses: Sequence[NodeLoss]) -> str:
    lines = []
    for loss in losses:
        lines.append(f"losing {loss.node.name} ({loss.node.role.value}):")
        for title, outcomes in (("user-facing paths", loss.paths), ("workloads", loss.workloads)):
            lines.append(f"  {title}:")
            width = max(len(o.subject) for o in outcomes)
            lines.extend(f"    {o.subject:<{width}}  {o.label:<17}  {o.reason}" for o in outcomes)
    return "\n".join(lines) + "\n"


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "subject": outcome.subject,
        "status": str(outcome.status),
        "reason": outcome.reason,
        "known_gaps": [
            {"service": f"{g.namespace}/{g.service}", "closed_by": g.closed_by} for g in outcome.known_gaps
        ],
    }


def as_json(losses: Sequence[NodeLoss]) -> list[dict[str, Any]]:
    return [
        {
            "node": loss.node.name,
            "role": loss.node.role.value,
            "paths": [_outcome_json(o) for o in loss.paths],
            "workloads": [_outcome_json(o) for o in loss.workloads],
        }
        for loss in losses
    ]


# A Job's name carries a digest of its scripts and images; the README names it without.
_DIGEST = re.compile(r"-[0-9a-f]{10}$")


def _cell(outcome: Outcome) -> str:
    reason = outcome.reason.replace("|", "\\|")
    return f"**{outcome.label}**: {reason}" if outcome.status else outcome.label


def markdown_table(losses: Sequence[NodeLoss]) -> str:
    """One row per path and workload, one column per node role: a site's servers are
    alike, so the first node of each role stands for all of them."""
    columns: list[NodeLoss] = []
    for role in Role:
        first = next((loss for loss in losses if loss.node.role is role), None)
        if first is not None:
            columns.append(first)
    header = ["what", *(f"losing a {loss.node.role.value} ({loss.node.name})" for loss in columns)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, outcome in enumerate(columns[0].paths + columns[0].workloads):
        cells = [_cell((loss.paths + loss.workloads)[index]) for loss in columns]
        rows.append(f"| {_DIGEST.sub('-<digest>', outcome.subject)} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
