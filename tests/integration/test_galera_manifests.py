"""The Galera cluster as the build renders it: members, router, Tutor's settings, TLS."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.test_manifests import build_site, documents, every_document
from tests.unit.sites import site


@pytest.fixture(scope="module", params=[3, 5, 7], ids=lambda n: f"{n}-servers")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    root = tmp_path_factory.mktemp("galera")
    key = root / "master.key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    servers = int(request.param)
    return servers, build_site(root / "site", key, site(servers=servers))


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_three_members_one_per_server_updated_one_at_a_time(built: tuple[int, Path]) -> None:
    _, dist = built
    docs = every_document(dist)
    members = named(docs, "StatefulSet", "galera")
    spec = members["spec"]
    assert spec["replicas"] == 3
    # All start together (a bootstrap waits for every member's position); an image bump
    # replaces one at a time, each once the one before is Ready (Synced) again.
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]["spec"]
    (anti,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    assert "galera-writer.sh" in str(container["readinessProbe"])
    assert named(docs, "PodDisruptionBudget", "galera")["spec"]["maxUnavailable"] == 1
    cnf = named(docs, "ConfigMap", "galera-config")["data"]["galera.cnf"]
    address = re.search(r"^wsrep_cluster_address=gcomm://(.*)$", cnf, re.MULTILINE)
    assert address is not None
    assert address.group(1).split(",") == [
        f"galera-{i}.galera.openedx.svc.cluster.local:4567" for i in range(3)
    ]
    assert "wsrep_sst_method=xtrabackup-v2" in cnf and "pxc-encrypt-cluster-traffic=ON" in cnf
    router = named(docs, "Deployment", "mysql-router")
    assert router["spec"]["replicas"] == 2
    assert "requiredDuringSchedulingIgnoredDuringExecution" in str(
        router["spec"]["template"]["spec"]["affinity"]
    )
    assert named(docs, "Service", "mysql")["spec"]["selector"] == {"app.kubernetes.io/name": "mysql"}


def test_tutor_uses_the_router_and_its_own_mysql_is_gone(built: tuple[int, Path]) -> None:
    _, dist = built
    datastores = documents(dist / "manifests" / "openedx-datastores.yaml")
    assert [d["kind"] for d in datastores if d["metadata"]["name"] == "mysql"] == []
    # Tutor's init Job reaches the writer through the router's Service.
    init = named(documents(dist / "manifests" / "openedx-secrets.yaml"), "Secret", "openedx-init")
    assert '--host "mysql.openedx.svc.cluster.local" --port 3306' in init["stringData"]["0-mysql.sh"]
    # And so do the apps (Django's DATABASES, from Tutor's MYSQL_HOST).
    config = named(documents(dist / "manifests" / "openedx-secrets.yaml"), "Secret", "openedx-config")
    lms = yaml.safe_load(config["stringData"]["lms.env.yml"])
    assert lms["DATABASES"]["default"]["HOST"] == "mysql.openedx.svc.cluster.local"


def test_the_cluster_tls_is_a_derived_ca_and_member_certificate(built: tuple[int, Path]) -> None:
    _, dist = built
    tls = named(documents(dist / "manifests" / "galera-secrets.yaml"), "Secret", "galera-tls")["stringData"]
    ca = x509.load_pem_x509_certificate(tls["ca.pem"].encode())
    member = x509.load_pem_x509_certificate(tls["member.pem"].encode())
    key = serialization.load_pem_private_key(tls["member-key.pem"].encode(), password=None)
    member.verify_directly_issued_by(ca)
    assert key.public_key() == member.public_key()
    names = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {
        f"galera-{i}.galera.openedx.svc.cluster.local" for i in range(3)
    }
    # Fixed validity: the same key gives the same bytes on any day.
    assert member.not_valid_before_utc.year == 2000 and member.not_valid_after_utc.year == 9999
    # Only the members' key: the CA's signs at build time and stays out of the cluster.
    assert sum("PRIVATE KEY-----" in value for value in tls.values()) == 1
    assert yaml.safe_dump(tls).count("BEGIN PRIVATE KEY") == 1
