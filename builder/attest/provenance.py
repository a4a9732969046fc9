"""SLSA provenance v1 for an image we build: what went in, and what built it.

The build definition holds the image's own, site-independent inputs (its name, tag and
the digest of its source tree and of its locked packages, as the image records them);
resolvedDependencies are every entry of images.lock by digest, and the git commit. No
site value and no secret is an input of an image, so none can appear here.
"""

from __future__ import annotations

from typing import Any

from builder.lock import Lock

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://meshseed.dev/buildtypes/image/v1"
BUILDER_ID = "https://meshseed.dev/builder/meshseed"


def lock_dependencies(lock: Lock) -> list[dict[str, Any]]:
    """Every lock entry as a resource descriptor with its digest, in a stable order."""
    found: list[dict[str, Any]] = []
    for name, image in sorted(lock.images.items()):
        algorithm, _, value = image.digest.partition(":")
        found.append({"name": f"images.{name}", "uri": image.reference, "digest": {algorithm: value}})
    for name, binary in sorted(lock.binaries.items()):
        found.append({"name": f"binaries.{name}", "uri": binary.url, "digest": {"sha256": binary.sha256}})
    for image_name, debian in sorted(lock.debian.items()):
        for package in debian.packages:
            found.append(
                {
                    "name": f"debian.{image_name}.{package.name}",
                    "uri": package.url,
                    "digest": {"sha256": package.sha256},
                }
            )
    return found


def provenance(
    *,
    image: str,
    tag: str,
    annotations: dict[str, str],
    lock: Lock,
    commit: str | None,
    source_uri: str | None,
    builder_version: str,
) -> dict[str, Any]:
    dependencies = lock_dependencies(lock)
    if commit:
        source: dict[str, Any] = {"name": "source", "digest": {"gitCommit": commit}}
        if source_uri:
            source["uri"] = source_uri
        dependencies.insert(0, source)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "image": image,
                "tag": tag,
                "source": f"images/{image}",
                "sourceDigest": annotations.get("org.opencontainers.image.revision", ""),
                "lockDigest": annotations.get("dev.meshseed.lock.digest", ""),
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {"builder": {"id": BUILDER_ID, "version": {"meshseed": builder_version}}},
    }
