"""Cluster manifests: checked by the real validators, pinned by golden files, scaled by size."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import MeshseedError
from builder.render.tutor import full_config
from builder.secrets import RECIPES, Purpose, SecretDeriver
from tests.conftest import EXAMPLE_SITE, REPO
from tests.integration.cli import meshseed
from tests.integration.debian_fixtures import DebRepo
from tests.integration.generated import build_example_with_backup_image
from tests.leaks import derived_values
from tests.pinned import write_test_lock
from tests.tools import require
from tests.unit.sites import site

GOLDEN = REPO / "tests" / "golden" / "example-site" / "manifests"
ADDON_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def build_site(root: Path, key: Path, text: str) -> Path:
    root.mkdir()
    (root / "site.yaml").write_text(text)
    write_test_lock(root)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    return root / "dist"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifests")
    key = root / "master.key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    return build_site(root / "site", key, EXAMPLE_SITE.read_text())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def every_document(dist: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted((dist / "manifests").glob("*.yaml")) for doc in documents(path)]


def config_map_files(dist: Path, manifest: str, name: str, out: Path) -> dict[str, Path]:
    (config,) = [
        doc
        for doc in documents(dist / "manifests" / manifest)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name
    ]
    files = {}
    for key, text in config["data"].items():
        files[key] = out / key
        files[key].write_text(text)
    return files


def kubernetes_version() -> str:
    """The Kubernetes release of the pinned k3s (v1.33.4+k3s1 -> 1.33.0)."""
    upstream = yaml.safe_load((REPO / "images" / "upstream.yaml").read_text())
    major, minor = upstream["k3s"]["version"].lstrip("v").split(".")[:2]
    return f"{major}.{minor}.0"


def kubernetes_validate(files: list[str]) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate in strict mode, against the pinned k3s's Kubernetes release."""
    program = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(program), "--strict", "-k", kubernetes_version(), *files],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_manifest_passes_kubernetes_validate_strict(example: Path) -> None:
    files = sorted(str(path) for path in (example / "manifests").glob("*.yaml"))
    assert len(files) >= 10
    result = kubernetes_validate(files)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(every_document(example))


def test_caddyfiles_pass_caddy_validate(example: Path, tmp_path: Path) -> None:
    require("caddy", "caddy")
    files = config_map_files(example, "caddy.yaml", "caddy-config", tmp_path)
    assert set(files) == {"edge.Caddyfile", "issuer.Caddyfile", "cert-sync.sh", "issuer-seed.sh"}
    for path in (files["edge.Caddyfile"], files["issuer.Caddyfile"]):
        result = subprocess.run(
            ["caddy", "validate", "--adapter", "caddyfile", "--config", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    edge = files["edge.Caddyfile"].read_text()
    # Handshakes read the pod's own copies; only the sync loop talks to the issuer.
    assert "get_certificate http http://[::1]:8445/certificate" in edge
    assert "http://caddy-issuer.edge.svc.cluster.local:8444/certificate" in files["cert-sync.sh"].read_text()
    adapted = subprocess.run(
        ["caddy", "adapt", "--adapter", "caddyfile", "--config", str(files["edge.Caddyfile"])],
        capture_output=True,
        text=True,
        check=True,
    )
    policies = json.loads(adapted.stdout)["apps"]["tls"]["automation"]["policies"]
    assert [p["get_certificate"][0]["url"] for p in policies if "get_certificate" in p] == [
        "http://[::1]:8445/certificate"
    ]
    hosts = "learn.campus.example.org, studio.campus.example.org, apps.learn.campus.example.org"
    others = "preview.learn.campus.example.org, meilisearch.learn.campus.example.org, files.learn.campus.example.org"
    assert f"{hosts}, {others} {{" in edge


def test_prometheus_config_and_rules_pass_promtool(example: Path, tmp_path: Path) -> None:
    require("promtool", "prometheus")
    files = config_map_files(example, "monitoring.yaml", "prometheus-config", tmp_path)
    # --syntax-only: the service account token and CA exist only inside the pod.
    for command in (
        ["check", "config", "--syntax-only", str(files["prometheus.yml"])],
        ["check", "rules", str(files["alerts.yml"])],
    ):
        result = subprocess.run(["promtool", *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load(files["alerts.yml"].read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == {
        "NodeDown",
        "TargetDown",
        "Watchdog",
        "CouchDBMemberMissing",
        "BackupTooOld",
        "CertificateExpiresSoon",
        "CertificateProbeFailing",
        "MongoDBMemberNotHealthy",
        "GaleraClusterSizeLow",
        "GaleraNoWriter",
        "RedisWithoutPrimary",
    }
    config = yaml.safe_load(files["prometheus.yml"].read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {
        "node",
        "k3s-apiserver",
        "k3s-kubelet",
        "couchdb",
        "caddy",
        "prometheus",
        "alertmanager",
        "redis-primary",
    } <= jobs
    # Alerts go somewhere, and the kubelets' certificates are verified.
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager.monitoring.svc.cluster.local:9093"]
    kubelet = next(job for job in config["scrape_configs"] if job["job_name"] == "k3s-kubelet")
    assert kubelet["tls_config"] == {"ca_file": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}


def test_golden_manifests_of_the_example_site(example: Path, update_golden: bool) -> None:
    public = sorted(p for p in (example / "manifests").glob("*.yaml") if not p.stem.endswith("-secrets"))
    if update_golden:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        GOLDEN.mkdir(parents=True)
        for path in public:
            shutil.copy(path, GOLDEN / path.name)
    assert [p.name for p in public] == sorted(p.name for p in GOLDEN.glob("*.yaml"))
    for path in public:
        assert path.read_text() == (GOLDEN / path.name).read_text(), (
            f"{path.name} differs from its golden file"
        )


def test_workloads_are_pinned_hardened_and_accounted(example: Path) -> None:
    docs = every_document(example)
    accounts = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceAccount"
    }
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert (doc["metadata"]["namespace"], spec["serviceAccountName"]) in accounts, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        for container in spec["containers"] + spec.get("initContainers", []):
            assert re.match(r"^[^@\s]+@sha256:[0-9a-f]{64}$", container["image"]), where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            # Init containers run to completion and may not have probes.
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and container in spec["containers"]:
                assert "readinessProbe" in container or "startupProbe" in container, where
                assert "livenessProbe" in container, where
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    deny = {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"] == {}
        and d["spec"]["policyTypes"] == ["Ingress", "Egress"]
        and "ingress" not in d["spec"]
    }
    assert (
        namespaces
        == deny
        == {
            "openedx",
            "couchdb",
            "edge",
            "media",
            "monitoring",
            "monitoring-host",
            "backup",
            "etcd-snapshots",
        }
    )


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return dict(doc["spec"]["template"]["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_manifests_scale_with_the_server_count(servers: int, tmp_path: Path, master_key_file: Path) -> None:
    dist = build_site(tmp_path / "site", master_key_file, site(servers=servers))
    docs = every_document(dist)
    couchdb = by_name(docs, "StatefulSet", "couchdb")
    assert couchdb["spec"]["replicas"] == servers
    anti = couchdb["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert (
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
    )
    ini = by_name(docs, "ConfigMap", "couchdb-config")["data"]["10-meshseed.ini"]
    seedlist = re.search(r"^seedlist = (.*)$", ini, re.MULTILINE)
    assert seedlist is not None
    assert seedlist.group(1).split(",") == [
        f"couchdb@couchdb-{i}.couchdb.couchdb.svc.cluster.local" for i in range(servers)
    ]
    assert "-proto_dist inet6_tcp" in str(couchdb)
    for name in ("lms", "cms", "lms-worker", "cms-worker"):
        deployment = by_name(docs, "Deployment", name)
        assert deployment["spec"]["replicas"] == servers
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]
        assert by_name(docs, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1
    zone = next((dist / "dns").glob("*.zone")).read_text() if (dist / "dns").exists() else ""
    if zone:
        assert len(re.findall(r"^lms\s+IN AAAA", zone, re.MULTILINE)) == servers
    names = [path.stem for path in (dist / "manifests").glob("*.yaml")]
    assert len(names) == len(set(names)) and all(ADDON_NAME.match(name) for name in names)
    images = re.findall(
        r"^\s+image: (\S+)$",
        "".join(p.read_text() for p in (dist / "manifests").glob("*.yaml")),
        re.MULTILINE,
    )
    assert images and all("@sha256:" in image for image in images)


def test_no_derived_secret_outside_secret_manifests_and_seeds(example: Path) -> None:
    key = example.parent.parent / "master.key"
    values = derived_values(key, "campus", ["edx1", "edx2", "edx3", "vault"])
    allowed = [example / "nodes", *(example / "manifests").glob("*-secrets.yaml")]
    found_in_secrets = ""
    for path in sorted(p for p in example.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if any(path == a or a in path.parents for a in allowed):
            found_in_secrets += text
            continue
        leaked = [purpose for purpose, value in zip(RECIPES, values, strict=False) if value in text]
        assert not [v for v in values if v in text], (
            f"{path.relative_to(example)} holds a derived secret {leaked}"
        )
    # The check can fail: the Secrets do hold the values it looks for.
    assert (
        SecretDeriver(key.read_bytes(), "campus").derive(Purpose.COUCHDB_ADMIN_PASSWORD).text
        in found_in_secrets
    )


def test_server_seeds_carry_the_manifests_and_the_backup_node_none(example: Path) -> None:
    manifests = {p.name: p.read_bytes() for p in (example / "manifests").glob("*.yaml")}
    for node in ("edx1", "edx2", "edx3"):
        data = yaml.safe_load((example / "nodes" / node / "user-data").read_text())
        carried = {
            Path(entry["path"]).name: gzip.decompress(base64.b64decode(entry["content"]))
            for entry in data["write_files"]
            if entry["path"].startswith("/var/lib/meshseed/manifests/")
        }
        assert carried == manifests
        modes = {
            Path(e["path"]).name: e["permissions"] for e in data["write_files"] if "manifests" in e["path"]
        }
        assert modes["couchdb-secrets.yaml"] == "0600" and modes["couchdb.yaml"] == "0644"
    vault = (example / "nodes" / "vault" / "user-data").read_text()
    assert "/var/lib/meshseed/manifests/" not in vault


def test_tutor_refuses_to_invent_a_value() -> None:
    with pytest.raises(MeshseedError, match=r"would invent random values for .*MYSQL_ROOT_PASSWORD"):
        full_config({"PLUGINS": [], "PLUGIN_INDEXES": [], "ID": "x"})


def test_with_our_backup_image_built_couchdb_is_backed_up_and_rotated(
    tmp_path: Path, deb_repo: DebRepo
) -> None:
    text = EXAMPLE_SITE.read_text() + "backups:\n  retention: {daily: 10, weekly: 5, monthly: 6}\n"
    dist = build_example_with_backup_image(tmp_path, deb_repo, text)
    docs = every_document(dist)
    couchdb = by_name(docs, "CronJob", "backup-couchdb")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = couchdb["containers"]
    assert container["image"].startswith("meshseed.local/backup@sha256:")
    assert container["imagePullPolicy"] == "Never"
    assert container["args"][:3] == ["couchdb", "--url", "http://couchdb-api.couchdb.svc.cluster.local:5984"]
    assert couchdb["nodeSelector"] == {"meshseed/role": "backup"}
    assert couchdb["tolerations"][0]["effect"] == "NoSchedule"
    rotate = by_name(docs, "CronJob", "backup-rotate")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = rotate["containers"][0]["args"]
    assert args[args.index("--daily") + 1 :] == ["10", "--weekly", "5", "--monthly", "6"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--root"] == [
        "/backups/couchdb",
        "/backups/mysql",
        "/backups/mongodb",
        "/backups/garage",
        "/backups/etcd",
    ]
    # One group owns the archive, whichever image a job runs.
    jobs = [
        d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "CronJob" and d["metadata"]["namespace"] == "backup"
    ]
    assert len(jobs) == 5
    assert {job["securityContext"]["fsGroup"] for job in jobs} == {1000}
    assert {job["securityContext"]["runAsUser"] for job in jobs} == {999, 1000}
    files = sorted(str(path) for path in (dist / "manifests").glob("backup*.yaml"))
    validated = kubernetes_validate(files)
    assert validated.returncode == 0, validated.stdout


def test_celery_concurrency_fits_the_worker_limit_and_media_private_is_writable(example: Path) -> None:
    docs = every_document(example)
    for name in ("lms-worker", "cms-worker"):
        (container,) = by_name(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        concurrency = [arg for arg in container["args"] if arg.startswith("--concurrency=")]
        assert concurrency == ["--concurrency=2"]
        assert container["resources"]["limits"]["memory"] == "2Gi"
    for name in ("lms", "cms", "lms-worker", "cms-worker"):
        spec = by_name(docs, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/openedx/media-private"]]


def test_every_namespace_states_its_pod_security_profile(example: Path) -> None:
    namespaces = [doc for doc in every_document(example) if doc["kind"] == "Namespace"]
    privileged = {}
    for namespace in namespaces:
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
        if labels["pod-security.kubernetes.io/enforce"] == "privileged":
            privileged[namespace["metadata"]["name"]] = namespace["metadata"]["annotations"][
                "meshseed/pod-security"
            ]
        else:
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Only node-exporter's namespace, the edge's hostPorts and the etcd snapshots' sender
    # (k3s's snapshots, read as root) need more, each with a reason.
    assert sorted(privileged) == ["edge", "etcd-snapshots", "monitoring-host"]
    assert "hostNetwork" in privileged["monitoring-host"] and "hostPort" in privileged["edge"]
    assert "hostPath" in privileged["etcd-snapshots"]
    # node-exporter is all that runs there.
    workloads = {
        doc["metadata"]["name"]
        for doc in every_document(example)
        if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
        and doc["metadata"]["namespace"] == "monitoring-host"
    }
    assert workloads == {"node-exporter", "node-exporter-backup"}
