"""disks/node.yaml: the Debian packages every node's disk is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builder.images.spec import DebianSpec
from builder.typed_yaml.document import decode_document, read_text

DISK_SPEC = Path("disks") / "node.yaml"
# The closure's name in images.lock's `debian` part, beside our images' closures.
LOCK_NAME = "node-disk"


@dataclass(frozen=True)
class DiskSpec:
    debian: DebianSpec = field(metadata={"doc": "Packages (with their closure) every node disk holds."})


def load_disk_spec(path: Path) -> DiskSpec:
    return decode_document(
        read_text(path, "disk description", f"the project ships one at {DISK_SPEC}"),
        path,
        DiskSpec,
        what="disk description",
        empty_hint="a disk description names its Debian packages and sources",
    )
