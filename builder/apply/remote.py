"""What `apply` does on a node, over SSH as root (sudo): read the sha256 and mode of the
files meshseed owns, write one atomically, ask k3s its version, restart units.

`root` prefixes every path on the node; it is empty except in the tests, whose sshd
stands in for several nodes on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from builder.apply.desired import K3S_BINARY, Wanted
from builder.errors import MeshseedError
from builder.tools.ssh import SshTarget, ssh_output

log = logging.getLogger("meshseed.apply")

SUDO = ("sudo", "-n")
SHORT = 120.0
# A bundle of images may take a while over a slow link.
UPLOAD = 3600.0

# The sha256 and then the octal mode of each path that is a regular file (not a link),
# three programs in all however many files there are; paths are meshseed's own, without
# blanks or newlines.
INSPECT = r"""
files() { for f; do if [ -f "$f" ] && [ ! -L "$f" ]; then printf '%s\0' "$f"; fi; done; }
files "$@" | xargs -0r sha256sum --
echo --
files "$@" | xargs -0r stat -c '%a %n' --
"""

# Write stdin to TARGET whole or not at all: a temporary file in the same directory (so
# the rename cannot cross file systems), given its mode before it has a name anyone reads,
# its sha256 checked on the node, then renamed over the target, which rename(2) does
# atomically. A failure leaves the target as it was and no temporary file behind.
WRITE = r"""
set -eu
target=$1 mode=$2 want=$3
dir=$(dirname "$target")
mkdir -p "$dir"
tmp=$(mktemp "$dir/.$(basename "$target").meshseed-XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod "$mode" "$tmp"
cat > "$tmp"
got=$(sha256sum < "$tmp" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "$target: wrote sha256 $got, expected $want; left the old file in place" >&2
  exit 3
fi
sync "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
"""


RESTART = r"""
set -eu
date +%s
for unit; do
  if [ "$unit" = daemon-reload ]; then systemctl daemon-reload; else systemctl restart "$unit"; fi
done
"""


@dataclass(frozen=True)
class Found:
    sha256: str | None  # None: no such file
    mode: int | None


@dataclass(frozen=True)
class OnNode:
    """A node as `apply` reaches it."""

    name: str
    target: SshTarget
    root: str = ""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = SHORT,
        stdin: BinaryIO | None = None,
        label: str | None = None,
    ) -> bytes:
        return ssh_output(self.target, argv, timeout=timeout, stdin=stdin, label=label)

    def sudo_script(
        self, script: str, name: str, *args: str, timeout: float = SHORT, stdin: BinaryIO | None = None
    ) -> bytes:
        # Messages name the step and its arguments, not the script's text.
        label = " ".join((name, *args[:3], "..." if len(args) > 3 else "")).strip()
        return self.run([*SUDO, "sh", "-c", script, name, *args], timeout=timeout, stdin=stdin, label=label)

    def inspect(self, paths: Sequence[str]) -> list[Found]:
        full = [self.root + path for path in paths]
        answer = self.sudo_script(INSPECT, "meshseed-inspect", *full).decode(errors="replace")
        sums, _, modes = answer.partition("--\n")
        digests = dict(_pair(line, "  ", self.name, digest=True) for line in sums.splitlines())
        octal = dict(_pair(line, " ", self.name, digest=False) for line in modes.splitlines())
        if digests.keys() != octal.keys() or not digests.keys() <= set(full):
            raise MeshseedError(f"{self.name}: answered for other files than it was asked about")
        return [
            Found(digests[path], int(octal[path], 8)) if path in digests else Found(None, None)
            for path in full
        ]

    def write(self, wanted: Wanted) -> None:
        log.info("%s: writing %s (%o, sha256 %s)", self.name, wanted.path, wanted.mode, wanted.sha256)
        with _input(wanted) as stdin:
            self.sudo_script(
                WRITE,
                "meshseed-write",
                self.root + wanted.path,
                f"{wanted.mode:o}",
                wanted.sha256,
                timeout=UPLOAD,
                stdin=stdin,
            )

    def k3s_version(self) -> str:
        return self.run([*SUDO, self.root + K3S_BINARY, "--version"]).decode(errors="replace")

    def restart(self, units: Sequence[str]) -> int:
        """Restart `units` in order ("daemon-reload" reloads systemd), stopping at the first
        that fails; the node's time just before (seconds since the epoch), the clock its
        kubelet reports in."""
        answer = self.sudo_script(RESTART, "meshseed-restart", *units, timeout=SHORT * 3)
        text = answer.decode(errors="replace").strip()
        if not text.isdecimal():
            raise MeshseedError(f"{self.name}: `date +%s` said {text[:40]!r}")
        return int(text)

    def etcd_ready(self) -> str | None:
        """None when this server's API server finds its etcd healthy, else why not."""
        try:
            # k3s points a server's API server at its own etcd member (127.0.0.1:2379), and
            # the API server's /readyz/etcd check asks that member (kubernetes.io/docs/
            # reference/using-api/health-checks): "ok" means the member is up and has a
            # quorum to answer from.
            answer = self.run([*SUDO, "k3s", "kubectl", "get", "--raw", "/readyz/etcd"])
        except MeshseedError as error:
            return error.message
        return None if answer.strip() == b"ok" else answer.decode(errors="replace").strip()[:200]


def _pair(line: str, separator: str, node: str, *, digest: bool) -> tuple[str, str]:
    """(path, value) of a line "<value><separator><path>", as sha256sum and stat print them."""
    value, _, path = line.partition(separator)
    digits = "0123456789abcdef" if digest else "01234567"
    valid = bool(value) and all(c in digits for c in value) and (len(value) == 64 or not digest)
    if not valid or not path:
        raise MeshseedError(f"{node}: answered {line[:80]!r} for a file's sha256 or mode")
    return path, value


@contextlib.contextmanager
def _input(wanted: Wanted) -> Iterator[BinaryIO]:
    if wanted.source is not None:
        with wanted.source.open("rb") as file:
            yield file
        return
    assert wanted.data is not None
    with tempfile.TemporaryFile() as file:
        file.write(wanted.data)
        file.seek(0)
        yield file
