"""Registry credentials: from the environment (CI), else from the files `podman login` and
`docker login` write. Passwords are handed to the registry client only, never logged."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

USER_ENV = "MESHSEED_REGISTRY_USER"
PASSWORD_ENV = "MESHSEED_REGISTRY_PASSWORD"


def _auth_files(environ: Mapping[str, str]) -> list[Path]:
    home = Path(environ.get("HOME", "~")).expanduser()
    files = []
    if "REGISTRY_AUTH_FILE" in environ:
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if "XDG_RUNTIME_DIR" in environ:
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return files


def credentials_for(registry: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(user, password) for `registry` (host[:port]), or None to go anonymously."""
    if environ.get(USER_ENV) and PASSWORD_ENV in environ:
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
