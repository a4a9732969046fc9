"""Turn a composed YAML node tree into model objects, collecting every problem on the way.

The decoder is driven by the model's type hints: `Annotated[..., Scalar]` fields parse
strings, StrEnum fields take one of their values, `tuple[T, ...]` fields take lists and
dataclasses take mappings with exactly their keys. It never raises for bad input; it
records a `Problem` with the line and key path and carries on, so a user sees everything
that is wrong in one run.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from builder.errors import Problem
from builder.typed_yaml.scalars import Scalar

_YAML_TAG_NAMES = {
    "tag:yaml.org,2002:str": "a string",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "nothing (null)",
    "tag:yaml.org,2002:timestamp": "a date",
}


class _Invalid:
    """Marks a value that could not be decoded; its problem is already recorded."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


def describe(node: yaml.Node) -> str:
    """Say what a YAML node holds, for 'expected X, got Y' messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = _YAML_TAG_NAMES.get(node.tag, "a value")
    return f"{kind} ({node.value})" if node.value and kind != "a string" else kind


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class Decoder:
    """Decodes one file.

    `problems` gathers what is wrong, `warnings` what is allowed but likely a slip,
    `lines` says where each key path is, and `values`
    holds every value that decoded, even inside a node that as a whole did not, so that
    checks across nodes still see them.
    """

    file: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)

    def report(self, line: int, path: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, path, message, hint))

    def warn(self, line: int, path: str, message: str, hint: str | None = None) -> None:
        self.warnings.append(Problem(self.file, line, path, message, hint))

    def decode(self, hint: Any, node: yaml.Node, path: str, meta: typing.Mapping[str, Any]) -> Any:
        self.lines[path] = line_of(node)
        value = self._decode(hint, node, path, meta)
        if value is not INVALID:
            self.values[path] = value
        return value

    def _decode(self, hint: Any, node: yaml.Node, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            # `X | None` fields are optional; in the file they are simply left out.
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        if typing.get_origin(hint) is typing.Annotated:
            base, *extras = typing.get_args(hint)
            scalar = next(e for e in extras if isinstance(e, Scalar))
            return self._scalar(scalar, base, node, path)
        if hint in (str, int, bool):
            return self._plain(hint, node, path, meta)
        if typing.get_origin(hint) is tuple:
            return self._sequence(typing.get_args(hint)[0], node, path, meta)
        if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
            return self._choice(hint, node, path)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            fields = self.decode_fields(hint, node, path)
            if fields is None or any(f.name not in fields for f in public_fields(hint) if _required(f)):
                return INVALID
            return hint(**fields)
        raise TypeError(f"a model uses a type the decoder does not know: {hint!r}")

    def _string(self, node: yaml.Node, path: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            return str(node.value)
        hint = "quote it" if isinstance(node, yaml.ScalarNode) and node.value else None
        self.report(line_of(node), path, f"expected a string, got {describe(node)}", hint)
        return None

    def _plain(self, hint: type, node: yaml.Node, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if hint is str:
            text = self._string(node, path)
            return INVALID if text is None else text
        if hint is bool:
            return self._boolean(node, path)
        return self._integer(node, path, meta)

    def _boolean(self, node: yaml.Node, path: str) -> Any:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool"):
            self.report(line_of(node), path, f"expected true or false, got {describe(node)}")
            return INVALID
        return bool(yaml.constructor.SafeConstructor().construct_yaml_bool(node))

    def _integer(self, node: yaml.Node, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int"):
            self.report(line_of(node), path, f"expected an integer, got {describe(node)}")
            return INVALID
        value = int(yaml.constructor.SafeConstructor().construct_yaml_int(node))
        minimum = meta.get("minimum")
        if minimum is not None and value < minimum:
            self.report(line_of(node), path, f"must be at least {minimum}, not {value}")
            return INVALID
        return value

    def _scalar(self, scalar: Scalar, base: type, node: yaml.Node, path: str) -> Any:
        text = self._string(node, path)
        if text is None:
            return INVALID
        try:
            return scalar.parse(text)
        except ValueError as error:
            self.report(line_of(node), path, str(error))
            return INVALID

    def _choice(self, enum_type: type[enum.StrEnum], node: yaml.Node, path: str) -> Any:
        text = self._string(node, path)
        if text is None:
            return INVALID
        values = [member.value for member in enum_type]
        if text not in values:
            self.report(
                line_of(node),
                path,
                f"{text!r} is not one of {', '.join(values)}",
                did_you_mean(text, values),
            )
            return INVALID
        return enum_type(text)

    def _sequence(self, item_hint: Any, node: yaml.Node, path: str, meta: typing.Mapping[str, Any]) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            self.report(line_of(node), path, f"expected a list, got {describe(node)}")
            return INVALID
        self.lengths[path] = len(node.value)
        if len(node.value) < int(meta.get("min_items", 0)):
            self.report(
                line_of(node), path, f"needs at least {meta['min_items']} item{'s' * (meta['min_items'] > 1)}"
            )
        items = [
            self.decode(item_hint, item, f"{path}[{index}]", {}) for index, item in enumerate(node.value)
        ]
        if INVALID in items:
            return INVALID
        return tuple(items)

    def decode_fields(self, cls: type, node: yaml.Node, path: str) -> dict[str, Any] | None:
        """Decode a mapping into the valid field values of `cls`; None if it is no mapping."""
        if not isinstance(node, yaml.MappingNode):
            self.report(line_of(node), path, f"expected a mapping, got {describe(node)}")
            return None
        hints = typing.get_type_hints(cls, include_extras=True)
        known = {f.name: f for f in public_fields(cls)}
        seen: dict[str, int] = {}
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                self.report(line_of(key_node), path, f"keys must be strings, got {describe(key_node)}")
                continue
            key = str(key_node.value)
            key_path = join(path, key)
            if key in seen:
                self.report(line_of(key_node), key_path, f"duplicate key (first at line {seen[key]})")
                continue
            seen[key] = line_of(key_node)
            if key not in known:
                self.report(line_of(key_node), key_path, "unknown key", did_you_mean(key, known))
                continue
            value = self.decode(hints[key], value_node, key_path, known[key].metadata)
            # A block list or mapping starts on the line after its key; point at the key.
            self.lines[key_path] = line_of(key_node)
            if value is not INVALID:
                values[key] = value
        for name, spec in known.items():
            if _required(spec) and name not in seen:
                self.report(line_of(node), path, f"missing required key {name!r}")
        return values


def _required(spec: dataclasses.Field[Any]) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
