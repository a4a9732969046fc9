"""Scalar value types: how a YAML string is parsed, checked and described in the schema.

A model field is annotated as `Annotated[T, Scalar(...)]`; the loader and the JSON Schema
generator both read that one declaration, so the file format, the checks and the schema
cannot drift apart. Types used by more than one document (such as `Label`) live here; a
document's own types live with its model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

JsonSchema = dict[str, Any]


@dataclass(frozen=True, eq=False)
class Scalar:
    """A string in YAML that parses into a typed value, or raises ValueError saying why."""

    parse: Callable[[str], Any]
    schema: JsonSchema


def pattern_scalar(pattern: str, what: str, **schema: Any) -> Scalar:
    """A string that must match `pattern` in full; the error says it is not `what`."""

    def parse(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError(f"{text!r} is not {what}")
        return text

    return Scalar(parse, {"type": "string", "pattern": f"^(?:{pattern})$", **schema})


LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def parse_label(text: str) -> str:
    """An RFC 1123 label, as Kubernetes and hostnames need it."""
    if LABEL.fullmatch(text):
        return text
    if LABEL.fullmatch(text.lower()):
        raise ValueError(f"{text!r} is not an RFC 1123 label (use lowercase: {text.lower()!r})")
    raise ValueError(
        f"{text!r} is not an RFC 1123 label "
        "(1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )


Label = Annotated[
    str,
    Scalar(parse_label, {"type": "string", "pattern": f"^{LABEL.pattern}$", "maxLength": 63}),
]
