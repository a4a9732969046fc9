"""Seeds as the tools that find and read them see them: blkid and isoinfo."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.det.iso9660 import IsoFile, write_iso
from tests.tools import require

SEED = {
    "meta-data": IsoFile("meta-data", b"instance-id: lab-n1\n"),
    "network-config": IsoFile("network-config", b"network:\n  version: 2\n"),
    "user-data": IsoFile("user-data", b"#cloud-config\nhostname: n1\n", 0o600),
}


def output(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_blkid_finds_the_cidata_label(tmp_path: Path) -> None:
    blkid = require("blkid", "util-linux")
    iso = tmp_path / "seed.iso"
    iso.write_bytes(write_iso(SEED, label="cidata", epoch=1700000000))
    probe = output(blkid, "-p", "-o", "export", str(iso))
    assert "TYPE=iso9660" in probe.splitlines()
    assert "LABEL=cidata" in probe.splitlines()


def test_isoinfo_lists_rock_ridge_and_joliet_names(tmp_path: Path) -> None:
    isoinfo = require("isoinfo", "genisoimage")
    iso = tmp_path / "seed.iso"
    iso.write_bytes(write_iso(SEED, label="cidata", epoch=1700000000))
    info = output(isoinfo, "-d", "-i", str(iso))
    assert "Volume id: cidata" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info
    rock_ridge = output(isoinfo, "-R", "-l", "-i", str(iso))
    assert "-rw-------   1    0    0              27 Nov 14 2023 [     27 00]  user-data" in rock_ridge
    assert "network-config" in rock_ridge
    joliet = output(isoinfo, "-J", "-l", "-i", str(iso))
    assert {"meta-data", "network-config", "user-data"} <= {
        line.split()[-1] for line in joliet.splitlines() if line
    }
    for name, entry in SEED.items():
        assert output(isoinfo, "-R", "-i", str(iso), "-x", f"/{name}").encode() == entry.data
