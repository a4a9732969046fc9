"""Known gaps: user-facing Services that a single server's loss still takes down.

Each names issue #19 and the work that closes it. While a gap is listed, `meshseed
build` prints it as a warning instead of failing and `meshseed ha` shows it as "down
(known gap)". Remove an entry when its replacement lands: the build then fails again if
losing a server takes the Service down, and warns while an entry no longer matches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownGap:
    namespace: str
    service: str
    closed_by: str


# Empty: MySQL (Galera), MongoDB (a replica set) and Redis (Sentinel) closed the last ones.
KNOWN_GAPS: tuple[KnownGap, ...] = ()
