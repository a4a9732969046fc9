"""Scalar value types of site.yaml only: DNS names, addresses, peers, SSH keys, MACs.

The generic machinery (`Scalar`, `pattern_scalar`, `Label`) is in `builder.typed_yaml`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from typing import Annotated

from builder.typed_yaml.scalars import LABEL, Scalar, pattern_scalar


def parse_dns_name(text: str) -> str:
    """A fully qualified DNS host name of at least two labels, without a trailing dot."""
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(LABEL.fullmatch(label) for label in labels):
        hint = (
            f"use lowercase: {text.lower()!r}"
            if text != text.lower()
            else ("labels of a-z, 0-9 and '-', at least two of them, at most 253 characters")
        )
        raise ValueError(f"{text!r} is not a valid DNS name ({hint})")
    return name


def parse_public_interface(text: str) -> ipaddress.IPv6Interface:
    """A node's public IPv6 address with its prefix length, such as 2001:db8:1::10/64."""
    address, slash, prefix = text.partition("/")
    ip = _parse_ipv6(address)
    if not slash:
        raise ValueError(f"{text!r} has no prefix length (write it as {address}/64)")
    if not prefix.isdecimal() or not 1 <= int(prefix) <= 128:
        raise ValueError(f"{text!r} has an invalid prefix length {prefix!r} (1 to 128)")
    if ip.is_link_local or ip.is_multicast or ip.is_loopback or ip.is_unspecified:
        raise ValueError(f"{address!r} is not a unicast address that other nodes can reach")
    return ipaddress.IPv6Interface(f"{ip}/{prefix}")


def parse_ipv6_address(text: str) -> ipaddress.IPv6Address:
    """A plain IPv6 address without a prefix length."""
    if "/" in text:
        raise ValueError(f"{text!r} must be an address without a prefix length")
    return _parse_ipv6(text)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid IPv6 address") from None
        raise ValueError(f"{text!r} is an IPv4 address; an IPv6 address is needed") from None


_PEER = re.compile(r"(?P<scheme>[a-z]+)://(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d{1,5})")
PEER_SCHEMES = ("tcp", "quic")


def parse_peer(text: str) -> str:
    """A Mycelium peer endpoint: tcp:// or quic:// with an IP literal and a port."""
    match = _PEER.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Mycelium peer (write tcp://[2001:db8::1]:9651 or quic://192.0.2.1:9651)"
        )
    if match["scheme"] not in PEER_SCHEMES:
        raise ValueError(f"{text!r} uses scheme {match['scheme']!r}; Mycelium peers use tcp or quic")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = (
            ipaddress.IPv6Address(match["v6"]) if match["v6"] else ipaddress.IPv4Address(match["v4"])
        )
    except ValueError:
        raise ValueError(f"{text!r} does not hold a valid IP address") from None
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r} has port {port}, outside 1-65535")
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{match['scheme']}://{host}:{port}"


SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def parse_ssh_public_key(text: str) -> str:
    """One authorized_keys line: a key type, its base64 blob and an optional comment."""
    fields = text.split(None, 2)
    if len(fields) < 2 or fields[0] not in SSH_KEY_TYPES:
        raise ValueError(
            "not an SSH public key (expected '<type> <base64> [comment]' with type one of "
            + ", ".join(SSH_KEY_TYPES[:3])
            + ", ...)"
        )
    key_type, blob = fields[0], fields[1]
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded_type = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise ValueError(f"the {key_type} key's base64 data is damaged") from None
    if embedded_type != key_type:
        raise ValueError(f"the key says {key_type} but its data holds a {embedded_type or 'broken'} key")
    return " ".join(text.split())


DnsName = Annotated[str, Scalar(parse_dns_name, {"type": "string", "format": "hostname"})]
PublicInterface = Annotated[
    ipaddress.IPv6Interface,
    Scalar(parse_public_interface, {"type": "string", "pattern": r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$"}),
]
IPv6Address = Annotated[
    ipaddress.IPv6Address, Scalar(parse_ipv6_address, {"type": "string", "format": "ipv6"})
]
PeerEndpoint = Annotated[
    str,
    Scalar(
        parse_peer, {"type": "string", "pattern": r"^(tcp|quic)://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]{1,5}$"}
    ),
]
SshPublicKey = Annotated[
    str,
    Scalar(
        parse_ssh_public_key,
        {"type": "string", "pattern": "^(" + "|".join(re.escape(t) for t in SSH_KEY_TYPES) + ") "},
    ),
]


def parse_mac(text: str) -> str:
    """A MAC address, written with colons; kept in lower case."""
    if not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", text):
        raise ValueError(f"{text!r} is not a MAC address such as 52:54:00:12:34:56")
    return text.lower()


MacAddress = Annotated[
    str, Scalar(parse_mac, {"type": "string", "pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"})
]
# An address mail can be delivered to: a local part (no spaces, quotes or @) at a DNS name.
EmailAddress = Annotated[
    str,
    pattern_scalar(
        r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}",
        "an email address such as ops@example.org",
        format="email",
    ),
]
HttpUrl = Annotated[str, pattern_scalar(r"https?://[^\s/]+(/\S*)?", "an http(s) URL", format="uri")]
InterfaceName = Annotated[
    str, pattern_scalar(r"[a-z][a-z0-9_.-]{0,14}", "a network interface name such as ens3")
]
