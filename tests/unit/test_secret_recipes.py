"""Every secret's size, encoding and value for the test key, pinned one by one.

A deployed cluster keeps these values for its whole life: a changed size, encoding, info
string or scope would hand every node new secrets on the next build, so none may change
without a test failing.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest

from builder.secrets import RECIPES, Purpose, SecretDeriver
from tests.conftest import REPO, TEST_MASTER_KEY


def hex_text(raw: bytes) -> str:
    return raw.hex()


def base64url_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# purpose: (bytes, encoding, per node?, value for TEST_MASTER_KEY, cluster "campus", node "edx1")
PINNED = {
    Purpose.K3S_TOKEN: (
        32,
        hex_text,
        False,
        "f3f2ddbb3b8ef865f9b2654ecb272fe401f44615fd5d1ba32cd3a6591eed00d2",
    ),
    Purpose.K3S_AGENT_TOKEN: (
        32,
        hex_text,
        False,
        "5d530cd8c604a58e90cfcd67be71382342195506ebc917e0cf5eba78da1a5aaf",
    ),
    Purpose.COUCHDB_ADMIN_PASSWORD: (24, base64url_text, False, "xI9h8TgENyY_O6SWISRgBYvY2kXp6lHA"),
    Purpose.COUCHDB_ERLANG_COOKIE: (20, hex_text, False, "bca4afc36f0dadb75f962a3eb821c0d7142d845d"),
    Purpose.COUCHDB_UUID: (16, hex_text, False, "4e3eaf502b496188a4546b1c30df0ba4"),
    Purpose.COUCHDB_AUTH_SECRET: (
        24,
        hex_text,
        False,
        "9d243a7d921a6fb51d130522e6411cd1fa026b82b76c3a2b",
    ),
    Purpose.LMS_DJANGO_SECRET_KEY: (
        36,
        base64url_text,
        False,
        "7tgnA2Ihhw2AakVDsKWaF12bmEH6C4MLOJirdjDsmCkZMtsa",
    ),
    Purpose.SSH_HOST_KEY: (
        32,
        hex_text,
        True,
        "7fc140eae202acf0b27e90c926efda3954c421f00edee92aba9b29bfe55b91ab",
    ),
    Purpose.MYCELIUM_KEY: (
        32,
        hex_text,
        True,
        "2b0b056b0446c4739976aca4de8c4c1676fcf28b666daf7c0a6e16905317b4bb",
    ),
    Purpose.OPENEDX_CMS_OAUTH2_SECRET: (
        24,
        hex_text,
        False,
        "f54f5a78d5c5b6d17d8af5ef23a1c4667a31830b49190313",
    ),
    Purpose.OPENEDX_JWT_RSA_SEED: (
        32,
        hex_text,
        False,
        "9567ee9519011bd04e63ce5f89e3bf3618958194818d8623a4761fa69d2cf28a",
    ),
    Purpose.OPENEDX_MEILISEARCH_MASTER_KEY: (
        24,
        hex_text,
        False,
        "937e86f69b88ee7856fb1b54bbb773d46831bbebc02dfbea",
    ),
    Purpose.OPENEDX_MEILISEARCH_KEY_UID: (16, hex_text, False, "3052eee4f970fff56fe277f2a7de92d8"),
    Purpose.OPENEDX_MYSQL_ROOT_PASSWORD: (16, hex_text, False, "04eae11f536d7ab1d41feef2aa2c44b1"),
    Purpose.OPENEDX_MYSQL_PASSWORD: (16, hex_text, False, "4774b49263cad76e96348161f748fad2"),
    Purpose.OPENEDX_ADMIN_PASSWORD: (18, base64url_text, False, "AMfNqmoj7S7YDT5O1nTP54cd"),
    Purpose.GARAGE_RPC_SECRET: (
        32,
        hex_text,
        False,
        "c1c18bb3731d5189f58842ef011aaf2977eea4b396725287d146f923531514ef",
    ),
    Purpose.GARAGE_ADMIN_TOKEN: (
        32,
        hex_text,
        False,
        "43734404e5250135c7365581d549d251104ee7010114091c36fa5740d561d265",
    ),
    # Garage's own key shape: "GK" and 24 hex digits.
    Purpose.GARAGE_OPENEDX_KEY_ID: (12, lambda raw: "GK" + raw.hex(), False, "GK31b067ad7ae698eb74c74f82"),
    Purpose.GARAGE_OPENEDX_SECRET_KEY: (
        32,
        hex_text,
        False,
        "8b15e8ddfe5b65f16b4a5391c6a0f1f22367a371a7ccffaa349367576bd83efe",
    ),
    Purpose.OPENEDX_MONGODB_KEYFILE: (
        48,
        hex_text,
        False,
        "5b36cd85116256f91681f8a870ebbd6541da0843af5402f4d82b31f0b9a6db618f93f068582732d3169bcd6aa34f80a4",
    ),
    Purpose.OPENEDX_MONGODB_ROOT_PASSWORD: (16, hex_text, False, "85f848112634a2a0cf21255a5aa82654"),
    Purpose.OPENEDX_MONGODB_PASSWORD: (16, hex_text, False, "73469d0646328c4639f8b411052779ef"),
    Purpose.OPENEDX_MONGODB_BACKUP_PASSWORD: (16, hex_text, False, "7fe304a3fc96fd3d1b9fd680ee144945"),
}


def test_every_purpose_is_pinned() -> None:
    assert set(PINNED) == set(Purpose)


@pytest.mark.parametrize("purpose", list(PINNED), ids=str)
def test_size_encoding_scope_and_value(purpose: Purpose) -> None:
    size, encode, per_node, value = PINNED[purpose]
    secret = SecretDeriver(TEST_MASTER_KEY, "campus").derive(purpose, "edx1" if per_node else None)
    assert len(secret.raw) == size
    assert secret.text == encode(secret.raw) == value


def test_every_purpose_is_derived_somewhere() -> None:
    """A purpose nothing derives is a secret nobody uses (Tutor's one OPENEDX_SECRET_KEY
    serves the LMS and Studio alike, so there is no Studio key of our own)."""
    sources = "\n".join(
        path.read_text() for path in (REPO / "builder").rglob("*.py") if path.name != "secrets.py"
    )
    unused = [purpose.name for purpose in Purpose if f"Purpose.{purpose.name}" not in sources]
    assert unused == []


def test_django_secret_keys_are_48_url_safe_characters() -> None:
    # Django warns below 50 characters of 5 distinct ones; 36 bytes give 48 with no padding.
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    text = deriver.derive(Purpose.LMS_DJANGO_SECRET_KEY).text
    assert len(text) == 48
    assert "=" not in text


def test_fingerprint_is_pinned_and_depends_on_key_and_cluster() -> None:
    fingerprint = SecretDeriver(TEST_MASTER_KEY, "campus").fingerprint()
    assert fingerprint == "c73007f3d5986588b41e90eec7eaae76"
    assert SecretDeriver(TEST_MASTER_KEY, "other").fingerprint() != fingerprint
    assert SecretDeriver(bytes(32), "campus").fingerprint() != fingerprint


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_deriver_needs_a_32_byte_key(size: int) -> None:
    with pytest.raises(ValueError, match="a master key is 32 bytes"):
        SecretDeriver(bytes(size), "campus")


def test_secrets_and_recipes_cannot_be_changed_after_the_fact() -> None:
    secret = SecretDeriver(TEST_MASTER_KEY, "campus").derive(Purpose.K3S_TOKEN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        secret.text = "guessable"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPES[Purpose.K3S_TOKEN].size = 1  # type: ignore[misc]
