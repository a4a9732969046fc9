"""The meshseed command line: output, exit status and what it never prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import build_parser, main
from builder.secrets import Purpose, SecretDeriver
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.unit.sites import VALID

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_validate_ok(capsys: Capture) -> None:
    assert run(capsys, "validate", str(EXAMPLE_SITE)) == (
        0,
        f"{EXAMPLE_SITE}: ok (cluster campus: 3 servers, 0 agents, 1 backup)\n",
        "",
    )


def test_validate_reports_and_exits_2(tmp_path: Path, capsys: Capture) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(VALID.replace("role: server", "role: sever", 1))
    status, out, err = run(capsys, "validate", str(site))
    assert (status, out) == (2, "")
    assert err == (
        f"{site}:7: nodes[0].role: 'sever' is not one of server, agent, backup (did you mean 'server'?)\n"
        f"error: {site}: 1 problem; nothing was built\n"
    )


def test_default_site_is_site_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, "validate")
    assert status == 2
    assert err == "error: site.yaml: no such site file (pass the path of a site.yaml)\n"
    shutil.copy(EXAMPLE_SITE, tmp_path / "site.yaml")
    assert run(capsys, "validate")[0] == 0


def test_schema_is_canonical_json(capsys: Capture) -> None:
    status, out, _ = run(capsys, "schema")
    assert status == 0
    schema = json.loads(out)
    assert schema["additionalProperties"] is False
    assert out == json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_nodes_json(master_key_file: Path, capsys: Capture) -> None:
    status, out, err = run(capsys, "nodes", str(EXAMPLE_SITE), "--json", "--master-key", str(master_key_file))
    assert (status, err) == (0, "")
    nodes = json.loads(out)
    assert [n["name"] for n in nodes] == ["edx1", "edx2", "edx3", "vault"]
    assert all(
        sorted(n)
        == ["mycelium_public_key", "name", "overlay_address", "overlay_subnet", "public_ipv6", "role"]
        for n in nodes
    )
    assert nodes[0] == {
        "name": "edx1",
        "role": "server",
        "public_ipv6": "2001:db8:10::11",
        "mycelium_public_key": "baa69a3bf8fc037989f5e5227a7777010331ba35b42baff4c1ef70c4509f1865",
        "overlay_address": "444:4ee1:1aa2:3524:a8c9:4038:adb8:fbc1",
        "overlay_subnet": "444:4ee1:1aa2:3524::/64",
    }
    assert run(capsys, "nodes", str(EXAMPLE_SITE), "--json", "--master-key", str(master_key_file))[1] == out


def test_nodes_output_file_and_no_secret_anywhere(
    tmp_path: Path, master_key_file: Path, capsys: Capture
) -> None:
    target = tmp_path / "dist" / "nodes.json"
    status, out, err = run(
        capsys, "nodes", str(EXAMPLE_SITE), "-o", str(target), "--master-key", str(master_key_file)
    )
    assert status == 0
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    written = target.read_text()
    for name in ("edx1", "edx2", "edx3", "vault"):
        assert deriver.derive(Purpose.MYCELIUM_KEY, name).text not in written + out + err
    assert deriver.derive(Purpose.K3S_TOKEN).text not in written + out + err
    table = run(capsys, "nodes", str(EXAMPLE_SITE), "--master-key", str(master_key_file))[1]
    assert table.splitlines()[0].split() == ["name", "role", "public_ipv6", "overlay_address"]
    assert "444:4ee1:1aa2:3524:a8c9:4038:adb8:fbc1" in table


def test_secret_is_printed_only_when_named(master_key_file: Path, capsys: Capture) -> None:
    key = ["--master-key", str(master_key_file)]
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    assert run(capsys, "secret", "k3s-token", str(EXAMPLE_SITE), *key) == (
        0,
        deriver.derive(Purpose.K3S_TOKEN).text + "\n",
        "",
    )
    assert run(capsys, "secret", "mycelium-key", str(EXAMPLE_SITE), "--node", "vault", *key)[1] == (
        deriver.derive(Purpose.MYCELIUM_KEY, "vault").text + "\n"
    )
    status, out, err = run(capsys, "secret", "mycelium-key", str(EXAMPLE_SITE), *key)
    assert (status, out) == (2, "")
    assert err == "error: mycelium-key is a per-node secret (name the node with --node)\n"
    status, _, err = run(capsys, "secret", "mycelium-key", str(EXAMPLE_SITE), "--node", "nope", *key)
    assert (status, err) == (2, f"error: {EXAMPLE_SITE}: no node named 'nope'\n")


def test_bad_master_key_exits_2(tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 8)
    short.chmod(0o600)
    monkeypatch.setenv("MESHSEED_MASTER_KEY_FILE", str(short))
    status, out, err = run(capsys, "nodes", str(EXAMPLE_SITE))
    assert (status, out) == (2, "")
    assert "exactly 32 bytes, this file has 8" in err
    assert "Traceback" not in err


def test_internal_errors_are_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("builder.cli.load_site", broken)
    status, _, err = run(capsys, "validate")
    assert (status, err) == (1, "error: internal error: RuntimeError: boom (rerun with --debug)\n")
    with pytest.raises(RuntimeError):
        main(["validate", "--debug"])


def test_usage_errors_exit_2(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2


def test_console_script_prints_the_four_nodes(master_key_file: Path) -> None:
    script = Path(sys.executable).with_name("meshseed")
    result = subprocess.run(
        [str(script), "nodes", "--json", "--master-key", str(master_key_file)],
        cwd=EXAMPLE_SITE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    nodes = json.loads(result.stdout)
    assert [(n["name"], n["role"]) for n in nodes] == [
        ("edx1", "server"),
        ("edx2", "server"),
        ("edx3", "server"),
        ("vault", "backup"),
    ]
    assert all(n["overlay_address"].startswith(("4", "5")) for n in nodes)


def test_common_options_work_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--debug", "validate"]).debug is True
    assert parser.parse_args(["validate", "--debug"]).debug is True
    assert parser.parse_args(["validate"]).debug is False
    assert parser.parse_args(["nodes", "--master-key", "k"]).master_key == Path("k")
