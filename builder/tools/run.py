"""Run an external program through plumbum: logged, with a clear error and a command to re-run."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plumbum import local

from builder.errors import MeshseedError

log = logging.getLogger("meshseed.tools")


def find(program: str, package: str) -> str:
    """The program's path, or an error naming the Debian package that provides it."""
    path = shutil.which(program)
    if path is None:
        raise MeshseedError(f"{program} is not installed", hint=f"apt-get install {package}")
    return path


def run_tool(
    program: str,
    args: Sequence[str],
    *,
    package: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: str | None = None,
) -> str:
    """Run `program args` (with `stdin` as its input); its stdout, or MeshseedError with
    the tail of stderr."""
    argv = [find(program, package), *args]
    log.info("running: %s", shlex.join(argv))
    command: Any = local[argv[0]][list(args)]
    if env is not None:
        command = command.with_env(**env)
    where = str(cwd) if cwd else None
    if stdin is None:
        code, stdout, stderr = command.run(retcode=None, cwd=where, timeout=timeout)
    else:
        # Through a pipe: plumbum's `<<` leaves its temporary file open.
        with command.popen(cwd=where, stdin=subprocess.PIPE) as process:
            stdout, stderr = process.communicate(stdin.encode(), timeout=timeout)
            code = process.returncode
        stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    if code != 0:
        tail = "\n".join(str(stderr).strip().splitlines()[-15:])
        raise MeshseedError(
            f"{program} failed with exit status {code}:\n{tail}",
            hint=f"to see it yourself, run: {shlex.join(argv)}" + (f" (in {cwd})" if cwd else ""),
        )
    return str(stdout)
