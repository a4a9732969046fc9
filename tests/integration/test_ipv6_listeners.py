"""Every server listens where an IPv6-only cluster can reach it.

Each program this machine has is started with the config the build generates, in a
network namespace that has only an IPv6 address (and loopback), and probed from a second
namespace over IPv6. The rest are covered by builder/render/listeners.py's table, which
must name every workload a Service sends traffic to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from builder.render.listeners import LISTENERS, NETNS
from tests.integration.generated import (
    Documents,
    config,
    container,
    every,
    host_paths,
    kubelet_args,
    manifests,
)
from tests.integration.netns import Link, link
from tests.tools import require

__all__ = ["link", "manifests"]  # fixtures


def test_every_service_port_has_a_listener_entry(manifests: dict[str, Documents]) -> None:
    docs = every(manifests)
    workloads = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
    }
    served = set()
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"].get("selector", {})
        targets = [name for name, labels in workloads.items() if selector.items() <= labels.items()]
        assert targets, f"Service {service['metadata']['name']} selects no workload"
        served.update(targets)
    # node-exporter serves the nodes' own addresses (host network), without a Service.
    served.add("node-exporter")
    assert sorted(served - set(LISTENERS)) == []
    for name in served:
        evidence = LISTENERS[name].evidence
        assert evidence == NETNS or evidence.startswith("https://"), name


def test_uwsgi_serves_the_lms_on_ipv6(manifests: dict[str, Documents], link: Link, tmp_path: Path) -> None:
    uwsgi = require("uwsgi", "uwsgi-core")
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(config(manifests, "openedx-uwsgi-config", "uwsgi.ini"))
    # The ini's wsgi-file is $(SERVICE_VARIANT)/wsgi.py: a trivial app stands in for Django.
    (tmp_path / "lms").mkdir()
    (tmp_path / "lms" / "wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'lms on ipv6']\n"
    )
    link.start(
        # Debian builds the HTTP router as a plugin; the openedx image has it built in.
        [uwsgi, "--plugin", "http,python3", "--ini", ini],
        cwd=tmp_path,
        env={"SERVICE_VARIANT": "lms", "UWSGI_WORKERS": "1"},
    )
    reply = link.http(8000, "/heartbeat", host="lms")
    assert reply.startswith(b"HTTP/1.") and reply.endswith(b"lms on ipv6"), reply


def test_redis_members_and_router_serve_on_ipv6(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    redis = require("redis-server", "redis-server")
    sentinel = require("redis-sentinel", "redis-sentinel")
    haproxy = require("haproxy", "haproxy")
    member = config(manifests, "redis-node-config", "redis.conf")
    # What redis-start.sh and sentinel-start.sh append, for a primary.
    (tmp_path / "redis.conf").write_text(f"{member}\nport 6379\ndir {tmp_path}\n")
    link.start([redis, tmp_path / "redis.conf"], cwd=tmp_path)
    assert link.probe(6379, "PING\\r\\nQUIT\\r\\n").startswith(b"+PONG")
    sentinel_conf = config(manifests, "redis-node-config", "sentinel.conf")
    (tmp_path / "sentinel.conf").write_text(
        f"port 26379\n{sentinel_conf}\nsentinel monitor openedx ::1 6379 2\n"
    )
    link.start([sentinel, tmp_path / "sentinel.conf"], cwd=tmp_path)
    assert link.probe(26379, "PING\\r\\nQUIT\\r\\n").startswith(b"+PONG")
    router = config(manifests, "redis-router-config", "haproxy.cfg")
    # Its port is taken here by the member; the router listens the same way on another.
    (tmp_path / "haproxy.cfg").write_text(router.replace("bind :::6379", "bind :::6380"))
    link.start([haproxy, "-db", "-f", tmp_path / "haproxy.cfg"], cwd=tmp_path)
    link.probe(6380)  # connects: the frontend is on IPv6


def _galera_member(link: Link, tmp_path: Path, cnf: str, port: int) -> None:
    """A one-member Galera cluster with the rendered galera.cnf's listener settings."""
    mariadbd = require("mariadbd", "mariadb-server")
    install = require("mariadb-install-db", "mariadb-server")
    provider = Path("/usr/lib/galera/libgalera_smm.so")
    if not provider.exists():
        require("galera-provider-missing", "galera-4")
    settings = dict(
        line.split("=", 1) for line in cnf.splitlines() if "=" in line and not line.startswith("#")
    )
    # Only the listeners: the rest of the file is Percona's (pxc_strict_mode, TLS files).
    options = dict(
        option.split("=", 1) for option in settings["wsrep_provider_options"].strip('"').split(";")
    )
    assert settings["bind-address"] == "::"
    data = tmp_path / "data"
    common = [f"--datadir={data}", "--user=root", f"--socket={tmp_path / 'mysqld.sock'}"]
    installed = subprocess.run(
        [install, "--no-defaults", "--auth-root-authentication-method=normal", *common],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    link.start(
        [
            mariadbd,
            "--no-defaults",
            # Without grant checks any login works: the router's status query too.
            "--skip-grant-tables",
            *common,
            f"--pid-file={tmp_path / 'mysqld.pid'}",
            f"--bind-address={settings['bind-address']}",
            f"--port={port}",
            "--binlog-format=ROW",
            "--wsrep-on=ON",
            f"--wsrep-provider={provider}",
            "--wsrep-cluster-address=gcomm://",
            f"--wsrep-provider-options=gmcast.listen_addr={options['gmcast.listen_addr']};"
            f"ist.recv_bind={options['ist.recv_bind']}",
            "--wsrep-new-cluster",
        ],
        cwd=tmp_path,
    )


def test_the_galera_member_listener_settings_serve_on_ipv6(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    cnf = config(manifests, "galera-config", "galera.cnf")
    port = int(dict(line.split("=", 1) for line in cnf.splitlines() if line.startswith("port="))["port"])
    _galera_member(link, tmp_path, cnf, port)
    greeting = link.probe(port, seconds=60)
    # The server speaks first: protocol version 10, then its version string.
    assert greeting[4] == 10 and b"MariaDB" in greeting, greeting
    # Galera replication (gmcast) accepts a connection on [::]:4567.
    link.probe(4567, seconds=30)


def test_the_mysql_router_serves_on_ipv6(manifests: dict[str, Documents], link: Link, tmp_path: Path) -> None:
    require("socat", "socat")
    cnf = config(manifests, "galera-config", "galera.cnf")
    # The member behind the router, on loopback: the router itself takes 3306.
    _galera_member(link, tmp_path, cnf, 3307)
    for name in ("galera-router.sh", "galera-writer.sh", "galera-metrics.sh"):
        (tmp_path / name).write_text(config(manifests, "galera-config", name))
    (tmp_path / "monitor.cnf").write_text("[client]\nuser=monitor\n")
    env = {item["name"]: item["value"] for item in container(manifests, "mysql-router")["env"]}
    env |= {
        "GALERA_SQL": "[::1]:3307",
        "GALERA_CLIENT": require("mariadb", "mariadb-client"),
        "GALERA_CLIENT_CNF": str(tmp_path / "monitor.cnf"),
        "GALERA_WRITER": str(tmp_path / "galera-writer.sh"),
        "GALERA_WRITER_FILE": str(tmp_path / "writer"),
        "GALERA_METRICS": str(tmp_path / "metrics"),
        "GALERA_METRICS_HTTP": str(tmp_path / "galera-metrics.sh"),
    }
    link.start(["bash", tmp_path / "galera-router.sh"], cwd=tmp_path, env=env)
    # Through the router: the member's greeting, once the member is Synced.
    greeting = link.probe(3306, seconds=60)
    assert greeting[4] == 10 and b"MariaDB" in greeting, greeting
    metrics = link.http(9104, "/metrics")
    assert metrics.startswith(b"HTTP/1.0 200") and b"galera_writer 1" in metrics, metrics


def test_caddy_issuer_and_edge_serve_on_ipv6(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    caddy = str(Path(sys.executable).with_name("caddy"))
    if not Path(caddy).exists():
        caddy = require("caddy", "caddy")
    for name in ("issuer", "edge"):
        text = host_paths(config(manifests, "caddy-config", f"{name}.Caddyfile"), tmp_path, "/data", "/certs")
        (tmp_path / f"{name}.Caddyfile").write_text(text)
    (tmp_path / "data").mkdir()
    (tmp_path / "certs").mkdir()
    home = {
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    link.start(
        [caddy, "run", "--adapter", "caddyfile", "--config", tmp_path / "issuer.Caddyfile"],
        cwd=tmp_path,
        env=home,
    )
    # The issuer answers ACME challenges on its HTTP port, and hands out certificates.
    challenge = link.http(8080, "/.well-known/acme-challenge/probe", host="learn.campus.example.org")
    assert challenge.startswith(b"HTTP/1.1 421"), challenge
    assert link.http(8444, "/certificate?server_name=learn.campus.example.org").startswith(b"HTTP/1.1 204")
    link.processes[-1].terminate()
    link.processes[-1].wait(timeout=30)
    link.start(
        [caddy, "run", "--adapter", "caddyfile", "--config", tmp_path / "edge.Caddyfile"],
        cwd=tmp_path,
        env=home,
    )
    redirect = link.http(8080, "/", host="learn.campus.example.org")
    assert redirect.startswith(b"HTTP/1.1 308") and b"https://learn.campus.example.org/" in redirect
    link.probe(8443)  # connects: the TLS listener is on IPv6 too
    assert b"caddy_" in link.http(9180, "/metrics")


def test_prometheus_and_exporters_serve_on_ipv6(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    prometheus = require("prometheus", "prometheus")
    node_exporter = require("prometheus-node-exporter", "prometheus-node-exporter")
    blackbox = require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    (tmp_path / "etc" / "prometheus").mkdir(parents=True)
    for key in ("prometheus.yml", "alerts.yml"):
        text = host_paths(config(manifests, "prometheus-config", key), tmp_path, "/etc/prometheus")
        (tmp_path / "etc" / "prometheus" / key).write_text(text)
    args = [
        arg.replace("=/etc/prometheus", f"={tmp_path}/etc/prometheus").replace(
            "=/prometheus", f"={tmp_path}/tsdb"
        )
        for arg in container(manifests, "prometheus")["args"]
    ]
    link.start([prometheus, *args], cwd=tmp_path)
    assert link.http_until(9090, "/-/ready").startswith(b"HTTP/1.1 200")
    # The node's address is the namespace's (the kubelet fills NODE_IP from status.hostIP).
    exporter = container(manifests, "node-exporter")
    exporter_args = [
        arg.replace("=/host", f"={tmp_path}/host")
        for arg in kubelet_args(exporter, {"NODE_IP": link.server_address})
    ]
    link.start([node_exporter, *exporter_args], cwd=tmp_path)
    assert b"node_exporter_build_info" in link.http(9100, "/metrics")
    (tmp_path / "etc" / "blackbox").mkdir()
    (tmp_path / "etc" / "blackbox" / "blackbox.yml").write_text(
        config(manifests, "blackbox-config", "blackbox.yml")
    )
    blackbox_args = [
        arg.replace("=/etc/blackbox", f"={tmp_path}/etc/blackbox")
        for arg in container(manifests, "blackbox-exporter")["args"]
    ]
    link.start([blackbox, *blackbox_args], cwd=tmp_path)
    assert link.http(9115, "/-/healthy").startswith(b"HTTP/1.1 200")


def test_images_that_cannot_run_here_are_told_to_listen_on_ipv6(manifests: dict[str, Documents]) -> None:
    assert container(manifests, "mongodb")["args"][-1] == "--ipv6"
    meilisearch = {v["name"]: v.get("value") for v in container(manifests, "meilisearch")["env"]}
    assert meilisearch["MEILI_HTTP_ADDR"] == "[::]:7700"
    ini = config(manifests, "couchdb-config", "10-meshseed.ini")
    assert ini.count("bind_address = ::") == 2
