"""Debian archive indexes: a signed Release file, then the Packages index it vouches for."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import logging
import lzma
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from builder.errors import MeshseedError
from builder.tools.gpgv import verified_content

log = logging.getLogger("meshseed.debian")


def parse_deb822(text: str) -> Iterator[dict[str, str]]:
    """Stanzas of a control file; continuation lines are kept, joined by newlines."""
    stanza: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
        elif line[0] in " \t" and key:
            stanza[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            stanza[key] = value.strip()
    if stanza:
        yield stanza


@dataclass(frozen=True)
class Source:
    url: str
    suite: str

    @property
    def archive_name(self) -> str:
        """The archive's name on snapshot.debian.org: the URL's last path part."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Candidate:
    """One version of one package, as one source publishes it."""

    fields: dict[str, str]
    source: Source
    snapshot_time: str

    @property
    def name(self) -> str:
        return self.fields["Package"]

    @property
    def version(self) -> str:
        return self.fields["Version"]


def _get(client: httpx.Client, url: str) -> bytes:
    log.info("GET %s", url)
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise MeshseedError(f"{url}: {error}") from None
    if response.status_code != 200:
        raise MeshseedError(f"{url}: HTTP {response.status_code}")
    return response.content


def _snapshot_time(release: dict[str, str]) -> str:
    date = email.utils.parsedate_to_datetime(release["Date"])
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(date.timestamp()))


def load_index(client: httpx.Client, source: Source, architecture: str, keyring: Path) -> list[Candidate]:
    """Every package `source` publishes for `architecture` (and `all`), checked end to end:
    the InRelease signature against `keyring`, then the Packages index against its sha256."""
    base = f"{source.url.rstrip('/')}/dists/{source.suite}"
    release_text = verified_content(_get(client, f"{base}/InRelease"), keyring).decode()
    release = next(parse_deb822(release_text))
    hashes = {
        parts[2]: (parts[0], int(parts[1]))
        for line in release.get("SHA256", "").splitlines()
        if len(parts := line.split()) == 3
    }
    for suffix, decompress in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", bytes)):
        name = f"main/binary-{architecture}/Packages{suffix}"
        if name in hashes:
            data = _get(client, f"{base}/{name}")
            if hashlib.sha256(data).hexdigest() != hashes[name][0]:
                raise MeshseedError(f"{base}/{name}: does not match the sha256 its signed Release gives")
            packages = decompress(data).decode()
            break
    else:
        raise MeshseedError(f"{base}/Release: lists no Packages index for main/binary-{architecture}")
    stamp = _snapshot_time(release)
    return [Candidate(fields, source, stamp) for fields in parse_deb822(packages)]
