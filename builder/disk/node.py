"""What a node's disk image adds to its role's: the node's seed in the seed slot.

`disk-seed-<node>` compresses the node's seed.iso, padded to the slot, as one zstd frame;
`disk-node-<node>` records how dist/nodes/<node>/disk.raw.zst is joined from the role
image's head and tail and that frame, and `disk-<role>` the same for the role image with
its slot empty (builder/compose.py). So a changed SSH key redoes one small frame.
"""

from __future__ import annotations

from builder.compose import Part, composite_name, describe, encode
from builder.det.compress import compressor_versions, zstd_writer
from builder.disk.layout import SEED_SLOT_SIZE
from builder.disk.role import piece_file
from builder.errors import MeshseedError
from builder.store.derivation import BuildContext, Derivation

SEED_FILE = "seed.iso"
SLOT_FILE = "slot.zst"
NODE_IMAGE = "disk.raw.zst"
CODE = ("disk/node.py", "compose.py", "det/compress.py")


def seed_slot_derivation(node: str, seed: Derivation) -> Derivation:
    return Derivation(
        name=f"disk-seed-{node}",
        build=build_seed_slot,
        inputs={"node": node, "seed": seed.name, "slot": SEED_SLOT_SIZE, "tools": compressor_versions()},
        deps=(seed,),
        code=CODE,
    )


def build_seed_slot(ctx: BuildContext) -> None:
    iso = ctx.dep(ctx.inputs["seed"]) / SEED_FILE
    data = iso.read_bytes()
    slot = ctx.inputs["slot"]
    if len(data) > slot:
        raise MeshseedError(
            f"{ctx.inputs['node']}: its seed.iso is {len(data)} bytes, more than the disk's "
            f"seed slot of {slot} bytes"
        )
    padded = data + bytes(slot - len(data))
    with ctx.open_output(SLOT_FILE, private=True) as out, zstd_writer(out) as compressed:
        compressed.write(padded)


def image_derivation(name: str, role_disk: Derivation, slot: Derivation | None, dist: str) -> Derivation:
    """The recipe for `dist`/<file>: the role image's head, `slot`'s frame (or the role's
    empty one) and the role image's tail."""
    target = NODE_IMAGE if slot is not None else f"{role_disk.inputs['role']}.raw.zst"
    return Derivation(
        name=name,
        build=build_image_recipe,
        inputs={
            "role_disk": role_disk.name,
            "slot": slot.name if slot is not None else None,
            "target": target,
        },
        deps=tuple(dep for dep in (role_disk, slot) if dep is not None),
        dist_path=dist,
        code=CODE,
    )


def build_image_recipe(ctx: BuildContext) -> None:
    role_disk = ctx.inputs["role_disk"]
    slot = ctx.inputs["slot"]
    parts = [
        Part(role_disk, piece_file("head"), ""),
        Part(slot, SLOT_FILE, "") if slot else Part(role_disk, piece_file("slot"), ""),
        Part(role_disk, piece_file("tail"), ""),
    ]
    composite = describe(parts, [ctx.dep(p.derivation) / p.path for p in parts], private=slot is not None)
    ctx.write(composite_name(ctx.inputs["target"]), encode(composite))
