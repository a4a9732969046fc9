"""Rules that span several fields of a site: uniqueness, quorum, roles and host names.

They read the decoder's `values`, so a node with a bad field still takes part in the
checks its good fields allow; role counts wait until every node decoded, since a
misspelt role would otherwise also show up as a missing server.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Any

from builder.site.model import REQUIRED_TUTOR_PLUGINS, Role
from builder.typed_yaml.decode import Decoder

_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")


def check_nodes(decoder: Decoder) -> None:
    paths = [f"nodes[{index}]" for index in range(decoder.lengths.get("nodes", 0))]
    _check_unique(decoder, paths, "name", "node name", str)
    _check_unique(decoder, paths, "public_ipv6", "address", lambda interface: str(interface.ip))
    for path in paths:
        _check_gateway(decoder, path)
        _check_ssh_keys(decoder, path)
    if "nodes" in decoder.values:
        _check_roles(decoder, [decoder.values[f"{path}.role"] for path in paths])


def _check_unique(
    decoder: Decoder, paths: list[str], key: str, what: str, normal: type[str] | Callable[[Any], str]
) -> None:
    first_line: dict[str, int] = {}
    for path in paths:
        key_path = f"{path}.{key}"
        if key_path not in decoder.values:
            continue
        value, line = normal(decoder.values[key_path]), decoder.lines[key_path]
        if value in first_line:
            decoder.report(line, key_path, f"duplicate {what} {value!r} (first at line {first_line[value]})")
        else:
            first_line[value] = line


def _check_gateway(decoder: Decoder, path: str) -> None:
    interface = decoder.values.get(f"{path}.public_ipv6")
    gateway = decoder.values.get(f"{path}.gateway")
    if interface is None or gateway is None:
        return
    if gateway in interface.network or gateway in _LINK_LOCAL:
        return
    decoder.report(
        decoder.lines[f"{path}.gateway"],
        f"{path}.gateway",
        f"{gateway} is neither inside {interface.network} nor link-local",
        "a node can only reach a gateway on its own link",
    )


def _check_ssh_keys(decoder: Decoder, path: str) -> None:
    """The same key twice in one node's list is harmless to sshd but is most often a key
    pasted where another was meant; comments do not make keys differ."""
    first_line: dict[tuple[str, ...], int] = {}
    for index in range(decoder.lengths.get(f"{path}.ssh_authorized_keys", 0)):
        key_path = f"{path}.ssh_authorized_keys[{index}]"
        if key_path not in decoder.values:
            continue
        key, line = tuple(decoder.values[key_path].split()[:2]), decoder.lines[key_path]
        if key in first_line:
            decoder.warn(line, key_path, f"the same key as line {first_line[key]}", "was another key meant?")
        else:
            first_line[key] = line


def _check_roles(decoder: Decoder, roles: list[Role]) -> None:
    line = decoder.lines["nodes"]
    counts = Counter(roles)
    servers = counts[Role.SERVER]
    if servers < 3 or servers % 2 == 0:
        decoder.report(
            line,
            "nodes",
            f"{servers} server node{'s' * (servers != 1)}; embedded etcd needs an odd number, at least 3",
            "etcd keeps a quorum only with 3, 5 or 7 members",
        )
    if counts[Role.BACKUP] != 1:
        decoder.report(
            line, "nodes", f"{counts[Role.BACKUP]} backup nodes; exactly one node needs role 'backup'"
        )


def check_hosts(decoder: Decoder) -> None:
    """The LMS, Studio and MFE hosts must lie in the site's zone, and differ."""
    domain = decoder.values.get("domain")
    keys = ("lms_host", "studio_host", "mfe_host")
    hosts = {key: decoder.values[key] for key in keys if decoder.values.get(key) is not None}
    if domain is None:
        return
    for key, host in hosts.items():
        if host != domain and not host.endswith("." + domain):
            decoder.report(
                decoder.lines[key],
                key,
                f"{host!r} is not inside the domain {domain!r}",
                "the DNS zone meshseed writes covers only the domain",
            )
    first: dict[str, str] = {}
    for key, host in hosts.items():
        if host in first:
            decoder.report(decoder.lines[key], key, f"the same host as {first[host]}; each needs its own")
        first.setdefault(host, key)


def check_tutor_plugins(decoder: Decoder) -> None:
    """Each plugin once, and the ones a working LMS needs."""
    plugins = decoder.values.get("tutor_plugins")
    if plugins is None:
        return
    line = decoder.lines["tutor_plugins"]
    for name, count in Counter(plugins).items():
        if count > 1:
            decoder.report(line, "tutor_plugins", f"{name!r} is named {count} times")
    for name in REQUIRED_TUTOR_PLUGINS:
        if name not in plugins:
            decoder.report(
                line,
                "tutor_plugins",
                f"{name!r} is missing",
                "the courseware and Studio's authoring pages exist only as micro-frontends",
            )
