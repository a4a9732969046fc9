"""Registry credentials: from the environment (CI), else from the files `podman login` and
`docker login` write. Passwords are handed to the registry client only, never logged.

The environment's pair names no registry, so it goes only to the one the command was
told to push to (`--registry`) or the one `$MESHSEED_REGISTRY_HOST` names: a reference to
any other host must not collect CI's password."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

USER_ENV = "MESHSEED_REGISTRY_USER"
PASSWORD_ENV = "MESHSEED_REGISTRY_PASSWORD"
HOST_ENV = "MESHSEED_REGISTRY_HOST"


def _auth_files(environ: Mapping[str, str]) -> list[Path]:
    home = Path(environ.get("HOME", "~")).expanduser()
    files = []
    if "REGISTRY_AUTH_FILE" in environ:
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if "XDG_RUNTIME_DIR" in environ:
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return files


Lookup = Callable[[str], "tuple[str, str] | None"]


def credentials_for(
    registry: str, named: str | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[str, str] | None:
    """(user, password) for `registry` (host[:port]), or None to go anonymously. `named`
    is the registry the command line names, the only one besides $MESHSEED_REGISTRY_HOST
    that the environment's pair is for."""
    owners = {name.lower() for name in (named, environ.get(HOST_ENV)) if name}
    if environ.get(USER_ENV) and PASSWORD_ENV in environ and registry.lower() in owners:
        return environ[USER_ENV], environ[PASSWORD_ENV]
    for path in _auth_files(environ):
        try:
            entry = json.loads(path.read_text())["auths"][registry]
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            continue
        if user:
            return user, password
    return None


def credentials_lookup(named: str | None) -> Lookup:
    """What `Registries` asks for each registry it talks to."""
    return lambda registry: credentials_for(registry, named)
