"""A flat Debian archive of given .deb files, for apt (and mmdebstrap) to install from.

Only the pinned files are in it, so apt can choose nothing else; its Packages index is
written from each file's own control fields, with the checksum the lock pinned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.debian.deb import control_files

INDEX = "Packages"


@dataclass(frozen=True)
class ArchivedDeb:
    name: str
    version: str
    architecture: str
    sha256: str
    path: Path

    @property
    def file_name(self) -> str:
        # An epoch's colon is not allowed in every file system; the archive escapes it so.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def write_flat_archive(debs: Sequence[ArchivedDeb], directory: Path) -> str:
    """Hard-link (else copy) `debs` into `directory` with a Packages index; the sources.list
    line that names it (trusted: every file was checked against the lock's sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for deb in sorted(debs, key=lambda d: d.name):
        target = directory / deb.file_name
        try:
            os.link(deb.path, target)
        except OSError:
            target.write_bytes(deb.path.read_bytes())
        control = control_files(target)["control"].decode().rstrip("\n")
        stanzas.append(
            f"{control}\nFilename: ./{deb.file_name}\nSize: {target.stat().st_size}\nSHA256: {deb.sha256}\n"
        )
    (directory / INDEX).write_text("\n".join(stanzas))
    # copy://: mmdebstrap copies the files into its chroot, where apt then reads them.
    return f"deb [trusted=yes] copy://{directory.absolute()} ./"
