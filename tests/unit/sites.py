"""Small site files for tests, built line by line so that line numbers are predictable."""

from __future__ import annotations

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+mRsV03UzrBGS79jzBGKnVuuCNGxgX1kROIPrWttuh test@example.org"

HEADER = """\
cluster: lab
domain: lab.example.org
lms_host: lms.lab.example.org
studio_host: studio.lab.example.org
nodes:
"""


# After the nodes, so that their line numbers stay as node() says; IPv6-only nodes
# download the pinned files from a mirror.
DOWNLOADS = "downloads:\n  mirror: https://mirror.lab.example.org/pinned\n"


def node(name: str, role: str, number: int) -> str:
    """Five lines describing one node; node k (from 0) starts on line 6 + 5k."""
    return (
        f"  - name: {name}\n"
        f"    role: {role}\n"
        f"    public_ipv6: 2001:db8:{number:x}::1/64\n"
        f"    gateway: fe80::1\n"
        f"    ssh_authorized_keys: [{KEY}]\n"
    )


def site(servers: int = 3, agents: int = 0, backups: int = 1) -> str:
    roles = ["server"] * servers + ["agent"] * agents + ["backup"] * backups
    names = {"server": "s", "agent": "a", "backup": "b"}
    counters = dict.fromkeys(names, 0)
    blocks = []
    for number, role in enumerate(roles, start=1):
        counters[role] += 1
        blocks.append(node(f"{names[role]}{counters[role]}", role, number))
    return HEADER + "".join(blocks) + DOWNLOADS


VALID = site()
