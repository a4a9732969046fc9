"""The site model's own promises: frozen values, documented fields, retention minimums,
where a site came from, and the decoder's treatment of values that did not decode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from builder.errors import MeshseedError
from builder.site.load import load_site, parse_site
from builder.site.model import Backups, Downloads, Node, Retention, Site
from builder.site.scalars import parse_dns_name, parse_ssh_public_key
from builder.site.schema import site_schema
from builder.typed_yaml import document
from builder.typed_yaml.decode import Decoder
from builder.typed_yaml.document import compose, decode_document
from builder.typed_yaml.scalars import Scalar
from tests.unit.sites import KEY, VALID


def test_model_values_are_frozen() -> None:
    site = parse_site(VALID, Path("site.yaml"))
    values: list[tuple[object, str]] = [
        (site, "cluster"),
        (site.nodes[0], "name"),
        (site.backups, "retention"),
        (site.backups.retention, "daily"),
        (site.downloads, "nat64"),
        (Scalar(str, {}), "schema"),
    ]
    assert {type(value) for value, _ in values} == {Site, Node, Backups, Retention, Downloads, Scalar}
    for value, name in values:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)


def test_every_field_of_the_schema_is_documented() -> None:
    schema = site_schema()
    objects = {"site": schema, **schema["$defs"]}
    undocumented = [
        f"{name}.{key}"
        for name, definition in objects.items()
        for key, prop in definition["properties"].items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert schema["$defs"]["downloads"]["properties"]["mirror"]["format"] == "uri"
    assert schema["properties"]["resolvers"]["minItems"] == 1


@pytest.mark.parametrize("key", ["daily", "weekly", "monthly"])
def test_each_retention_count_may_be_zero_but_not_negative(key: str) -> None:
    zero = decode_document(f"{key}: 0\n", Path("r.yaml"), Retention, what="r", empty_hint="h")
    assert getattr(zero, key) == 0
    with pytest.raises(MeshseedError) as caught:
        decode_document(f"{key}: -1\n", Path("r.yaml"), Retention, what="r", empty_hint="h")
    assert [str(p) for p in caught.value.problems] == [f"r.yaml:1: {key}: must be at least 0, not -1"]


def test_a_site_remembers_its_file_but_compares_by_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for path in (first, second):
        path.write_text(VALID)
    loaded = load_site(first)
    assert loaded.source == first
    assert loaded == load_site(second)


def test_two_labels_make_a_dns_name() -> None:
    assert parse_dns_name("example.org") == "example.org"
    with pytest.raises(ValueError, match="is not a valid DNS name"):
        parse_dns_name("org")


def test_ssh_key_data_must_be_strict_base64() -> None:
    key_type, blob, comment = KEY.split()
    damaged = f"{key_type} {blob[:20]}*{blob[20:]} {comment}"
    with pytest.raises(ValueError, match=r"^the ssh-ed25519 key's base64 data is damaged$"):
        parse_ssh_public_key(damaged)


def test_empty_optional_lists_are_fine() -> None:
    text = VALID.replace(f"[{KEY}]\n", f"[{KEY}]\n    mycelium_peers: []\n", 1) + "nameservers: []\n"
    loaded = parse_site(text, Path("site.yaml"))
    assert (loaded.nodes[0].mycelium_peers, loaded.nameservers) == ((), ())


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two at least."""

    items: tuple[str, ...] = dataclasses.field(metadata={"min_items": 2})
    flag: bool = False
    count: int = dataclasses.field(default=0, metadata={"minimum": 0})


def test_the_decoder_leaves_out_what_did_not_decode() -> None:
    decoder = Decoder("p")
    fields = decoder.decode_fields(Pair, yaml.compose("items: [a]\nflag: 1\ncount: -2\n"), "")
    assert [str(p) for p in decoder.problems] == [
        "p:1: items: needs at least 2 items",
        "p:2: flag: expected true or false, got an integer (1)",
        "p:3: count: must be at least 0, not -2",
    ]
    assert fields == {"items": ("a",)}
    assert set(decoder.values) == {"items", "items[0]"}
    decoder = Decoder("p")
    fields = decoder.decode_fields(Pair, yaml.compose("items: [a, b]\nflag: true\ncount: x\n"), "")
    assert fields == {"items": ("a", "b"), "flag": True}
    assert "count" not in decoder.values
    assert decoder.values["flag"] is True


def test_a_yaml_error_without_a_position_names_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> None:
        raise yaml.MarkedYAMLError(problem="odd input")

    monkeypatch.setattr(document, "_compose_fast", broken)
    with pytest.raises(MeshseedError) as caught:
        compose("a: 1\n", "f.yaml", what="w", empty_hint="h")
    assert str(caught.value) == "f.yaml: not valid YAML: odd input\nf.yaml: not valid YAML"
