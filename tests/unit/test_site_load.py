"""site.yaml loading: what is accepted, and the exact message for each rejection."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from builder.errors import ExitStatus, MeshseedError
from builder.site import Role, load_site
from builder.site.load import parse_site
from tests.conftest import EXAMPLE_SITE
from tests.unit.sites import KEY, VALID, site


def problems_of(text: str) -> list[str]:
    with pytest.raises(MeshseedError) as caught:
        parse_site(text, Path("site.yaml"))
    assert caught.value.status is ExitStatus.BAD_INPUT
    return [str(problem) for problem in caught.value.problems]


def error_of(text: str) -> str:
    with pytest.raises(MeshseedError) as caught:
        parse_site(text, Path("site.yaml"))
    assert caught.value.status is ExitStatus.BAD_INPUT
    return str(caught.value)


def test_example_site_loads() -> None:
    loaded = load_site(EXAMPLE_SITE)
    assert loaded.cluster == "campus"
    assert loaded.lms_host == "learn.campus.example.org"
    assert [n.role for n in loaded.nodes].count(Role.SERVER) == 3
    assert [n.name for n in loaded.with_role(Role.BACKUP)] == ["vault"]
    for node in loaded.nodes:
        assert node.public_ipv6.ip in ipaddress.IPv6Network("2001:db8::/32")
        assert node.ssh_authorized_keys


def test_valid_fields_become_typed_values() -> None:
    loaded = parse_site(VALID, Path("site.yaml"))
    first = loaded.nodes[0]
    assert first.public_ipv6 == ipaddress.IPv6Interface("2001:db8:1::1/64")
    assert first.gateway == ipaddress.IPv6Address("fe80::1")
    assert first.role is Role.SERVER
    assert first.mycelium_peers == ()
    assert first.ssh_authorized_keys == (KEY,)


@pytest.mark.parametrize(("servers", "agents"), [(3, 0), (5, 0), (7, 0), (3, 4), (5, 2)])
def test_larger_sites_with_agents_are_accepted(servers: int, agents: int) -> None:
    loaded = parse_site(site(servers=servers, agents=agents), Path("site.yaml"))
    assert len(loaded.servers) == servers
    assert len(loaded.with_role(Role.AGENT)) == agents


def test_peers_are_normalised() -> None:
    text = VALID.replace(
        "    ssh_authorized_keys: [" + KEY + "]\n  - name: s2",
        "    ssh_authorized_keys: [" + KEY + "]\n    mycelium_peers: ['tcp://[2001:DB8::0001]:9651', "
        "'quic://192.0.2.7:9651']\n  - name: s2",
    )
    loaded = parse_site(text, Path("site.yaml"))
    assert loaded.nodes[0].mycelium_peers == ("tcp://[2001:db8::1]:9651", "quic://192.0.2.7:9651")


def test_the_issue_example_message() -> None:
    text = VALID.replace("  - name: s3\n    role: server", "  - name: s3\n    role: sever")
    assert problems_of(text) == [
        "site.yaml:17: nodes[2].role: 'sever' is not one of server, agent, backup (did you mean 'server'?)"
    ]


REJECTIONS = {
    "unknown top-level key": (
        VALID.replace("studio_host:", "lms_hots: x.lab.example.org\nstudio_host:"),
        ["site.yaml:4: lms_hots: unknown key (did you mean 'lms_host'?)"],
    ),
    "unknown node key": (
        VALID.replace("    gateway: fe80::1\n", "    gatway: fe80::1\n", 1),
        [
            "site.yaml:6: nodes[0]: missing required key 'gateway'",
            "site.yaml:9: nodes[0].gatway: unknown key (did you mean 'gateway'?)",
        ],
    ),
    "missing top-level key": (
        VALID.replace("domain: lab.example.org\n", ""),
        ["site.yaml:1: missing required key 'domain'"],
    ),
    "integer instead of string": (
        VALID.replace("cluster: lab", "cluster: 5"),
        ["site.yaml:1: cluster: expected a string, got an integer (5) (quote it)"],
    ),
    "boolean instead of role": (
        VALID.replace("role: backup", "role: yes"),
        ["site.yaml:22: nodes[3].role: expected a string, got a boolean (yes) (quote it)"],
    ),
    "null value": (
        VALID.replace("cluster: lab", "cluster:"),
        ["site.yaml:1: cluster: expected a string, got nothing (null)"],
    ),
    "string instead of list": (
        VALID.replace(f"ssh_authorized_keys: [{KEY}]", f"ssh_authorized_keys: {KEY}", 1),
        ["site.yaml:10: nodes[0].ssh_authorized_keys: expected a list, got a string"],
    ),
    "list instead of mapping": (
        VALID.replace("  - name: b1\n", "  - [b1]\n  - name: b1\n"),
        ["site.yaml:21: nodes[3]: expected a mapping, got a list"],
    ),
    "nodes not a list": (
        "cluster: lab\ndomain: lab.example.org\nlms_host: lms.lab.example.org\n"
        "studio_host: studio.lab.example.org\nnodes: 3\n",
        ["site.yaml:5: nodes: expected a list, got an integer (3)"],
    ),
    "empty key list": (
        VALID.replace(f"ssh_authorized_keys: [{KEY}]", "ssh_authorized_keys: []", 1),
        ["site.yaml:10: nodes[0].ssh_authorized_keys: needs at least 1 item"],
    ),
    "duplicate node name": (
        VALID.replace("name: s2", "name: s1"),
        ["site.yaml:11: nodes[1].name: duplicate node name 's1' (first at line 6)"],
    ),
    "duplicate address": (
        VALID.replace("2001:db8:3::1/64", "2001:db8:1:0::1/48"),
        ["site.yaml:18: nodes[2].public_ipv6: duplicate address '2001:db8:1::1' (first at line 8)"],
    ),
    "duplicate yaml key": (
        VALID.replace("    role: backup\n", "    role: backup\n    role: server\n"),
        ["site.yaml:23: nodes[3].role: duplicate key (first at line 22)"],
    ),
    "even server count": (
        site(servers=4),
        [
            "site.yaml:5: nodes: 4 server nodes; embedded etcd needs an odd number, at least 3 "
            "(etcd keeps a quorum only with 3, 5 or 7 members)"
        ],
    ),
    "one server": (
        site(servers=1),
        [
            "site.yaml:5: nodes: 1 server node; embedded etcd needs an odd number, at least 3 "
            "(etcd keeps a quorum only with 3, 5 or 7 members)"
        ],
    ),
    "no backup node": (
        site(backups=0),
        ["site.yaml:5: nodes: 0 backup nodes; exactly one node needs role 'backup'"],
    ),
    "two backup nodes": (
        site(backups=2),
        ["site.yaml:5: nodes: 2 backup nodes; exactly one node needs role 'backup'"],
    ),
    "invalid IPv6 address": (
        VALID.replace("2001:db8:1::1/64", "2001:db8:1::g/64"),
        ["site.yaml:8: nodes[0].public_ipv6: '2001:db8:1::g' is not a valid IPv6 address"],
    ),
    "IPv4 address": (
        VALID.replace("2001:db8:1::1/64", "192.0.2.1/24"),
        ["site.yaml:8: nodes[0].public_ipv6: '192.0.2.1' is an IPv4 address; an IPv6 address is needed"],
    ),
    "prefix out of range": (
        VALID.replace("2001:db8:1::1/64", "2001:db8:1::1/129"),
        [
            "site.yaml:8: nodes[0].public_ipv6: '2001:db8:1::1/129' has an invalid prefix length '129' (1 to 128)"
        ],
    ),
    "missing prefix": (
        VALID.replace("2001:db8:1::1/64", "2001:db8:1::1"),
        [
            "site.yaml:8: nodes[0].public_ipv6: '2001:db8:1::1' has no prefix length (write it as 2001:db8:1::1/64)"
        ],
    ),
    "link-local public address": (
        VALID.replace("2001:db8:1::1/64", "fe80::5/64"),
        ["site.yaml:8: nodes[0].public_ipv6: 'fe80::5' is not a unicast address that other nodes can reach"],
    ),
    "gateway with prefix": (
        VALID.replace("gateway: fe80::1", "gateway: fe80::1/64", 1),
        ["site.yaml:9: nodes[0].gateway: 'fe80::1/64' must be an address without a prefix length"],
    ),
    "gateway off link": (
        VALID.replace("gateway: fe80::1", "gateway: 2001:db8:9::1", 1),
        [
            "site.yaml:9: nodes[0].gateway: 2001:db8:9::1 is neither inside 2001:db8:1::/64 nor link-local "
            "(a node can only reach a gateway on its own link)"
        ],
    ),
    "invalid domain": (
        VALID.replace("domain: lab.example.org", "domain: lab..example.org"),
        [
            "site.yaml:2: domain: 'lab..example.org' is not a valid DNS name "
            "(labels of a-z, 0-9 and '-', at least two of them, at most 253 characters)"
        ],
    ),
    "single-label host": (
        VALID.replace("lms_host: lms.lab.example.org", "lms_host: lms"),
        [
            "site.yaml:3: lms_host: 'lms' is not a valid DNS name "
            "(labels of a-z, 0-9 and '-', at least two of them, at most 253 characters)"
        ],
    ),
    "uppercase host": (
        VALID.replace("lms_host: lms.lab.example.org", "lms_host: LMS.lab.example.org"),
        [
            "site.yaml:3: lms_host: 'LMS.lab.example.org' is not a valid DNS name (use lowercase: 'lms.lab.example.org')"
        ],
    ),
    "host outside domain": (
        VALID.replace("lms_host: lms.lab.example.org", "lms_host: lms.example.net"),
        [
            "site.yaml:3: lms_host: 'lms.example.net' is not inside the domain 'lab.example.org' "
            "(the DNS zone meshseed writes covers only the domain)"
        ],
    ),
    "same host twice": (
        VALID.replace("studio_host: studio.lab.example.org", "studio_host: lms.lab.example.org"),
        ["site.yaml:4: studio_host: the same host as lms_host; each needs its own"],
    ),
    "node name not a label": (
        VALID.replace("name: s2", "name: s_2"),
        [
            "site.yaml:11: nodes[1].name: 's_2' is not an RFC 1123 label "
            "(1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ],
    ),
    "node name ending in hyphen": (
        VALID.replace("name: s2", "name: s2-"),
        [
            "site.yaml:11: nodes[1].name: 's2-' is not an RFC 1123 label "
            "(1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ],
    ),
    "node name too long": (
        VALID.replace("name: s2", "name: " + "s" * 64),
        [
            f"site.yaml:11: nodes[1].name: '{'s' * 64}' is not an RFC 1123 label "
            "(1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        ],
    ),
    "damaged ssh key": (
        VALID.replace(f"[{KEY}]", "[ssh-ed25519 AAAA!!!!]", 1),
        ["site.yaml:10: nodes[0].ssh_authorized_keys[0]: the ssh-ed25519 key's base64 data is damaged"],
    ),
    "ssh key of another type": (
        VALID.replace(f"[{KEY}]", "[ssh-rsa " + KEY.split()[1] + "]", 1),
        [
            "site.yaml:10: nodes[0].ssh_authorized_keys[0]: the key says ssh-rsa but its data holds a ssh-ed25519 key"
        ],
    ),
    "bad peer scheme": (
        VALID.replace(f"[{KEY}]\n", f"[{KEY}]\n    mycelium_peers: ['udp://[2001:db8::1]:9651']\n", 1),
        [
            "site.yaml:11: nodes[0].mycelium_peers[0]: 'udp://[2001:db8::1]:9651' uses scheme 'udp'; "
            "Mycelium peers use tcp or quic"
        ],
    ),
    "peer with host name": (
        VALID.replace(f"[{KEY}]\n", f"[{KEY}]\n    mycelium_peers: ['tcp://peer.example.org:9651']\n", 1),
        [
            "site.yaml:11: nodes[0].mycelium_peers[0]: 'tcp://peer.example.org:9651' is not a Mycelium peer "
            "(write tcp://[2001:db8::1]:9651 or quic://192.0.2.1:9651)"
        ],
    ),
}


@pytest.mark.parametrize(("text", "expected"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejections_name_file_line_and_key(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_every_problem_is_reported_at_once() -> None:
    text = (
        VALID.replace("cluster: lab", "cluster: Lab")
        .replace("name: s2", "name: s1")
        .replace("role: backup", "role: bakup")
        .replace("2001:db8:3::1/64", "2001:db8:3::1/200")
    )
    assert problems_of(text) == [
        "site.yaml:1: cluster: 'Lab' is not an RFC 1123 label (use lowercase: 'lab')",
        "site.yaml:11: nodes[1].name: duplicate node name 's1' (first at line 6)",
        "site.yaml:18: nodes[2].public_ipv6: '2001:db8:3::1/200' has an invalid prefix length '200' (1 to 128)",
        "site.yaml:22: nodes[3].role: 'bakup' is not one of server, agent, backup (did you mean 'backup'?)",
    ]
    assert error_of(text).endswith("site.yaml: 4 problems; nothing was built")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "site.yaml: the file is empty (a site needs cluster, domain, hosts and nodes)"),
        (
            "# only a comment\n",
            "site.yaml: the file is empty (a site needs cluster, domain, hosts and nodes)",
        ),
        (
            "cluster: lab\nnodes: [\n",
            "site.yaml:3: not valid YAML: expected the node content, but found '<stream end>'\n"
            "site.yaml: not valid YAML",
        ),
        (
            "cluster: lab\n\tdomain: x\n",
            "site.yaml:2: not valid YAML: found character '\\t' that cannot start any token\n"
            "site.yaml: not valid YAML",
        ),
        (
            "- a\n- b\n",
            "site.yaml:1: the top level must be a mapping of keys\nsite.yaml: not a site description",
        ),
        (
            "just text\n",
            "site.yaml:1: the top level must be a mapping of keys\nsite.yaml: not a site description",
        ),
    ],
    ids=["empty", "comment only", "unclosed list", "tab", "list", "scalar"],
)
def test_files_that_are_not_sites(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(MeshseedError, match="no such site file") as caught:
        load_site(tmp_path / "missing.yaml")
    assert caught.value.status is ExitStatus.BAD_INPUT
    with pytest.raises(MeshseedError, match="is a directory"):
        load_site(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"cluster: \xff\xfe\n")
    with pytest.raises(MeshseedError, match=r"not UTF-8 text \(byte 9\)"):
        load_site(binary)
