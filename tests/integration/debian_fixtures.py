"""A tiny signed Debian archive on 127.0.0.1 for tests, laid out like deb.debian.org.

Two archives sit side by side under one HTTP root, as on the real mirror:

    debian/           suite bookworm           mini-base, mini-libfoo 2.0-1, mini-app, mini-unrelated,
                                               mini-arch-all
    debian-security/  suite bookworm-security  mini-libfoo 2.0-1+deb12u1

each with `dists/<suite>/{Release,InRelease,Release.gpg}`, `dists/<suite>/main/binary-amd64/Packages`
(plus .gz and .xz of the same bytes) and `pool/main/<prefix>/<source>/<name>_<version>_<arch>.deb`.

The .debs are built by the real `dpkg-deb --root-owner-group --build` from trees whose modes and
mtimes are set explicitly, with SOURCE_DATE_EPOCH and a single xz thread, so the .debs, the Packages
files and the Release files are the same bytes for the same epoch and tools. Only the signatures
differ between runs: the throwaway signing key is generated afresh in a temporary GNUPGHOME, and its
public half is exported to a binary keyring for `gpgv --keyring` or apt's `signed-by=`.

The archive is served by a ThreadingHTTPServer in a daemon thread for the whole session.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import hashlib
import http.server
import logging
import lzma
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.integration.oci_fixtures import _is_static_elf, run
from tests.tools import require

log = logging.getLogger(__name__)

# Sat, 14 Nov 2026 00:00:00 UTC. It is a fixed past date on purpose: apt refuses a Release whose
# Date lies in the future ("not valid yet"), and a fixed value keeps every build byte-identical.
EPOCH = 1794614400

COMPONENT = "main"
ARCHITECTURE = "amd64"
MAINTAINER = "Meshseed Test Archive <test-archive@meshseed.invalid>"
SIGNING_UID = MAINTAINER

# Field order of the Packages stanzas deb.debian.org serves (dak's order); fields a stanza lacks are skipped.
_PACKAGES_FIELD_ORDER = (
    "Package",
    "Source",
    "Version",
    "Installed-Size",
    "Maintainer",
    "Architecture",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Conflicts",
    "Breaks",
    "Description",
    "Homepage",
    "Section",
    "Priority",
    "Filename",
    "Size",
    "MD5sum",
    "SHA256",
)
# Field order of a binary package's DEBIAN/control as dpkg-gencontrol writes it.
_CONTROL_FIELD_ORDER = (
    "Package",
    "Source",
    "Version",
    "Architecture",
    "Maintainer",
    "Installed-Size",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Provides",
    "Section",
    "Priority",
    "Homepage",
    "Description",
)


@dataclass(frozen=True)
class Archive:
    directory: str  # path under the HTTP root, e.g. "debian-security"
    suite: str  # also the Codename and the name of the dists/ directory
    label: str
    origin: str = "Debian"


MAIN_ARCHIVE = Archive("debian", "bookworm", "Debian")
SECURITY_ARCHIVE = Archive("debian-security", "bookworm-security", "Debian-Security")
ARCHIVES = (MAIN_ARCHIVE, SECURITY_ARCHIVE)


@dataclass(frozen=True)
class Entry:
    """One filesystem object in a package's data.tar."""

    path: str  # absolute, as installed: "/usr/bin/mini-app"
    kind: Literal["file", "dir", "symlink"] = "file"
    mode: int = 0o644  # for files and directories; a symlink's mode is always 0777
    content: bytes = b""
    target: str = ""  # for symlinks
    host_busybox: bool = False  # content is the host's busybox-static binary, read at build time


@dataclass(frozen=True)
class PackageSpec:
    name: str
    version: str
    archive: Archive
    description: str
    entries: tuple[Entry, ...]
    architecture: str = ARCHITECTURE
    # (field, value) pairs of the relationship fields, e.g. ("Depends", "mini-base (>= 1.0)").
    relations: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}={self.version}"

    @property
    def filename(self) -> str:
        """`Filename:` of the Packages stanza: the pool path relative to the archive root."""
        # Debian pools lib* sources under a four-letter prefix ("libf"), everything else under the
        # first letter; the source is the binary package's name for every package here.
        prefix = self.name[:4] if self.name.startswith("lib") else self.name[0]
        upstream_version = self.version.partition(":")[2] or self.version  # no epoch in file names
        deb = f"{self.name}_{upstream_version}_{self.architecture}.deb"
        return f"pool/{COMPONENT}/{prefix}/{self.name}/{deb}"


_LIBFOO_PROVIDES = (("Provides", "mini-virtual"),)

PACKAGE_SPECS: tuple[PackageSpec, ...] = (
    PackageSpec(
        "mini-base",
        "1.0",
        MAIN_ARCHIVE,
        "minimal base system: busybox as /bin/sh, cat and echo",
        (
            Entry("/bin/busybox", mode=0o755, host_busybox=True),
            Entry("/bin/sh", kind="symlink", target="busybox"),
            Entry("/bin/cat", kind="symlink", target="busybox"),
            Entry("/bin/echo", kind="symlink", target="busybox"),
            # Setuid on purpose: callers check that unpacking keeps the bit (and root ownership).
            Entry("/usr/bin/mini-suid", mode=0o4755, content=b"#!/bin/sh\necho mini-suid\n"),
            # An empty directory, which only exists in the package because the tar lists it.
            Entry("/etc/mini", kind="dir", mode=0o755),
        ),
    ),
    PackageSpec(
        "mini-libfoo",
        "2.0-1",
        MAIN_ARCHIVE,
        "test library, release version",
        (Entry("/usr/lib/mini/libfoo.txt", content=b"libfoo 2.0-1\n"),),
        relations=_LIBFOO_PROVIDES,
    ),
    PackageSpec(
        "mini-libfoo",
        "2.0-1+deb12u1",
        SECURITY_ARCHIVE,
        "test library, security update",
        (Entry("/usr/lib/mini/libfoo.txt", content=b"libfoo 2.0-1+deb12u1\n"),),
        relations=_LIBFOO_PROVIDES,
    ),
    PackageSpec(
        "mini-app",
        "1.0-1",
        MAIN_ARCHIVE,
        "test application with every kind of dependency",
        (
            Entry("/usr/share/mini-app/README", content=b"mini-app: a test package of meshseed\n"),
            Entry("/usr/bin/mini-app", mode=0o755, content=b'#!/bin/sh\necho "mini-app ok"\n'),
        ),
        relations=(
            ("Pre-Depends", "mini-base"),
            # A versioned, a virtual and an alternative dependency whose first choice does not exist.
            ("Depends", "mini-base (>= 1.0), mini-virtual, missing-package | mini-libfoo (>= 2.0)"),
        ),
    ),
    PackageSpec(
        "mini-unrelated",
        "3.0",
        MAIN_ARCHIVE,
        "test package nothing depends on",
        (Entry("/usr/share/unrelated/file", content=b"unrelated\n"),),
    ),
    PackageSpec(
        "mini-arch-all",
        "1.0",
        MAIN_ARCHIVE,
        "architecture-independent test package",
        (Entry("/usr/share/mini-all/data", content=b"arch all data\n"),),
        architecture="all",
        relations=(("Depends", "mini-base"),),
    ),
)
SPECS_BY_KEY: dict[str, PackageSpec] = {spec.key: spec for spec in PACKAGE_SPECS}


def expected_closure() -> dict[str, str]:
    """What installing mini-app from both suites pulls in: the newer, security mini-libfoo wins."""
    return {"mini-app": "1.0-1", "mini-base": "1.0", "mini-libfoo": "2.0-1+deb12u1"}


@dataclass(frozen=True)
class DebRepo:
    url: str  # "http://127.0.0.1:PORT/debian" (suite "bookworm", component main, arch amd64)
    security_url: str  # "http://127.0.0.1:PORT/debian-security" (suite "bookworm-security")
    root: Path  # the directory served at http://127.0.0.1:PORT/
    keyring: Path  # a binary OpenPGP keyring (gpgv --keyring) holding the throwaway signing key
    packages: dict[str, dict[str, str]]  # "name=version" -> its Packages stanza fields (both suites)
    epoch: int  # SOURCE_DATE_EPOCH used for building the debs

    def deb_path(self, key: str) -> Path:
        """The .deb of "name=version" on disk."""
        return self.root / SPECS_BY_KEY[key].archive.directory / self.packages[key]["Filename"]

    def deb_url(self, key: str) -> str:
        """The .deb of "name=version" over HTTP, as apt would fetch it."""
        base = self.security_url if SPECS_BY_KEY[key].archive is SECURITY_ARCHIVE else self.url
        return f"{base}/{self.packages[key]['Filename']}"


# --- deb822 -------------------------------------------------------------------------------------------


def parse_deb822(text: str) -> list[dict[str, str]]:
    """Paragraphs of a Packages or Release file as dicts, in file order.

    A multi-line value keeps one line per continuation line, with the leading space removed; a field
    like Release's `SHA256:` whose first line is empty therefore starts with "\\n".
    """
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    field = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, field = {}, ""
        elif line[0] in " \t":
            if not field:
                raise ValueError(f"continuation line without a field: {line!r}")
            current[field] += "\n" + line[1:]
        else:
            field, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"not a deb822 field: {line!r}")
            if field in current:
                raise ValueError(f"field {field!r} twice in one paragraph")
            current[field] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def format_deb822(fields: Mapping[str, str], order: tuple[str, ...]) -> str:
    """One paragraph with the fields in `order` (unknown fields are an error: order is part of the format)."""
    unknown = set(fields) - set(order)
    if unknown:
        raise ValueError(f"fields without a place in the order: {sorted(unknown)}")
    return "".join(f"{name}: {fields[name]}\n" for name in order if name in fields)


def release_date(epoch: int) -> str:
    """RFC 2822 in UTC, spelled like Debian's Release files: "Sat, 14 Nov 2026 00:00:00 UTC"."""
    # formatdate is locale-independent (time.strftime's %a and %b are not) and writes "GMT".
    return email.utils.formatdate(epoch, usegmt=True).removesuffix("GMT") + "UTC"


# --- building the .debs -------------------------------------------------------------------------------


def _tool_env(epoch: int) -> dict[str, str]:
    # A fixed locale and zone keep tool output stable; SOURCE_DATE_EPOCH sets the ar member times and
    # clamps the tar mtimes in dpkg-deb.
    return {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8", "TZ": "UTC"}


def _host_busybox() -> bytes:
    busybox = Path(require("busybox", "busybox-static")).resolve()
    if not _is_static_elf(busybox):
        # A dynamically linked busybox would not run once unpacked into an empty root.
        raise AssertionError(f"{busybox} is dynamically linked; install busybox-static")
    return busybox.read_bytes()


def _installed_size(tree: Path) -> int:
    """Installed-Size in KiB like dpkg-gencontrol: files rounded up to whole KiB, 1 for any other entry."""
    total = 0
    for path in tree.rglob("*"):
        if path.relative_to(tree).parts[0] == "DEBIAN":
            continue
        if path.is_file() and not path.is_symlink():
            total += -(-path.stat().st_size // 1024)
        else:
            total += 1
    return total


def _populate(tree: Path, spec: PackageSpec, busybox: bytes) -> None:
    """Create the package's files with exactly their modes; parent directories get 0755."""
    for entry in spec.entries:
        path = tree / entry.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
        elif entry.kind == "symlink":
            path.symlink_to(entry.target)
            continue
        else:
            path.write_bytes(busybox if entry.host_busybox else entry.content)
        # chmod after writing: the umask must not decide what the package ships.
        path.chmod(entry.mode)
    explicit = {tree / entry.path.lstrip("/") for entry in spec.entries}
    for directory in (tree, *(p for p in tree.rglob("*") if p.is_dir() and not p.is_symlink())):
        if directory not in explicit:
            directory.chmod(0o755)


def _write_control(tree: Path, spec: PackageSpec) -> dict[str, str]:
    """DEBIAN/control and DEBIAN/md5sums; returns the control fields."""
    md5sums = "".join(
        f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(tree).as_posix()}\n"
        for path in sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix())
        if path.is_file() and not path.is_symlink()
    )
    fields = {
        "Package": spec.name,
        "Version": spec.version,
        "Architecture": spec.architecture,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(_installed_size(tree)),
        **dict(spec.relations),
        "Section": "misc",
        "Priority": "optional",
        "Description": spec.description,
    }
    control = tree / "DEBIAN"
    control.mkdir(mode=0o755)
    control.chmod(0o755)  # dpkg-deb rejects a DEBIAN directory with other modes
    (control / "control").write_text(format_deb822(fields, _CONTROL_FIELD_ORDER))
    (control / "md5sums").write_text(md5sums)
    for name in ("control", "md5sums"):
        (control / name).chmod(0o644)
    return fields


def _set_mtimes(tree: Path, epoch: int) -> None:
    # dpkg-deb clamps mtimes to SOURCE_DATE_EPOCH but keeps older ones; setting every one (symlinks
    # too, without following them) makes the tar independent of when the tree was written. The order
    # does not matter: setting a child's times leaves its parent's mtime alone.
    for path in (tree, *tree.rglob("*")):
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def build_deb(spec: PackageSpec, work: Path, output: Path, epoch: int, busybox: bytes) -> dict[str, str]:
    """Build `spec` into the file `output` with dpkg-deb; returns its control fields."""
    dpkg_deb = require("dpkg-deb", "dpkg")
    tree = work / f"{spec.name}_{spec.version}_{spec.architecture}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    _populate(tree, spec, busybox)
    fields = _write_control(tree, spec)
    _set_mtimes(tree, epoch)
    output.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            dpkg_deb,
            "--root-owner-group",
            "-Zxz",
            # Multi-threaded xz writes different bytes than single-threaded xz, and dpkg-deb picks the
            # thread count from the CPUs; one thread makes the .deb the same on every machine.
            "--threads-max=1",
            "--build",
            str(tree),
            str(output),
        ],
        env=_tool_env(epoch),
    )
    return fields


def _packages_stanza(control: Mapping[str, str], filename: str, deb: bytes) -> dict[str, str]:
    fields = {
        **control,
        "Filename": filename,
        "Size": str(len(deb)),
        "MD5sum": hashlib.md5(deb).hexdigest(),
        "SHA256": hashlib.sha256(deb).hexdigest(),
    }
    return {name: fields[name] for name in _PACKAGES_FIELD_ORDER if name in fields}


# --- indexes and signatures ---------------------------------------------------------------------------


class Signer:
    """A throwaway ed25519 key in its own GNUPGHOME, for signing Release files."""

    def __init__(self, home: Path) -> None:
        self.gpg = require("gpg", "gnupg")
        self.home = home
        home.chmod(0o700)  # gpg warns about (and some versions refuse) a group-readable home
        self._gpg("--quick-gen-key", SIGNING_UID, "ed25519", "sign", "never")
        listing = self._gpg("--with-colons", "--list-secret-keys", SIGNING_UID).stdout.decode()
        self.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        argv = [self.gpg, "--homedir", str(self.home), "--batch", "--no-tty", "--quiet"]
        # An empty passphrase through loopback: no pinentry, nothing asked on a terminal.
        argv += ["--pinentry-mode", "loopback", "--passphrase", "", *args]
        return run(argv, env=env)

    def export_keyring(self, keyring: Path) -> None:
        """The public key as a binary keyring: what gpgv --keyring and apt's signed-by= read."""
        keyring.write_bytes(self._gpg("--export", self.fingerprint).stdout)

    def sign_release(self, release: Path) -> None:
        """InRelease (clearsigned) and Release.gpg (detached, armored) next to `release`, like dak."""
        common = ("--yes", "--local-user", self.fingerprint, "--digest-algo", "SHA256")
        self._gpg(*common, "--clearsign", "--output", str(release.with_name("InRelease")), str(release))
        self._gpg(
            *common,
            "--armor",
            "--detach-sign",
            "--output",
            str(release.with_name("Release.gpg")),
            str(release),
        )

    def stop_agent(self) -> None:
        """Stop the gpg-agent that key generation started for this GNUPGHOME (only that one)."""
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None:
            run([gpgconf, "--homedir", str(self.home), "--kill", "gpg-agent"], check=False)


@contextlib.contextmanager
def signer() -> Iterator[Signer]:
    """A Signer in a short temporary GNUPGHOME, removed (agent stopped) afterwards.

    The home is under the system temp directory rather than pytest's: gpg-agent's socket lives in it
    and a Unix socket path may not exceed 107 bytes.
    """
    with tempfile.TemporaryDirectory(prefix="deb-repo-gnupg-") as home:
        created = Signer(Path(home))
        try:
            yield created
        finally:
            created.stop_agent()


def _write_index_files(directory: Path, data: bytes) -> dict[str, bytes]:
    """Packages, Packages.gz and Packages.xz of the same bytes, all reproducible."""
    files = {
        "Packages": data,
        # mtime=0 and no file name in the gzip header; xz has no timestamps at all.
        "Packages.gz": gzip.compress(data, compresslevel=9, mtime=0),
        "Packages.xz": lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return files


def release_text(archive: Archive, epoch: int, index_files: Mapping[str, bytes]) -> str:
    """The Release file: fixed fields, then ` <sha256> <size> <path>` lines in dak's `" %s %8d %s"`."""
    fields = (
        ("Origin", archive.origin),
        ("Label", archive.label),
        ("Suite", archive.suite),
        ("Codename", archive.suite),
        ("Date", release_date(epoch)),
        ("Architectures", ARCHITECTURE),
        ("Components", COMPONENT),
        ("Description", f"meshseed test archive: {archive.suite}"),
    )
    lines = [f"{name}: {value}" for name, value in fields]
    lines.append("SHA256:")
    lines += [
        f" {hashlib.sha256(content).hexdigest()} {len(content):8d} {path}"
        for path, content in sorted(index_files.items())
    ]
    return "\n".join(lines) + "\n"


def build_archives(root: Path, work: Path, signing: Signer, epoch: int = EPOCH) -> dict[str, dict[str, str]]:
    """Write both archives under `root` and sign them; returns "name=version" -> Packages stanza."""
    busybox = _host_busybox()
    packages: dict[str, dict[str, str]] = {}
    for archive in ARCHIVES:
        base = root / archive.directory
        stanzas = []
        for spec in sorted(
            (s for s in PACKAGE_SPECS if s.archive is archive), key=lambda s: (s.name, s.version)
        ):
            deb = base / spec.filename
            control = build_deb(spec, work / archive.directory, deb, epoch, busybox)
            stanza = _packages_stanza(control, spec.filename, deb.read_bytes())
            packages[spec.key] = stanza
            stanzas.append(format_deb822(stanza, _PACKAGES_FIELD_ORDER))
        dists = base / "dists" / archive.suite
        binary = f"{COMPONENT}/binary-{ARCHITECTURE}"
        written = _write_index_files(dists / binary, "\n".join(stanzas).encode())
        release = dists / "Release"
        release.write_text(release_text(archive, epoch, {f"{binary}/{n}": c for n, c in written.items()}))
        signing.sign_release(release)
    # Served files carry the epoch too, so Last-Modified headers do not depend on the build time.
    for path in root.rglob("*"):
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    return packages


# --- serving ------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the archive root; requests go to the log, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("deb repo %s: " + format, self.address_string(), *args)


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 at a free port; yields "http://127.0.0.1:PORT"."""
    handler = functools.partial(_Handler, directory=str(root))
    # Port 0: the kernel picks a free port at bind time, so there is no race to retry.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="deb-repo-http", daemon=True
    )
    thread.start()
    port = server.server_address[1]
    log.info("Debian test archive %s served at http://127.0.0.1:%d/", root, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def deb_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebRepo]:
    """Both archives built, signed and served for the whole session; the server stops at the end."""
    base = tmp_path_factory.mktemp("deb-repo")
    root = base / "www"
    keyring = base / "archive-keyring.gpg"
    with signer() as signing:
        packages = build_archives(root, base / "build", signing, EPOCH)
        signing.export_keyring(keyring)
    with serve_directory(root) as url:
        yield DebRepo(
            url=f"{url}/{MAIN_ARCHIVE.directory}",
            security_url=f"{url}/{SECURITY_ARCHIVE.directory}",
            root=root,
            keyring=keyring,
            packages=packages,
            epoch=EPOCH,
        )
