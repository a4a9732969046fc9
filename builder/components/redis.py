"""Redis for Open edX's Celery broker and cache: Sentinel, and a primary-only router.

Three members (a StatefulSet, one per server, required anti-affinity), each a redis-server
and a redis-sentinel in one pod; the sentinels (quorum 2) promote a replica when the
primary is lost. Open edX keeps Tutor's address, `redis:6379`, which is now a small HAProxy
Deployment that health-checks every member (`INFO replication` must say `role:master`)
and forwards to the one primary. Tutor's own redis Deployment is dropped
(render/openedx.py). Why a router and not a role-aware readiness probe or Sentinel-aware
clients: see README, "Redis".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import Cluster, Component
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.components.monitoring import BLACKBOX

NAMESPACE = "openedx"
# Tutor's REDIS_HOST: what the LMS, Studio, their workers and the event bus dial.
ROUTER = Pods(NAMESPACE, "redis")
MEMBERS = Pods(NAMESPACE, "redis-node")
# Sentinel's name for the replicated set, and the votes a failover needs.
MASTER_NAME = "openedx"
QUORUM = 2
MEMBER_COUNT = 3
SENTINEL_PORT = 26379


def member_names(servers: int) -> list[str]:
    """The members' stable DNS names (the headless Service's), the first one seeds."""
    count = min(MEMBER_COUNT, servers)
    return [f"redis-node-{index}.redis-node.{NAMESPACE}.svc.cluster.local" for index in range(count)]


def sentinel_id(member: str) -> str:
    """A fixed Sentinel run id per member, so a restarted sentinel is the same voter."""
    return hashlib.sha1(f"meshseed/redis-sentinel/{member}".encode()).hexdigest()


class Redis(Component):
    name = "redis"
    images = ("redis", "haproxy")
    ports: ClassVar[Mapping[str, int]] = {"redis": 6379, "redis_sentinel": SENTINEL_PORT}
    files: ClassVar[Mapping[str, str]] = {
        "redis.conf": "redis.conf.j2",
        "sentinel.conf": "sentinel.conf.j2",
        "redis-lib.sh": "redis-lib.sh.j2",
        "redis-start.sh": "redis-start.sh.j2",
        "sentinel-start.sh": "sentinel-start.sh.j2",
        "redis-ready.sh": "redis-ready.sh.j2",
        "redis-prestop.sh": "redis-prestop.sh.j2",
        "haproxy.cfg": "haproxy.cfg.j2",
    }
    manifests = ("redis",)
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        members = member_names(len(cluster.site.servers))
        return {
            "namespace": NAMESPACE,
            "members": members,
            "sentinel_ids": {member: sentinel_id(member) for member in members},
            "master_name": MASTER_NAME,
            "quorum": QUORUM,
            "port": cluster.ports["redis"],
            "sentinel_port": cluster.ports["redis_sentinel"],
            "router": f"redis.{NAMESPACE}.svc.cluster.local:{cluster.ports['redis']}",
            # The redis image's user.
            "uid": 999,
            # haproxy's image user.
            "router_uid": 99,
            "router_replicas": 2,
            "storage": "5Gi",
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        port, sentinel = cluster.ports["redis"], cluster.ports["redis_sentinel"]
        return [
            # Replication, the sentinels watching every member and each other, and the
            # start scripts asking the sentinels who the primary is.
            Flow(MEMBERS, MEMBERS, (port, sentinel)),
            # The router's health checks and the traffic it forwards.
            Flow(ROUTER, MEMBERS, (port,)),
            # The "Redis without a primary" probe asks the router for its primary's ROLE.
            Flow(BLACKBOX, ROUTER, (port,)),
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        member_files = ("redis.conf", "sentinel.conf", "redis-lib.sh", "redis-start.sh", "sentinel-start.sh")
        return {
            "member_sha256": digest(
                *(files[name] for name in member_files), files["redis-ready.sh"], files["redis-prestop.sh"]
            ),
            "router_sha256": digest(files["haproxy.cfg"]),
        }


COMPONENT = Redis()
