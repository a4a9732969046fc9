"""dist/dns/<domain>.zone: round-robin over the servers, a record per node, and BIND accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.cli import meshseed
from tests.tools import require
from tests.unit.sites import site


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_zone_scales_with_the_servers_and_passes_named_checkzone(
    servers: int, tmp_path: Path, master_key_file: Path
) -> None:
    checkzone = require("named-checkzone", "bind9-utils")
    text = site(servers=servers, agents=2).replace("nodes:\n", "nameservers: [ns1.example.net]\nnodes:\n", 1)
    (tmp_path / "site.yaml").write_text(text)
    result = meshseed("build", cwd=tmp_path, master_key=master_key_file)
    assert result.returncode == 0, result.stderr
    zone = tmp_path / "dist" / "dns" / "lab.example.org.zone"
    check = subprocess.run(
        [checkzone, "lab.example.org", str(zone)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    records = [line.split() for line in zone.read_text().splitlines() if " IN AAAA " in line]
    lms = [address for name, _, _, address in records if name == "lms"]
    assert lms == [f"2001:db8:{n:x}::1" for n in range(1, servers + 1)]
    # Every host a browser is sent to is round-robin over the servers.
    browser = ("studio", "apps.lms", "preview.lms", "meilisearch.lms", "files.lms")
    for host in browser:
        assert [address for name, _, _, address in records if name == host] == lms, host
    nodes = {name for name, *_ in records} - {"lms", *browser}
    assert nodes == {f"s{n}" for n in range(1, servers + 1)} | {"a1", "a2", "b1"}
    assert "IN NS ns1.example.net." in zone.read_text()


def test_no_nameservers_no_zone(tmp_path: Path, master_key_file: Path) -> None:
    (tmp_path / "site.yaml").write_text(site())
    assert meshseed("build", cwd=tmp_path, master_key=master_key_file).returncode == 0
    assert not (tmp_path / "dist" / "dns").exists()
