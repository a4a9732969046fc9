"""Open edX with its Tutor plugins (MFEs, forum): workloads, hosts and URLs as a browser
needs them, secrets derived, and a build that refuses a URL nothing serves."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from builder.cli import main
from builder.cluster.component import Component, Rendering
from builder.errors import MeshseedError
from builder.manifests import registry
from builder.render.tutor import full_config
from tests.conftest import EXAMPLE_SITE, REPO, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.integration.generated import Documents, container, every, manifests, named
from tests.pinned import write_test_lock

__all__ = ["manifests"]  # a fixture
APPS = "apps.learn.campus.example.org"


def test_the_mfe_server_runs_like_the_web_apps(manifests: dict[str, Documents]) -> None:
    docs = every(manifests)
    deployment = named(docs, "Deployment", "mfe")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]
    assert named(docs, "PodDisruptionBudget", "mfe")["spec"]["maxUnavailable"] == 1
    mfe = container(manifests, "mfe")
    assert mfe["image"].startswith("docker.io/overhangio/openedx-mfe@sha256:")
    assert mfe["securityContext"]["readOnlyRootFilesystem"] is True
    assert mfe["readinessProbe"] == {"tcpSocket": {"port": 8002}, "periodSeconds": 10}
    assert mfe["resources"]["limits"]["memory"] == "256Mi"
    # Reached through the edge only: no NodePort on the nodes' public addresses.
    service = named(docs, "Service", "mfe")
    assert service["spec"]["type"] == "ClusterIP"
    assert ":8002 {" in named(docs, "ConfigMap", "mfe-caddy-config")["data"]["Caddyfile"]


def test_the_plugins_settings_and_init_tasks_are_rendered(manifests: dict[str, Documents]) -> None:
    docs = every(manifests)
    lms = named(docs, "Secret", "openedx-settings-lms")["stringData"]
    settings = "\n".join(lms.values())
    assert f'LEARNING_MICROFRONTEND_URL = "https://{APPS}/learning"' in settings
    assert 'FEATURES["ENABLE_DISCUSSION_SERVICE"] = True' in settings
    scripts = named(docs, "Secret", "openedx-init")["stringData"]
    tasks = "\n".join(scripts[name] for name in sorted(scripts))
    assert "./manage.py lms initialize_forum_indices" in tasks
    assert "discussions.enable_discussions_mfe" in tasks
    # Tutor's tasks first, the plugins' after, the first admin last.
    assert scripts["0-mysql.sh"].strip()
    assert "manage_user --superuser" in scripts[max(scripts, key=lambda n: int(n.split("-")[0]))]


def test_every_browser_host_is_routed_and_certified(manifests: dict[str, Documents]) -> None:
    edge = named(every(manifests), "ConfigMap", "caddy-config")["data"]["edge.Caddyfile"]
    for host, upstream in (
        (APPS, "mfe.openedx.svc.cluster.local:8002"),
        ("preview.learn.campus.example.org", "lms.openedx.svc.cluster.local:8000"),
        ("meilisearch.learn.campus.example.org", "meilisearch.openedx.svc.cluster.local:7700"),
    ):
        block = edge.split(f"host {host}\n", 1)[1].split("}", 1)[0]
        assert f"reverse_proxy {upstream}" in block, host
    policies = every({"p": manifests["network-policies"]})
    mfe_in = named(
        [d for d in policies if d["metadata"]["namespace"] == "openedx"], "NetworkPolicy", "mfe-ingress"
    )
    assert mfe_in["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8002}]


def test_plugin_secrets_are_derived(tmp_path: Path) -> None:
    def secrets_with(key: bytes, name: str) -> str:
        root = tmp_path / name
        root.mkdir()
        shutil.copy(EXAMPLE_SITE, root / "site.yaml")
        write_test_lock(root)
        key_file = root / "master.key"
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        result = meshseed("build", cwd=root, master_key=key_file)
        assert result.returncode == 0, result.stderr
        return (root / "dist" / "manifests" / "openedx-secrets.yaml").read_text()

    first, again = secrets_with(TEST_MASTER_KEY, "a"), secrets_with(TEST_MASTER_KEY, "b")
    other = secrets_with(bytes(reversed(TEST_MASTER_KEY)), "c")
    assert first == again != other


def test_a_plugin_that_would_invent_a_secret_is_refused() -> None:
    from tutor import hooks  # noqa: PLC0415 - Tutor's hooks, as a plugin would use them

    context = "app:meshseed-test"
    with hooks.Contexts.app("meshseed-test").enter():
        hooks.Filters.CONFIG_UNIQUE.add_item(("TEST_PLUGIN_SECRET", "{{ 24|random_string }}"))
    try:
        # Every key Tutor knows but TEST_PLUGIN_SECRET is given: only the plugin's is named.
        from tutor import config as tutor_config  # noqa: PLC0415

        given = {key: "x" for key in tutor_config.get_base() if key != "TEST_PLUGIN_SECRET"}
        with pytest.raises(MeshseedError, match=r"would invent random values for TEST_PLUGIN_SECRET;"):
            full_config(given)
    finally:
        hooks.clear_all(context=context)


class Stray(Component):
    """Hands a browser a URL on a host of the site that nothing serves."""

    name = "stray"
    manifests: ClassVar[tuple[str, ...]] = ()

    def documents(self, rendered: Rendering) -> dict[str, list[dict[str, Any]]]:
        data: Mapping[str, str] = {"settings.py": 'HELP_URL = "https://help.campus.example.org/faq"\n'}
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "stray", "namespace": "openedx"},
            "data": dict(data),
        }
        return {"stray": [config]}


def test_the_build_refuses_a_url_nothing_serves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(EXAMPLE_SITE, tmp_path / "site.yaml")
    write_test_lock(tmp_path)
    key = tmp_path / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch, registry.registered(Stray()):
        patch.chdir(tmp_path)
        status = main(["build", "--store", str(tmp_path / "store"), "--master-key", str(key)])
    error = capsys.readouterr().err
    assert status == 1, error
    assert (
        "https://help.campus.example.org/faq: no DNS record, no edge route, no certificate "
        "for help.campus.example.org"
    ) in error
    assert not (tmp_path / "dist").exists()
    assert yaml.safe_load((tmp_path / "site.yaml").read_text())["lms_host"] == "learn.campus.example.org"


def _project(root: Path, *, site: str, upstream: str) -> Path:
    """A project with this site.yaml and upstream.yaml, pinned with test values."""
    root.mkdir()
    (root / "site.yaml").write_text(site)
    write_test_lock(root, upstream=upstream)
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    return key


EXAMPLE = EXAMPLE_SITE.read_text()
UPSTREAM = (REPO / "images" / "upstream.yaml").read_text()
WITHOUT_INDIGO = EXAMPLE.replace("nameservers:", "tutor_plugins: [forum, mfe]\nnameservers:", 1)


def test_a_plugin_is_enabled_by_configuration_alone(tmp_path: Path) -> None:
    """The theme off in site.yaml and the plain images pinned: no code changes, and the
    build renders without indigo's settings, init task or images."""
    plain = UPSTREAM.replace(":22.0.3-indigo", ":22.0.3").replace(":22.0.0-indigo", ":22.0.0")
    key = _project(tmp_path / "plain", site=WITHOUT_INDIGO, upstream=plain)
    result = meshseed("build", cwd=tmp_path / "plain", master_key=key)
    assert result.returncode == 0, result.stderr
    manifests_dir = tmp_path / "plain" / "dist" / "manifests"
    secrets = manifests_dir.joinpath("openedx-secrets.yaml").read_text()
    assert "indigo" not in secrets
    assert "-indigo" not in manifests_dir.joinpath("openedx.yaml").read_text()
    # With the theme (the default), its init task and settings are there.
    key = _project(tmp_path / "themed", site=EXAMPLE, upstream=UPSTREAM)
    result = meshseed("build", cwd=tmp_path / "themed", master_key=key)
    assert result.returncode == 0, result.stderr
    themed = (tmp_path / "themed" / "dist" / "manifests" / "openedx-secrets.yaml").read_text()
    init = next(d for d in yaml.safe_load_all(themed) if d["metadata"]["name"] == "openedx-init")
    assert any("theme_dir_name='indigo'" in script for script in init["stringData"].values())


def test_an_image_that_does_not_match_the_plugins_is_refused(tmp_path: Path) -> None:
    """The theme on, but the unthemed openedx image pinned: exit 2, naming the setting."""
    plain = UPSTREAM.replace(":22.0.3-indigo", ":22.0.3")
    key = _project(tmp_path / "p", site=EXAMPLE, upstream=plain)
    result = meshseed("build", cwd=tmp_path / "p", master_key=key)
    assert result.returncode == 2, result.stderr
    assert (
        "DOCKER_IMAGE_OPENEDX: pinned docker.io/overhangio/openedx:22.0.3, "
        "Tutor would run docker.io/overhangio/openedx:22.0.3-indigo"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p" / "dist").exists()


def test_a_plugin_image_without_a_pin_is_refused(tmp_path: Path) -> None:
    """The mfe image's entry left out of Tutor's settings: the workload would run by tag."""
    unmarked = UPSTREAM.replace("    tutor: MFE_DOCKER_IMAGE\n", "")
    key = _project(tmp_path / "p", site=EXAMPLE, upstream=unmarked)
    result = meshseed("build", cwd=tmp_path / "p", master_key=key)
    assert result.returncode == 2, result.stderr
    assert "runs images that images.lock does not pin" in result.stderr
    assert "mfe: docker.io/overhangio/openedx-mfe:22.0.0-indigo (MFE_DOCKER_IMAGE)" in result.stderr


def test_a_plugin_that_is_not_installed_is_refused(tmp_path: Path) -> None:
    site = EXAMPLE.replace("nameservers:", "tutor_plugins: [forum, indigo, mfe, notes]\nnameservers:", 1)
    key = _project(tmp_path / "p", site=site, upstream=UPSTREAM)
    result = meshseed("build", cwd=tmp_path / "p", master_key=key)
    assert result.returncode == 2, result.stderr
    assert "tutor_plugins: notes is not installed" in result.stderr
