"""Which k3s version steps `apply` takes: k3s follows the Kubernetes version skew policy,
so an upgrade may not skip a minor version, and there is no way back down ("Ensure that
your plan does not skip intermediate minor versions when upgrading", docs.k3s.io/upgrades/
manual; kubernetes.io/releases/version-skew-policy)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import MeshseedError, bad_input

VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)")


@dataclass(frozen=True, order=True)
class K3sVersion:
    major: int
    minor: int
    patch: int
    revision: int

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}+k3s{self.revision}"


def parse_version(text: str, origin: str) -> K3sVersion:
    """A k3s release name (v1.33.4+k3s1), alone or in `k3s --version`'s first line."""
    found = VERSION.search(text)
    if found is None:
        raise MeshseedError(f"{origin}: no k3s version in {text.strip()[:80]!r}")
    return K3sVersion(*(int(part) for part in found.groups()))


def check_step(node: str, running: K3sVersion, pinned: K3sVersion) -> None:
    """Refuse a downgrade and a skipped minor version (exit 2: the pin is what is wrong)."""
    if pinned < running:
        raise bad_input(
            f"{node} runs k3s {running}, newer than the pinned {pinned}: refusing to downgrade",
            hint="pin k3s at least at the version the cluster runs in images/upstream.yaml, lock and build",
        )
    if pinned.major != running.major or pinned.minor > running.minor + 1:
        step = f"v{running.major}.{running.minor + 1}"
        raise bad_input(
            f"{node} runs k3s {running}; the pinned {pinned} skips a minor version, "
            "which k3s does not support",
            hint=f"upgrade to a {step} release first: pin it, lock, build and apply, then the next one",
        )
