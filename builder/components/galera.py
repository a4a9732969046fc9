"""Open edX's MySQL as a Percona XtraDB Cluster: one Galera member per server, up to three.

The members start with galera-start.sh (bootstrap or join, with no human step), and a
small router (galera-router.sh, two pods behind the `mysql` Service) forwards every
connection to the one writer that galera-writer.sh names. Why a router and not a
readiness probe that passes only on the writer: a StatefulSet's rolling update waits for
each updated pod to be Ready, so members that are healthy but not the writer would stall
every image bump; and the router ends the connections to a former writer at once, where
kube-proxy would leave them open. tests/integration/test_galera.py runs these scripts
against three real Galera members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import BackupJob, Cluster, Component, Rendering, Scrape, SecretSpec
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.cluster.galera_tls import galera_tls
from builder.cluster.k8s import Document, secret
from builder.secrets import Purpose, Recipe, Scope

NAMESPACE = "openedx"
MEMBERS = Pods(NAMESPACE, "galera")
# The router's pods: the `mysql` Service, which the apps and the init Job use.
ROUTER = Pods(NAMESPACE, "mysql")
MAX_MEMBERS = 3
# The mysql image's client, bash and gzip, through openedx-datastores' snapshot script.
SNAPSHOT = ("bash", "/scripts/snapshot.sh", "mysql")
# Only SHOW GLOBAL STATUS: the start script, the router and the readiness probe.
MONITOR_USER = "monitor"


class Galera(Component):
    name = "galera"
    images = ("galera",)
    ports: ClassVar[Mapping[str, int]] = {
        "mysql": 3306,
        "galera_replication": 4567,
        "galera_ist": 4568,
        "galera_sst": 4444,
        # Where a stopped member tells the others how far its data goes (galera-start.sh).
        "galera_position": 4569,
        "galera_metrics": 9104,
    }
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        # Tutor's MYSQL_ROOT_PASSWORD: root@% is what Tutor's init Job logs in as.
        "mysql_root_password": SecretSpec.of(Purpose.OPENEDX_MYSQL_ROOT_PASSWORD),
        "galera_monitor_password": SecretSpec(
            "galera-monitor-password", Recipe(Scope.CLUSTER, 16, bytes.hex)
        ),
        # Seeds of the P-256 keys of the CA and the members (builder/cluster/galera_tls.py).
        "galera_ca_seed": SecretSpec("galera-ca-seed", Recipe(Scope.CLUSTER, 32, bytes.hex)),
        "galera_member_seed": SecretSpec("galera-member-seed", Recipe(Scope.CLUSTER, 32, bytes.hex)),
    }
    files: ClassVar[Mapping[str, str]] = {
        "galera.cnf": "galera.cnf.j2",
        "galera-start.sh": "galera-start.sh.j2",
        "galera-writer.sh": "galera-writer.sh.j2",
        "galera-router.sh": "galera-router.sh.j2",
        "galera-metrics.sh": "galera-metrics.sh.j2",
    }
    manifests = ("galera",)
    backup_scripts: ClassVar[Mapping[str, str]] = {"galera-writer.sh": "galera-writer.sh"}
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        ports = cluster.ports
        count = min(MAX_MEMBERS, len(cluster.site.servers))
        members = [f"galera-{index}.galera.{NAMESPACE}.svc.cluster.local" for index in range(count)]
        return {
            "namespace": NAMESPACE,
            "members": members,
            "routers": min(2, len(cluster.site.servers)),
            "sql": " ".join(f"{member}:{ports['mysql']}" for member in members),
            "positions": " ".join(f"{member}:{ports['galera_position']}" for member in members),
            "port": ports["mysql"],
            "replication_port": ports["galera_replication"],
            "ist_port": ports["galera_ist"],
            "sst_port": ports["galera_sst"],
            "position_port": ports["galera_position"],
            "metrics_port": ports["galera_metrics"],
            "monitor_user": MONITOR_USER,
            # The image's mysql user.
            "uid": 1001,
            "datadir": "/var/lib/mysql/data",
            "storage": "20Gi",
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        return [
            # The apps and the init Job reach the router (openedx-datastores' flows to
            # Pods(openedx, mysql)); the router reaches the members.
            Flow(ROUTER, MEMBERS, (ports["mysql"],)),
            # Members among themselves: the start script asks the others (SQL and their
            # positions), Galera replicates, IST and SST.
            Flow(
                MEMBERS,
                MEMBERS,
                (
                    ports["mysql"],
                    ports["galera_replication"],
                    ports["galera_ist"],
                    ports["galera_sst"],
                    ports["galera_position"],
                ),
            ),
        ]

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return [Scrape(ROUTER, (cluster.ports["galera_metrics"],))]

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        inputs = self.inputs(cluster)
        return [
            BackupJob(
                kind="mysql",
                image=cluster.images["mysql"],
                uid=999,
                daily_at=(2, 15),
                # A member that is not the writer (galera-writer.sh --reader).
                source=MEMBERS,
                ports=(cluster.ports["mysql"],),
                command=SNAPSHOT,
                env={"GALERA_SQL": inputs["sql"], "GALERA_CLIENT": "mysql", "GALERA_USER": "root"},
                credentials={"MYSQL_ROOT_PASSWORD": "mysql_root_password"},
            )
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config_sha256": digest(files["galera.cnf"], files["galera-start.sh"], files["galera-writer.sh"]),
            "router_sha256": digest(
                files["galera-router.sh"], files["galera-writer.sh"], files["galera-metrics.sh"]
            ),
        }

    def documents(self, rendered: Rendering) -> dict[str, list[Document]]:
        """The members' credentials and TLS, made here: the certificates need code."""
        inputs = rendered.inputs[self.name]
        values = rendered.secrets
        root, monitor = values["mysql_root_password"], values["galera_monitor_password"]
        names = [*inputs["members"], f"*.galera.{NAMESPACE}.svc.cluster.local"]
        tls = galera_tls(
            bytes.fromhex(values["galera_ca_seed"]), bytes.fromhex(values["galera_member_seed"]), names
        )
        rendered.secret_values.add(tls.key_pem)
        # Both passwords are hex (their recipes): safe inside SQL quotes.
        # Not replicated: it runs while the bootstrapping member is alone, before it is
        # in a Primary component; the others copy the users with their first SST.
        init = (
            "SET SESSION wsrep_on=OFF;\n"
            f"CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{root}';\n"
            "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{root}';\n"
            f"CREATE USER IF NOT EXISTS '{MONITOR_USER}'@'%' IDENTIFIED BY '{monitor}' "
            "WITH MAX_USER_CONNECTIONS 10;\n"
        )
        return {
            "galera-secrets": [
                secret(
                    "galera-credentials",
                    NAMESPACE,
                    {
                        # For mysql --defaults-extra-file: never a password on an argv.
                        "monitor.cnf": f"[client]\nuser={MONITOR_USER}\npassword={monitor}\n",
                        # Run once, by the member that bootstraps an empty cluster.
                        "init.sql": init,
                    },
                ),
                secret(
                    "galera-tls",
                    NAMESPACE,
                    {"ca.pem": tls.ca_pem, "member.pem": tls.certificate_pem, "member-key.pem": tls.key_pem},
                ),
            ]
        }


COMPONENT = Galera()
