"""Reading a YAML input file into a model dataclass, reporting every problem with its line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from builder.det.yamlfmt import FAST_LOADER
from builder.errors import ExitStatus, MeshseedError, Problem, bad_input
from builder.typed_yaml.decode import Decoder

T = TypeVar("T")


def read_text(path: Path, what: str, hint: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad_input(f"{path}: no such {what}", hint=hint) from None
    except IsADirectoryError:
        raise bad_input(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError as error:
        raise bad_input(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise bad_input(f"{path}: cannot be read: {error.strerror}") from None


def decode_document(
    text: str,
    path: Path,
    model: type[T],
    *,
    what: str,
    empty_hint: str,
    checks: Callable[[Decoder], None] = lambda _: None,
    extra: dict[str, Any] | None = None,
) -> T:
    """Decode `text` into `model`; raises MeshseedError (status 2) listing all problems."""
    file = str(path)
    root = compose(text, file, what=what, empty_hint=empty_hint)
    decoder = Decoder(file)
    fields = decoder.decode_fields(model, root, "")
    checks(decoder)
    if decoder.problems or fields is None:
        count = len(decoder.problems)
        raise MeshseedError(
            f"{file}: {count} problem{'s' if count != 1 else ''}; nothing was built",
            status=ExitStatus.BAD_INPUT,
            problems=decoder.problems,
        )
    return model(**fields, **(extra or {}))


def _compose_fast(text: str) -> yaml.Node | None:
    """Compose with libyaml (it keeps line marks too); on an error, again in pure Python,
    whose messages are clearer and the same on every machine."""
    try:
        return yaml.compose(text, Loader=FAST_LOADER)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)


def compose(text: str, file: str, *, what: str, empty_hint: str) -> yaml.Node:
    try:
        root = _compose_fast(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = int(mark.line) + 1 if mark else 0
        reason = error.problem or error.context or "unreadable"
        raise MeshseedError(
            f"{file}: not valid YAML",
            status=ExitStatus.BAD_INPUT,
            problems=[Problem(file, line, "", f"not valid YAML: {reason}")],
        ) from None
    except yaml.YAMLError as error:
        raise bad_input(f"{file}: not valid YAML: {error}") from None
    if root is None:
        raise bad_input(f"{file}: the file is empty", hint=empty_hint)
    if not isinstance(root, yaml.MappingNode):
        line = int(root.start_mark.line) + 1
        raise MeshseedError(
            f"{file}: not a {what}",
            status=ExitStatus.BAD_INPUT,
            problems=[Problem(file, line, "", "the top level must be a mapping of keys")],
        )
    return root
