"""Manifest rendering rules that need no external tool."""

from __future__ import annotations

import ipaddress

import pytest

from builder.cluster.flows import EDGE, INTERNET, Flow, Pods, policies, to_internet
from builder.errors import MeshseedError
from builder.manifests import registry
from builder.render.manifest_rules import check_manifest
from builder.render.templates import environment, render
from builder.render.tutor import check_image_tags, config_map_generators, jwt_private_key, load_plugins
from builder.site import load_site
from builder.site.model import DEFAULT_TUTOR_PLUGINS
from tests.conftest import REPO

TEMPLATES = REPO / "cloud-init" / "manifests"


def test_a_missing_value_names_the_template_and_the_key() -> None:
    name = "couchdb/couchdb.ini.j2"
    env = environment(((name, (TEMPLATES / name).read_text()),))
    with pytest.raises(
        MeshseedError,
        match=r"cloud-init/manifests/couchdb/couchdb.ini.j2:[1-9]\d*: missing value: .*'couchdb'",
    ):
        render(env, name, {}, origin=f"cloud-init/manifests/{name}")


def test_an_image_by_tag_is_refused() -> None:
    pod = {"kind": "Deployment", "spec": {"containers": [{"image": "docker.io/library/redis:7"}]}}
    with pytest.raises(
        MeshseedError, match=r"manifests/redis.yaml: image docker.io/library/redis:7 is not pinned"
    ):
        check_manifest("redis", [pod], "", [])


def test_our_image_must_never_be_pulled_and_a_stand_in_never_passes() -> None:
    ours = "meshseed.local/backup@sha256:" + "a" * 64
    job = {"kind": "CronJob", "spec": {"containers": [{"image": ours, "imagePullPolicy": "Never"}]}}
    check_manifest("backup", [job], "", [])
    job["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    with pytest.raises(
        MeshseedError, match=rf"manifests/backup.yaml: image {ours} is ours, .*imagePullPolicy: Never"
    ):
        check_manifest("backup", [job], "", [])
    # The plan's stand-in for it is no digest: one the build failed to replace is refused.
    stand_in = {
        "kind": "CronJob",
        "spec": {"containers": [{"image": "meshseed.local/backup@built-by-meshseed"}]},
    }
    with pytest.raises(MeshseedError, match="is not pinned by digest"):
        check_manifest("backup", [stand_in], "", [])


def test_a_secret_outside_a_secret_file_is_refused() -> None:
    with pytest.raises(MeshseedError, match="a derived secret appears outside a Secret"):
        check_manifest("couchdb", [{"kind": "ConfigMap"}], "password: hunter2hunter2", ["hunter2hunter2"])
    with pytest.raises(MeshseedError, match="holds more than Secrets"):
        check_manifest("couchdb-secrets", [{"kind": "ConfigMap"}], "", [])
    with pytest.raises(MeshseedError, match="not an RFC 1123 name"):
        check_manifest("CouchDB_main", [], "", [])


def test_a_pinned_image_must_be_one_tutor_and_its_plugins_run() -> None:
    load_plugins(DEFAULT_TUTOR_PLUGINS)
    config = {"TUTOR_VERSION": "22.0.3", "DOCKER_REGISTRY": "docker.io/", "PLUGINS": ["indigo"]}
    themed = {"reference": "registry.example.org/overhangio/openedx:22.0.3-indigo", "pinned": "x"}
    # Any registry (a mirror), but the tag of the release and theme Tutor renders.
    check_image_tags(config, {"DOCKER_IMAGE_OPENEDX": themed})
    with pytest.raises(
        MeshseedError, match=r"DOCKER_IMAGE_OPENEDX: pinned .*openedx:22.0.2-indigo, Tutor would run"
    ):
        check_image_tags(config, {"DOCKER_IMAGE_OPENEDX": {**themed, "reference": "o/openedx:22.0.2-indigo"}})
    with pytest.raises(
        MeshseedError, match=r"NOTES_DOCKER_IMAGE \(o/notes:1\): neither Tutor nor the site's plugins"
    ):
        check_image_tags(config, {"NOTES_DOCKER_IMAGE": {"reference": "o/notes:1", "pinned": "x"}})


def test_the_kustomization_names_each_config_map_and_its_files() -> None:
    kustomization = """
configMapGenerator:
- name: openedx-config
  files: [apps/openedx/config/lms.env.yml, apps/openedx/config/cms.env.yml]
- name: mfe-caddy-config
  files: [plugins/mfe/apps/mfe/Caddyfile]
"""
    assert config_map_generators(kustomization) == (
        ("openedx-config", ("apps/openedx/config/lms.env.yml", "apps/openedx/config/cms.env.yml")),
        ("mfe-caddy-config", ("plugins/mfe/apps/mfe/Caddyfile",)),
    )
    assert config_map_generators("resources: []\n") == ()


def test_the_jwt_key_is_derived_not_random() -> None:
    first, again, other = jwt_private_key(b"a" * 32), jwt_private_key(b"a" * 32), jwt_private_key(b"b" * 32)
    assert first == again != other
    assert first.startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_each_flow_opens_both_ends() -> None:
    site = load_site(REPO / "site.yaml")
    overlays = {node.name: f"fd00::{index}" for index, node in enumerate(site.nodes, start=1)}
    gathered = registry.gather(site, overlays, {"mysql": "mysql@sha256:0", "mongodb": "mongo@sha256:0"})
    prefix = str(gathered.cluster.networks.prefix)
    rendered = {(p["namespace"], p["name"]): p for p in policies(list(gathered.flows))}
    edge_out = rendered["edge", "caddy-edge-egress"]["egress"]
    lms_in = rendered["openedx", "lms-ingress"]["ingress"]
    assert {
        "peers": [{"cidr": None, "except": [], "namespace": "openedx", "name": "lms"}],
        "ports": (8000,),
    } in edge_out
    assert {
        "peers": [{"cidr": None, "except": [], "namespace": "edge", "name": "caddy-edge"}],
        "ports": (8000,),
    } in lms_in
    # The internet is written out, and never includes the cluster's own prefix.
    issuer_out = rendered["edge", "caddy-issuer-egress"]["egress"]
    blocks = [ipaddress.IPv6Network(p["cidr"]) for rule in issuer_out for p in rule["peers"] if p["cidr"]]
    assert blocks == [ipaddress.IPv6Network("2000::/3")]
    assert not any(block.overlaps(ipaddress.IPv6Network(prefix)) for block in blocks)


def test_internet_egress_needs_a_reason_and_opens_the_local_edge() -> None:
    client = Pods("openedx", "lms")
    with pytest.raises(ValueError, match="reason"):
        to_internet(client, (443,), "")
    with pytest.raises(ValueError, match="reason"):
        policies([Flow(client, INTERNET, (443,))])
    assert to_internet(client, (25, 587), "mail") == [Flow(client, INTERNET, (25, 587), "mail")]
    (_, local) = to_internet(client, (443,), "probes")
    assert (local.destination, local.ports) == (EDGE, (8443,))


def test_address_ranges_are_written_out_never_any() -> None:
    """kube-router reads ::/0 as 2000::/3 + fd00::/8; every range is explicit instead."""
    site = load_site(REPO / "site.yaml")
    overlays = {node.name: f"4{index:02x}::1" for index, node in enumerate(site.nodes, start=1)}
    gathered = registry.gather(site, overlays, {"mysql": "mysql@sha256:0", "mongodb": "mongo@sha256:0"})
    blocks = [
        ipaddress.IPv6Network(peer["cidr"])
        for policy in policies(list(gathered.flows))
        for rule in policy["ingress"] + policy["egress"]
        for peer in rule["peers"]
        if peer["cidr"]
    ]
    assert blocks and all(block.prefixlen > 0 for block in blocks)
    rendered = {(p["namespace"], p["name"]): p for p in policies(list(gathered.flows))}
    edge_in = rendered["edge", "caddy-edge-ingress"]["ingress"]
    assert [peer["cidr"] for peer in edge_in[0]["peers"]] == ["2000::/3", "400::/7"]
