"""Read site.yaml into a `Site`, or fail with every problem it has."""

from __future__ import annotations

from pathlib import Path

import yaml

from builder.det.yamlfmt import FAST_LOADER
from builder.errors import ExitStatus, MeshseedError, Problem, bad_input
from builder.site.checks import check_hosts, check_nodes
from builder.site.decode import Decoder
from builder.site.model import Site

DEFAULT_SITE = Path("site.yaml")


def _compose_fast(text: str) -> yaml.Node | None:
    """Compose with libyaml (it keeps line marks too); on an error, again in pure Python,
    whose messages are clearer and the same on every machine."""
    try:
        return yaml.compose(text, Loader=FAST_LOADER)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)


def load_site(path: Path = DEFAULT_SITE) -> Site:
    """Load and validate a site file. Raises MeshseedError (status 2) listing all problems."""
    return parse_site(_read(path), path)


def parse_site(text: str, path: Path) -> Site:
    file = str(path)
    root = _compose(text, file)
    decoder = Decoder(file)
    fields = decoder.decode_fields(Site, root, "")
    check_nodes(decoder)
    check_hosts(decoder)
    if decoder.problems or fields is None:
        count = len(decoder.problems)
        raise MeshseedError(
            f"{file}: {count} problem{'s' if count != 1 else ''}; nothing was built",
            status=ExitStatus.BAD_INPUT,
            problems=decoder.problems,
        )
    return Site(**fields, source=path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad_input(f"{path}: no such site file", hint="pass the path of a site.yaml") from None
    except IsADirectoryError:
        raise bad_input(f"{path}: is a directory, not a site file") from None
    except UnicodeDecodeError as error:
        raise bad_input(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise bad_input(f"{path}: cannot be read: {error.strerror}") from None


def _compose(text: str, file: str) -> yaml.Node:
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
        raise bad_input(f"{file}: the file is empty", hint="a site needs cluster, domain, hosts and nodes")
    if not isinstance(root, yaml.MappingNode):
        raise MeshseedError(
            f"{file}: not a site description",
            status=ExitStatus.BAD_INPUT,
            problems=[
                Problem(file, int(root.start_mark.line) + 1, "", "the top level must be a mapping of keys")
            ],
        )
    return root
