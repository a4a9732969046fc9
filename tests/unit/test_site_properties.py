"""Whatever bytes come in, loading a site either succeeds or fails with a located message."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import ExitStatus, MeshseedError
from builder.site.load import parse_site
from tests.unit.sites import VALID

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def assert_loads_or_reports(text: str) -> None:
    try:
        parse_site(text, Path("site.yaml"))
    except MeshseedError as error:
        assert error.status is ExitStatus.BAD_INPUT
        assert all(problem.file == "site.yaml" for problem in error.problems)


@given(documents)
def test_any_yaml_document(document: object) -> None:
    assert_loads_or_reports(yaml.safe_dump(document))


@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    assert_loads_or_reports(text)


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.text(min_size=1, max_size=3))
def test_any_small_edit_of_a_valid_site(position: int, insertion: str) -> None:
    assert_loads_or_reports(VALID[:position] + insertion + VALID[position + 1 :])
