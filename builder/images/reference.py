"""How the manifests name an image we build: by its manifest digest, known once it is built.

A plan is made before anything is built, so where the manifests run one of our images
their inputs hold a stand-in (`stand_in`), and the manifests derivation depends on the
image's derivation: the image's key is in the manifests' key, and the manifests' build
reads the digest from the built layout (`built_reference`) and puts it in place of the
stand-in (`resolve`). A stand-in is no digest reference, so one left over fails the
manifests' check that every image is pinned by digest.

Our images reach the nodes with the build (an archive k3s imports at start), never from a
registry: nothing serves `meshseed.local`, so the kubelet must never try to pull them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.oci.media import CONTAINERD_NAME
from builder.oci.reference import parse_reference

# The registry part of our images' names. No registry answers to it.
IMAGE_NAMESPACE = "meshseed.local"
# What the pods that run our images say; k3s has imported the image before it starts them.
OWN_PULL_POLICY = "Never"
_STAND_IN = "@built-by-meshseed"


def stand_in(name: str) -> str:
    """What the plan says in place of our image `name`'s reference."""
    return f"{IMAGE_NAMESPACE}/{name}{_STAND_IN}"


def holds_stand_in(text: str) -> bool:
    return _STAND_IN in text


def is_own(reference: str) -> bool:
    """Whether `reference` names one of our images (by digest, or still a stand-in)."""
    return reference.startswith(f"{IMAGE_NAMESPACE}/")


def built_reference(layout: Path) -> str:
    """`meshseed.local/<name>@sha256:<manifest digest>`, of the one image in a built layout."""
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    name = parse_reference(descriptor["annotations"][CONTAINERD_NAME]).name
    return f"{name}@{descriptor['digest']}"


def resolve(value: Any, references: Mapping[str, str]) -> Any:
    """`value` (JSON-like) with each stand-in in `references` replaced by its reference,
    wherever it stands in a string."""
    if not references:
        return value
    if isinstance(value, str):
        for stand, reference in references.items():
            value = value.replace(stand, reference)
        return value
    if isinstance(value, Mapping):
        return {key: resolve(item, references) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, references) for item in value]
    return value
