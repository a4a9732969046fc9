"""Image references are normalised the way Docker and containerd read them."""

from __future__ import annotations

import pytest

from builder.oci.reference import parse_mirror, parse_reference
from builder.oci.registry import default_endpoint

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("couchdb:3.4.3", "docker.io/library/couchdb:3.4.3"),
        ("overhangio/openedx:22.0.3", "docker.io/overhangio/openedx:22.0.3"),
        ("quay.io/prometheus/prometheus:v3.5.0", "quay.io/prometheus/prometheus:v3.5.0"),
        ("127.0.0.1:5000/test/busybox:1", "127.0.0.1:5000/test/busybox:1"),
        ("localhost/x", "localhost/x"),
        (f"ghcr.io/org/img@{DIGEST}", f"ghcr.io/org/img@{DIGEST}"),
        (f"redis:7@{DIGEST}", f"docker.io/library/redis:7@{DIGEST}"),
    ],
)
def test_normalisation(text: str, normal: str) -> None:
    assert str(parse_reference(text)) == normal


def test_parts() -> None:
    reference = parse_reference("127.0.0.1:5000/a/b:c")
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        "127.0.0.1:5000",
        "a/b",
        "c",
        None,
    )
    assert reference.name == "127.0.0.1:5000/a/b"
    assert str(reference.pinned(DIGEST)) == f"127.0.0.1:5000/a/b:c@{DIGEST}"


@pytest.mark.parametrize("bad", ["UPPER/case:1", "a@sha256:short", "a:b c", "", "a//b"])
def test_invalid_references(bad: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        parse_reference(bad)


def test_endpoints_and_mirrors() -> None:
    assert default_endpoint("docker.io") == "https://registry-1.docker.io"
    assert default_endpoint("ghcr.io") == "https://ghcr.io"
    assert default_endpoint("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert default_endpoint("[::1]:5000") == "http://[::1]:5000"
    assert parse_mirror("docker.io=http://127.0.0.1:5000") == ("docker.io", "http://127.0.0.1:5000")
    with pytest.raises(ValueError, match="REGISTRY=URL"):
        parse_mirror("docker.io")
