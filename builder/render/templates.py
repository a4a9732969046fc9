"""A strict Jinja2 environment: a missing value is an error naming the template and line."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import jinja2

from builder.errors import MeshseedError


def _tojson(value: Any) -> str:
    # JSON strings, numbers and lists are valid YAML, so values cannot break the document.
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@functools.lru_cache(maxsize=32)
def environment(templates: tuple[tuple[str, str], ...]) -> jinja2.Environment:
    """An environment over (name, text) pairs; cached, so each template compiles once."""
    sources = dict(templates)

    def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
        # The name doubles as the file name, so tracebacks (and _line) can find the template.
        return None if name not in sources else (sources[name], name, lambda: True)

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        cache_size=len(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = _tojson
    return env


def render(env: jinja2.Environment, name: str, context: Mapping[str, Any], *, origin: str) -> str:
    """Render template `name`; `origin` is how the user knows it, e.g. cloud-init/user-data.j2."""
    try:
        return env.get_template(name).render(context)
    except jinja2.UndefinedError as error:
        raise MeshseedError(f"{origin}:{_line(name)}: missing value: {error.message}") from None
    except jinja2.TemplateSyntaxError as error:
        raise MeshseedError(f"{origin}:{error.lineno}: template error: {error.message}") from None


def _line(name: str) -> int:
    """The template line being rendered when the current exception was raised."""
    _, _, tb = sys.exc_info()
    line = 0
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == name:
            line = lineno
    return line
