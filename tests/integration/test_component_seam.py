"""The component seam: a component declared in one module (this file) and one template
folder (hello_component/) reaches every part of the output without editing any other
module; and components that claim the same thing differently are refused."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from builder.cli import main
from builder.cluster.component import Cluster, Component, Namespace, Scrape, SecretSpec
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.errors import MeshseedError
from builder.manifests import registry
from builder.secrets import Recipe, Scope, SecretDeriver
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.pinned import write_test_lock
from tests.tools import require

TEMPLATES = Path(__file__).parent / "hello_component"
HELLO = Pods("hello", "hello")
TOKEN = SecretSpec("hello-token", Recipe(Scope.CLUSTER, 16, bytes.hex))
HELLO_IMAGE = """\
  - name: hello
    image: registry.example.org/hello:1.0
    roles: [server]
"""


class Hello(Component):
    """A tiny component: one Deployment that reads CouchDB, with a token and an alert."""

    name = "hello"
    images = ("hello",)
    namespaces = (Namespace("hello", restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {"hello": 8088, "hello_metrics": 9188}
    secrets: ClassVar[Mapping[str, SecretSpec]] = {"hello_token": TOKEN}
    files: ClassVar[Mapping[str, str]] = {"hello.conf": "hello.conf.j2"}
    manifests = ("hello", "hello-secrets")
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def template_dir(self) -> Path:
        return TEMPLATES

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        return {"namespace": "hello"}

    def flows(self, cluster: Cluster) -> list[Flow]:
        return [Flow(HELLO, Pods("couchdb"), (cluster.ports["couchdb"],))]

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return [Scrape(HELLO, (cluster.ports["hello_metrics"],))]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {"config_sha256": digest(files["hello.conf"])}


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def named(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    (found,) = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and namespace in (None, d["metadata"].get("namespace"))
    ]
    return found


@pytest.fixture(scope="module")
def hello_dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("seam")
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    write_test_lock(root, extra_images=HELLO_IMAGE)
    # The build runs in this process, so that the component this test registers is seen.
    with pytest.MonkeyPatch.context() as patch, registry.registered(Hello()):
        patch.chdir(root)
        status = main(["build", "--store", str(root / "store"), "--master-key", str(key)])
    assert status == 0
    yield root / "dist"


def test_the_components_manifests_carry_its_digest_and_image(hello_dist: Path) -> None:
    docs = documents(hello_dist / "manifests" / "hello.yaml")
    conf = named(docs, "ConfigMap", "hello-config")["data"]["hello.conf"]
    assert conf == 'greeting = "hello from campus"\nlisten = "[::]:8088"\n'
    deployment = named(docs, "Deployment", "hello")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["meshseed/config-sha256"] == hashlib.sha256(conf.encode()).hexdigest()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("registry.example.org/hello@sha256:")


def test_the_components_secret_is_derived_and_only_in_its_secret_file(hello_dist: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    token = SecretDeriver(TEST_MASTER_KEY, site.cluster).derive_recipe(TOKEN.purpose, TOKEN.recipe).text
    assert len(token) == 32
    secret = named(documents(hello_dist / "manifests" / "hello-secrets.yaml"), "Secret", "hello-token")
    assert secret["stringData"] == {"token": token}
    assert (hello_dist / "manifests" / "hello-secrets.yaml").stat().st_mode & 0o077 == 0
    others = [p for p in (hello_dist / "manifests").glob("*.yaml") if p.name != "hello-secrets.yaml"]
    assert others and not any(token in path.read_text() for path in others)


def test_the_components_namespace_and_flows_become_policies(hello_dist: Path) -> None:
    namespaces = documents(hello_dist / "manifests" / "namespaces.yaml")
    labels = named(namespaces, "Namespace", "hello")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    policies = documents(hello_dist / "manifests" / "network-policies.yaml")
    named(policies, "NetworkPolicy", "default-deny", "hello")
    egress = named(policies, "NetworkPolicy", "hello-egress", "hello")["spec"]["egress"]
    assert egress == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "couchdb"}}}],
            "ports": [{"protocol": "TCP", "port": 5984}],
        }
    ]
    couchdb_in = named(policies, "NetworkPolicy", "all-ingress", "couchdb")["spec"]["ingress"]
    assert any(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "hello"
        for rule in couchdb_in
    )
    # Its scrape target lets Prometheus in, on its metrics port only.
    hello_in = named(policies, "NetworkPolicy", "hello-ingress", "hello")["spec"]["ingress"]
    assert [rule["ports"] for rule in hello_in] == [[{"protocol": "TCP", "port": 9188}]]


def test_the_components_alert_and_scrape_job_reach_prometheus(hello_dist: Path, tmp_path: Path) -> None:
    monitoring = documents(hello_dist / "manifests" / "monitoring.yaml")
    data = named(monitoring, "ConfigMap", "prometheus-config")["data"]
    rules = yaml.safe_load(data["alerts.yml"])
    assert "HelloDown" in [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    config = yaml.safe_load(data["prometheus.yml"])
    assert "hello" in [job["job_name"] for job in config["scrape_configs"]]
    # And Prometheus's own checker accepts both.
    promtool = require("promtool", "prometheus")
    (tmp_path / "alerts.yml").write_text(data["alerts.yml"])
    checked = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_component_is_registered_only_while_the_block_runs() -> None:
    assert "hello" not in [component.name for component in registry.components()]


class Impostor(Component):
    name = "impostor"
    ports: ClassVar[Mapping[str, int]] = {"couchdb": 5985}


class SecondCouchDB(Component):
    name = "second-couchdb"
    manifests = ("couchdb",)


@pytest.mark.parametrize(
    ("component", "message"),
    [
        (Impostor(), r"port 'couchdb' is declared by both couchdb and impostor"),
        (SecondCouchDB(), r"manifest 'couchdb' is declared by both couchdb and second-couchdb"),
    ],
)
def test_two_components_cannot_claim_one_thing(component: Component, message: str) -> None:
    site = load_site(EXAMPLE_SITE)
    overlays = {node.name: "fd00::1" for node in site.nodes}
    with registry.registered(component), pytest.raises(MeshseedError, match=message):
        registry.gather(site, overlays, {})


def test_meshseed_secret_prints_a_components_secret(
    tmp_path: Path, master_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = load_site(EXAMPLE_SITE)
    expected = SecretDeriver(TEST_MASTER_KEY, site.cluster).derive_recipe(TOKEN.purpose, TOKEN.recipe).text
    with registry.registered(Hello()):
        status = main(["secret", "hello-token", str(EXAMPLE_SITE), "--master-key", str(master_key_file)])
    assert (status, capsys.readouterr().out) == (0, expected + "\n")
