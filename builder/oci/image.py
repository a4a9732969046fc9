"""Write an OCI image (layers, config, manifest, index.json) into a build output."""

from __future__ import annotations

import contextlib
import gzip
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from builder.det.compress import GZIP_LEVEL
from builder.det.jsonfmt import compact_json
from builder.digest import Digest
from builder.oci.fetch import LAYOUT_VERSION, Descriptor, blob_path
from builder.oci.media import CONTAINERD_NAME, OCI_MANIFEST, OCI_REF_NAME
from builder.oci.reference import sha256_digest
from builder.store.derivation import BuildContext, HashingWriter

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass
class Layer:
    """A layer as written: its compressed descriptor and the digest of its tar (diff_id)."""

    descriptor: Descriptor
    diff_id: str
    comment: str


@dataclass
class ImageWriter:
    ctx: BuildContext
    epoch: int
    layers: list[Layer] = field(default_factory=list)

    @contextlib.contextmanager
    def layer(self, comment: str) -> Iterator[BinaryIO]:
        """A stream for one layer's tar; it is gzipped and hashed (both ways) as it is written."""
        temporary = f"blobs/.layer-{len(self.layers)}"
        with (
            self.ctx.open_output(temporary) as out,
            gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as packed,
        ):
            diff = HashingWriter(packed)
            yield diff  # type: ignore[misc]
        sha256 = self.ctx.known_digests.pop(temporary)
        digest = Digest(f"sha256:{sha256}")  # hashed as it was written
        size = (self.ctx.out / temporary).stat().st_size
        final = blob_path(digest)
        (self.ctx.out / final).parent.mkdir(parents=True, exist_ok=True)
        (self.ctx.out / temporary).rename(self.ctx.out / final)
        self.ctx.known_digests[final] = sha256
        diff_id = f"sha256:{diff.sha256.hexdigest()}"
        self.layers.append(Layer(Descriptor(LAYER_GZIP, digest, size), diff_id, comment))

    def _blob(self, media_type: str, data: bytes) -> Descriptor:
        descriptor = Descriptor(media_type, sha256_digest(data), len(data))
        self.ctx.write(blob_path(descriptor.digest), data)
        return descriptor

    def finish(
        self,
        *,
        architecture: str,
        config: dict[str, Any],
        annotations: dict[str, str],
        name: str,
        tag: str,
    ) -> Descriptor:
        """Write config, manifest, index.json and oci-layout; returns the manifest's descriptor."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.epoch))
        image_config = {
            "architecture": architecture,
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            "history": [{"created": created, "created_by": layer.comment} for layer in self.layers],
        }
        config_descriptor = self._blob(CONFIG, compact_json(image_config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor.as_json(),
            "layers": [layer.descriptor.as_json() for layer in self.layers],
            "annotations": {"org.opencontainers.image.created": created, **annotations},
        }
        manifest_descriptor = self._blob(OCI_MANIFEST, compact_json(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [manifest_descriptor.as_json({OCI_REF_NAME: tag, CONTAINERD_NAME: f"{name}:{tag}"})],
        }
        self.ctx.write("index.json", compact_json(index))
        self.ctx.write("oci-layout", LAYOUT_VERSION)
        return manifest_descriptor
