"""k3s's kubectl, run on a server over SSH as root, and what its answers mean."""

from __future__ import annotations

import json
from typing import Any

from builder.errors import MeshseedError
from builder.tools.ssh import SshTarget, ssh_output

# k3s's own kubectl, as root: the login user is the cloud image's, with sudo, and the
# kubeconfig k3s writes is root's alone.
KUBECTL = ("sudo", "-n", "k3s", "kubectl")
SSH_TIMEOUT = 420.0
OUTPUT_LIMIT = 4 << 20


def kubectl(target: SshTarget, *arguments: str, timeout: float = SSH_TIMEOUT) -> bytes:
    return ssh_output(target, [*KUBECTL, *arguments], limit=OUTPUT_LIMIT, timeout=timeout)


def parsed(answer: bytes, what: str, through: str) -> Any:
    try:
        return json.loads(answer)
    except ValueError:
        raise MeshseedError(f"{through} answered `kubectl {what}` with something not JSON") from None


def ready_condition(node: Any) -> dict[str, Any] | None:
    """A Node object's Ready condition, or None when it reports none."""
    conditions = node["status"].get("conditions") or []
    return next((dict(c) for c in conditions if c.get("type") == "Ready"), None)


def ready_status(node_json: bytes, name: str, through: str) -> str | None:
    """The Node's Ready condition ("True", "False", "Unknown"), or None without an object."""
    if not node_json.strip():
        return None
    try:
        condition = ready_condition(json.loads(node_json))
        return "Unknown" if condition is None else str(condition["status"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise MeshseedError(
            f"{through} answered `kubectl get node {name}` with something not a Node"
        ) from None
