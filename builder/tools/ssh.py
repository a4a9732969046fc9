"""OpenSSH's client, for reading the backup node: one logged command per remote action."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.errors import MeshseedError
from builder.tools.run import find

log = logging.getLogger("meshseed.tools")
PACKAGE = "openssh-client"


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in; `config` is an ssh_config file (-F) for ports, keys, proxies."""

    host: str
    user: str
    config: Path | None = None
    options: tuple[str, ...] = ()

    def argv(self, remote: Sequence[str]) -> list[str]:
        argv = [find("ssh", PACKAGE), "-o", "BatchMode=yes"]
        if self.config is not None:
            argv += ["-F", str(self.config)]
        for option in self.options:
            argv += ["-o", option]
        # The remote side gets one shell-quoted string, so names travel intact.
        return [*argv, "-l", self.user, "--", self.host, shlex.join(remote)]


def ssh_output(target: SshTarget, remote: Sequence[str], *, timeout: float = 120) -> bytes:
    """The remote command's stdout; MeshseedError with its stderr when it fails."""
    argv = target.argv(remote)
    log.info("running: %s", shlex.join(argv))
    try:
        result = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MeshseedError(
            f"ssh to {target.host} timed out after {timeout:.0f} s: {shlex.join(remote)}"
        ) from None
    if result.returncode != 0:
        raise _failed(target, remote, result.returncode, result.stderr)
    return result.stdout


def ssh_stream(target: SshTarget, remote: Sequence[str], out: BinaryIO) -> int:
    """Stream the remote command's stdout into `out`; the number of bytes copied."""
    argv = target.argv(remote)
    log.info("running: %s", shlex.join(argv))
    copied = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        while chunk := process.stdout.read(1 << 20):
            out.write(chunk)
            copied += len(chunk)
        stderr = process.stderr.read()
        code = process.wait()
    if code != 0:
        raise _failed(target, remote, code, stderr)
    return copied


def _failed(target: SshTarget, remote: Sequence[str], code: int, stderr: bytes) -> MeshseedError:
    tail = "\n".join(stderr.decode(errors="replace").strip().splitlines()[-5:])
    return MeshseedError(
        f"ssh {target.user}@{target.host} {shlex.join(remote)} failed (exit status {code}): {tail}",
        hint="check the address, user and key; --ssh-config takes an ssh_config file",
    )
