"""Once the cluster exists, no seed starts another: the first server's seed joins the
running cluster after `meshseed replace` (or the operator) records `bootstrapped: true`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.plan import BuildSettings, node_plan_of
from builder.render.node import k3s_settings
from builder.replace import mark_bootstrapped
from builder.secrets import SecretDeriver
from builder.site import load_site
from tests.conftest import TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.unit.sites import site

K3S_CONFIG = "/etc/rancher/k3s/config.yaml"


def k3s_configs(path: Path) -> dict[str, dict[str, Any]]:
    """Every node's k3s config as the build renders it for the site file at `path`."""
    loaded = load_site(path)
    plan = node_plan_of(loaded, BuildSettings(SecretDeriver(TEST_MASTER_KEY, loaded.cluster), 0))
    return {node.name: k3s_settings(loaded, node, plan)["settings"] for node in loaded.nodes}


def seed_k3s_config(dist: Path, node: str) -> dict[str, Any]:
    """The k3s config a node's seed writes, read from its user-data."""
    data = yaml.safe_load((dist / "nodes" / node / "user-data").read_text())
    (entry,) = [entry for entry in data["write_files"] if entry["path"] == K3S_CONFIG]
    return dict(yaml.safe_load(entry["content"]))


def test_the_rebuilt_first_server_joins_the_second_and_nothing_bootstraps(
    tmp_path: Path, master_key_file: Path
) -> None:
    (tmp_path / "site.yaml").write_text(site(servers=3, agents=1))
    write_test_lock(tmp_path)
    first = meshseed("build", cwd=tmp_path, master_key=master_key_file)
    assert first.returncode == 0, first.stderr
    dist = tmp_path / "dist"
    before = {
        node: (dist / "nodes" / node / "user-data").read_bytes() for node in ("s1", "s2", "s3", "a1", "b1")
    }
    assert seed_k3s_config(dist, "s1")["cluster-init"] is True

    assert mark_bootstrapped(tmp_path / "site.yaml")
    again = meshseed("build", cwd=tmp_path, master_key=master_key_file)
    assert again.returncode == 0, again.stderr
    overlay = {n["name"]: n["overlay_address"] for n in json.loads((dist / "nodes.json").read_text())}
    configs = {node: seed_k3s_config(dist, node) for node in before}
    assert "cluster-init" not in configs["s1"]
    assert configs["s1"]["server"] == f"https://[{overlay['s2']}]:6443"
    for node in ("s2", "s3", "a1", "b1"):
        assert configs[node]["server"] == f"https://[{overlay['s1']}]:6443"
        assert "cluster-init" not in configs[node]
    # Only the first server's seed changed: the others' identities and settings stay.
    changed = {
        node for node, data in before.items() if (dist / "nodes" / node / "user-data").read_bytes() != data
    }
    assert changed == {"s1"}


def test_marking_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    text = "# our campus\n" + site() + "# set when the cluster came up\nbootstrapped: false  # not yet\n"
    path.write_text(text)
    path.chmod(0o640)
    assert mark_bootstrapped(path)
    assert path.read_text() == text.replace("bootstrapped: false", "bootstrapped: true")
    assert path.stat().st_mode & 0o777 == 0o640
    assert not mark_bootstrapped(path)
    assert path.read_text() == text.replace("bootstrapped: false", "bootstrapped: true")


def test_marking_a_site_without_the_key_appends_it(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    text = site().rstrip("\n")  # no final newline
    path.write_text(text)
    assert mark_bootstrapped(path)
    assert path.read_text().startswith(text + "\n")
    assert load_site(path).bootstrapped


def url_host(url: str) -> str:
    return url.split("[", 1)[1].split("]", 1)[0]


@settings(max_examples=60, deadline=None)
@given(
    servers=st.sampled_from([3, 5, 7]),
    agents=st.integers(min_value=0, max_value=2),
    replaced=st.lists(st.integers(min_value=0, max_value=99), max_size=8),
)
def test_no_sequence_of_replacements_yields_two_bootstrapping_configs(
    servers: int, agents: int, replaced: list[int]
) -> None:
    """The state changes `meshseed replace` makes, applied one after another to the site
    file, with every node's k3s config rendered as the build does after each."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "site.yaml"
        path.write_text(site(servers=servers, agents=agents))
        ever_bootstrapped: set[str] = set()
        for step in range(len(replaced) + 1):
            if step:
                names = [node.name for node in load_site(path).nodes]
                lost = names[replaced[step - 1] % len(names)]
                mark_bootstrapped(path)
            loaded = load_site(path)
            configs = k3s_configs(path)
            bootstrapping = {name for name, config in configs.items() if config.get("cluster-init")}
            assert len(bootstrapping) <= 1
            if loaded.bootstrapped:
                assert not bootstrapping, f"after replacing {lost}"
                assert "cluster-init" not in configs[lost] and configs[lost]["server"]
            ever_bootstrapped |= bootstrapping
            assert len(ever_bootstrapped) <= 1
            # Every other config joins a server other than its own node, by overlay address.
            overlay = {name: config["node-ip"] for name, config in configs.items()}
            server_addresses = {overlay[node.name] for node in loaded.servers}
            for name, config in configs.items():
                if name in bootstrapping:
                    assert "server" not in config
                    continue
                assert url_host(config["server"]) in server_addresses - {overlay[name]}
        # Bootstrapping happened, if at all, only before the first replacement.
        assert loaded.bootstrapped == bool(replaced)
