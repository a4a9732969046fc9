"""The stand-in cluster of the replace tests: one healthy server of the example site, a
real sshd on 127.0.0.1 with a recording k3s on its PATH (tests/fake_cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_cluster import FakeCluster, fake_cluster

# The example site's second server, which `meshseed replace edx1` works through by default.
THROUGH = "edx2"


class FakeServer(FakeCluster):
    @property
    def host_key(self) -> Path:
        return self.sshd_work[THROUGH] / "host_key"

    def calls(self) -> list[list[str]]:
        return self.kubectl_calls()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[FakeServer]:
    with fake_cluster(tmp_path / "sshd", [THROUGH]) as cluster:
        yield FakeServer(**vars(cluster))


def cluster_of_the_example_site(
    server: FakeServer, *, lost: str = "edx1", lost_ready: str = "Unknown"
) -> None:
    for name in ("edx1", "edx2", "edx3", "vault"):
        server.add_node(name, lost_ready if name == lost else "True")
