"""The edges of site.yaml's rules: range limits, optional fields, defaults, the decoder's
messages for every kind of node, and the schema's exact entries for each field kind."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import struct
from pathlib import Path

import pytest
import yaml

from builder.errors import ExitStatus, MeshseedError
from builder.site.load import parse_site
from builder.site.model import Node, Retention, Role
from builder.site.scalars import (
    parse_dns_name,
    parse_mac,
    parse_peer,
    parse_public_interface,
    parse_ssh_public_key,
)
from builder.site.schema import site_schema
from builder.typed_yaml.decode import INVALID, Decoder, describe, did_you_mean
from builder.typed_yaml.document import compose, decode_document, read_text
from builder.typed_yaml.scalars import Label, parse_label, pattern_scalar
from builder.typed_yaml.schema import document_schema
from tests.conftest import EXAMPLE_SITE
from tests.unit.sites import KEY, VALID, site


def problems_of(text: str) -> list[str]:
    with pytest.raises(MeshseedError) as caught:
        parse_site(text, Path("site.yaml"))
    assert caught.value.status is ExitStatus.BAD_INPUT
    return [str(problem) for problem in caught.value.problems]


def error(parse: object, text: str) -> str:
    with pytest.raises(ValueError) as caught:
        parse(text)  # type: ignore[operator]
    return str(caught.value)


# --- DNS names, addresses, peers, keys, MACs ---------------------------------------


def test_dns_name_length_and_trailing_dot() -> None:
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(longest) == 253
    assert parse_dns_name(longest + ".") == longest
    assert parse_dns_name("Lab.example.org".lower()) == "lab.example.org"
    assert error(parse_dns_name, longest + "b") == (
        f"{longest + 'b'!r} is not a valid DNS name "
        "(labels of a-z, 0-9 and '-', at least two of them, at most 253 characters)"
    )


@pytest.mark.parametrize("prefix", ["1", "64", "128"])
def test_prefix_lengths_in_range(prefix: str) -> None:
    interface = parse_public_interface(f"2001:DB8::0001/{prefix}")
    assert interface == ipaddress.IPv6Interface(f"2001:db8::1/{prefix}")


@pytest.mark.parametrize("prefix", ["0", "129", "x", "-1", ""])
def test_prefix_lengths_out_of_range(prefix: str) -> None:
    assert error(parse_public_interface, f"2001:db8::1/{prefix}") == (
        f"'2001:db8::1/{prefix}' has an invalid prefix length {prefix!r} (1 to 128)"
    )


@pytest.mark.parametrize("address", ["ff02::1", "::1", "::", "fe80::1"])
def test_public_addresses_must_be_reachable_unicast(address: str) -> None:
    assert error(parse_public_interface, f"{address}/64") == (
        f"{address!r} is not a unicast address that other nodes can reach"
    )


def test_peers_ports_and_addresses() -> None:
    assert parse_peer("tcp://[2001:DB8::1]:1") == "tcp://[2001:db8::1]:1"
    assert parse_peer("quic://192.0.2.1:65535") == "quic://192.0.2.1:65535"
    assert parse_peer("tcp://192.0.2.1:09651") == "tcp://192.0.2.1:9651"
    for port in ("0", "65536", "99999"):
        assert error(parse_peer, f"tcp://192.0.2.1:{port}") == (
            f"'tcp://192.0.2.1:{port}' has port {int(port)}, outside 1-65535"
        )
    assert (
        error(parse_peer, "tcp://[2001:zz::1]:9651")
        == "'tcp://[2001:zz::1]:9651' does not hold a valid IP address"
    )
    assert error(parse_peer, "quic://192.0.2.300:9651") == (
        "'quic://192.0.2.300:9651' does not hold a valid IP address"
    )


def ssh_blob(key_type: bytes, length: int | None = None) -> str:
    size = len(key_type) if length is None else length
    return base64.b64encode(struct.pack(">I", size) + key_type + b"\x00" * 8).decode()


def test_ssh_keys() -> None:
    assert parse_ssh_public_key("  " + KEY.replace(" ", "   ") + "  ") == KEY
    assert parse_ssh_public_key(KEY.rsplit(" ", 1)[0]) == KEY.rsplit(" ", 1)[0]  # no comment
    expected = (
        "not an SSH public key (expected '<type> <base64> [comment]' with type one of "
        "ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...)"
    )
    assert error(parse_ssh_public_key, "ssh-ed25519") == expected
    assert error(parse_ssh_public_key, "ssh-dss AAAA") == expected
    assert error(parse_ssh_public_key, "ssh-rsa " + ssh_blob(b"")) == (
        "the key says ssh-rsa but its data holds a broken key"
    )
    assert (
        error(parse_ssh_public_key, "ssh-rsa " + ssh_blob(b"\xff\xfe"))
        == "the ssh-rsa key's base64 data is damaged"
    )
    assert error(parse_ssh_public_key, "ssh-rsa AAE=") == "the ssh-rsa key's base64 data is damaged"
    sk = "sk-ssh-ed25519@openssh.com"
    assert parse_ssh_public_key(f"{sk} {ssh_blob(sk.encode())}") == f"{sk} {ssh_blob(sk.encode())}"


def test_mac_addresses() -> None:
    assert parse_mac("52:54:00:AB:cd:EF") == "52:54:00:ab:cd:ef"
    for bad in ("52:54:00:ab:cd", "52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef:00", "5:54:00:ab:cd:ef"):
        assert error(parse_mac, bad) == f"{bad!r} is not a MAC address such as 52:54:00:12:34:56"


def test_labels_and_pattern_scalars() -> None:
    assert parse_label("a") == "a"
    assert parse_label("a" * 63) == "a" * 63
    assert error(parse_label, "Ab-1") == "'Ab-1' is not an RFC 1123 label (use lowercase: 'ab-1')"
    scalar = pattern_scalar(r"v\d+", "a version", format="x")
    assert scalar.schema == {"type": "string", "pattern": r"^(?:v\d+)$", "format": "x"}
    assert scalar.parse("v12") == "v12"
    assert error(scalar.parse, "v12x") == "'v12x' is not a version"


# --- optional node fields and defaults ---------------------------------------------


def with_node_lines(*lines: str) -> str:
    return VALID.replace(f"[{KEY}]\n", f"[{KEY}]\n" + "".join(f"    {line}\n" for line in lines), 1)


def test_optional_uplink_fields() -> None:
    plain = parse_site(VALID, Path("site.yaml"))
    assert (plain.nodes[0].mac, plain.nodes[0].interface, plain.nodes[0].uplink) == (None, None, "eth0")
    by_mac = parse_site(with_node_lines("mac: 52:54:00:AA:BB:CC"), Path("site.yaml")).nodes[0]
    assert (by_mac.mac, by_mac.uplink) == ("52:54:00:aa:bb:cc", "uplink")
    named = parse_site(with_node_lines("mac: 52:54:00:aa:bb:cc", "interface: wan0"), Path("s")).nodes[0]
    assert named.uplink == "wan0"
    assert parse_site(with_node_lines("interface: ens3"), Path("s")).nodes[0].uplink == "ens3"
    assert problems_of(with_node_lines("interface: Eth0")) == [
        "site.yaml:11: nodes[0].interface: 'Eth0' is not a network interface name such as ens3"
    ]


def test_defaults_and_roles() -> None:
    loaded = parse_site(site(servers=3, agents=2), Path("site.yaml"))
    assert loaded.source == Path("site.yaml")
    assert loaded.nameservers == ()
    assert (loaded.backups.retention, loaded.backups.local_retention) == (
        Retention(daily=7, weekly=4, monthly=12),
        Retention(daily=7, weekly=8, monthly=24),
    )
    assert [n.name for n in loaded.servers] == ["s1", "s2", "s3"]
    assert [n.name for n in loaded.with_role(Role.AGENT)] == ["a1", "a2"]


def test_retention_counts() -> None:
    text = (
        VALID + "backups:\n  retention:\n    daily: 0\n    weekly: 2\n  local_retention:\n    monthly: 36\n"
    )
    backups = parse_site(text, Path("site.yaml")).backups
    assert backups.retention == Retention(daily=0, weekly=2, monthly=12)
    assert backups.local_retention == Retention(daily=7, weekly=4, monthly=36)
    bad = VALID + "backups:\n  retention:\n    daily: -1\n    weekly: x\n    monthly: 1.5\n"
    assert problems_of(bad) == [
        "site.yaml:30: backups.retention.daily: must be at least 0, not -1",
        "site.yaml:31: backups.retention.weekly: expected an integer, got a string",
        "site.yaml:32: backups.retention.monthly: expected an integer, got a number (1.5)",
    ]


# --- cross-field checks ---------------------------------------------------------------


def test_a_gateway_inside_the_prefix_is_accepted() -> None:
    text = VALID.replace("gateway: fe80::1", "gateway: 2001:db8:1::fffe", 1)
    assert parse_site(text, Path("site.yaml")).nodes[0].gateway == ipaddress.IPv6Address("2001:db8:1::fffe")


def test_checks_skip_what_did_not_decode() -> None:
    # The address is broken, so neither its uniqueness nor the gateway can be checked; the
    # nodes list is invalid as a whole, so the role counts are not checked either.
    text = site(servers=4).replace("2001:db8:1::1/64", "nonsense", 1).replace("name: s2", "name: S2")
    assert problems_of(text) == [
        "site.yaml:8: nodes[0].public_ipv6: 'nonsense' is not a valid IPv6 address",
        "site.yaml:11: nodes[1].name: 'S2' is not an RFC 1123 label (use lowercase: 's2')",
    ]


def test_five_servers_and_duplicates_after_a_gap() -> None:
    text = site(servers=5).replace("name: s4", "name: s1").replace("name: s5", "name: s2")
    assert problems_of(text) == [
        "site.yaml:21: nodes[3].name: duplicate node name 's1' (first at line 6)",
        "site.yaml:26: nodes[4].name: duplicate node name 's2' (first at line 11)",
    ]


def test_hosts_may_be_the_domain_itself() -> None:
    text = VALID.replace("lms_host: lms.lab.example.org", "lms_host: lab.example.org")
    assert parse_site(text, Path("site.yaml")).lms_host == "lab.example.org"
    suffix_only = VALID.replace("lms_host: lms.lab.example.org", "lms_host: xlab.example.org")
    assert problems_of(suffix_only) == [
        "site.yaml:3: lms_host: 'xlab.example.org' is not inside the domain 'lab.example.org' "
        "(the DNS zone meshseed writes covers only the domain)"
    ]


def test_hosts_are_not_checked_against_a_broken_domain() -> None:
    text = VALID.replace("domain: lab.example.org", "domain: nodots").replace(
        "studio_host: studio.lab.example.org", "studio_host: elsewhere.example.net"
    )
    assert problems_of(text) == [
        "site.yaml:2: domain: 'nodots' is not a valid DNS name "
        "(labels of a-z, 0-9 and '-', at least two of them, at most 253 characters)"
    ]


def test_one_broken_host_leaves_the_other_checked() -> None:
    text = VALID.replace("lms_host: lms.lab.example.org", "lms_host: 5").replace(
        "studio_host: studio.lab.example.org", "studio_host: studio.example.net"
    )
    assert problems_of(text) == [
        "site.yaml:3: lms_host: expected a string, got an integer (5) (quote it)",
        "site.yaml:4: studio_host: 'studio.example.net' is not inside the domain 'lab.example.org' "
        "(the DNS zone meshseed writes covers only the domain)",
    ]


# --- the decoder's messages ------------------------------------------------------------


def node_of(text: str) -> yaml.Node:
    return yaml.compose(text)


def test_describe_names_each_kind_of_node() -> None:
    assert describe(node_of("{a: 1}")) == "a mapping"
    assert describe(node_of("[1]")) == "a list"
    assert describe(node_of("'x'")) == "a string"
    assert describe(node_of("2024-01-01")) == "a date (2024-01-01)"
    assert describe(node_of("true")) == "a boolean (true)"
    assert describe(node_of("a:").value[0][1]) == "nothing (null)"
    assert describe(node_of("~")) == "nothing (null) (~)"
    assert describe(node_of("!custom x")) == "a value (x)"


def test_did_you_mean() -> None:
    assert did_you_mean("domian", ["domain", "nodes"]) == "did you mean 'domain'?"
    assert did_you_mean("zzz", ["domain", "nodes"]) is None
    assert repr(INVALID) == "INVALID"


def test_keys_must_be_strings_and_values_of_the_right_kind() -> None:
    text = VALID.replace("cluster: lab\n", "cluster: lab\n5: five\n[a]: list\n")
    assert problems_of(text) == [
        "site.yaml:2: keys must be strings, got an integer (5)",
        "site.yaml:3: keys must be strings, got a list",
    ]
    assert problems_of(VALID.replace("cluster: lab", "cluster: {a: 1}")) == [
        "site.yaml:1: cluster: expected a string, got a mapping"
    ]
    assert problems_of(VALID.replace("role: backup", "role: [backup]")) == [
        "site.yaml:22: nodes[3].role: expected a string, got a list"
    ]


def test_lists_point_at_their_key_and_items_at_themselves() -> None:
    text = VALID.replace(
        f"    ssh_authorized_keys: [{KEY}]\n  - name: s2",
        f"    ssh_authorized_keys:\n      - {KEY}\n      - nope\n  - name: s2",
    )
    problems = problems_of(text)
    assert problems == [
        "site.yaml:12: nodes[0].ssh_authorized_keys[1]: not an SSH public key (expected '<type> <base64> "
        "[comment]' with type one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...)"
    ]


def test_decoder_records_values_lines_and_lengths() -> None:
    decoder = Decoder("f")
    text = f"name: s1\nrole: server\npublic_ipv6: 2001:db8::1/64\ngateway: fe80::1\nssh_authorized_keys:\n  - {KEY}\n"
    fields = decoder.decode_fields(Node, node_of(text), "n")
    assert fields is not None and fields["name"] == "s1"
    assert decoder.lines["n.name"] == 1
    assert decoder.lines["n.ssh_authorized_keys"] == 5
    assert decoder.lengths == {"n.ssh_authorized_keys": 1}
    assert decoder.values["n.ssh_authorized_keys[0]"] == KEY
    assert decoder.problems == []


@dataclasses.dataclass(frozen=True)
class Odd:
    ratio: float


def test_unknown_field_types_are_a_programming_error() -> None:
    with pytest.raises(TypeError, match="a model uses a type the decoder does not know: <class 'float'>"):
        Decoder("f").decode_fields(Odd, node_of("ratio: '1'"), "")
    with pytest.raises(TypeError, match="no JSON Schema for <class 'float'>"):
        document_schema(Odd, schema_id="x", title="t")


# --- reading files ---------------------------------------------------------------------


def test_read_text_reports_other_os_errors(tmp_path: Path) -> None:
    with pytest.raises(MeshseedError) as caught:
        read_text(tmp_path / ("x" * 300), "site file", "hint")
    assert caught.value.message == f"{tmp_path / ('x' * 300)}: cannot be read: File name too long"
    assert caught.value.status is ExitStatus.BAD_INPUT
    with pytest.raises(MeshseedError) as missing:
        read_text(tmp_path / "nope", "site file", "pass a path")
    assert (missing.value.message, missing.value.hint) == (
        f"{tmp_path / 'nope'}: no such site file",
        "pass a path",
    )


def test_yaml_that_is_not_even_readable() -> None:
    with pytest.raises(MeshseedError) as caught:
        compose("a: \x07\n", "f.yaml", what="w", empty_hint="h")
    assert caught.value.message.startswith("f.yaml: not valid YAML: unacceptable character #x0007")
    assert caught.value.status is ExitStatus.BAD_INPUT


def test_one_problem_is_counted_in_the_singular() -> None:
    with pytest.raises(MeshseedError) as caught:
        decode_document("daily: -1\n", Path("r.yaml"), Retention, what="retention", empty_hint="h")
    assert caught.value.message == "r.yaml: 1 problem; nothing was built"
    assert [str(p) for p in caught.value.problems] == ["r.yaml:1: daily: must be at least 0, not -1"]
    assert decode_document("weekly: 3\n", Path("r.yaml"), Retention, what="r", empty_hint="h") == Retention(
        weekly=3
    )


# --- the schema ------------------------------------------------------------------------


def test_schema_of_each_field_kind() -> None:
    schema = site_schema()
    assert list(schema)[:3] == ["$schema", "$id", "title"]
    assert (schema["$schema"], schema["$id"], schema["title"]) == (
        "https://json-schema.org/draft/2020-12/schema",
        "https://meshseed.invalid/schema/site.json",
        "meshseed site",
    )
    assert schema["required"] == ["cluster", "domain", "lms_host", "studio_host", "nodes"]
    assert schema["additionalProperties"] is False
    assert schema["description"] == "A whole site: one cluster, its names and its nodes."
    assert schema["properties"]["nodes"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/node"},
        "minItems": 1,
        "description": "The machines: an odd number (3 or more) of servers and one backup node.",
    }
    assert schema["properties"]["nameservers"]["default"] == []
    assert schema["properties"]["cluster"]["maxLength"] == 63
    assert "default" not in schema["$defs"]["node"]["properties"]["mac"]
    assert schema["$defs"]["retention"]["properties"]["daily"] == {
        "type": "integer",
        "minimum": 0,
        "description": "Days to keep a snapshot of.",
        "default": 7,
    }
    assert schema["$defs"]["retention"]["required"] == []
    assert schema["$defs"]["backups"]["properties"]["retention"] == {
        "$ref": "#/$defs/retention",
        "description": "On the backup node (its rotation CronJob).",
    }
    assert set(schema["$defs"]) == {"node", "backups", "retention", "downloads", "alerts"}
    assert schema["$defs"]["alerts"]["properties"]["email"]["format"] == "email"
    assert "source" not in schema["properties"]


@dataclasses.dataclass(frozen=True)
class Plain:
    """A test model."""

    name: str
    count: int = 3
    label: Label = "x"
    tags: tuple[str, ...] = ("a",)
    note: str | None = None


def test_schema_of_plain_types_and_defaults() -> None:
    assert document_schema(Plain, schema_id="id", title="t") == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "id",
        "title": "t",
        "type": "object",
        "description": "A test model.",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer", "default": 3},
            "label": {
                "type": "string",
                "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                "maxLength": 63,
                "default": "x",
            },
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
            "note": {"type": "string"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "$defs": {},
    }


def test_plain_fields_decode() -> None:
    assert decode_document(
        "name: n\ncount: 4\ntags: [b, c]\nnote: hi\n", Path("p"), Plain, what="p", empty_hint="h"
    ) == Plain("n", 4, "x", ("b", "c"), "hi")
    with pytest.raises(MeshseedError) as caught:
        decode_document("name: 5\ncount: '4'\n", Path("p"), Plain, what="p", empty_hint="h")
    assert [str(p) for p in caught.value.problems] == [
        "p:1: name: expected a string, got an integer (5) (quote it)",
        "p:2: count: expected an integer, got a string",
    ]


def test_an_alert_address_that_is_not_one_is_named() -> None:
    text = EXAMPLE_SITE.read_text().replace("email: ops@campus.example.org", "email: ops at campus")
    with pytest.raises(MeshseedError) as error:
        parse_site(text, Path("site.yaml"))
    assert "alerts.email: 'ops at campus' is not an email address such as ops@example.org" in str(error.value)
