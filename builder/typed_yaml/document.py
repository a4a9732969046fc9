"""Reading a YAML input file into a model dataclass, reporting every problem with its line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from builder.det.yamlfmt import FAST_LOADER
from builder.errors import ExitStatus, MeshseedError, Problem, bad_input
from builder.typed_yaml.decode import Decoder

T = TypeVar("T")

# Deeper than any model goes by far; the composer recurses once per level, so a hostile
# file of a few kilobytes of `[[[[...` would otherwise end in a RecursionError.
MAX_DEPTH = 64


def read_text(path: Path, what: str, hint: str, *, limit: int | None = None) -> str:
    """The file's text; with `limit`, a file of more bytes is refused without reading the
    rest (it may be a device or a mistake measured in gigabytes)."""
    try:
        with path.open("rb") as stream:
            data = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise bad_input(f"{path}: larger than a {what} may be ({limit >> 20} MiB)")
        return data.decode("utf-8")
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
    decoder: Decoder | None = None,
) -> T:
    """Decode `text` into `model`; raises MeshseedError (status 2) listing all problems.
    Pass a `decoder` to read its warnings afterwards."""
    file = str(path)
    root = compose(text, file, what=what, empty_hint=empty_hint)
    decoder = decoder or Decoder(file)
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


def _check_depth(text: str, file: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH, counted on the parser's events:
    the parsers keep their own stacks, only composing recurses. libyaml gives up by itself
    at 1000 levels of flow nesting, so then the count is made again in pure Python."""
    loaders: list[type[yaml.SafeLoader]] = [FAST_LOADER, yaml.SafeLoader]
    for loader in loaders:
        try:
            _count_depth(yaml.parse(text, Loader=loader), file)
            return
        except yaml.YAMLError:
            continue  # not valid YAML: composing reports it, with the clearer message


def _count_depth(events: Iterator[yaml.Event], file: str) -> None:
    depth = 0
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = int(event.start_mark.line) + 1 if event.start_mark else 0
                raise MeshseedError(
                    f"{file}: nested too deeply",
                    status=ExitStatus.BAD_INPUT,
                    problems=[Problem(file, line, "", f"lists and mappings nest more than {MAX_DEPTH} deep")],
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def compose(text: str, file: str, *, what: str, empty_hint: str) -> yaml.Node:
    _check_depth(text, file)
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
