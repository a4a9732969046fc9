"""One OCI step of the benchmark, run as its own process so its wall time and RSS are its own.

    python bench/oci_steps.py fetch STORE REFERENCE DIGEST
    python bench/oci_steps.py bundle STORE REFERENCE DIGEST

`fetch` pulls the image by digest into the store; `bundle` (after a fetch) writes its
zstd air-gap bundle. Both go through the real derivations `meshseed build` uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builder.det.epoch import DEFAULT_EPOCH
from builder.oci.bundle import build_bundle, bundle_inputs
from builder.oci.fetch import build_fetch, fetch_inputs
from builder.oci.reference import parse_reference
from builder.oci.registry import Registries
from builder.store.derivation import Derivation
from builder.store.progress import SilentProgress
from builder.store.realise import realise
from builder.store.store import Store


def main(step: str, store_dir: str, reference: str, digest: str) -> int:
    registry = parse_reference(reference).registry
    image = Derivation(
        name="image-bench",
        build=build_fetch,
        inputs=fetch_inputs(reference, digest, {"linux/amd64": digest}),
        fetcher=Registries(mirrors={registry: f"http://{registry}"}),
    )
    targets = [image]
    if step == "bundle":
        targets = [
            Derivation(
                name="airgap-bench",
                build=build_bundle,
                inputs=bundle_inputs("bench", "zstd", DEFAULT_EPOCH),
                deps=(image,),
            )
        ]
    store = Store(Path(store_dir))
    store.prepare()
    results = realise(store, targets, jobs=1, progress=SilentProgress())
    print(results[-1].output.path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
