"""Every secret of a site, derived from one master key with HKDF-SHA256.

Nothing secret is stored except the master key: each secret is HKDF-SHA256 over it, with
an info string that names the format version, the cluster, the purpose and, for
per-node secrets, the node. The same key and site give the same secrets anywhere.
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from builder.errors import bad_input

MASTER_KEY_SIZE = 32
DEFAULT_MASTER_KEY = Path(".meshseed/master.key")
MASTER_KEY_ENV = "MESHSEED_MASTER_KEY_FILE"
_INFO_PREFIX = "meshseed/v1"


class Scope(StrEnum):
    CLUSTER = "cluster"
    NODE = "node"


@dataclass(frozen=True)
class Secret:
    """A derived secret. Its repr hides the value so that it cannot leak into a log."""

    raw: bytes
    text: str

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Recipe:
    """How one kind of secret is made: its scope, how many bytes and how they are written."""

    scope: Scope
    size: int
    encode: Callable[[bytes], str]


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _garage_key_id(raw: bytes) -> str:
    return "GK" + raw.hex()


class Purpose(StrEnum):
    K3S_TOKEN = "k3s-token"
    K3S_AGENT_TOKEN = "k3s-agent-token"
    COUCHDB_ADMIN_PASSWORD = "couchdb-admin-password"
    COUCHDB_ERLANG_COOKIE = "couchdb-erlang-cookie"
    COUCHDB_UUID = "couchdb-uuid"
    COUCHDB_AUTH_SECRET = "couchdb-auth-secret"
    LMS_DJANGO_SECRET_KEY = "lms-django-secret-key"
    MYCELIUM_KEY = "mycelium-key"
    SSH_HOST_KEY = "ssh-host-key"
    # What Tutor would otherwise invent at random (its config/base.yml).
    OPENEDX_CMS_OAUTH2_SECRET = "openedx-cms-oauth2-secret"
    OPENEDX_JWT_RSA_SEED = "openedx-jwt-rsa-seed"
    OPENEDX_MEILISEARCH_MASTER_KEY = "openedx-meilisearch-master-key"
    OPENEDX_MEILISEARCH_KEY_UID = "openedx-meilisearch-key-uid"
    OPENEDX_MYSQL_ROOT_PASSWORD = "openedx-mysql-root-password"
    OPENEDX_MYSQL_PASSWORD = "openedx-mysql-password"
    OPENEDX_ADMIN_PASSWORD = "openedx-admin-password"
    # Garage, the store of Open edX's uploaded files (builder/components/media.py).
    GARAGE_RPC_SECRET = "garage-rpc-secret"
    GARAGE_ADMIN_TOKEN = "garage-admin-token"
    GARAGE_OPENEDX_KEY_ID = "garage-openedx-key-id"
    GARAGE_OPENEDX_SECRET_KEY = "garage-openedx-secret-key"
    # The MongoDB replica set (components/openedx_mongodb.py): its members' shared keyFile,
    # its root user, Tutor's MONGODB_PASSWORD and the backup job's user.
    OPENEDX_MONGODB_KEYFILE = "openedx-mongodb-keyfile"
    OPENEDX_MONGODB_ROOT_PASSWORD = "openedx-mongodb-root-password"
    OPENEDX_MONGODB_PASSWORD = "openedx-mongodb-password"
    OPENEDX_MONGODB_BACKUP_PASSWORD = "openedx-mongodb-backup-password"


RECIPES: Mapping[Purpose, Recipe] = {
    Purpose.K3S_TOKEN: Recipe(Scope.CLUSTER, 32, bytes.hex),
    # Joins agents (and the backup node) only: it cannot make a server, so a node that
    # holds it cannot reach etcd or the cluster's CA keys.
    Purpose.K3S_AGENT_TOKEN: Recipe(Scope.CLUSTER, 32, bytes.hex),
    Purpose.COUCHDB_ADMIN_PASSWORD: Recipe(Scope.CLUSTER, 24, _base64url),
    # Erlang cookies must be plain atoms; hex is always one.
    Purpose.COUCHDB_ERLANG_COOKIE: Recipe(Scope.CLUSTER, 20, bytes.hex),
    # CouchDB expects its uuid as 32 lowercase hex digits.
    Purpose.COUCHDB_UUID: Recipe(Scope.CLUSTER, 16, bytes.hex),
    # [chttpd_auth] secret: the same on every member, so a session cookie works on any.
    Purpose.COUCHDB_AUTH_SECRET: Recipe(Scope.CLUSTER, 24, bytes.hex),
    Purpose.LMS_DJANGO_SECRET_KEY: Recipe(Scope.CLUSTER, 36, _base64url),
    # The raw bytes are the x25519 secret key Mycelium keeps in its key file.
    Purpose.MYCELIUM_KEY: Recipe(Scope.NODE, 32, bytes.hex),
    # The raw bytes are the node's ed25519 host key seed (builder/ssh_host_keys.py).
    Purpose.SSH_HOST_KEY: Recipe(Scope.NODE, 32, bytes.hex),
    Purpose.OPENEDX_CMS_OAUTH2_SECRET: Recipe(Scope.CLUSTER, 24, bytes.hex),
    # Seeds a deterministic RSA key generation; never used as a value itself.
    Purpose.OPENEDX_JWT_RSA_SEED: Recipe(Scope.CLUSTER, 32, bytes.hex),
    Purpose.OPENEDX_MEILISEARCH_MASTER_KEY: Recipe(Scope.CLUSTER, 24, bytes.hex),
    # Meilisearch wants its key uid as a UUID; see tutor.py.
    Purpose.OPENEDX_MEILISEARCH_KEY_UID: Recipe(Scope.CLUSTER, 16, bytes.hex),
    # Hex: Tutor's init scripts put these inside shell and SQL quotes.
    Purpose.OPENEDX_MYSQL_ROOT_PASSWORD: Recipe(Scope.CLUSTER, 16, bytes.hex),
    Purpose.OPENEDX_MYSQL_PASSWORD: Recipe(Scope.CLUSTER, 16, bytes.hex),
    Purpose.OPENEDX_ADMIN_PASSWORD: Recipe(Scope.CLUSTER, 18, _base64url),
    # Garage wants its RPC secret as 32 bytes in hex, and imports only keys shaped like its
    # own: an id of "GK" and 24 hex digits, a secret of 64 hex digits.
    Purpose.GARAGE_RPC_SECRET: Recipe(Scope.CLUSTER, 32, bytes.hex),
    Purpose.GARAGE_ADMIN_TOKEN: Recipe(Scope.CLUSTER, 32, bytes.hex),
    Purpose.GARAGE_OPENEDX_KEY_ID: Recipe(Scope.CLUSTER, 12, _garage_key_id),
    Purpose.GARAGE_OPENEDX_SECRET_KEY: Recipe(Scope.CLUSTER, 32, bytes.hex),
    # A keyFile holds 6 to 1024 base64 characters; hex digits are among them.
    Purpose.OPENEDX_MONGODB_KEYFILE: Recipe(Scope.CLUSTER, 48, bytes.hex),
    # Hex: Tutor puts MONGODB_PASSWORD inside Python quotes, and the mongodump config is YAML.
    Purpose.OPENEDX_MONGODB_ROOT_PASSWORD: Recipe(Scope.CLUSTER, 16, bytes.hex),
    Purpose.OPENEDX_MONGODB_PASSWORD: Recipe(Scope.CLUSTER, 16, bytes.hex),
    Purpose.OPENEDX_MONGODB_BACKUP_PASSWORD: Recipe(Scope.CLUSTER, 16, bytes.hex),
}


class SecretDeriver:
    """Derives the secrets of one cluster from its master key."""

    def __init__(self, master_key: bytes, cluster: str) -> None:
        if len(master_key) != MASTER_KEY_SIZE:
            raise ValueError("a master key is 32 bytes")
        self._master_key = master_key
        self._cluster = cluster

    def __repr__(self) -> str:
        return f"SecretDeriver(cluster={self._cluster!r})"

    def fingerprint(self) -> str:
        """A public digest that changes with the master key and cluster, for derivation keys."""
        return self._hkdf(f"{_INFO_PREFIX}/{self._cluster}/fingerprint", 16).hex()

    def _hkdf(self, info: str, size: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=size, salt=None, info=info.encode()).derive(
            self._master_key
        )

    def derive(self, purpose: Purpose, node: str | None = None) -> Secret:
        return self.derive_recipe(purpose.value, RECIPES[purpose], node)

    def derive_recipe(self, purpose: str, recipe: Recipe, node: str | None = None) -> Secret:
        """A secret by purpose name and recipe: how cluster components declare their own."""
        if (recipe.scope is Scope.NODE) != (node is not None):
            raise ValueError(f"{purpose} is a {recipe.scope} secret")
        info = "/".join(part for part in (_INFO_PREFIX, self._cluster, purpose, node) if part)
        raw = self._hkdf(info, recipe.size)
        return Secret(raw, recipe.encode(raw))


def master_key_path(
    option: Path | None, environ: Mapping[str, str], site_dir: Path = Path()
) -> tuple[Path, bool]:
    """Where the master key is, and whether it is the default: `.meshseed/master.key` in
    the site file's folder, wherever the command runs from (the key belongs to the site)."""
    if option is not None:
        return option, False
    if MASTER_KEY_ENV in environ:
        # An empty value is most often a variable that expanded to nothing; falling back to
        # the default would quietly create a new key there and change every secret.
        if not environ[MASTER_KEY_ENV]:
            raise bad_input(
                f"${MASTER_KEY_ENV} is set but empty",
                hint=f"name the key file in it, or unset it to use {site_dir / DEFAULT_MASTER_KEY}",
            )
        return Path(environ[MASTER_KEY_ENV]), False
    return site_dir / DEFAULT_MASTER_KEY, True


def load_master_key(path: Path, *, create: bool) -> bytes:
    """Read the master key, refusing one of the wrong size or with loose permissions.

    With `create`, a missing key is made (mode 0600) and the user is told to back it up.
    A missing key at a path the user named is an error: quietly making a new one there
    would give every secret of an existing cluster a new value.
    """
    try:
        # O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; fstat on the
        # open file then refuses it, and checks exactly the file that is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (NotADirectoryError, FileNotFoundError):
        if not create:
            raise bad_input(
                f"{path}: no master key here",
                hint="restore it from your backup; only `meshseed keys init` and `meshseed build` "
                "make a new one",
            ) from None
        return _create_master_key(path)
    except OSError as error:
        raise bad_input(f"{path}: cannot read the master key: {error.strerror}") from None
    try:
        key = _read_private_file(path, fd)
    finally:
        os.close(fd)
    if len(key) != MASTER_KEY_SIZE:
        raise bad_input(
            f"{path}: a master key is exactly {MASTER_KEY_SIZE} bytes, this file has {len(key)}",
            hint="restore the key from your backup",
        )
    return key


def _read_private_file(path: Path, fd: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise bad_input(f"{path}: the master key must be a regular file")
    if info.st_mode & 0o077:
        raise bad_input(
            f"{path}: the master key is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        with open(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as error:
        raise bad_input(f"{path}: cannot read the master key: {error.strerror}") from None


def create_master_key(path: Path) -> bool:
    """`meshseed keys init`: make a key at `path` unless one is there (which is then
    checked, never replaced). True if a key was made."""
    if path.exists() or path.is_symlink():
        load_master_key(path, create=False)
        return False
    _create_master_key(path)
    return True


def _create_master_key(path: Path) -> bytes:
    key = os.urandom(MASTER_KEY_SIZE)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key meanwhile; then theirs wins.
        os.link(temporary, path)
    except FileExistsError:
        return load_master_key(path, create=False)
    finally:
        temporary.unlink()
    print(
        f"meshseed: created a new master key at {path}. Back it up now: every secret of the "
        "site is derived from it and cannot be recreated without it.",
        file=sys.stderr,
    )
    return key
