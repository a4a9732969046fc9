"""images/upstream.yaml: which k3s, Mycelium and upstream images to pin, by tag and URL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from builder.errors import bad_input
from builder.oci.reference import parse_reference
from builder.site.model import Role
from builder.typed_yaml.document import decode_document, read_text
from builder.typed_yaml.scalars import Label, Scalar, pattern_scalar

DEFAULT_UPSTREAM = Path("images/upstream.yaml")
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
TutorSetting = Annotated[
    str,
    pattern_scalar(
        r"([A-Z][A-Z0-9_]*_)?DOCKER_IMAGE(_[A-Z0-9_]+)?", "a Tutor image setting such as DOCKER_IMAGE_OPENEDX"
    ),
]
Version = Annotated[str, pattern_scalar(r"v\d+\.\d+\.\d+([+-][\w.+-]+)?", "a release version such as v1.2.3")]


@dataclass(frozen=True)
class UpstreamImage:
    name: Label = field(metadata={"doc": "How manifests and bundles refer to the image."})
    image: TaggedImage = field(metadata={"doc": "The image by tag, e.g. docker.io/library/couchdb:3.4.3."})
    roles: tuple[Role, ...] = field(
        metadata={
            "doc": "Node roles whose air-gap bundle holds it, for an image no cluster component runs; "
            "an image the manifests run goes to the roles its workloads are scheduled on instead.",
            "min_items": 1,
        }
    )
    tutor: TutorSetting | None = field(
        default=None,
        metadata={
            "doc": "The Tutor setting it fills, e.g. DOCKER_IMAGE_OPENEDX or a plugin's MFE_DOCKER_IMAGE; "
            "its tag must be the one Tutor and the site's plugins render."
        },
    )


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
