"""Generate the JSON Schema of a typed-YAML document from its model, for editors."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from builder.typed_yaml.decode import public_fields
from builder.typed_yaml.scalars import JsonSchema, Scalar

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def document_schema(model: type, *, schema_id: str, title: str) -> JsonSchema:
    """The schema of a document of `model`; each model dataclass becomes one `$defs` entry."""
    defs: dict[str, JsonSchema] = {}
    root = _object_schema(model, defs)
    return {"$schema": SCHEMA_DIALECT, "$id": schema_id, "title": title, **root, "$defs": defs}


def _object_schema(cls: type, defs: dict[str, JsonSchema]) -> JsonSchema:
    hints = typing.get_type_hints(cls, include_extras=True)
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    for spec in public_fields(cls):
        prop = _type_schema(hints[spec.name], defs)
        if "min_items" in spec.metadata:
            prop["minItems"] = spec.metadata["min_items"]
        if "minimum" in spec.metadata:
            prop["minimum"] = spec.metadata["minimum"]
        if "doc" in spec.metadata:
            prop["description"] = spec.metadata["doc"]
        if spec.default is not dataclasses.MISSING:
            if spec.default is not None:
                prop["default"] = _json_value(spec.default)
        elif spec.default_factory is dataclasses.MISSING:
            required.append(spec.name)
        properties[spec.name] = prop
    return {
        "type": "object",
        "description": (cls.__doc__ or "").strip(),
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_PLAIN: dict[Any, str] = {str: "string", int: "integer", bool: "boolean"}


def _type_schema(hint: Any, defs: dict[str, JsonSchema]) -> JsonSchema:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is typing.Annotated:
        scalar = next(e for e in typing.get_args(hint)[1:] if isinstance(e, Scalar))
        return dict(scalar.schema)
    if hint in _PLAIN:
        return {"type": _PLAIN[hint]}
    if typing.get_origin(hint) is tuple:
        return {"type": "array", "items": _type_schema(typing.get_args(hint)[0], defs)}
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return {"type": "string", "enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__.lower()
        if name not in defs:
            defs[name] = _object_schema(hint, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _json_value(value: Any) -> Any:
    """A default as JSON: tuples as lists, addresses and the like as their text."""
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value if isinstance(value, str | int | bool) else str(value)
