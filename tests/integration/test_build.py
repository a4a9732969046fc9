"""`meshseed build` end to end: outputs, caching, SIGKILL, concurrency, corruption, disk errors."""

from __future__ import annotations

import json
import random
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import MESHSEED, environment, meshseed, tree_bytes
from tests.tools import require, unavailable
from tests.unit.sites import site

SEED_FILES = {"meta-data", "network-config", "seed.iso", "user-data"}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(EXAMPLE_SITE, work / "site.yaml")
    return work


def test_build_writes_dist_with_checksums(workdir: Path, master_key_file: Path) -> None:
    result = meshseed("build", "--json", cwd=workdir, master_key=master_key_file)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"built": 6, "cached": 0, "repaired": 0}
    dist = workdir / "dist"
    for node in ("edx1", "edx2", "edx3", "vault"):
        assert {p.name for p in (dist / "nodes" / node).iterdir()} == SEED_FILES
        assert (dist / "nodes" / node / "user-data").stat().st_mode & 0o777 == 0o600
        assert (dist / "nodes" / node / "seed.iso").stat().st_mode & 0o777 == 0o600
    assert [n["name"] for n in json.loads((dist / "nodes.json").read_text())] == [
        "edx1",
        "edx2",
        "edx3",
        "vault",
    ]
    record = json.loads((dist / "build.json").read_text())
    assert [(d["name"], d["key"], d["digest"]) for d in record["derivations"]] == [
        (d["name"], d["key"], d["digest"]) for d in summary["derivations"]
    ]
    sha256sum = require("sha256sum", "coreutils")
    check = subprocess.run(
        [sha256sum, "--check", "--strict", "SHA256SUMS"],
        cwd=dist,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (dist / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file()} - {"SHA256SUMS"}


def test_plan_then_noop_and_incremental_rebuild(workdir: Path, master_key_file: Path) -> None:
    plan = meshseed("plan", "--json", cwd=workdir, master_key=master_key_file)
    assert {row["status"] for row in json.loads(plan.stdout)} == {"build"}
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    plan = meshseed("plan", "--json", cwd=workdir, master_key=master_key_file)
    assert {row["status"] for row in json.loads(plan.stdout)} == {"cached"}
    site_file = workdir / "site.yaml"
    site_file.write_text(site_file.read_text().replace("admin2@example.org", "admin2@example.net"))
    result = meshseed("build", "--json", cwd=workdir, master_key=master_key_file)
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"built": 1, "cached": 5, "repaired": 0}
    assert [d["name"] for d in summary["derivations"] if d["status"] == "built"] == ["seed-edx3"]
    assert "admin2@example.net" in (workdir / "dist/nodes/edx3/user-data").read_text()


def test_another_outputs_staging_directory_is_left_alone(workdir: Path, master_key_file: Path) -> None:
    other = workdir / ".dist.v2.abcdefgh.new"
    other.mkdir()
    (other / "in-progress").write_text("another build's work")
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    assert (other / "in-progress").exists()


FOREIGN = "is not empty and was not made by meshseed (it has no .meshseed-dist); refusing to replace it"


def test_build_refuses_to_replace_a_foreign_directory(workdir: Path, master_key_file: Path) -> None:
    (workdir / "dist").mkdir()
    (workdir / "dist" / "thesis.tex").write_text("precious")
    result = meshseed("build", cwd=workdir, master_key=master_key_file)
    assert result.returncode == 2
    assert f"error: dist: {FOREIGN}" in result.stderr
    assert (workdir / "dist" / "thesis.tex").read_text() == "precious"


def test_a_build_json_does_not_make_a_directory_ours(workdir: Path, master_key_file: Path) -> None:
    project = workdir / "infra"
    (project / "src").mkdir(parents=True)
    files = {"build.json": '{"steps": []}\n', "main.tf": 'resource "x" "y" {}\n', "src/app.py": "print()\n"}
    for name, text in files.items():
        (project / name).write_text(text)
    result = meshseed("build", "-o", "infra", cwd=workdir, master_key=master_key_file)
    assert result.returncode == 2
    assert (
        f"error: infra: {FOREIGN} (choose another -o directory, or empty this one yourself)" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert tree_bytes(project) == {name: (0o644, text.encode()) for name, text in files.items()}
    assert [p.name for p in workdir.glob(".infra.*")] == [".infra.lock"]


def test_what_meshseed_made_it_replaces_and_marks(workdir: Path, master_key_file: Path) -> None:
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    marker = workdir / "dist" / ".meshseed-dist"
    assert marker.read_bytes().startswith(b"made by meshseed build")
    assert "  .meshseed-dist\n" in (workdir / "dist" / "SHA256SUMS").read_text()
    (workdir / "dist" / "stray").write_text("left by hand\n")
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    assert not (workdir / "dist" / "stray").exists()


def test_only_marked_or_empty_staging_leftovers_are_removed(workdir: Path, master_key_file: Path) -> None:
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    killed = workdir / ".dist.abcdefgh.new"
    shutil.copytree(workdir / "dist", killed)
    empty = workdir / ".dist.ijklmnop.old"
    empty.mkdir()
    foreign = workdir / ".dist.qrstuvwx.old"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    assert not killed.exists() and not empty.exists()
    assert (foreign / "notes.txt").read_text() == "mine\n"


def test_sigkill_at_random_moments_never_leaves_a_trusted_partial_entry(
    tmp_path: Path, master_key_file: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "site.yaml").write_text(site(servers=3, agents=56))
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "site.yaml").write_text(site(servers=3, agents=56))
    started = time.monotonic()
    assert meshseed("build", "--jobs", "2", cwd=reference, master_key=master_key_file).returncode == 0
    duration = time.monotonic() - started
    rng = random.Random(20261126)
    for _ in range(12):
        process = subprocess.Popen(
            [MESHSEED, "build", "--jobs", "2"],
            cwd=work,
            env=environment(master_key_file),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, duration))
        process.send_signal(signal.SIGKILL)
        process.wait()
        verify = meshseed("store", "verify", cwd=work, master_key=master_key_file)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    final = meshseed("build", cwd=work, master_key=master_key_file)
    assert final.returncode == 0, final.stderr
    assert tree_bytes(work / "dist") == tree_bytes(reference / "dist")
    assert list((work / ".meshseed/store/.tmp").iterdir()) == []
    assert [p.name for p in work.glob(".dist.*")] == [".dist.lock"]


def test_concurrent_builds_share_one_store(tmp_path: Path, master_key_file: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "site.yaml").write_text(site(servers=5, agents=30))
    processes = [
        subprocess.Popen(
            [MESHSEED, "build", "-o", out, "--json"],
            cwd=work,
            env=environment(master_key_file),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in ("dist-a", "dist-b", "dist-b")
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    summaries = [json.loads(out) for out, _ in outputs]
    built = sum(summary["counts"]["built"] for summary in summaries)
    assert built == len(summaries[0]["derivations"])
    assert tree_bytes(work / "dist-a") == tree_bytes(work / "dist-b")
    assert meshseed("store", "verify", cwd=work, master_key=master_key_file).returncode == 0


def test_corrupt_entry_is_reported_refused_and_repaired(workdir: Path, master_key_file: Path) -> None:
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    before = tree_bytes(workdir / "dist")
    store = workdir / ".meshseed" / "store"
    entry = next(p for p in store.iterdir() if p.name.endswith("-seed-edx2"))
    entry.chmod(0o755)
    (entry / "user-data").chmod(0o600)
    (entry / "user-data").write_text("#cloud-config\nruncmd: [evil]\n")
    verify = meshseed("store", "verify", cwd=workdir, master_key=master_key_file)
    assert verify.returncode == 1
    assert (
        f"corrupt: .meshseed/store/{entry.name}: user-data changed (recorded private sha256:" in verify.stdout
    )
    # dist/ itself is intact, so a plain rebuild leaves it alone; a new output must read the entry.
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0
    refused = meshseed("build", "-o", "dist-new", cwd=workdir, master_key=master_key_file)
    assert refused.returncode == 1
    assert f"store entry {entry.name} is corrupt: user-data has sha256:" in refused.stderr
    assert "meshseed build --repair" in refused.stderr
    assert tree_bytes(workdir / "dist") == before
    assert not (workdir / "dist-new").exists()
    repaired = meshseed("build", "--repair", "--json", cwd=workdir, master_key=master_key_file)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["counts"] == {"built": 0, "cached": 5, "repaired": 1}
    assert meshseed("store", "verify", cwd=workdir, master_key=master_key_file).returncode == 0
    assert tree_bytes(workdir / "dist") == before


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_disk_full_gives_a_clear_error_and_a_consistent_store(workdir: Path, master_key_file: Path) -> None:
    result = meshseed("build", cwd=workdir, master_key=master_key_file, preexec_fn=limit_file_size)
    assert result.returncode == 1
    assert "no space left (disk full, quota or file size limit)" in result.stderr
    assert "the store is unchanged" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "dist").exists()
    store = workdir / ".meshseed" / "store"
    assert not [p for p in store.iterdir() if "-seed-" in p.name]
    assert list((store / ".tmp").iterdir()) == []
    assert meshseed("store", "verify", cwd=workdir, master_key=master_key_file).returncode == 0
    assert meshseed("build", cwd=workdir, master_key=master_key_file).returncode == 0


def test_read_only_store_gives_a_clear_error(workdir: Path, master_key_file: Path) -> None:
    unshare = require("unshare", "util-linux")
    store = workdir / ".meshseed" / "store"
    store.mkdir(parents=True)
    script = f'mount --bind "{store}" "{store}" && mount -o remount,bind,ro "{store}" && exec "$@"'
    wrapper = (unshare, "--mount", "sh", "-c", script, "sh")
    result = meshseed("build", cwd=workdir, master_key=master_key_file, wrapper=wrapper)
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        unavailable(f"cannot make a read-only mount here: {result.stderr.strip()}")
    assert result.returncode == 1, result.stderr
    assert "read-only file system" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "dist").exists()
