"""The upstream.yaml and artifact paths the image and boot tests pin against local servers."""

from __future__ import annotations

from builder.manifests.registry import required_images
from builder.render.tutor import TUTOR_VERSION

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
    with `cluster_images`, also every image the manifests run, each the test `hello` (the
    openedx one under Tutor's release tag, which the registry must then also hold)."""
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
        tag = TUTOR_VERSION if name == "openedx" else "1"
        text += f"  - name: {name}\n    image: {REGISTRY}/meshseed-test/hello:{tag}\n    roles: [server]\n"
    return text
