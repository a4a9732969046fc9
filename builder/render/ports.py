"""Every port the cluster's workloads use, named once for templates and network policies."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Ports:
    # Caddy listens unprivileged; the node's 80 and 443 map to these (hostPort).
    caddy_http: int = 8080
    caddy_https: int = 8443
    caddy_metrics: int = 9180
    certificate: int = 8444
    # The edge Caddy's own copies, on ::1 inside its pod.
    local_certificate: int = 8445
    openedx: int = 8000
    mysql: int = 3306
    mongodb: int = 27017
    redis: int = 6379
    meilisearch: int = 7700
    smtp: int = 8025
    couchdb: int = 5984
    couchdb_metrics: int = 17986
    epmd: int = 4369
    # One fixed Erlang distribution port (inet_dist_listen_min = max), so policies can name it.
    erlang: int = 9100
    node_exporter: int = 9100
    blackbox: int = 9115
    kubelet: int = 10250
    apiserver: int = 6443

    @property
    def openedx_internal(self) -> tuple[int, ...]:
        return (self.openedx, self.mysql, self.mongodb, self.redis, self.meilisearch, self.smtp)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
