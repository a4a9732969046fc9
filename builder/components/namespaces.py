"""Namespaces and NetworkPolicies: every component's namespaces and flows, rendered once."""

from __future__ import annotations

from builder.cluster.component import Component


class Namespaces(Component):
    name = "namespaces"
    # Their inputs (`namespaces`, `policies`) are gathered from every component.
    manifests = ("namespaces", "network-policies")


COMPONENT = Namespaces()
