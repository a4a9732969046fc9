"""The project's own files a build reads, found through the package.

`cloud-init/` stays at the top of the checkout; `builder/project/` links to it, so that
importlib.resources finds it in a checkout, an editable install and an installed wheel
alike (setuptools copies what the links point at into the wheel and the sdist).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from builder.errors import MeshseedError


def project_file(*parts: str) -> Path:
    """A file or folder of the project as shipped with the package."""
    shipped = files("builder").joinpath("project", *parts)
    # Derivations hash their sources as files on disk; a zipped install has none.
    if not isinstance(shipped, Path):
        raise MeshseedError("meshseed must be installed as files (pip install), not run from a zip archive")
    return shipped


def cloud_init_templates() -> Path:
    """cloud-init/: the templates of everything that goes onto a node."""
    return project_file("cloud-init")


def manifest_templates() -> Path:
    """cloud-init/manifests/: one folder per cluster component."""
    return project_file("cloud-init", "manifests")


def pinning_root() -> Path:
    """Where images.lock and images/ (upstream.yaml, our images) come from, as a pair: the
    working directory if it has either, as a checkout or a site folder with its own pins
    has, else the ones this meshseed release ships."""
    if Path("images.lock").exists() or Path("images").exists():
        return Path()
    return project_file()
