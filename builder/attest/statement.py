"""in-toto statements: a predicate about one subject, an image in a repository by digest."""

from __future__ import annotations

from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


def statement(repository: str, digest: str, predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    algorithm, _, value = digest.partition(":")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {algorithm: value}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def subject_digests(data: dict[str, Any]) -> list[str]:
    """`algorithm:value` of every subject of a statement (none if it is not one)."""
    subjects = data.get("subject")
    if not isinstance(subjects, list):
        return []
    found = []
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digest, dict):
            found += [f"{algorithm}:{value}" for algorithm, value in sorted(digest.items())]
    return found
