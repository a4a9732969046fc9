"""Tampering with the store must not spread: a build refuses to read a dependency whose
entry no longer matches its record, and `build --check` names every entry that differs
from a clean rebuild, including one built from a tampered input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from builder.det.jsonfmt import canonical_json
from builder.store.tree import scan, tree_digest
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed, tree_bytes
from tests.pinned import write_test_lock

PLANTED = """
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: zz-extra}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
"""


def entry_named(store: Path, suffix: str) -> Path:
    (entry,) = [p for p in store.iterdir() if p.name.endswith(suffix)]
    return entry


def rewrite_record(entry: Path) -> None:
    """What an attacker who knows the store would also do: make the record match again."""
    record_path = entry / ".entry.json"
    record = json.loads(record_path.read_text())
    entries = scan(entry, skip=frozenset({".entry.json"}))
    record["digest"] = tree_digest(entries)
    record["entries"] = [
        {"path": e.path, "mode": e.mode.value, "sha256": e.sha256, "size": e.size} for e in entries
    ]
    record_path.chmod(0o644)
    record_path.write_text(canonical_json(record, pretty=False))


def test_tampering_is_refused_and_check_names_both_entries(tmp_path: Path, master_key_file: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(EXAMPLE_SITE, work / "site.yaml")
    write_test_lock(work)

    def run(*args: str) -> tuple[int, str]:
        result = meshseed(*args, cwd=work, master_key=master_key_file)
        assert "Traceback" not in result.stderr
        return result.returncode, result.stdout + result.stderr

    assert run("build")[0] == 0
    dist = tree_bytes(work / "dist")
    store = work / ".meshseed" / "store"
    manifests = entry_named(store, "-manifests")
    victim = manifests / "namespaces.yaml"
    manifests.chmod(0o755)
    victim.chmod(0o644)
    victim.write_text(victim.read_text() + PLANTED)
    # One node's SSH key changes, so that only its seed is built again, reading the manifests.
    site = work / "site.yaml"
    site.write_text(site.read_text().replace("admin2@example.org", "admin2@example.net"))

    status, output = run("build")
    assert status == 1
    assert (
        f"error: seed-edx3: its dependency manifests cannot be trusted: store entry {manifests.name} is "
        "corrupt: namespaces.yaml changed (recorded regular sha256:"
    ) in output
    assert "(run `meshseed build --repair`)" in output
    assert tree_bytes(work / "dist") == dist
    # Only the old seed of edx3 is there: the new one was not built from the tampered entry.
    assert len(list(store.glob("*-seed-edx3"))) == 1

    status, output = run("build", "--check")
    assert status == 1, output
    assert (
        f"differs: .meshseed/store/{manifests.name}: namespaces.yaml: the store has regular sha256:" in output
    )
    new_seed = next(line for line in output.splitlines() if line.startswith("not in the store"))
    assert new_seed.endswith("-seed-edx3")
    assert "error: 1 entry of the store differ" in output
    assert tree_bytes(work / "dist") == dist

    # With the record rewritten too the entry looks whole, and the seed is built from it;
    # `store verify` cannot tell, a clean rebuild can.
    rewrite_record(manifests)
    assert run("build")[0] == 0
    assert run("store", "verify")[0] == 0
    built = json.loads((work / "dist" / "build.json").read_text())["derivations"]
    seed = next(f"{d['key']}-{d['name']}" for d in built if d["name"] == "seed-edx3")
    assert new_seed.endswith(seed)
    checked = meshseed("build", "--check", "--json", cwd=work, master_key=master_key_file)
    assert checked.returncode == 1
    report = json.loads(checked.stdout)
    assert sorted(report["differ"]) == sorted([manifests.name, seed])
    assert report["not_in_store"] == []
    # The planted binding went into the seed's user-data (and so into its ISO).
    assert [d.split(": the store has ")[0] for d in report["differ"][seed]] == ["seed.iso", "user-data"]
