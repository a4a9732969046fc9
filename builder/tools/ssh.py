"""OpenSSH's client, for working on the nodes: one logged command per remote action."""

from __future__ import annotations

import io
import logging
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

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
        # The remote side gets one shell-quoted string, so names travel intact.
        return [*self._ssh(), "-l", self.user, "--", self.host, shlex.join(remote)]

    def _ssh(self) -> list[str]:
        argv = [find("ssh", PACKAGE), "-o", "BatchMode=yes"]
        if self.config is not None:
            argv += ["-F", str(self.config)]
        for option in self.options:
            argv += ["-o", option]
        return argv

    def close_master(self) -> None:
        """End the shared connection of a target with ControlMaster options, if one runs
        (ssh -O exit); a failure here only leaves it to its ControlPersist timeout."""
        argv = [*self._ssh(), "-O", "exit", "-l", self.user, "--", self.host]
        log.info("running: %s", shlex.join(argv))
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)


class OutputTooLongError(MeshseedError):
    """The remote command sent more than the caller allowed; it was cut off there."""


def ssh_output(
    target: SshTarget,
    remote: Sequence[str],
    *,
    limit: int = 16 << 20,
    timeout: float = 120,
    stdin: BinaryIO | None = None,
    label: str | None = None,
) -> bytes:
    """The remote command's stdout (at most `limit` bytes); MeshseedError with its stderr
    when it fails, OutputTooLongError when it sends more. `stdin`, a file, is its input;
    `label` names the command in messages instead of its words (a long script's, say)."""
    out = io.BytesIO()
    ssh_stream(target, remote, out, limit=limit, timeout=timeout, stdin=stdin, label=label)
    return out.getvalue()


def ssh_stream(
    target: SshTarget,
    remote: Sequence[str],
    out: BinaryIO,
    *,
    limit: int | None = None,
    timeout: float | None = None,
    stdin: BinaryIO | None = None,
    label: str | None = None,
) -> int:
    """Stream the remote command's stdout into `out`; the number of bytes copied.

    The other end is not trusted: no more than `limit` bytes are written (one more byte
    ends the command and raises OutputTooLongError), its stderr is read as it comes (so a flood
    of it cannot stall the copy) and only its tail kept, and whatever goes wrong here, a
    full disk included, ends ssh rather than leaving it blocked on a pipe.
    """
    named = label or shlex.join(remote)
    argv = target.argv(remote)
    log.info("running: %s", shlex.join(argv))
    copied = 0
    # Without input, none: ssh must not read the caller's terminal.
    source = stdin if stdin is not None else subprocess.DEVNULL
    with subprocess.Popen(argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        stderr = _Tail(process.stderr)
        timer = threading.Timer(timeout, process.kill) if timeout is not None else None
        try:
            if timer is not None:
                timer.start()
            while chunk := process.stdout.read(_CHUNK if limit is None else min(_CHUNK, limit - copied + 1)):
                if limit is not None and copied + len(chunk) > limit:
                    out.write(chunk[: limit - copied])
                    copied = limit
                    raise OutputTooLongError(
                        f"ssh {target.user}@{target.host} {named} sent more than {limit} bytes; cut off there"
                    )
                out.write(chunk)
                copied += len(chunk)
            code = process.wait()
        except BaseException:
            process.kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            process.wait()
            stderr.join()
    if timer is not None and code == -signal.SIGKILL:
        raise MeshseedError(f"ssh to {target.host} timed out after {timeout:.0f} s: {named}")
    if code != 0:
        raise _failed(target, named, code, stderr.text)
    return copied


_CHUNK = 1 << 20
_STDERR_KEPT = 64 << 10


class _Tail(threading.Thread):
    """Reads a pipe to its end on a thread of its own, keeping only the last bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(name="ssh stderr", daemon=True)
        self._descriptor = pipe.fileno()
        self.text = b""
        self.start()

    def run(self) -> None:
        while chunk := os.read(self._descriptor, _CHUNK):
            self.text = (self.text + chunk)[-_STDERR_KEPT:]


def _failed(target: SshTarget, named: str, code: int, stderr: bytes) -> MeshseedError:
    tail = "\n".join(stderr.decode(errors="replace").strip().splitlines()[-5:])
    return MeshseedError(
        f"ssh {target.user}@{target.host} {named} failed (exit status {code}): {tail}",
        hint="check the address, user and key; --ssh-config takes an ssh_config file",
    )
