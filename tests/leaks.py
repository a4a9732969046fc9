"""Every secret the master key derives for a site, to look for where none may be."""

from __future__ import annotations

from pathlib import Path

from builder.secrets import RECIPES, Scope, SecretDeriver


def derived_values(key: Path, cluster: str, nodes: list[str]) -> list[str]:
    deriver = SecretDeriver(key.read_bytes(), cluster)
    values = []
    for purpose, recipe in RECIPES.items():
        if recipe.scope is Scope.CLUSTER:
            values.append(deriver.derive(purpose).text)
        else:
            values += [deriver.derive(purpose, node).text for node in nodes]
    return values
