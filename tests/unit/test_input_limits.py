"""Input limits and the command line's edges: oversized and over-nested site files are bad
input (exit 2, never a traceback), duplicate SSH keys are flagged, and options are never
guessed from a prefix."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import build_parser, main
from builder.site.load import MAX_SITE_BYTES
from builder.typed_yaml.document import MAX_DEPTH
from tests.unit.sites import KEY, VALID

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_a_site_over_1_mib_is_refused(tmp_path: Path, capsys: Capture) -> None:
    site = tmp_path / "site.yaml"
    padding = "# " + "x" * 78 + "\n"
    site.write_text(VALID + padding * ((MAX_SITE_BYTES - len(VALID)) // len(padding)))
    assert site.stat().st_size <= MAX_SITE_BYTES
    assert run(capsys, "validate", str(site))[0] == 0
    site.write_text(site.read_text() + padding)
    assert site.stat().st_size > MAX_SITE_BYTES
    assert run(capsys, "validate", str(site)) == (
        2,
        "",
        f"error: {site}: larger than a site file may be (1 MiB)\n",
    )


def test_a_device_as_site_is_refused_without_reading_it_all() -> None:
    # In a child with capped memory: a reader that reads everything fails there, not here.
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "builder", "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_memory,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: /dev/zero: larger than a site file may be (1 MiB)\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # Flow style: libyaml gives up at 1000 levels, the pure-Python composer recursed.
        ("cluster: " + "[" * 100_000 + "]" * 100_000 + "\n", 1),
        ("cluster: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", 1),
        # Block style: every level on its own line.
        ("cluster:\n" + "".join("  " * depth + "- \n" for depth in range(1, 200)), MAX_DEPTH + 1),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_bad_input_not_a_recursion_error(
    tmp_path: Path, capsys: Capture, text: str, line: int
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    assert run(capsys, "validate", str(site)) == (
        2,
        "",
        f"{site}:{line}: lists and mappings nest more than {MAX_DEPTH} deep\nerror: {site}: nested too deeply\n",
    )


def test_nesting_within_the_limit_is_judged_by_the_model(tmp_path: Path, capsys: Capture) -> None:
    site = tmp_path / "site.yaml"
    # The top-level mapping is the first level.
    site.write_text("cluster: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    status, _, err = run(capsys, "validate", str(site))
    assert status == 2
    assert f"{site}:1: cluster: expected a string, got a list" in err


def test_a_key_twice_in_one_nodes_list_is_warned_about(tmp_path: Path, capsys: Capture) -> None:
    site = tmp_path / "site.yaml"
    other_comment = KEY.rsplit(" ", 1)[0] + " someone-else@example.org"
    # Node 0's keys are on line 10; its second entry repeats the first with another comment.
    site.write_text(VALID.replace(f"[{KEY}]", f"[{KEY}, {other_comment}]", 1))
    status, _, err = run(capsys, "validate", str(site))
    assert status == 0
    assert err == (
        f"warning: {site}:10: nodes[0].ssh_authorized_keys[1]: the same key as line 10 "
        "(was another key meant?)\n"
    )
    # The same key on two nodes is normal (one admin, many machines): no warning.
    site.write_text(VALID)
    assert run(capsys, "validate", str(site))[2] == ""


def parsers(
    parser: argparse.ArgumentParser, name: str = "meshseed"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from parsers(sub, f"{name} {command}")


def test_no_option_is_taken_from_a_prefix() -> None:
    for name, parser in parsers(build_parser()):
        assert parser.allow_abbrev is False, name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--rep"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nodes", "--out", "x"])


def test_plan_takes_builds_options() -> None:
    args = build_parser().parse_args(["plan", "--images", "--airgap", "--bundle-compression", "none"])
    assert (args.images, args.airgap, args.bundle_compression, args.images_dir) == (True, True, "none", None)
    build_options = {
        o for a in parsers(build_parser()) if a[0] == "meshseed build" for o in a[1]._option_string_actions
    }
    plan_options = {
        o for a in parsers(build_parser()) if a[0] == "meshseed plan" for o in a[1]._option_string_actions
    }
    # What plan lacks only changes how a build runs or reports, not what it makes.
    assert build_options - plan_options == {"-o", "--output", "-j", "--jobs", "--repair", "--check"}


def test_help_states_the_defaults_of_jobs_and_store() -> None:
    helps = dict(parsers(build_parser()))
    text = " ".join(helps["meshseed build"].format_help().split())
    assert "-j N, --jobs N default: the CPU count" in text
    assert "--store DIR the store (default: .meshseed/store next to the site file)" in text
    for command in ("meshseed plan", "meshseed fetch", "meshseed store gc", "meshseed publish"):
        assert "--store DIR the store (default: .meshseed/store" in " ".join(
            helps[command].format_help().split()
        )


def test_master_key_is_offered_only_where_secrets_are_read() -> None:
    offered = {
        name for name, parser in parsers(build_parser()) if "--master-key" in parser._option_string_actions
    }
    assert offered == {
        "meshseed nodes",
        "meshseed secret",
        "meshseed known-hosts",
        "meshseed build",
        "meshseed plan",
        "meshseed ha",
        "meshseed keys init",
        "meshseed backup pull",
        "meshseed replace",  # rebuilds the seeds
        "meshseed apply",  # the nodes' derived host keys
    }
