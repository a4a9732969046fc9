"""Day two on booted guests: change the site, build again, and reach the running guests
over SSH (through QEMU's host-forwarded ports) to `meshseed apply` the change."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.project import build
from tests.e2e.vm import Guest
from tests.integration.cli import meshseed
from tests.sshd_nodes import client_config
from tests.tools import require

# A peer beyond the site's nodes (nothing answers there: the double only records it).
NEW_PEER = "tcp://[2001:db8:e2e::99]:9651"


def change_site(root: Path, servers: Mapping[str, str], master_key: Path) -> None:
    """Give each of `servers` (name: MAC) a new Mycelium peer and the alerts another
    address, which changes Alertmanager's manifest; then build again, from the store the
    first build filled."""
    site = root / "site.yaml"
    text = site.read_text()
    for mac in servers.values():
        line = f'    mac: "{mac}"\n'
        assert line in text, f"no {line!r} in {site}"
        text = text.replace(line, f'{line}    mycelium_peers: ["{NEW_PEER}"]\n')
    site.write_text(text + "alerts:\n  email: ops@e2e.example.org\n")
    build(root, master_key, "--airgap", "--upstream", "upstream.yaml")


def ssh_config(work: Path, guests: Mapping[str, Guest], addresses: Mapping[str, str], key: Path) -> Path:
    """The operator's ssh_config: each guest's public address to its forwarded port."""
    ports = {addresses[name]: guest.ssh_port for name, guest in guests.items()}
    assert all(port is not None for port in ports.values())
    return client_config(work / "ssh" / "ssh_config", ports, key)  # type: ignore[arg-type]


def wait_for_sshd(guest: Guest, timeout: float = 900) -> None:
    """Until the guest's sshd greets on its forwarded port (QEMU accepts the connection
    itself before the guest listens, so only the greeting tells)."""
    assert guest.ssh_port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", guest.ssh_port), timeout=5) as connection:
                if connection.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        assert guest.process is not None and guest.process.poll() is None, guest.console()[-3000:]
        time.sleep(3)
    raise AssertionError(f"{guest.name}'s sshd never answered:\n{guest.console()[-3000:]}")


def apply(root: Path, master_key: Path, config: Path, booted: Collection[str], *args: str) -> Any:
    """`meshseed apply --json` to the booted nodes only; its report."""
    result = meshseed(
        "apply",
        "site.yaml",
        "--only",
        ",".join(booted),
        "--ssh-config",
        str(config),
        "--json",
        *args,
        cwd=root,
        master_key=master_key,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_healthy(
    root: Path, master_key: Path, config: Path, booted: Collection[str], timeout: float = 600
) -> Any:
    """Until the booted nodes are Ready etcd members as their servers see them (the guests
    not booted are missing all along); the dry run's report."""
    deadline = time.monotonic() + timeout
    while True:
        report = apply(root, master_key, config, booted, "--dry-run")
        about_booted = [p for p in report["problems"] if p.split()[0].removesuffix("'s") in booted]
        if not about_booted:
            return report
        assert time.monotonic() < deadline, about_booted
        time.sleep(5)


def power_off(config: Path, address: str) -> None:
    """Ask the guest to power off; the connection may drop before ssh gets an answer."""
    ssh = require("ssh", "openssh-client")
    subprocess.run(
        [ssh, "-F", str(config), "-l", "debian", address, "sudo", "-n", "systemctl", "poweroff"],
        capture_output=True,
        timeout=120,
        check=False,
    )


def seed_file(dist: Path, node: str, path: str) -> str:
    """A file as the new build's seed for `node` writes it (a plain-text one)."""
    user_data = yaml.safe_load((dist / "nodes" / node / "user-data").read_text())
    (entry,) = [entry for entry in user_data["write_files"] if entry["path"] == path]
    assert "encoding" not in entry, entry
    return str(entry["content"])


def events(log: str, name: str) -> list[float]:
    """The epoch seconds (third field) of the lines of an order.log starting with `name`."""
    return [float(line.split()[2]) for line in log.splitlines() if line.split()[:1] == [name]]


def kubectl_log(log: str) -> list[tuple[str, str, float]]:
    """The k3s double's record of drains and uncordons: (verb, node, epoch seconds)."""
    return [(verb, node, float(at)) for verb, node, at in (line.split() for line in log.splitlines())]
