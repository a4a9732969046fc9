"""Real OCI tooling on 127.0.0.1 for tests: a registry, reproducible test images in it, and containerd.

Nothing here reaches the internet: the images are built from the host's busybox-static binary with
buildah, pushed into a `docker-registry` (CNCF distribution) that listens on 127.0.0.1 only, and
containerd runs with its own config, root, state and socket under the test's tmp_path.

Every external command goes through `run`, which logs it, applies a timeout and, on failure, raises
`CommandError` naming the exact command line with its exit status, stdout and stderr.

Layers are committed gzip-compressed (`buildah commit --disable-compression=false`): `buildah manifest
push` recompresses uncompressed layers (buildah 1.28 has no --preserve-digests), which would change the
per-platform digests, and it would also stop the `hello` image from sharing the busybox layer blob.
With gzip layers from the start, every push keeps the digests the local OCI layouts have, and the same
buildah binary gzips the same tar into the same bytes, so all images share one busybox layer digest.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.tools import require

log = logging.getLogger(__name__)

# Default limit for one external command; a hung tool fails the test instead of hanging the suite.
TIMEOUT = 120.0
# How long to wait for a freshly started daemon to answer.
STARTUP_TIMEOUT = 30.0

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# The registry only serves an index or an OCI manifest to clients that say they accept it.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

# The namespace k3s's embedded containerd keeps Kubernetes images in.
CONTAINERD_NAMESPACE = "k8s.io"
# Annotation containerd's importer reads the full image name from (k3s airgap bundles rely on it).
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"

BUSYBOX_REPOSITORY = "meshseed-test/busybox"
HELLO_REPOSITORY = "meshseed-test/hello"
TEST_TAG = "1"
BUSYBOX_PLATFORMS = ("linux/amd64", "linux/arm64")
BUSYBOX_APPLETS = ("sh", "echo", "cat", "ls", "true", "sleep", "env")
HELLO_TEXT = b"hello from meshseed-test\n"

_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")
# sun_path holds 108 bytes with the trailing NUL; containerd also binds ADDRESS + ".ttrpc".
_MAX_SOCKET_PATH = 107 - len(".ttrpc")
_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: the child, between fork and exec, should only make the one call.
_LIBC = ctypes.CDLL(None, use_errno=True)
# Never go through an HTTP proxy from the environment: the registry is on 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CommandError(RuntimeError):
    """An external command failed or timed out; the message names the command and has its output."""


@dataclass(frozen=True)
class Registry:
    host: str  # "127.0.0.1:PORT"
    url: str  # "http://127.0.0.1:PORT"
    root: Path  # storage.filesystem.rootdirectory

    def blob_path(self, digest: str) -> Path:
        """The registry's on-disk `data` file for a blob (filesystem driver layout of distribution v2)."""
        hex_digest = _hex(digest)
        return self.root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


@dataclass(frozen=True)
class TestImage:
    # The class name starts with "Test"; this keeps pytest from trying to collect it as a test class.
    __test__: ClassVar[bool] = False

    repository: str  # path inside the registry, e.g. "meshseed-test/busybox"
    tag: str
    index_digest: str  # digest of what the tag points to (an index, or a manifest)
    media_type: str  # media type of that top-level manifest
    # {"linux/amd64": "sha256:...", ...}; for a single-platform image {"linux/amd64": index_digest}
    platform_digests: dict[str, str]
    layer_digests: tuple[str, ...]  # the linux/amd64 image's layers, in order

    def reference(self, registry: Registry) -> str:
        """`HOST/REPOSITORY:TAG`, as skopeo's docker:// transport and ctr want it."""
        return f"{registry.host}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Containerd:
    address: Path  # the grpc socket
    root: Path  # containerd's persistent root (content store, snapshots, metadata)
    state: Path  # containerd's state directory; also holds ctr's FIFOs and runc's state for `run`
    log: Path  # containerd's own stdout and stderr
    snapshotter: str  # "overlayfs" where the kernel allows it, else "native"

    def ctr(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """`ctr --address SOCK -n k8s.io ARGS`, with this daemon's snapshotter as ctr's default."""
        return self._ctr(CONTAINERD_NAMESPACE, *args, input=input, check=check)

    def run(
        self, image: str, *command: str, container_id: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """`ctr run --rm` of `image`, with a fresh container id unless one is given.

        ctr puts FIFOs in /run/containerd/fifo and runc keeps container state in
        /run/containerd/runc by default, shared with every other containerd on the machine; both are
        moved under this daemon's state directory so that parallel test daemons cannot collide.
        (containerd 1.6 still puts shim sockets in /run/containerd/s, named by a hash of the socket
        address, container and namespace, so those do not collide either.)
        """
        name = container_id or f"meshseed-test-{uuid.uuid4().hex[:12]}"
        return self.ctr(
            "run",
            "--rm",
            "--net-host",
            "--fifo-dir",
            str(self.state / "ctr-fifo"),
            "--runc-root",
            str(self.state / "runc-root"),
            image,
            name,
            *command,
            check=check,
        )

    def remove_leftovers(self) -> None:
        """Delete tasks and containers a test left behind, through containerd, so no shim outlives it."""
        for namespace in self.ctr("namespaces", "ls", "-q", check=False).stdout.decode().split():
            for task in self._ctr(namespace, "tasks", "ls", "-q", check=False).stdout.decode().split():
                self._ctr(namespace, "tasks", "rm", "-f", task, check=False)
            for container in (
                self._ctr(namespace, "containers", "ls", "-q", check=False).stdout.decode().split()
            ):
                self._ctr(namespace, "containers", "rm", container, check=False)

    def _ctr(
        self, namespace: str, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        program = require("ctr", "containerd")
        # ctr takes the snapshotter for import, pull and run from this variable when no flag is given.
        env = {**os.environ, "CONTAINERD_SNAPSHOTTER": self.snapshotter}
        argv = [program, "--address", str(self.address), "-n", namespace, *args]
        return run(argv, input=input, check=check, env=env, context=f"containerd log: {self.log}")


# --- running commands ---------------------------------------------------------------------------------


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    context: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run one command with a timeout; on failure raise CommandError naming it, with its output."""
    command = shlex.join(argv) if cwd is None else f"cd {shlex.quote(str(cwd))} && {shlex.join(argv)}"
    log.info("running: %s", command)
    started = time.monotonic()
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as error:
        raise CommandError(
            f"timed out after {timeout:g} s: {command}\n"
            f"{_output(error.stdout, error.stderr)}{_context(context)}"
        ) from None
    log.info("exit status %d after %.2f s: %s", result.returncode, time.monotonic() - started, command)
    if check and result.returncode != 0:
        raise CommandError(
            f"exit status {result.returncode}: {command}\n"
            f"{_output(result.stdout, result.stderr)}{_context(context)}"
        )
    return result


def _output(stdout: bytes | str | None, stderr: bytes | str | None) -> str:
    def text(data: bytes | str | None) -> str:
        if data is None:
            return ""
        decoded = data.decode(errors="replace") if isinstance(data, bytes) else data
        # Keep the end: that is where tools print the error that made them stop.
        return decoded[-4000:].rstrip()

    return f"--- stdout ---\n{text(stdout)}\n--- stderr ---\n{text(stderr)}"


def _context(context: str) -> str:
    return f"\n{context}" if context else ""


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace")
    except OSError as error:
        return f"({path} unreadable: {error})"


def _stop_with_this_process() -> None:
    """Runs in a daemon child before exec: the kernel sends it SIGTERM if pytest dies, even by SIGKILL.

    Teardown stops daemons normally; this only keeps a killed test run from leaving them behind.
    The signal follows the thread that forked, and pytest sets fixtures up on its main thread.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a daemon the tests own, its output in `log_path`; it dies with this process."""
    log.info("starting: %s", shlex.join(argv))
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_stop_with_this_process,  # noqa: PLW1509 - it only calls prctl
        )


def _stop(process: subprocess.Popen[bytes], what: str) -> None:
    """Stop exactly the process we started, by its PID: SIGTERM, then SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    log.info("stopping %s (pid %d)", what, process.pid)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", what, process.pid)
        process.kill()
        process.wait(timeout=15)


# --- HTTP against the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def http_request(
    url: str, *, method: str = "GET", accept: str | None = None, timeout: float = 30
) -> HttpResponse:
    """One plain HTTP request; error statuses are returned, not raised, so callers can assert on them."""
    request = urllib.request.Request(url, method=method)
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return HttpResponse(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _hex(digest: str) -> str:
    match = _SHA256.fullmatch(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


def free_port() -> int:
    # The kernel picks a free port; there is a short race until the registry binds it, which the
    # caller covers by retrying on "address already in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- registry -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_registry(work: Path) -> Iterator[Registry]:
    """`docker-registry serve CONFIG` on 127.0.0.1 at a free port, storage under `work`, delete enabled."""
    program = require("docker-registry", "docker-registry")
    root = work / "storage"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 4):
        port = free_port()
        host = f"127.0.0.1:{port}"
        config = work / f"registry-{attempt}.yml"
        log_path = work / f"registry-{attempt}.log"
        config.write_text(yaml.safe_dump(_registry_config(root, host), sort_keys=False))
        argv = [program, "serve", str(config)]
        process = _spawn(argv, log_path)
        try:
            if _wait_for_registry(process, f"http://{host}", argv, log_path):
                log.info("registry at %s (pid %d, log %s)", host, process.pid, log_path)
                yield Registry(host=host, url=f"http://{host}", root=root)
                return
        finally:
            _stop(process, f"docker-registry at {host}")
        if "address already in use" not in _tail(log_path):
            raise CommandError(
                f"{shlex.join(argv)} exited with status {process.returncode} before answering GET /v2/\n"
                f"--- {log_path} ---\n{_tail(log_path)}"
            )
        log.warning("port %d was taken before docker-registry bound it; trying another", port)
    raise CommandError(f"docker-registry could not bind a free port in 3 attempts; see {work}")


def _registry_config(root: Path, host: str) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            # Tests delete manifests and blobs through the API.
            "delete": {"enabled": True},
            # No background upload purging while a test looks at the storage directory.
            "maintenance": {"uploadpurging": {"enabled": False}},
            # No `cache` section on purpose: an in-memory blob descriptor cache would keep answering
            # for a blob a test removed from disk.
        },
        "http": {
            "addr": host,
            # A fixed secret only silences the "generated random secret" warning; this is a test server.
            "secret": "meshseed-test-only",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


def _wait_for_registry(
    process: subprocess.Popen[bytes], url: str, argv: Sequence[str], log_path: Path
) -> bool:
    """True once GET /v2/ answers 200; False if the process exited first (e.g. port taken)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if http_request(f"{url}/v2/", timeout=2).status == 200:
                return True
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    raise CommandError(
        f"{shlex.join(argv)} (pid {process.pid}) did not answer GET {url}/v2/ "
        f"within {STARTUP_TIMEOUT:.0f} s\n"
        f"--- {log_path} ---\n{_tail(log_path)}"
    )


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry for the whole session; stopped (only the process started here, by PID) at the end."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as served:
        yield served


# --- building images ----------------------------------------------------------------------------------


class _Buildah:
    """buildah with its own vfs storage under `work`: no daemon, no shared state, no overlay mounts."""

    def __init__(self, work: Path) -> None:
        self.program = require("buildah", "buildah")
        self.work = work
        self.tmp = work / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, timeout: float = TIMEOUT, cwd: Path | None = None) -> str:
        argv = [
            self.program,
            "--root",
            str(self.work / "storage"),
            "--runroot",
            str(self.work / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        # Big temporary blobs go under `work`, not /var/tmp.
        env = {**os.environ, "TMPDIR": str(self.tmp), "BUILDAH_ISOLATION": "chroot"}
        return run(argv, timeout=timeout, env=env, cwd=cwd).stdout.decode().strip()

    def layout_source(self, *args: str, layout: Path, timeout: float = TIMEOUT) -> str:
        """Run ARGS followed by `oci:NAME:1` of `layout`, from the layout's parent directory.

        buildah names an image read from `oci:PATH` after PATH, and fails on any upper-case letter
        in it ("repository name must be lowercase"); a tmp path may well have one, a layout name
        given here does not.
        """
        return self(*args, f"oci:{layout.name}:{TEST_TAG}", timeout=timeout, cwd=layout.parent)

    def commit(self, container: str, layout: Path, *, timeout: float = TIMEOUT) -> str:
        """Commit into an `oci:` layout with the epoch as every timestamp; returns the manifest digest."""
        # buildah adds to an existing layout; start empty so that index.json lists this image only.
        shutil.rmtree(layout, ignore_errors=True)
        layout.parent.mkdir(parents=True, exist_ok=True)  # buildah needs the parent to exist
        self(
            "commit",
            "--quiet",
            "--format",
            "oci",
            "--timestamp",
            "0",
            "--disable-compression=false",  # gzip now, so that pushing never recompresses (module docstring)
            container,
            f"oci:{layout}:{TEST_TAG}",
            timeout=timeout,
        )
        return layout_manifest_digest(layout)


def layout_manifest_digest(layout: Path) -> str:
    """The digest of the single manifest an OCI layout's index.json lists."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index["manifests"]
    if len(manifests) != 1:
        raise AssertionError(f"{layout}/index.json lists {len(manifests)} manifests, expected 1")
    digest: str = manifests[0]["digest"]
    return digest


def _busybox_rootfs(work: Path) -> Path:
    """/bin/busybox from busybox-static plus a few applet symlinks, with fixed modes (umask-proof)."""
    busybox = Path(require("busybox", "busybox-static")).resolve()
    if not _is_static_elf(busybox):
        raise AssertionError(
            f"{busybox} is dynamically linked and cannot run in a scratch image; install busybox-static"
        )
    rootfs = work / "rootfs-busybox"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    shutil.copyfile(busybox, rootfs / "bin/busybox")
    (rootfs / "bin/busybox").chmod(0o755)
    for applet in BUSYBOX_APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "bin").chmod(0o755)
    rootfs.chmod(0o755)
    return rootfs


def _is_static_elf(path: Path) -> bool:
    """True for an ELF64 little-endian executable without a PT_INTERP program header."""
    with path.open("rb") as elf:
        header = elf.read(64)
        if header[:6] != b"\x7fELF\x02\x01":
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        elf.seek(phoff)
        table = elf.read(phentsize * phnum)
    return all(int.from_bytes(table[i : i + 4], "little") != 3 for i in range(0, len(table), phentsize))


def build_busybox_layout(work: Path, platform: str = "linux/amd64") -> Path:
    """The busybox image for `platform` as an OCI layout (tag "1") under `work`; reproducible.

    Only the config's os/architecture differ between platforms: the binary is the host's, and an
    arm64 image of it exists to give the index a second platform, not to be run.
    """
    os_name, architecture = platform.split("/")
    buildah = _Buildah(work / f"buildah-busybox-{architecture}")
    rootfs = _busybox_rootfs(work)
    container = buildah("from", "--quiet", "--isolation", "chroot", "scratch")
    buildah("add", container, f"{rootfs}/", "/")
    buildah(
        "config",
        "--entrypoint",
        '["/bin/sh"]',
        "--env",
        "PATH=/bin",
        "--os",
        os_name,
        "--arch",
        architecture,
        container,
    )
    layout = work / "layouts" / f"busybox-{architecture}"
    buildah.commit(container, layout)
    return layout


def _build_hello_layout(work: Path, busybox_amd64: Path) -> Path:
    """busybox's linux/amd64 image plus a second layer with /hello.txt; the first layer is shared."""
    buildah = _Buildah(work / "buildah-hello")
    files = work / "rootfs-hello"
    files.mkdir(parents=True, exist_ok=True)
    (files / "hello.txt").write_bytes(HELLO_TEXT)
    (files / "hello.txt").chmod(0o644)
    container = buildah.layout_source("from", "--quiet", "--isolation", "chroot", layout=busybox_amd64)
    buildah("add", container, str(files / "hello.txt"), "/hello.txt")
    layout = work / "layouts" / "hello"
    buildah.commit(container, layout)
    return layout


def _skopeo(*args: str, timeout: float = TIMEOUT, tmp: Path | None = None) -> bytes:
    program = require("skopeo", "skopeo")
    options = ["--tmpdir", str(tmp)] if tmp is not None else []
    return run([program, *options, *args], timeout=timeout).stdout


def push_layout(registry: Registry, layout: Path, repository: str, *, timeout: float = TIMEOUT) -> None:
    """Push an OCI layout's tag "1" as REPOSITORY:1, byte for byte.

    --preserve-digests makes skopeo fail rather than silently recompress or convert anything.
    """
    _skopeo(
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
        f"oci:{layout}:{TEST_TAG}",
        f"docker://{registry.host}/{repository}:{TEST_TAG}",
        timeout=timeout,
        tmp=layout.parent,
    )


def raw_manifest(registry: Registry, repository: str, reference: str) -> bytes:
    """The exact manifest bytes skopeo reads for REPOSITORY:TAG or REPOSITORY@DIGEST."""
    separator = "@" if reference.startswith("sha256:") else ":"
    return _skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"docker://{registry.host}/{repository}{separator}{reference}",
    )


def read_pushed_image(registry: Registry, repository: str, tag: str = TEST_TAG) -> TestImage:
    """Describe REPOSITORY:TAG from what the registry serves; digests are sha256 of the raw bytes."""
    top_bytes = raw_manifest(registry, repository, tag)
    top = json.loads(top_bytes)
    index_digest = sha256_digest(top_bytes)
    media_type: str = top["mediaType"]
    if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        platform_digests = {_platform_key(entry["platform"]): entry["digest"] for entry in top["manifests"]}
        amd64 = platform_digests.get("linux/amd64")
        if amd64 is None:
            raise AssertionError(f"{repository}:{tag} has no linux/amd64 entry: {top_bytes.decode()}")
        manifest_bytes = raw_manifest(registry, repository, amd64)
        if sha256_digest(manifest_bytes) != amd64:
            raise AssertionError(f"{repository}@{amd64} is served with different bytes")
        manifest = json.loads(manifest_bytes)
    else:
        manifest = top
        config_bytes = _skopeo(
            "inspect",
            "--raw",
            "--config",
            "--tls-verify=false",
            f"docker://{registry.host}/{repository}:{tag}",
        )
        platform_digests = {_platform_key(json.loads(config_bytes)): index_digest}
    return TestImage(
        repository=repository,
        tag=tag,
        index_digest=index_digest,
        media_type=media_type,
        platform_digests=platform_digests,
        layer_digests=tuple(layer["digest"] for layer in manifest["layers"]),
    )


def _platform_key(platform: Mapping[str, Any]) -> str:
    key = f"{platform['os']}/{platform['architecture']}"
    return f"{key}/{platform['variant']}" if platform.get("variant") else key


def check_served(registry: Registry, image: TestImage) -> None:
    """Cross-check `image` against plain HTTP GETs, independent of skopeo; AssertionError on mismatch."""
    base = f"{registry.url}/v2/{image.repository}"
    problems: list[str] = []

    def check_manifest(reference: str, digest: str, media_type: str | None) -> None:
        url = f"{base}/manifests/{reference}"
        response = http_request(url, accept=MANIFEST_ACCEPT)
        if response.status != 200:
            problems.append(f"GET {url}: HTTP {response.status} {response.body[:200]!r}")
            return
        if sha256_digest(response.body) != digest or response.headers.get("docker-content-digest") != digest:
            problems.append(
                f"GET {url}: body {sha256_digest(response.body)}, header "
                f"{response.headers.get('docker-content-digest')}, expected {digest}"
            )
        if media_type is not None and response.headers.get("content-type") != media_type:
            problems.append(
                f"GET {url}: Content-Type {response.headers.get('content-type')}, expected {media_type}"
            )

    check_manifest(image.tag, image.index_digest, image.media_type)
    for digest in image.platform_digests.values():
        check_manifest(digest, digest, None)
    for digest in image.layer_digests:
        url = f"{base}/blobs/{digest}"
        response = http_request(url, method="HEAD")
        if response.status != 200:
            problems.append(f"HEAD {url}: HTTP {response.status}")
        if not registry.blob_path(digest).is_file():
            problems.append(f"{registry.blob_path(digest)} does not exist")
    if problems:
        raise AssertionError(
            f"{image.repository}:{image.tag} is not served as described:\n" + "\n".join(problems)
        )


def _push_busybox_index(registry: Registry, work: Path, layouts: Mapping[str, Path]) -> None:
    """Push both platforms and an OCI image index over them as BUSYBOX_REPOSITORY:1."""
    buildah = _Buildah(work / "buildah-index")
    index_name = f"meshseed-test-busybox-index-{uuid.uuid4().hex[:8]}"
    buildah("manifest", "create", index_name)
    for platform in BUSYBOX_PLATFORMS:
        buildah.layout_source("manifest", "add", index_name, layout=layouts[platform])
    # `manifest add` records the relative `oci:NAME:1` references, and `manifest push --all` opens
    # them again, so it has to run from the same directory.
    (layouts_dir,) = {layout.parent for layout in layouts.values()}
    buildah(
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--format",
        "oci",
        "--tls-verify=false",
        index_name,
        f"docker://{registry.host}/{BUSYBOX_REPOSITORY}:{TEST_TAG}",
        cwd=layouts_dir,
    )


def build_test_images(registry: Registry, work: Path) -> dict[str, TestImage]:
    """Build "busybox" (index: linux/amd64 + linux/arm64) and "hello" (amd64, busybox + /hello.txt), push."""
    layouts = {platform: build_busybox_layout(work, platform) for platform in BUSYBOX_PLATFORMS}
    hello_layout = _build_hello_layout(work, layouts["linux/amd64"])
    _push_busybox_index(registry, work, layouts)
    push_layout(registry, hello_layout, HELLO_REPOSITORY)

    images = {
        "busybox": read_pushed_image(registry, BUSYBOX_REPOSITORY),
        "hello": read_pushed_image(registry, HELLO_REPOSITORY),
    }
    # The registry must hold exactly what was built locally: nothing recompressed on the way.
    local = {platform: layout_manifest_digest(layout) for platform, layout in layouts.items()}
    if images["busybox"].media_type != OCI_INDEX or images["busybox"].platform_digests != local:
        raise AssertionError(f"pushed busybox index {images['busybox']} does not match local layouts {local}")
    if images["hello"].index_digest != layout_manifest_digest(hello_layout):
        raise AssertionError(f"pushed hello {images['hello']} does not match local layout {hello_layout}")
    if images["hello"].layer_digests[:1] != images["busybox"].layer_digests:
        raise AssertionError(f"hello does not share the busybox layer: {images['hello']} {images['busybox']}")
    for image in images.values():
        check_served(registry, image)
    return images


@pytest.fixture(scope="session")
def test_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestImage]:
    """{"busybox": multi-platform index, "hello": single-platform image sharing busybox's layer}, tag "1"."""
    started = time.monotonic()
    images = build_test_images(registry, tmp_path_factory.mktemp("oci-images"))
    log.info("built and pushed test images in %.1f s", time.monotonic() - started)
    return images


def push_image_with_random_layer(registry: Registry, work: Path, repository: str, size_mb: int) -> TestImage:
    """Build and push REPOSITORY:1, linux/amd64: the busybox layer plus `size_mb` MiB of random bytes.

    Random bytes do not compress, so the pushed layer is about `size_mb` MiB even though it is
    gzipped. The build happens in a fresh directory under `work`, removed after a successful push,
    because buildah's vfs storage keeps several full copies of the layer.
    """
    if size_mb < 0:
        raise ValueError(f"size_mb must be >= 0, not {size_mb}")
    work.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="random-image-", dir=work))
    # gzip and copies are linear in the size; two seconds per MiB is far above what they take.
    timeout = TIMEOUT + 2.0 * size_mb
    base = build_busybox_layout(build, "linux/amd64")
    files = build / "rootfs-random"
    files.mkdir()
    with (files / "random.bin").open("wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1 << 20))
    (files / "random.bin").chmod(0o644)
    buildah = _Buildah(build / "buildah-random")
    container = buildah.layout_source(
        "from", "--quiet", "--isolation", "chroot", layout=base, timeout=timeout
    )
    buildah("add", container, str(files / "random.bin"), "/random.bin", timeout=timeout)
    layout = build / "layouts" / "random"
    digest = buildah.commit(container, layout, timeout=timeout)
    push_layout(registry, layout, repository, timeout=timeout)
    image = read_pushed_image(registry, repository)
    if image.index_digest != digest:
        raise AssertionError(f"pushed {repository}:{TEST_TAG} is {image.index_digest}, built {digest}")
    check_served(registry, image)
    shutil.rmtree(build)
    return image


# --- archives for containerd --------------------------------------------------------------------------


def write_oci_archive(registry: Registry, image: TestImage, dest: Path, name: str) -> Path:
    """Copy `image` (all platforms) from the registry into a reproducible oci-archive tar at `dest`.

    index.json carries `io.containerd.image.name: NAME` so that `ctr images import` keeps NAME
    instead of deriving a name from the tag. skopeo's own oci-archive is not byte-identical between
    runs (its outer tar has the wall clock), so the layout is tarred here: sorted names, mtime 0,
    uid/gid 0.
    """
    layout = Path(tempfile.mkdtemp(prefix="oci-layout-", dir=dest.parent))
    all_platforms = ["--all"] if image.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) else []
    _skopeo(
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        *all_platforms,
        f"docker://{image.reference(registry)}",
        f"oci:{layout}:{image.tag}",
        tmp=dest.parent,
    )
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        entry["annotations"] = {CONTAINERD_IMAGE_NAME: name, OCI_REF_NAME: image.tag}
    (layout / "index.json").write_text(json.dumps(index, separators=(",", ":"), sort_keys=True))
    write_reproducible_tar(layout, dest)
    shutil.rmtree(layout)
    return dest


def write_reproducible_tar(source: Path, dest: Path) -> None:
    """Tar the tree under `source` with sorted names, mtime 0, uid/gid 0 and fixed modes."""
    with tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as archive:
        for path in sorted(source.rglob("*"), key=lambda p: p.relative_to(source).as_posix()):
            info = tarfile.TarInfo(path.relative_to(source).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.mode = 0o644
                info.size = path.stat().st_size
                with path.open("rb") as data:
                    archive.addfile(info, data)


# --- containerd ---------------------------------------------------------------------------------------


def _containerd_config(root: Path, state: Path, address: Path, opt: Path) -> str:
    def toml(path: Path) -> str:
        return json.dumps(str(path))  # a JSON string is a valid TOML basic string

    return "\n".join(
        (
            "version = 2",
            f"root = {toml(root)}",
            f"state = {toml(state)}",
            # CRI would set up CNI and stream servers; btrfs/zfs/devmapper/aufs only log errors here.
            "disabled_plugins = ["
            '"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", '
            '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", '
            '"io.containerd.snapshotter.v1.aufs"]',
            "",
            "[grpc]",
            f"  address = {toml(address)}",
            "",
            "[ttrpc]",
            f"  address = {toml(address.with_name(address.name + '.ttrpc'))}",
            "",
            # The default is /opt/containerd, outside the test's directory.
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {toml(opt)}",
            "",
        )
    )


def _wait_for_containerd(
    process: subprocess.Popen[bytes], argv: Sequence[str], address: Path, log_path: Path
) -> None:
    program = require("ctr", "containerd")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(
                f"{shlex.join(argv)} exited with status {process.returncode} during startup\n"
                f"--- {log_path} ---\n{_tail(log_path)}"
            )
        # `ctr version` fails until the server side answers on the socket.
        if (
            address.is_socket()
            and run([program, "--address", str(address), "version"], check=False, timeout=10).returncode == 0
        ):
            return
        time.sleep(0.05)
    raise CommandError(
        f"{shlex.join(argv)} (pid {process.pid}) did not answer on {address} "
        f"within {STARTUP_TIMEOUT:.0f} s\n"
        f"--- {log_path} ---\n{_tail(log_path)}"
    )


def _snapshotter(address: Path) -> str:
    """overlayfs if its plugin loaded (its init test-mounts an overlay), else the always-working native."""
    program = require("ctr", "containerd")
    plugins = run([program, "--address", str(address), "plugins", "ls"]).stdout.decode()
    for line in plugins.splitlines():
        fields = line.split()
        if fields[:2] == ["io.containerd.snapshotter.v1", "overlayfs"] and fields[-1] == "ok":
            return "overlayfs"
    log.warning("containerd's overlayfs snapshotter did not load; using native\n%s", plugins)
    return "native"


@contextlib.contextmanager
def start_containerd(work: Path) -> Iterator[Containerd]:
    """containerd with its own config (version 2), root, state and grpc socket under `work`."""
    program = require("containerd", "containerd")
    require("runc", "runc")  # ctr run needs it through containerd-shim-runc-v2
    root, state = work / "root", work / "state"
    address = work / "containerd.sock"
    short_dir: Path | None = None
    if len(os.fsencode(address)) > _MAX_SOCKET_PATH:
        # A deep --basetemp can exceed the unix socket path limit; fall back to a short directory.
        short_dir = Path(tempfile.mkdtemp(prefix="ctrd-"))
        address = short_dir / "containerd.sock"
    config = work / "containerd.toml"
    config.write_text(_containerd_config(root, state, address, work / "opt"))
    log_path = work / "containerd.log"
    argv = [program, "--config", str(config)]
    process = _spawn(argv, log_path)
    try:
        _wait_for_containerd(process, argv, address, log_path)
        daemon = Containerd(
            address=address, root=root, state=state, log=log_path, snapshotter=_snapshotter(address)
        )
        log.info("containerd on %s (pid %d, %s, log %s)", address, process.pid, daemon.snapshotter, log_path)
        try:
            yield daemon
        finally:
            if process.poll() is None:  # a dead daemon cannot be asked; its shims report to nobody
                daemon.remove_leftovers()
    finally:
        _stop(process, f"containerd on {address}")
        if short_dir is not None:
            shutil.rmtree(short_dir, ignore_errors=True)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    """A fresh containerd per test, stopped by PID at teardown."""
    work = tmp_path / "containerd"
    work.mkdir()
    with start_containerd(work) as daemon:
        yield daemon
