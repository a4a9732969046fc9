"""The JSON Schema of site.yaml agrees with the model and with the loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from builder.errors import ExitStatus, MeshseedError
from builder.site import load_site
from builder.site.model import Node, Role, Site
from builder.site.schema import site_schema
from tests.conftest import EXAMPLE_SITE


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(site_schema())


def test_schema_covers_every_model_field() -> None:
    schema = site_schema()
    site_keys = {f.name for f in dataclasses.fields(Site)} - {"source", "warnings"}
    assert set(schema["properties"]) == site_keys
    assert set(schema["$defs"]["node"]["properties"]) == {f.name for f in dataclasses.fields(Node)}
    assert schema["$defs"]["node"]["properties"]["role"]["enum"] == [r.value for r in Role]
    assert schema["$defs"]["node"]["required"] == [
        "name",
        "role",
        "public_ipv6",
        "gateway",
        "ssh_authorized_keys",
    ]


def test_example_site_validates_against_the_schema() -> None:
    document = yaml.safe_load(EXAMPLE_SITE.read_text())
    jsonschema.Draft202012Validator(site_schema()).validate(document)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda doc: doc.update(colour="blue"), "colour"),
        (lambda doc: doc["nodes"][0].update(role="sever"), "nodes[0].role"),
        (lambda doc: doc["nodes"][0].pop("gateway"), "nodes[0]"),
        (lambda doc: doc["nodes"][0].update(ssh_authorized_keys=[]), "nodes[0].ssh_authorized_keys"),
        (lambda doc: doc["nodes"][0].update(public_ipv6="2001:db8::1"), "nodes[0].public_ipv6"),
    ],
    ids=["unknown key", "bad role", "missing gateway", "no keys", "no prefix"],
)
def test_schema_rejects_what_the_loader_rejects(change: object, path: str, tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE_SITE.read_text())
    change(document)  # type: ignore[operator]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(site_schema()).validate(document)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(MeshseedError) as caught:
        load_site(site)
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert [problem.path for problem in caught.value.problems] == [path]
