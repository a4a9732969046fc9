"""Whatever bytes come in, loading a site either succeeds or fails with a located message.

"Located" is checked, not assumed: every problem's line and key path must be a place that
exists in the YAML that was read (worked out here from PyYAML's own node tree), and a
value broken on purpose must be reported at exactly its own line and key path.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import ExitStatus, MeshseedError
from builder.site.load import parse_site
from tests.unit.sites import HEADER, VALID

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
Located = set[tuple[str, int]]


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def places(node: yaml.Node, path: str, found: Located, depth: int = 0) -> Located:
    """Every (key path, line) a problem may name: each node's own line, and for mapping
    entries also their key's line (a block value starts below its key)."""
    found.add((path, line_of(node)))
    if depth > 30:  # an alias may make the tree recursive
        return found
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found.add((path, line_of(key)))  # a key that is not a string is reported on its mapping
            if isinstance(key, yaml.ScalarNode):
                child = f"{path}.{key.value}" if path else str(key.value)
                found.add((child, line_of(key)))
                places(value, child, found, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            places(item, f"{path}[{index}]", found, depth + 1)
    return found


def problems_of(text: str) -> list[tuple[str, int]]:
    """Load `text`; [] if it is a valid site, else every problem as (key path, line)."""
    try:
        parse_site(text, Path("site.yaml"))
    except MeshseedError as error:
        assert error.status is ExitStatus.BAD_INPUT
        assert error.message.startswith("site.yaml: ")
        assert all(problem.file == "site.yaml" for problem in error.problems)
        return [(problem.path, problem.line) for problem in error.problems]
    return []


def assert_loads_or_reports(text: str) -> None:
    located = problems_of(text)
    try:
        # The loader reads with libyaml where it can, which accepts a little more.
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        # Not YAML (or not one document): one problem for the whole file, at a line of it.
        assert all(path == "" for path, _ in located)
        assert all(0 <= line <= text.count("\n") + 2 for _, line in located)
        return
    if root is None:
        assert located == []
        return
    assert set(located) <= places(root, "", set())


@given(documents)
def test_any_yaml_document(document: object) -> None:
    assert_loads_or_reports(yaml.safe_dump(document))


@given(documents)
def test_any_yaml_document_in_flow_style(document: object) -> None:
    assert_loads_or_reports(yaml.safe_dump(document, default_flow_style=True, width=30))


@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    assert_loads_or_reports(text)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.text(min_size=1, max_size=3))
def test_any_small_edit_of_a_valid_site(position: int, insertion: str) -> None:
    assert_loads_or_reports(VALID[:position] + insertion + VALID[position + 1 :])


NODE_FIELDS = ["name", "role", "public_ipv6", "gateway", "ssh_authorized_keys"]
TOP_FIELDS = ["cluster", "domain", "lms_host", "studio_host"]
# Flow values of a type no field of that kind takes: never a string for a string field,
# never a list for the list of keys.
NOT_A_STRING = st.sampled_from(["[1, 2]", "{a: b}", "5", "-3", "true", "null", "~", "1.5", "[]", "{}"])
NOT_A_LIST = st.sampled_from(["{a: b}", "5", "true", "null", "ssh-ed25519 AAAA", "''"])


def replace_value(text: str, line: int, value: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = re.sub(r": .*", f": {value}", lines[line - 1], count=1)
    return "".join(lines)


@settings(max_examples=200)
@given(st.integers(0, 3), st.integers(0, len(NODE_FIELDS) - 1), st.data())
def test_a_broken_node_value_is_reported_at_its_line_and_key_path(
    node: int, field: int, data: st.DataObject
) -> None:
    name = NODE_FIELDS[field]
    value = data.draw(NOT_A_LIST if name == "ssh_authorized_keys" else NOT_A_STRING)
    line = HEADER.count("\n") + 1 + 5 * node + field
    assert VALID.splitlines()[line - 1].lstrip(" -").startswith(f"{name}: ")
    problems = problems_of(replace_value(VALID, line, value))
    assert (f"nodes[{node}].{name}", line) in problems
    # Anything else reported follows from the broken value: its node, or the node list.
    assert {path for path, _ in problems} <= {f"nodes[{node}].{name}", "nodes"}


@settings(max_examples=100)
@given(st.integers(0, len(TOP_FIELDS) - 1), NOT_A_STRING)
def test_a_broken_top_level_value_is_reported_at_its_line_and_key(field: int, value: str) -> None:
    problems = problems_of(replace_value(VALID, field + 1, value))
    assert problems == [(TOP_FIELDS[field], field + 1)]
