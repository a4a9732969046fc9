"""The upstream.yaml and artifact paths the image and boot tests pin against local servers."""

from __future__ import annotations

from builder.lock import load_upstream
from builder.manifests.registry import required_images
from builder.oci.reference import parse_reference
from tests.conftest import REPO

REGISTRY = "registry.meshseed.test"
K3S_VERSION = "v1.33.4+k3s1"
MYCELIUM_VERSION = "v0.6.1"
K3S_PATH = f"github.com/k3s-io/k3s/releases/download/{K3S_VERSION}/k3s"
INSTALL_PATH = f"raw.githubusercontent.com/k3s-io/k3s/{K3S_VERSION}/install.sh"
IMAGES_LIST_PATH = f"github.com/k3s-io/k3s/releases/download/{K3S_VERSION}/k3s-images.txt"
MYCELIUM_PATH = f"github.com/threefoldtech/mycelium/releases/download/{MYCELIUM_VERSION}/mycelium.tar.gz"
IMAGES_LIST = f"{REGISTRY}/meshseed-test/busybox:1\n".encode()


def upstream_yaml(platforms: str = "[linux/amd64, linux/arm64]", *, cluster_images: bool = False) -> str:
    """k3s (whose images list names the test busybox), Mycelium and the test `hello` image;
    with `cluster_images`, also every image the manifests run, each the test `hello` (those
    Tutor runs under the repository's tags, which the registry must then also hold:
    cluster_image_tags())."""
    text = f"""\
platforms: {platforms}
k3s:
  version: {K3S_VERSION}
  binary: https://github.com/k3s-io/k3s/releases/download/{{version}}/k3s
  install_script: https://raw.githubusercontent.com/k3s-io/k3s/{{version}}/install.sh
  images_list: https://github.com/k3s-io/k3s/releases/download/{{version}}/k3s-images.txt
  roles: [server, agent, backup]
mycelium:
  version: {MYCELIUM_VERSION}
  archive: https://github.com/threefoldtech/mycelium/releases/download/{{version}}/mycelium.tar.gz
images:
  - name: hello
    image: {REGISTRY}/meshseed-test/hello:1
    roles: [server]
"""
    for name in required_images() if cluster_images else ():
        setting = TUTOR_SETTINGS.get(name)
        text += f"  - name: {name}\n    image: {REGISTRY}/meshseed-test/hello:{cluster_image_tag(name)}\n"
        text += "    roles: [server]\n" + (f"    tutor: {setting}\n" if setting else "")
    return text


_REPO_IMAGES = load_upstream(REPO / "images" / "upstream.yaml").images
# The images that fill a Tutor setting keep it, and keep their tag, which Tutor checks.
TUTOR_SETTINGS = {image.name: image.tutor for image in _REPO_IMAGES if image.tutor}


def cluster_image_tag(name: str) -> str:
    """The tag the test image `hello` carries as the cluster image `name`."""
    tagged = {image.name: parse_reference(image.image).tag for image in _REPO_IMAGES if image.tutor}
    return tagged.get(name) or "1"


def cluster_image_tags() -> set[str]:
    """Every tag the registry must hold `hello` under for upstream_yaml(cluster_images=True)."""
    return {cluster_image_tag(name) for name in required_images()}
