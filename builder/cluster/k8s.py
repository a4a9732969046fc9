"""Small builders for the Kubernetes objects every manifest file repeats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Document = dict[str, Any]

# k3s labels its server nodes so; the backup node is an agent and never matches.
SERVER_SELECTOR = {"node-role.kubernetes.io/control-plane": "true"}


def config_map(name: str, namespace: str, data: Mapping[str, str]) -> Document:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(sorted(data.items())),
    }


def secret(name: str, namespace: str, data: Mapping[str, str]) -> Document:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": dict(sorted(data.items())),
    }


def pod_security(user: int, group: int | None = None) -> Document:
    """Non-root as `user`; volumes belong to `group` (default: the user's own)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user if group is None else group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(read_only: bool) -> Document:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "capabilities": {"drop": ["ALL"]},
    }


def server_placement() -> Document:
    return {"nodeSelector": dict(SERVER_SELECTOR)}
