"""A throwaway MariaDB server on 127.0.0.1 for the backup tests, started and stopped by PID.

Debian's mariadb-server stands in for the mysql image's MySQL 8.4: the snapshot script
only needs the wire protocol, `SELECT 1` and mysqldump's output, which both speak alike.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools import require


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MariaDB:
    root: Path
    port: int = field(default_factory=free_port)
    # Sent to the server on stdin and to clients through MYSQL_PWD, never in an argv.
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    def install(self) -> None:
        install = require("mariadb-install-db", "mariadb-server")
        self.root.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [install, "--no-defaults", "--auth-root-authentication-method=normal", *self._common()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr

    def _common(self) -> list[str]:
        return [f"--datadir={self.root / 'data'}", "--user=root", f"--socket={self.socket}"]

    def start(self) -> None:
        mariadbd = require("mariadbd", "mariadb-server")
        log = (self.root / "mariadbd.log").open("ab")
        self.process = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                *self._common(),
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                "--skip-name-resolve",
                f"--pid-file={self.root / 'mysqld.pid'}",
                f"--log-error={self.root / 'mariadbd.err'}",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while not self._answers():
            assert self.process.poll() is None, (self.root / "mariadbd.err").read_text()
            assert time.monotonic() < deadline, "mariadbd did not answer within 60 s"
            time.sleep(0.2)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            return conn.connect_ex(("127.0.0.1", self.port)) == 0

    def sql(self, statements: str) -> None:
        """Run SQL as root over the socket (before and after the root password is set)."""
        client = require("mariadb", "mariadb-client")
        ran = subprocess.run(
            [
                client,
                "--no-defaults",
                "--skip-print-query-on-error",
                f"--socket={self.socket}",
                "--user=root",
            ],
            input=statements,
            env={**os.environ, "MYSQL_PWD": self.password},
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr

    def grant_root_over_tcp(self) -> None:
        """root@127.0.0.1 with the password, as the mysql image's root@% is."""
        client = require("mariadb", "mariadb-client")
        quoted = self.password.replace("'", "''")
        ran = subprocess.run(
            [
                client,
                "--no-defaults",
                "--skip-print-query-on-error",
                f"--socket={self.socket}",
                "--user=root",
            ],
            # mariadb-install-db may have made root@127.0.0.1 already.
            input=(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"
                f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{quoted}';\n"
                "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
                f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{quoted}';\n"
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr

    def stop(self) -> None:
        """Stop the server this object started, by its PID (its own session)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def mariadb(root: Path) -> Iterator[MariaDB]:
    server = MariaDB(root)
    server.install()
    try:
        yield server
    finally:
        server.stop()
