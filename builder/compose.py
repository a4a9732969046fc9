"""Files of dist/ made by joining store files end to end, named by a `.parts.json` recipe.

A node's disk image is its role's image with the node's seed in one slot. Stored whole, it
would repeat the role's gigabyte once per node; instead the role image is stored once, in
pieces, and a node's derivation stores only its seed's piece and a recipe: which pieces of
which derivations, in what order, with the sha256 of each and of the whole. The pieces are
zstd frames, and frames concatenate into one valid stream, so joining them when dist/ is
assembled gives the node's compressed image. Every byte joined is checked on the way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError

PARTS_SUFFIX = ".parts.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    derivation: str
    path: str
    sha256: str


@dataclass(frozen=True)
class Composite:
    parts: tuple[Part, ...]
    sha256: str
    size: int
    # The whole is private (0600 in dist/) when any part is: a node's seed holds its secrets.
    private: bool


def composite_name(target: str) -> str:
    """The recipe's file name for the dist/ file `target`."""
    return target + PARTS_SUFFIX


def composed_target(recipe: str) -> str | None:
    """The dist/ file a recipe makes, or None if `recipe` names no recipe."""
    return recipe.removesuffix(PARTS_SUFFIX) if recipe.endswith(PARTS_SUFFIX) else None


def _stream(paths: Sequence[Path], parts: Sequence[Part], sink: Callable[[bytes], object]) -> tuple[str, int]:
    """Feed each part to `sink`, checking it against its recorded sha256; the whole's."""
    whole = hashlib.sha256()
    size = 0
    for path, part in zip(paths, parts, strict=True):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                whole.update(chunk)
                size += len(chunk)
                sink(chunk)
        if part.sha256 and digest.hexdigest() != part.sha256:
            raise MeshseedError(
                f"{part.derivation}/{part.path} has sha256:{digest.hexdigest()}, "
                f"recorded sha256:{part.sha256}",
                hint="run `meshseed build --repair`",
            )
    return whole.hexdigest(), size


def describe(parts: Sequence[Part], paths: Sequence[Path], *, private: bool) -> Composite:
    """The recipe for joining `parts` (found at `paths`), with each part's sha256 taken now."""
    hashed = []
    for part, path in zip(parts, paths, strict=True):
        digest, _ = _stream([path], [Part(part.derivation, part.path, "")], lambda _: None)
        hashed.append(Part(part.derivation, part.path, digest))
    sha256, size = _stream(paths, hashed, lambda _: None)
    return Composite(tuple(hashed), sha256, size, private)


def encode(composite: Composite) -> str:
    return canonical_json(
        {
            "parts": [vars(part) for part in composite.parts],
            "sha256": composite.sha256,
            "size": composite.size,
            "private": composite.private,
        }
    )


def decode(path: Path) -> Composite:
    data = json.loads(path.read_text())
    return Composite(
        tuple(Part(p["derivation"], p["path"], p["sha256"]) for p in data["parts"]),
        data["sha256"],
        data["size"],
        data["private"],
    )


def join(composite: Composite, outputs: Mapping[str, Path], target: BinaryIO) -> None:
    """Write the composite into `target` from the store outputs (derivation name -> output
    directory), every part and the whole checked against their recorded sha256."""
    missing = sorted({part.derivation for part in composite.parts} - outputs.keys())
    if missing:
        raise MeshseedError(f"cannot join a file from {', '.join(missing)}: not part of this build")
    paths = [outputs[part.derivation] / part.path for part in composite.parts]
    sha256, _ = _stream(paths, composite.parts, target.write)
    if sha256 != composite.sha256:
        raise MeshseedError(
            f"the joined file has sha256:{sha256}, recorded sha256:{composite.sha256}",
            hint="run `meshseed build --repair`",
        )
