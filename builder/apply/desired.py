"""What the last build says each node should hold: the files meshseed owns on it, with
their sha256, mode and source in dist/, and which units must restart when one changes.

The seed is the source of truth. Its user-data's write_files are exactly what the node
got on its first boot, and its node-setup script pins the k3s binary, the air-gap bundle
and the archive of our images by sha256 (builder/project/cloud-init/user-data.j2 and
node-setup.sh.j2 place them; this follows their paths). The servers' manifests come from
dist/manifests, the same files the seeds carry.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.errors import MeshseedError, bad_input
from builder.images.archive import OWN_ARCHIVE_DIST
from builder.render.firewall import RULESET
from builder.render.manifest_rules import SECRET_SUFFIX
from builder.render.node import STAGED
from builder.site import Node, Role, Site

MANIFESTS_DIR = "/var/lib/rancher/k3s/server/manifests"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
K3S_BINARY = "/usr/local/bin/k3s"
MYCELIUM_BINARY = "/usr/local/bin/mycelium"
# node-setup installs this member of the pinned archive (node-setup.sh.j2).
MYCELIUM_MEMBER = "mycelium"
SEED_MANIFESTS = "/var/lib/meshseed/manifests/"

FIREWALL = "meshseed-firewall.service"
MYCELIUM = "mycelium.service"
# The order the seeds start them in: Mycelium requires the firewall, k3s both (the seed's
# drop-in), so units restart in this order, k3s last.
CHAIN = (FIREWALL, MYCELIUM)


@dataclass(frozen=True)
class Wanted:
    """One file as the build wants it on a node."""

    path: str
    mode: int
    sha256: str
    restarts: tuple[str, ...]  # units to restart once it is written ("daemon-reload" first)
    data: bytes | None = None  # its bytes, for the small files
    source: Path | None = None  # else the file in dist/ to upload


@dataclass(frozen=True)
class NodeWants:
    node: Node
    unit: str  # k3s.service or k3s-agent.service
    files: tuple[Wanted, ...]  # node configuration, the k3s binary and the images it imports
    manifests: tuple[Wanted, ...]  # servers only


def k3s_unit(node: Node) -> str:
    return "k3s.service" if node.role is Role.SERVER else "k3s-agent.service"


def _restarts(path: str, unit: str) -> tuple[str, ...] | None:
    """Which units a changed file restarts; None for a file apply leaves alone."""
    unit_name = unit.removesuffix(".service")
    table: dict[str, tuple[str, ...]] = {
        "/etc/mycelium/priv_key.bin": (MYCELIUM,),
        RULESET: (FIREWALL,),
        f"/etc/systemd/system/{FIREWALL}": ("daemon-reload", FIREWALL),
        f"/etc/systemd/system/{MYCELIUM}": ("daemon-reload", MYCELIUM),
        "/usr/local/lib/meshseed/wait-for-overlay": (),
        "/usr/local/lib/meshseed/node-setup": (),
        "/etc/systemd/system/meshseed-node-setup.service": ("daemon-reload",),
        "/etc/rancher/k3s/resolv.conf": (unit,),
        "/etc/rancher/k3s/config.yaml": (unit,),
        f"/etc/systemd/system/{unit_name}.service.d/10-meshseed.conf": ("daemon-reload", unit),
    }
    if path.startswith(SEED_MANIFESTS):
        # The seed's own copies, which node-setup hands to k3s: kept the same as k3s's.
        return ()
    # The rest (sshd's, the kernel modules' and sysctl's drop-ins) only matter at boot and
    # never change with the site.
    return table.get(path)


def _content(entry: dict[str, Any], origin: str) -> bytes:
    content = entry.get("content", "")
    encoding = entry.get("encoding")
    if encoding is None:
        return str(content).encode()
    raw = base64.b64decode(str(content))
    if encoding == "b64":
        return raw
    if encoding == "gz+b64":
        return gzip.decompress(raw)
    raise MeshseedError(f"{origin}: write_files entry {entry.get('path')} has encoding {encoding}")


def _user_data(dist: Path, node: Node) -> dict[str, Any]:
    path = dist / "nodes" / node.name / "user-data"
    try:
        # libyaml's loader where there is one: user-data runs to hundreds of kilobytes.
        document = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise bad_input(f"{path}: missing; build first (`meshseed build`)") from None
    except yaml.YAMLError:
        raise MeshseedError(f"{path}: not YAML; build again") from None
    if not isinstance(document, dict) or not isinstance(document.get("write_files"), list):
        raise MeshseedError(f"{path}: no write_files in it; was it built from a lock that pins k3s?")
    return document


PINNED_LINE = re.compile(r"^(get|place) (\S+) (\S+) ([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True)
class Pinned:
    """A file node-setup fetches (`get NAME URL SHA256`) or places (`place NAME FROM SHA256`)."""

    verb: str
    name: str
    where: str
    sha256: str


def pinned_by_seed(node_setup: str) -> dict[str, Pinned]:
    return {m[2]: Pinned(m[1], m[2], m[3], m[4]) for m in PINNED_LINE.finditer(node_setup)}


def dist_file_with(dist: Path, sha256: str, where: str) -> Path:
    """The file of dist/<where> with this sha256, as dist/SHA256SUMS lists it (no hashing
    of bundles gigabytes long)."""
    sums = dist / "SHA256SUMS"
    try:
        lines = sums.read_text().splitlines()
    except FileNotFoundError:
        raise bad_input(f"{sums}: missing; build first") from None
    for line in lines:
        digest, _, name = line.partition("  ")
        if digest == sha256 and name.startswith(f"{where}/") and (dist / name).is_file():
            return dist / name
    raise bad_input(
        f"{dist}/{where} holds no file with sha256 {sha256}, which the seeds pin",
        hint="build with --airgap, so that dist/ holds the k3s binary and the image bundles to upload",
    )


def node_wants(node: Node, dist: Path) -> NodeWants:
    unit = k3s_unit(node)
    origin = f"{dist}/nodes/{node.name}/user-data"
    files: list[Wanted] = []
    node_setup = ""
    for entry in _user_data(dist, node)["write_files"]:
        path = str(entry["path"])
        data = _content(entry, origin)
        if path == "/usr/local/lib/meshseed/node-setup":
            node_setup = data.decode()
        restarts = _restarts(path, unit)
        if restarts is not None:
            mode = int(str(entry.get("permissions", "0644")), 8)
            files.append(Wanted(path, mode, hashlib.sha256(data).hexdigest(), restarts, data=data))
    pinned = pinned_by_seed(node_setup)
    if "k3s" not in pinned:
        raise MeshseedError(f"{origin}: its node-setup pins no k3s binary")
    k3s = pinned["k3s"]
    files.append(Wanted(K3S_BINARY, 0o755, k3s.sha256, (unit,), source=_binary(dist, k3s.sha256)))
    if STAGED["mycelium"] in pinned:
        mycelium = _mycelium_binary(dist, pinned[STAGED["mycelium"]].sha256)
        if mycelium is not None:
            files.append(mycelium)
    for name, file in sorted(pinned.items()):
        # The air-gap bundle and the archive of our images, which k3s imports as it starts.
        if file.verb == "get" and name.startswith("images.tar"):
            source = dist_file_with(dist, file.sha256, "airgap")
        elif file.verb == "place":
            source = dist_file_with(dist, file.sha256, OWN_ARCHIVE_DIST)
        else:
            continue
        files.append(Wanted(f"{IMAGES_DIR}/{name}", 0o644, file.sha256, (unit,), source=source))
    manifests = _manifests(dist) if node.role is Role.SERVER else ()
    return NodeWants(node, unit, tuple(files), manifests)


def _binary(dist: Path, sha256: str) -> Path | None:
    """A pinned binary in dist/ (an --airgap build puts k3s and the Mycelium archive there);
    None when it is missing, which for k3s matters only if a node needs it."""
    try:
        return dist_file_with(dist, sha256, "airgap/binaries")
    except MeshseedError:
        return None


def _mycelium_binary(dist: Path, archive_sha256: str) -> Wanted | None:
    """The binary node-setup installs from the pinned Mycelium archive, read from the
    archive an --airgap build leaves in dist/; None without it (nothing to compare with)."""
    archive = _binary(dist, archive_sha256)
    if archive is None:
        return None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MYCELIUM_MEMBER)
            if member is None:
                raise KeyError(MYCELIUM_MEMBER)
            data = member.read()
    except (KeyError, tarfile.TarError, OSError) as error:
        raise MeshseedError(f"{archive}: no readable {MYCELIUM_MEMBER} binary in it ({error})") from None
    return Wanted(MYCELIUM_BINARY, 0o755, hashlib.sha256(data).hexdigest(), (MYCELIUM,), data=data)


def _manifests(dist: Path) -> tuple[Wanted, ...]:
    directory = dist / "manifests"
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise bad_input(f"{directory}: no manifests; build first (`meshseed build`)")
    return tuple(
        Wanted(
            f"{MANIFESTS_DIR}/{path.name}",
            0o600 if path.stem.endswith(SECRET_SUFFIX) else 0o644,
            hashlib.sha256(data).hexdigest(),
            (),
            data=data,
        )
        for path in paths
        for data in (path.read_bytes(),)
    )


def site_wants(site: Site, dist: Path) -> list[NodeWants]:
    """Every node's, servers first (one at a time, as k3s upgrades them), then the others."""
    ordered = [*site.servers, *(node for node in site.nodes if node.role is not Role.SERVER)]
    return [node_wants(node, dist) for node in ordered]
