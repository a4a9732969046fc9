"""site.yaml's resolvers and downloads: what IPv6-only nodes need from the site."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from builder.errors import ExitStatus, MeshseedError
from builder.site.load import parse_site
from builder.site.model import DEFAULT_RESOLVERS, Downloads
from tests.unit.sites import HEADER, node

NODES = "".join(node(f"s{n}", "server", n) for n in (1, 2, 3)) + node("b1", "backup", 4)
# The nodes take lines 6 to 25; what a test adds starts on line 26.
SITE = HEADER + NODES


def problems_of(text: str) -> list[str]:
    with pytest.raises(MeshseedError) as caught:
        parse_site(text, Path("site.yaml"))
    assert caught.value.status is ExitStatus.BAD_INPUT
    return [str(problem) for problem in caught.value.problems]


def test_resolvers_default_to_two_operators_and_downloads_to_none() -> None:
    site = parse_site(SITE, Path("site.yaml"))
    assert site.resolvers == tuple(ipaddress.IPv6Address(a) for a in DEFAULT_RESOLVERS)
    assert len({address.exploded[:9] for address in site.resolvers}) == 2
    assert site.downloads == Downloads(mirror=None, nat64=False, ipv4=False)


def test_resolvers_and_downloads_are_read() -> None:
    text = (
        SITE + "resolvers: [2001:db8::53]\ndownloads:\n  mirror: https://files.example.org/x\n  nat64: true\n"
    )
    site = parse_site(text, Path("site.yaml"))
    assert site.resolvers == (ipaddress.IPv6Address("2001:db8::53"),)
    assert site.downloads == Downloads(mirror="https://files.example.org/x", nat64=True, ipv4=False)


def test_bad_resolvers_and_downloads_name_their_line_and_key() -> None:
    text = (
        SITE + "resolvers: [192.0.2.53]\ndownloads:\n  mirror: ftp://files.example.org\n  nat64: yes please\n"
    )
    assert problems_of(text) == [
        "site.yaml:26: resolvers[0]: '192.0.2.53' is an IPv4 address; an IPv6 address is needed",
        "site.yaml:28: downloads.mirror: 'ftp://files.example.org' is not an http(s) URL",
        "site.yaml:29: downloads.nat64: expected true or false, got a string",
    ]
    assert problems_of(SITE + "resolvers: []\n") == ["site.yaml:26: resolvers: needs at least 1 item"]
