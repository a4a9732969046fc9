"""The dependency closure of a set of packages: Depends and Pre-Depends, nothing else.

Like a distroless image, the result holds exactly what the requested packages need to
run: no Recommends, and no Essential set unless something depends on it. Among
versions, the highest that satisfies the relation wins; alternatives are tried in order,
preferring one already chosen; a virtual package is satisfied by its providers.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from builder.debian.index import Candidate
from builder.debian.version import satisfies, version_key
from builder.errors import MeshseedError

_RELATION = re.compile(
    r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?"
)


@dataclass(frozen=True)
class Want:
    name: str
    relation: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return self.name + (f" ({self.relation} {self.version})" if self.relation else "")


def parse_relations(text: str) -> list[list[Want]]:
    """'a (>= 1), b | c' -> [[a>=1], [b, c]]."""
    groups = []
    for group in filter(None, (part.strip() for part in text.split(","))):
        alternatives = []
        for alternative in group.split("|"):
            match = _RELATION.match(alternative)
            if match is None:
                raise MeshseedError(f"cannot read the package relation {alternative.strip()!r}")
            relation = {"<": "<=", ">": ">="}.get(match[2] or "", match[2])
            alternatives.append(Want(match[1], relation, match[3]))
        groups.append(alternatives)
    return groups


class Universe:
    """All candidates of all sources, by name and by what they provide."""

    def __init__(self, candidates: Iterable[Candidate], architecture: str) -> None:
        self.by_name: dict[str, list[Candidate]] = defaultdict(list)
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = defaultdict(list)
        for candidate in candidates:
            if candidate.fields.get("Architecture") not in {architecture, "all"}:
                continue
            self.by_name[candidate.name].append(candidate)
            for group in parse_relations(candidate.fields.get("Provides", "")):
                for provided in group:
                    self.providers[provided.name].append((candidate, provided.version))
        for versions in self.by_name.values():
            versions.sort(key=lambda c: version_key(c.version), reverse=True)

    def options(self, want: Want) -> list[Candidate]:
        """Candidates for `want`, best first: real packages, then providers."""
        real = [
            c
            for c in self.by_name.get(want.name, [])
            if want.relation is None or satisfies(c.version, want.relation, want.version or "")
        ]
        provided = [
            c
            for c, version in self.providers.get(want.name, [])
            if want.relation is None
            or (version is not None and satisfies(version, want.relation, want.version or ""))
        ]
        # Providers by name, each name's highest version first (sort is stable).
        provided.sort(key=lambda c: version_key(c.version), reverse=True)
        provided.sort(key=lambda c: c.name)
        return real + provided


def resolve_closure(requested: Iterable[str], universe: Universe) -> list[Candidate]:
    """The packages to install, sorted by name; an error names what cannot be satisfied."""
    chosen: dict[str, Candidate] = {}
    queue: list[tuple[list[Want], str]] = [([Want(name)], "requested") for name in requested]
    while queue:
        alternatives, wanted_by = queue.pop(0)
        if any(_met(want, chosen, universe) for want in alternatives):
            continue
        for want in alternatives:
            options = [c for c in universe.options(want) if c.name not in chosen]
            if options:
                pick = options[0]
                chosen[pick.name] = pick
                for field in ("Pre-Depends", "Depends"):
                    queue.extend((group, pick.name) for group in parse_relations(pick.fields.get(field, "")))
                break
        else:
            wanted = " | ".join(map(str, alternatives))
            raise MeshseedError(f"no package satisfies {wanted} (needed by {wanted_by})")
    return [chosen[name] for name in sorted(chosen)]


def _met(want: Want, chosen: dict[str, Candidate], universe: Universe) -> bool:
    return any(option.name in chosen and chosen[option.name] is option for option in universe.options(want))
