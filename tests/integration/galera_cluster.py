"""Three Galera members on 127.0.0.1 run by the pods' own scripts, and the writer router.

Debian's MariaDB 10.11 with galera-4 stands in for Percona XtraDB Cluster 8.4: the
scripts speak only what both share (SHOW GLOBAL STATUS, grastate.dat, --wsrep-recover,
--wsrep-new-cluster, --init-file). What differs is set here, beside the members' my.cnf:
- SST: rsync here, xtrabackup-v2 in the pods (MariaDB has no xtrabackup SST; its
  mariabackup SST is a fork of it, but Debian ships it in another package);
- initialization: mariadb-install-db here, `mysqld --initialize-insecure` in the pods;
- the position log: MariaDB writes "WSREP: Recovered position: UUID:SEQNO", PXC 8
  "[WSREP] Recovered position: UUID:SEQNO"; galera-start.sh reads both.
Members run as user=mysql: rsync SST fails as root (its daemon drops to nobody).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.mariadb import free_port
from tests.tools import require

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")


@dataclass
class Member:
    ordinal: int
    root: Path
    sql: int = field(default_factory=free_port)
    gcomm: int = field(default_factory=free_port)
    ist: int = field(default_factory=free_port)
    sst: int = field(default_factory=free_port)
    position: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def defaults(self) -> Path:
        return self.root / "my.cnf"

    @property
    def log(self) -> Path:
        return self.root / "start.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sql}"


@dataclass
class Galera:
    root: Path
    scripts: dict[str, str]
    password: str
    members: list[Member] = field(default_factory=list)
    router_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    router: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        require("mariadbd", "mariadb-server")
        require("socat", "socat")
        require("rsync", "rsync")
        if not PROVIDER.exists():
            require("galera-provider-missing", "galera-4")
        for name, text in self.scripts.items():
            (self.root / name).write_text(text)
        self.members = [Member(index, self.root / f"m{index}") for index in range(3)]
        gcomm = ",".join(f"127.0.0.1:{m.gcomm}" for m in self.members)
        cnf = self.root / "client.cnf"
        cnf.write_text(f"[client]\nuser=root\npassword={self.password}\n")
        cnf.chmod(0o600)
        # Run once by the bootstrapper's first start, as the pods' init file is.
        init = self.root / "init.sql"
        init.write_text(
            # Not replicated, as in the pods' init.sql; mariadb-install-db may have made
            # root@127.0.0.1 already.
            "SET SESSION wsrep_on=OFF;\n"
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"
            f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.password}';\n"
            "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
        )
        init.chmod(0o644)
        for member in self.members:
            member.root.mkdir()
            member.defaults.write_text(
                "[mysqld]\n"
                "user=mysql\n"
                f"datadir={member.datadir}\n"
                f"socket={member.root / 'mysqld.sock'}\n"
                f"pid-file={member.root / 'mysqld.pid'}\n"
                f"log-error={member.root / 'mysqld.err'}\n"
                f"port={member.sql}\n"
                "bind-address=127.0.0.1\n"
                "skip-name-resolve\n"
                "innodb_buffer_pool_size=32M\n"
                "binlog_format=ROW\n"
                "innodb_autoinc_lock_mode=2\n"
                "wsrep_on=ON\n"
                f"wsrep_provider={PROVIDER}\n"
                f"wsrep_cluster_address=gcomm://{gcomm}\n"
                f"wsrep_node_address=127.0.0.1:{member.gcomm}\n"
                f'wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:{member.gcomm};'
                f'ist.recv_addr=127.0.0.1:{member.ist}"\n'
                f"wsrep_sst_receive_address=127.0.0.1:{member.sst}\n"
                "wsrep_sst_method=rsync\n"
            )
            shutil.chown(member.root, "mysql", "mysql")
            self.empty_datadir(member)

    def empty_datadir(self, member: Member) -> None:
        """A new, empty disk: the mount point exists and belongs to mysql, as in the pod."""
        member.datadir.mkdir()
        shutil.chown(member.datadir, "mysql", "mysql")

    def environment(self, member: Member) -> dict[str, str]:
        install = require("mariadb-install-db", "mariadb-server")
        return {
            **os.environ,
            "GALERA_SELF": str(member.ordinal),
            "GALERA_SQL": " ".join(m.address for m in self.members),
            "GALERA_POSITION": " ".join(f"127.0.0.1:{m.position}" for m in self.members),
            "GALERA_POSITION_LISTEN": f"TCP4-LISTEN:{member.position},bind=127.0.0.1,reuseaddr,fork",
            "GALERA_MYSQLD": require("mariadbd", "mariadb-server"),
            "GALERA_DEFAULTS": str(member.defaults),
            "GALERA_DATADIR": str(member.datadir),
            "GALERA_CLIENT": require("mariadb", "mariadb-client"),
            "GALERA_CLIENT_CNF": str(self.root / "client.cnf"),
            "GALERA_INITIALIZE": (
                f"{install} --defaults-file={member.defaults} --user=mysql "
                "--auth-root-authentication-method=normal > /dev/null"
            ),
            "GALERA_INIT_FILE": str(self.root / "init.sql"),
            "GALERA_RETRY_SECONDS": "1",
        }

    def start(self, member: Member) -> None:
        assert member.process is None or member.process.poll() is not None
        log = member.log.open("ab")
        member.process = subprocess.Popen(
            ["bash", str(self.root / "galera-start.sh")],
            env=self.environment(member),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def kill(self, member: Member) -> None:
        """SIGKILL the member's own session: the script or the mysqld it became."""
        assert member.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.process.pid, signal.SIGKILL)
        member.process.wait()

    def freeze(self, member: Member) -> None:
        """SIGSTOP: its sockets stay open and nothing answers, as when a server loses power."""
        assert member.process is not None
        os.killpg(member.process.pid, signal.SIGSTOP)

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                self.kill(member)
        if self.router is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.router.pid, signal.SIGTERM)
            self.router.wait()

    def start_router(self) -> None:
        log = (self.root / "router.log").open("ab")
        self.router = subprocess.Popen(
            ["bash", str(self.root / "galera-router.sh")],
            env={
                **os.environ,
                "GALERA_SQL": " ".join(m.address for m in self.members),
                "GALERA_CLIENT": require("mariadb", "mariadb-client"),
                "GALERA_CLIENT_CNF": str(self.root / "client.cnf"),
                "GALERA_WRITER": str(self.root / "galera-writer.sh"),
                "GALERA_LISTEN": f"TCP4-LISTEN:{self.router_port},bind=127.0.0.1,reuseaddr,fork",
                "GALERA_CONNECT": "TCP4",
                "GALERA_WRITER_FILE": str(self.root / "writer"),
                "GALERA_METRICS": str(self.root / "metrics"),
                "GALERA_METRICS_LISTEN": f"TCP4-LISTEN:{self.metrics_port},bind=127.0.0.1,reuseaddr,fork",
                "GALERA_METRICS_HTTP": str(self.root / "galera-metrics.sh"),
            },
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def writer(self) -> str:
        return (self.root / "writer").read_text().strip() if (self.root / "writer").exists() else ""

    def metrics(self) -> dict[str, float]:
        """The router's metrics as Prometheus scrapes them, over HTTP."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            text = answer.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def status(self, member: Member, name: str) -> str:
        out = self.sql(member.sql, f"SHOW GLOBAL STATUS LIKE '{name}'", check=False)
        return out.split("\t")[1].strip() if "\t" in out else ""

    def sql(self, port: int, statement: str, check: bool = True, timeout: float = 10) -> str:
        client = require("mariadb", "mariadb-client")
        try:
            ran = subprocess.run(
                [
                    client,
                    f"--defaults-extra-file={self.root / 'client.cnf'}",
                    "--host=127.0.0.1",
                    f"--port={port}",
                    "--protocol=tcp",
                    "--connect-timeout=2",
                    "--batch",
                    "--skip-column-names",
                    f"--execute={statement}",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            assert not check, f"{statement}: timed out"
            return ""
        if check:
            assert ran.returncode == 0, ran.stderr
        return ran.stdout if ran.returncode == 0 else ""

    def wait_synced(self, members: list[Member], seconds: float = 120) -> float:
        """Until every one of `members` is Synced in a Primary component of that many or more."""
        began = time.monotonic()
        while True:
            states = [
                (self.status(m, "wsrep_local_state_comment"), self.status(m, "wsrep_cluster_size"))
                for m in members
            ]
            if all(
                state == "Synced" and size.isdigit() and int(size) >= len(members) for state, size in states
            ):
                return time.monotonic() - began
            assert time.monotonic() - began < seconds, (
                f"not synced after {seconds}s: {states}\n" + self.logs()
            )
            for m in members:
                assert m.process is not None and m.process.poll() is None, self.logs()
            time.sleep(0.5)

    def logs(self) -> str:
        parts = []
        for m in self.members:
            for name in ("start.log", "mysqld.err"):
                path = m.root / name
                if path.exists():
                    parts.append(f"--- m{m.ordinal} {name}\n" + path.read_text()[-3000:])
        return "\n".join(parts)


@contextlib.contextmanager
def galera(root: Path, scripts: dict[str, str], password: str) -> Iterator[Galera]:
    cluster = Galera(root, scripts, password)
    try:
        yield cluster
    finally:
        cluster.stop()
