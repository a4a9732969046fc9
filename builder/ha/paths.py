"""What a user needs, by Service name: the paths the node-loss model must keep up.

Defined here, in one place, by the names other components publish, so a replaced
datastore (a Galera StatefulSet behind the `mysql` Service, a MongoDB replica set behind
`mongodb`, Redis with Sentinel behind `redis`) plugs in without touching the model. A
step that the path can lose for a while without failing a request (search, mail, the
Celery workers, certificate issuance) is at worst `degraded`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """Ordered: the worse outcome is the larger."""

    FINE = 0
    DEGRADED = 1
    DOWN = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Step:
    namespace: str
    name: str
    # "Service": a Service's endpoints; "workload": a workload's own pods (no Service).
    kind: str = "Service"
    # The worst that losing this step does to the path, and what the user sees then.
    at_worst: Status = Status.DOWN
    what: str = ""


@dataclass(frozen=True)
class UserPath:
    name: str
    steps: tuple[Step, ...]


def _openedx_path(name: str, app: str, worker: str) -> UserPath:
    return UserPath(
        name,
        (
            # Browsers reach every server's Caddy by round-robin DNS.
            Step("edge", "caddy-edge"),
            Step("openedx", app),
            Step("openedx", "mfe"),
            Step("openedx", "mysql"),
            Step("openedx", "mongodb"),
            Step("openedx", "redis"),
            Step("openedx", "meilisearch", at_worst=Status.DEGRADED, what="search waits for its index"),
            Step("openedx", "smtp", at_worst=Status.DEGRADED, what="mail is queued by Django's retries"),
            Step("openedx", worker, kind="workload", at_worst=Status.DEGRADED, what="background tasks wait"),
        ),
    )


PATHS: tuple[UserPath, ...] = (
    _openedx_path("learners: browser -> caddy-edge -> lms, mfe", "lms", "lms-worker"),
    _openedx_path("authors: browser -> caddy-edge -> cms, mfe", "cms", "cms-worker"),
    UserPath("CouchDB: couchdb-api", (Step("couchdb", "couchdb-api"),)),
    UserPath(
        "certificates: issuance and renewal",
        (
            Step(
                "edge",
                "caddy-issuer",
                at_worst=Status.DEGRADED,
                what="the edges keep serving their copies; issuance and renewal wait",
            ),
        ),
    ),
)
