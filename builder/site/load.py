"""Read site.yaml into a `Site`, or fail with every problem it has."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.site.checks import check_hosts, check_nodes, check_tutor_plugins
from builder.site.model import Site
from builder.typed_yaml.decode import Decoder
from builder.typed_yaml.document import decode_document, read_text

DEFAULT_SITE = Path("site.yaml")
# A site of a thousand nodes is some 300 KiB; anything past this is a mistake or an attack.
MAX_SITE_BYTES = 1 << 20


def load_site(path: Path = DEFAULT_SITE) -> Site:
    """Load and validate a site file. Raises MeshseedError (status 2) listing all problems."""
    return parse_site(
        read_text(path, "site file", "pass the path of a site.yaml", limit=MAX_SITE_BYTES), path
    )


def _checks(decoder: Decoder) -> None:
    check_nodes(decoder)
    check_hosts(decoder)
    check_tutor_plugins(decoder)


def parse_site(text: str, path: Path) -> Site:
    decoder = Decoder(str(path))
    site = decode_document(
        text,
        path,
        Site,
        what="site description",
        empty_hint="a site needs cluster, domain, hosts and nodes",
        checks=_checks,
        extra={"source": path},
        decoder=decoder,
    )
    return dataclasses.replace(site, warnings=tuple(str(warning) for warning in sorted(decoder.warnings)))
