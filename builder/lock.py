"""images/upstream.yaml (what to pin) and images.lock (what it resolved to).

The lock is versioned canonical JSON, written only by `meshseed lock`. It records the
sha256 of the upstream.yaml it came from, so a changed upstream.yaml makes it stale, and
`meshseed lock --check` says so, naming the entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError, Problem, bad_input
from builder.oci.reference import is_digest, parse_reference
from builder.site.document import decode_document, read_text
from builder.site.model import Role
from builder.site.scalars import Label, Scalar, pattern_scalar

LOCK_VERSION = 1
DEFAULT_UPSTREAM = Path("images/upstream.yaml")
DEFAULT_LOCK = Path("images.lock")
REQUIRED_PLATFORM = "linux/amd64"


def _parse_tagged_image(text: str) -> str:
    reference = parse_reference(text)
    if reference.tag is None or reference.digest is not None:
        raise ValueError(f"{text!r}: name an image by tag; `meshseed lock` pins its digest")
    return str(reference)


TaggedImage = Annotated[str, Scalar(_parse_tagged_image, {"type": "string"})]
UrlTemplate = Annotated[str, pattern_scalar(r"https?://\S+", "an http(s) URL", format="uri")]
Platform = Annotated[
    str, pattern_scalar(r"linux/(amd64|arm64|arm/v7|ppc64le|s390x|riscv64)", "a platform such as linux/amd64")
]
Version = Annotated[str, pattern_scalar(r"v\d+\.\d+\.\d+([+-][\w.+-]+)?", "a release version such as v1.2.3")]


@dataclass(frozen=True)
class UpstreamImage:
    name: Label = field(metadata={"doc": "How manifests and bundles refer to the image."})
    image: TaggedImage = field(metadata={"doc": "The image by tag, e.g. docker.io/library/couchdb:3.4.3."})
    roles: tuple[Role, ...] = field(metadata={"doc": "Node roles that run it.", "min_items": 1})


@dataclass(frozen=True)
class K3sRelease:
    version: Version = field(metadata={"doc": "k3s release, e.g. v1.33.4+k3s1."})
    binary: UrlTemplate = field(metadata={"doc": "URL of the k3s binary; {version} is replaced."})
    install_script: UrlTemplate = field(metadata={"doc": "URL of install.sh at that release."})
    images_list: UrlTemplate = field(metadata={"doc": "URL of k3s-images.txt, the system images."})
    roles: tuple[Role, ...] = field(
        metadata={"doc": "Node roles that run the system images.", "min_items": 1}
    )


@dataclass(frozen=True)
class MyceliumRelease:
    version: Version = field(metadata={"doc": "Mycelium release, e.g. v0.6.1."})
    archive: UrlTemplate = field(metadata={"doc": "URL of the release archive; {version} is replaced."})


@dataclass(frozen=True)
class Upstream:
    platforms: tuple[Platform, ...] = field(metadata={"doc": "Platforms to pin.", "min_items": 1})
    k3s: K3sRelease = field(metadata={"doc": "The k3s release."})
    mycelium: MyceliumRelease = field(metadata={"doc": "The Mycelium release."})
    images: tuple[UpstreamImage, ...] = field(metadata={"doc": "Images the manifests use.", "min_items": 1})
    sha256: str = field(default="", metadata={"internal": True})

    def binaries(self) -> dict[str, str]:
        """Name -> URL of every pinned file."""
        return {
            "k3s": self.k3s.binary.format(version=self.k3s.version),
            "k3s-install.sh": self.k3s.install_script.format(version=self.k3s.version),
            "mycelium": self.mycelium.archive.format(version=self.mycelium.version),
        }


def load_upstream(path: Path = DEFAULT_UPSTREAM) -> Upstream:
    text = read_text(path, "upstream file", "pass images/upstream.yaml")
    upstream = decode_document(
        text,
        path,
        Upstream,
        what="upstream description",
        empty_hint="it lists platforms, k3s, mycelium and images",
        extra={"sha256": hashlib.sha256(text.encode()).hexdigest()},
    )
    names = [image.name for image in upstream.images]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise bad_input(f"{path}: images: the name {duplicate!r} is used twice")
    if REQUIRED_PLATFORM not in upstream.platforms:
        raise bad_input(f"{path}: platforms: {REQUIRED_PLATFORM} must be among them")
    return upstream


@dataclass(frozen=True)
class LockedImage:
    reference: str
    digest: str
    media_type: str
    platforms: dict[str, str]
    roles: tuple[str, ...]

    @property
    def pinned(self) -> str:
        """How manifests name the image: repository and digest, never a tag alone."""
        return f"{parse_reference(self.reference).name}@{self.digest}"


@dataclass(frozen=True)
class LockedFile:
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    architecture: str
    sha256: str
    size: int
    url: str
    snapshot_url: str


@dataclass(frozen=True)
class DebianLock:
    """The package closure of one of our images; `request_sha256` covers what it was asked for."""

    request_sha256: str
    packages: tuple[DebianPackage, ...]


@dataclass(frozen=True)
class Lock:
    upstream_sha256: str
    k3s_version: str
    mycelium_version: str
    platforms: tuple[str, ...]
    images: dict[str, LockedImage]
    binaries: dict[str, LockedFile]
    debian: dict[str, DebianLock] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": LOCK_VERSION,
            "upstream_sha256": self.upstream_sha256,
            "k3s": {"version": self.k3s_version},
            "mycelium": {"version": self.mycelium_version},
            "platforms": list(self.platforms),
            "images": {
                name: {
                    "reference": image.reference,
                    "digest": image.digest,
                    "media_type": image.media_type,
                    "platforms": image.platforms,
                    "roles": list(image.roles),
                }
                for name, image in self.images.items()
            },
            "binaries": {
                name: {"url": f.url, "sha256": f.sha256, "size": f.size} for name, f in self.binaries.items()
            },
            "debian": {
                name: {"request_sha256": part.request_sha256, "packages": [vars(p) for p in part.packages]}
                for name, part in self.debian.items()
            },
        }

    def images_for(self, role: str) -> dict[str, LockedImage]:
        return {name: image for name, image in sorted(self.images.items()) if role in image.roles}


def read_lock(path: Path = DEFAULT_LOCK) -> Lock:
    if not path.exists():
        raise MeshseedError(
            f"{path}: missing", hint="run `meshseed lock` (it needs access to the registries)"
        )
    text = read_text(path, "lock file", "run `meshseed lock`")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_input(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    try:
        return _lock_from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise bad_input(
            f"{path}: not a lock meshseed can read ({type(error).__name__}: {error})",
            hint="regenerate it with `meshseed lock`; it is never edited by hand",
        ) from None


def _lock_from_json(data: dict[str, Any]) -> Lock:
    if data["version"] != LOCK_VERSION:
        raise ValueError(f"version {data['version']!r}, this meshseed reads version {LOCK_VERSION}")
    images = {}
    for name, entry in data["images"].items():
        digests = [entry["digest"], *entry["platforms"].values()]
        if not all(is_digest(d) for d in digests):
            raise ValueError(f"images.{name} holds a malformed digest")
        images[name] = LockedImage(
            entry["reference"],
            entry["digest"],
            entry["media_type"],
            dict(entry["platforms"]),
            tuple(entry["roles"]),
        )
    binaries = {
        name: LockedFile(entry["url"], entry["sha256"], int(entry["size"]))
        for name, entry in data["binaries"].items()
    }
    debian = {
        name: DebianLock(
            part["request_sha256"], tuple(DebianPackage(**package) for package in part["packages"])
        )
        for name, part in data.get("debian", {}).items()
    }
    return Lock(
        data["upstream_sha256"],
        data["k3s"]["version"],
        data["mycelium"]["version"],
        tuple(data["platforms"]),
        images,
        binaries,
        debian,
    )


EMPTY_LOCK = Lock("", "", "", (), {}, {}, {})


def write_lock(lock: Lock, path: Path) -> None:
    write_atomically(path, canonical_json(lock.as_json()).encode())


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
        elif REQUIRED_PLATFORM not in locked.platforms:
            problem(f"images.{image.name}", f"has no {REQUIRED_PLATFORM} manifest")
    for name, url in upstream.binaries().items():
        locked_file = lock.binaries.get(name)
        if locked_file is None:
            problem(f"binaries.{name}", "is missing")
        elif locked_file.url != url:
            problem(f"binaries.{name}", f"pins {locked_file.url}, upstream.yaml asks for {url}")
    return problems


def stale_lock_error(problems: list[Problem], lock_path: Path) -> MeshseedError:
    return MeshseedError(f"{lock_path}: does not match images/upstream.yaml", problems=problems)
