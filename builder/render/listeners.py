"""How every server in the cluster is told to listen on IPv6.

Pods and nodes have IPv6 addresses only (and loopback), and several servers listen on
IPv4 alone by default. LISTENERS says, for every workload a Service sends traffic to, how
it listens on `::` and how we know: NETNS entries are proven by
tests/integration/test_ipv6_listeners.py (and test_mfe_server.py), which start the real
program with the config the build generates in a network namespace that has only IPv6;
the others cite the
upstream source, for images that cannot run on the build machine. A test checks that every
Service port of every workload has an entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from builder.cluster.k8s import Document

NETNS = "netns"


@dataclass(frozen=True)
class Listener:
    how: str
    # NETNS, or where upstream says so.
    evidence: str


_UWSGI = Listener("uwsgi.ini `http = [::]:8000`; Tutor writes 0.0.0.0:8000, an IPv4-only socket", NETNS)
LISTENERS: Mapping[str, Listener] = {
    "lms": _UWSGI,
    "cms": _UWSGI,
    # Galera (components/galera.py); both checked with MariaDB and galera-4.
    "galera": Listener(
        "galera.cnf: bind-address=::, gmcast.listen_addr=tcp://[::]:4567, ist.recv_bind=[::]; "
        "the position and SST listeners are socat TCP6-LISTEN",
        NETNS,
    ),
    "mysql-router": Listener("socat TCP6-LISTEN for 3306 and the metrics", NETNS),
    "redis": Listener("haproxy.cfg `bind :::6379`, the router in front of the members", NETNS),
    "redis-node": Listener("redis.conf and sentinel.conf `bind ::`", NETNS),
    "mongodb": Listener(
        "`--ipv6` beside the entrypoint's --bind_ip_all: mongod binds :: only with net.ipv6",
        "https://www.mongodb.com/docs/v7.0/reference/program/mongod/#std-option-mongod.--ipv6",
    ),
    "meilisearch": Listener(
        "MEILI_HTTP_ADDR=[::]:7700; the image sets 0.0.0.0:7700",
        "https://github.com/meilisearch/meilisearch/blob/v1.36.0/Dockerfile (ENV MEILI_HTTP_ADDR)",
    ),
    "smtp": Listener(
        "exim without local_interfaces listens on every address, IPv6 included",
        "https://www.exim.org/exim-html-current/doc/html/spec_html/ch14.html (local_interfaces)",
    ),
    "couchdb": Listener(
        "[chttpd] and [httpd] bind_address = ::, Erlang distribution with -proto_dist inet6_tcp",
        "https://docs.couchdb.org/en/stable/config/http.html#chttpd/bind_address",
    ),
    "garage": Listener(
        "garage.toml binds its S3, RPC, web and admin endpoints on `[::]:<port>`",
        "https://garagehq.deuxfleurs.fr/documentation/reference-manual/configuration/ (api_bind_addr)",
    ),
    # tests/integration/test_mfe_server.py runs it with Caddy in the namespace.
    "mfe": Listener("tutor-mfe's Caddyfile listens on `:8002`: every address, IPv6 included", NETNS),
    "caddy-edge": Listener("Caddy binds every address for its sites; the local copies on [::1]", NETNS),
    "caddy-issuer": Listener("Caddy binds every address for its sites", NETNS),
    "prometheus": Listener("--web.listen-address=[::]:9090", NETNS),
    "blackbox-exporter": Listener("--web.listen-address=[::]:9115", NETNS),
    # tests/integration/test_alerting_programs.py runs it in the namespace.
    "alertmanager": Listener("--web.listen-address=[::]:9093; no cluster listener", NETNS),
    "node-exporter": Listener("--web.listen-address=[::]:9100, on the node", NETNS),
}

UWSGI_CONFIG = "apps/openedx/uwsgi.ini"
_UWSGI_HTTP = re.compile(r"^http = 0\.0\.0\.0:(\d+)$", re.MULTILINE)


def tutor_files_on_ipv6(files: Mapping[str, str]) -> dict[str, str]:
    """Tutor's app files with uwsgi listening on `::`."""
    uwsgi = files[UWSGI_CONFIG]
    if not _UWSGI_HTTP.search(uwsgi):
        raise ValueError(f"Tutor's {UWSGI_CONFIG} no longer says `http = 0.0.0.0:<port>`")
    return {**files, UWSGI_CONFIG: _UWSGI_HTTP.sub(r"http = [::]:\1", uwsgi)}


def listen_on_ipv6(name: str, container: Document) -> None:
    """Tell one of Tutor's datastore containers to listen on `::` (see LISTENERS)."""
    if name == "mongodb":
        container["args"] = [*container["args"], "--ipv6"]
    elif name == "meilisearch":
        port = container["ports"][0]["containerPort"]
        container["env"] = [*container.get("env", []), {"name": "MEILI_HTTP_ADDR", "value": f"[::]:{port}"}]
