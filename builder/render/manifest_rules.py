"""The rules every manifest file keeps; a break is a bug in a template, named by file."""

from __future__ import annotations

import re
from typing import Any

from builder.cluster.k8s import Document
from builder.errors import MeshseedError
from builder.images.reference import OWN_PULL_POLICY, is_own

# Files that hold Secrets, and nothing else; the only ones a derived secret may appear in.
SECRET_SUFFIX = "-secrets"
# k3s names an Addon after each file; it must be an RFC 1123 label.
ADDON_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DIGEST_REFERENCE = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


def check_manifest(name: str, documents: list[Document], text: str, secret_values: list[str]) -> None:
    """Refuse a bad Addon name, an image by tag, and a secret outside a Secret file."""
    if not ADDON_NAME.match(name):
        raise MeshseedError(f"manifests/{name}.yaml: not an RFC 1123 name, which k3s needs for the Addon")
    containers = _containers(documents)
    for image in sorted({container["image"] for container in containers}):
        if not DIGEST_REFERENCE.match(image):
            raise MeshseedError(f"manifests/{name}.yaml: image {image} is not pinned by digest")
    for container in containers:
        if is_own(container["image"]) and container.get("imagePullPolicy") != OWN_PULL_POLICY:
            raise MeshseedError(
                f"manifests/{name}.yaml: image {container['image']} is ours, which no registry serves: "
                f"its pod needs imagePullPolicy: {OWN_PULL_POLICY}"
            )
    if name.endswith(SECRET_SUFFIX):
        if any(document["kind"] != "Secret" for document in documents):
            raise MeshseedError(f"manifests/{name}.yaml: holds more than Secrets")
        return
    for value in secret_values:
        if value in text:
            raise MeshseedError(f"manifests/{name}.yaml: a derived secret appears outside a Secret")


def _containers(value: Any) -> list[dict[str, Any]]:
    """Every mapping with an `image` (containers, init containers, anywhere they stand)."""
    if isinstance(value, dict):
        found = [value] if isinstance(value.get("image"), str) else []
        return found + [container for item in value.values() for container in _containers(item)]
    if isinstance(value, list):
        return [container for item in value for container in _containers(item)]
    return []
