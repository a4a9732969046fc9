"""Is images.lock current? Against images/upstream.yaml, and against what our images and disks ask for."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from builder.errors import MeshseedError, Problem, bad_input
from builder.lock.disk_spec import DISK_SPEC
from builder.lock.model import Lock
from builder.lock.requests import DebianRequest
from builder.lock.upstream import REQUIRED_PLATFORM, Upstream


def check_lock(upstream: Upstream, lock: Lock, lock_path: Path) -> list[Problem]:
    """What in the lock is missing or stale against upstream.yaml; empty when current."""
    file = str(lock_path)
    problems = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(file, 0, path, message, "run `meshseed lock`"))

    if not lock.upstream_sha256:
        problem("upstream_sha256", "no upstream images are locked yet")
        return problems
    if lock.upstream_sha256 != upstream.sha256:
        problem("upstream_sha256", "images/upstream.yaml changed since the lock was written")
    if lock.k3s_version != upstream.k3s.version:
        problem("k3s.version", f"is {lock.k3s_version}, upstream.yaml asks for {upstream.k3s.version}")
    if lock.mycelium_version != upstream.mycelium.version:
        problem(
            "mycelium.version",
            f"is {lock.mycelium_version}, upstream.yaml asks for {upstream.mycelium.version}",
        )
    for image in upstream.images:
        locked = lock.images.get(image.name)
        if locked is None:
            problem(f"images.{image.name}", "is missing")
        elif locked.reference != image.image:
            problem(f"images.{image.name}", f"pins {locked.reference}, upstream.yaml asks for {image.image}")
        elif locked.tutor != image.tutor:
            problem(f"images.{image.name}", f"fills Tutor's {locked.tutor}, upstream.yaml says {image.tutor}")
        elif REQUIRED_PLATFORM not in locked.platforms:
            problem(f"images.{image.name}", f"has no {REQUIRED_PLATFORM} manifest")
    for name, url in upstream.binaries().items():
        locked_file = lock.binaries.get(name)
        if locked_file is None:
            problem(f"binaries.{name}", "is missing")
        elif locked_file.url != url:
            problem(f"binaries.{name}", f"pins {locked_file.url}, upstream.yaml asks for {url}")
    return problems


def check_debian(requests: Mapping[str, DebianRequest], lock: Lock, lock_path: Path) -> list[Problem]:
    """What in the lock's Debian part is missing or stale against what our images and disks ask for."""
    problems = []
    for name, request in sorted(requests.items()):
        pinned = lock.debian.get(name)
        if pinned is None:
            problems.append(Problem(str(lock_path), 0, f"debian.{name}", "is missing", "run `meshseed lock`"))
        elif pinned.request_sha256 != request.spec.request_sha256():
            problems.append(
                Problem(
                    str(lock_path),
                    0,
                    f"debian.{name}",
                    f"{request.source} asks for other packages or sources than were locked",
                    "run `meshseed lock`",
                )
            )
    return problems


def check_own_names(upstream: Upstream, ours: list[str], upstream_path: Path) -> None:
    """Refuse an upstream image named like one we build: our images reach the nodes with
    the build itself, and the manifests would not know which of the two is meant."""
    for image in upstream.images:
        if image.name in ours:
            raise bad_input(
                f"{upstream_path}: images: {image.name}: is the name of our own image "
                f"(images/{image.name}/), which `meshseed build --images` builds and carries to the nodes",
                hint="remove the entry from upstream.yaml and run `meshseed lock`",
            )


def stale_lock_error(problems: list[Problem], lock_path: Path) -> MeshseedError:
    return MeshseedError(
        f"{lock_path}: does not match what it pins (images/, {DISK_SPEC})", problems=problems
    )
