"""Publishing against the real Debian docker-registry: push, sign, attest, verify, and
every way verification must refuse. Signatures and envelopes are also checked with
openssl, which shares no code with meshseed, against cosign's published layout."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builder.sign import dsse
from builder.sign.keys import load_private_key
from tests.conftest import TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.integration.debian_fixtures import DebRepo, expected_closure
from tests.integration.oci_fixtures import Registry
from tests.integration.test_own_images import build_images, make_project
from tests.leaks import derived_values
from tests.sign.openssl import openssl_verifies as verifies_der
from tests.sign.registries import (
    PASSWORD,
    USER,
    Cuts,
    RawRegistry,
    cutting_proxy,
    secure_registry,
    storage_snapshot,
)
from tests.tools import require

COSIGN_PASSWORD = "publish test password"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass(frozen=True)
class Project:
    root: Path
    master_key: Path
    key: Path  # cosign.key
    public: Path  # cosign.pub
    other_public: Path  # a key that signed nothing
    commit: str

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return meshseed(
            *args,
            cwd=self.root,
            master_key=self.master_key,
            env={"COSIGN_PASSWORD": COSIGN_PASSWORD, **(env or {})},
        )

    def publish(self, registry: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        result = self.run(
            "publish", "--registry", registry, "--key", str(self.key), "--json", *extra, env=env
        )
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def verify(
        self, target: str, key: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("verify", "--key", str(key or self.public), target, env=env)


@pytest.fixture(scope="module")
def project(deb_repo: DebRepo, tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("publish")
    master_key = base / "master.key"
    master_key.write_bytes(TEST_MASTER_KEY)
    master_key.chmod(0o600)
    root = make_project(base / "project", deb_repo)
    git = require("git", "git")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x"],
    ):
        subprocess.run([git, *args], cwd=root, check=True, capture_output=True)
    commit = subprocess.run(
        [git, "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()
    build_images(root, master_key)
    for name in ("keys", "other"):
        result = meshseed(
            "keys",
            "generate",
            "--out",
            name,
            cwd=root,
            master_key=master_key,
            env={"COSIGN_PASSWORD": COSIGN_PASSWORD},
        )
        assert result.returncode == 0, result.stderr
    return Project(
        root,
        master_key,
        root / "keys/cosign.key",
        root / "keys/cosign.pub",
        root / "other/cosign.pub",
        commit,
    )


def layout_digest(project: Project) -> str:
    index = json.loads((project.root / "dist/images/mini/index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest


def openssl_verifies(public: Path, data: bytes, signature_b64: str, work: Path) -> bool:
    return verifies_der(public, data, base64.b64decode(signature_b64), work)


def test_publish_signs_and_attests_in_cosigns_layout(
    project: Project, registry: Registry, tmp_path: Path
) -> None:
    report = project.publish(f"{registry.host}/layout")
    digest = layout_digest(project)
    name = f"{registry.host}/layout/mini"
    (image,) = report["images"]
    assert image["reference"] == f"{name}:1.0@{digest}"
    assert sorted(image["changed"]) == ["image", "provenance", "sbom", "signature"]
    raw = RawRegistry(registry.url, "layout/mini")
    # The digest survives the push: the registry serves the layout's manifest byte for byte.
    assert raw.digest_of("1.0") == digest

    signature_object = json.loads(raw.manifest(digest.replace(":", "-") + ".sig"))
    assert signature_object["mediaType"] == OCI_MANIFEST
    assert signature_object["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = signature_object["layers"]
    assert layer["mediaType"] == SIMPLE_SIGNING
    assert list(layer["annotations"]) == [SIGNATURE_ANNOTATION]
    payload = raw.blob(layer["digest"])
    # cosign's payload exactly: Go's field order, no spaces, a null `optional`.
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"' + name.encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert openssl_verifies(project.public, payload, layer["annotations"][SIGNATURE_ANNOTATION], tmp_path)
    config = json.loads(raw.blob(signature_object["config"]["digest"]))
    assert config == {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    }

    attestations = json.loads(raw.manifest(digest.replace(":", "-") + ".att"))
    assert attestations["mediaType"] == OCI_MANIFEST
    statements = {}
    for layer in attestations["layers"]:
        assert layer["mediaType"] == DSSE
        assert layer["annotations"][SIGNATURE_ANNOTATION] == ""
        envelope = json.loads(raw.blob(layer["digest"]))
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        body = base64.b64decode(envelope["payload"])
        (signature,) = envelope["signatures"]
        pae = b"DSSEv1 28 application/vnd.in-toto+json %d %b" % (len(body), body)
        assert openssl_verifies(project.public, pae, signature["sig"], tmp_path)
        statement = json.loads(body)
        assert statement["predicateType"] == layer["annotations"]["predicateType"]
        assert statement["subject"] == [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}]
        statements[statement["predicateType"]] = statement["predicate"]
    assert set(statements) == {"https://slsa.dev/provenance/v1", "https://spdx.dev/Document"}

    provenance = statements["https://slsa.dev/provenance/v1"]
    dependencies = provenance["buildDefinition"]["resolvedDependencies"]
    assert {"name": "source", "digest": {"gitCommit": project.commit}} in dependencies
    lock = json.loads((project.root / "images.lock").read_text())
    for package in lock["debian"]["mini"]["packages"]:
        assert {"sha256": package["sha256"]} in [d["digest"] for d in dependencies]
    assert provenance["runDetails"]["builder"]["version"]["meshseed"].startswith("0.")

    spdx = statements["https://spdx.dev/Document"]
    (tmp_path / "sbom.json").write_text(json.dumps(spdx))
    assert validate_full_spdx_document(parse_file(str(tmp_path / "sbom.json"))) == []
    debian = {
        p["name"]: p["versionInfo"] for p in spdx["packages"] if p.get("supplier") == "Organization: Debian"
    }
    assert debian == expected_closure()
    files = {f["fileName"] for f in spdx["files"]}
    assert "./opt/app/message.txt" in files
    assert not any(f.startswith("./usr/bin/") for f in files), "files a package owns are the package's"

    assert project.verify(f"{name}:1.0").returncode == 0
    verified = project.verify(f"{name}:1.0@{digest}")
    assert verified.returncode == 0, verified.stderr
    assert "provenance and sbom attested" in verified.stdout


def test_provenance_and_sbom_hold_no_secret(project: Project, registry: Registry) -> None:
    project.publish(f"{registry.host}/secrets")
    raw = RawRegistry(registry.url, "secrets/mini")
    digest = layout_digest(project)
    text = b""
    for layer in json.loads(raw.manifest(digest.replace(":", "-") + ".att"))["layers"]:
        text += base64.b64decode(json.loads(raw.blob(layer["digest"]))["payload"])
    values = derived_values(project.master_key, "campus", ["edx1", "edx2", "edx3", "vault"])
    values += [COSIGN_PASSWORD, project.key.read_text(), TEST_MASTER_KEY.hex()]
    assert text and not [value for value in values if value.encode() in text]
    site = (project.root / "site.yaml").read_text()
    assert b"campus.example.org" in site.encode() and b"campus.example.org" not in text  # no site values


def test_republishing_changes_nothing_and_signing_with_another_key_appends(
    project: Project, registry: Registry
) -> None:
    project.publish(f"{registry.host}/again")
    before = storage_snapshot(registry.root)
    report = project.publish(f"{registry.host}/again")
    assert report["images"][0]["changed"] == []
    assert report["blobs"]["uploaded"] == 0 and report["blobs"]["present"] > 0
    after = storage_snapshot(registry.root)
    assert {k: v for k, v in after.items() if "/again/" in k or "/blobs/" in k} == {
        k: v for k, v in before.items() if "/again/" in k or "/blobs/" in k
    }

    # A second key's signature goes next to the first, as `cosign sign` appends it.
    other = project.root / "other/cosign.key"
    result = project.run("publish", "--registry", f"{registry.host}/again", "--key", str(other), "--json")
    assert result.returncode == 0, result.stderr
    raw = RawRegistry(registry.url, "again/mini")
    signatures = json.loads(raw.manifest(layout_digest(project).replace(":", "-") + ".sig"))
    assert len(signatures["layers"]) == 2
    name = f"{registry.host}/again/mini:1.0"
    assert project.verify(name).returncode == 0
    assert project.verify(name, key=project.other_public).returncode == 0


def _refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert reason in result.stderr, result.stderr


def test_verify_refuses_what_it_must(project: Project, registry: Registry) -> None:
    repository = "attacks/mini"
    name = f"{registry.host}/{repository}"
    project.publish(f"{registry.host}/attacks")
    raw = RawRegistry(registry.url, repository)
    digest = layout_digest(project)
    signature_tag = digest.replace(":", "-") + ".sig"

    # Another image in the same repository: the same blobs, one more annotation.
    manifest = json.loads(raw.manifest(digest))
    manifest["annotations"]["org.example.evil"] = "yes"
    evil = raw.put_manifest("evil", json.dumps(manifest).encode())
    _refused(project.verify(f"{name}@{evil}"), "unsigned")

    _refused(project.verify(f"{name}:1.0", key=project.other_public), "verifies with this key")

    # The signature of the real image, copied to the other one.
    original = raw.manifest(signature_tag)
    raw.put_manifest(evil.replace(":", "-") + ".sig", original)
    _refused(project.verify(f"{name}@{evil}"), f"made for another digest ({digest})")

    # The tag moved to the other image.
    raw.put_manifest("1.0", json.dumps(manifest).encode())
    _refused(project.verify(f"{name}:1.0@{digest}"), "the tag 1.0 was moved")
    raw.put_manifest("1.0", raw.manifest(digest))
    assert project.verify(f"{name}:1.0@{digest}").returncode == 0

    # A payload changed after signing (the signature annotation kept).
    signature_object = json.loads(original)
    layer = signature_object["layers"][0]
    payload = json.loads(raw.blob(layer["digest"]))
    payload["optional"] = {"creator": "someone else"}
    tampered = json.dumps(payload).encode()
    layer.update(digest=raw.put_blob(tampered), size=len(tampered))
    raw.put_manifest(signature_tag, json.dumps(signature_object).encode())
    _refused(project.verify(f"{name}:1.0"), "payload or its signature annotation was altered")

    # The signature annotation changed, the payload kept.
    signature_object = json.loads(original)
    annotation = signature_object["layers"][0]["annotations"][SIGNATURE_ANNOTATION]
    signature_object["layers"][0]["annotations"][SIGNATURE_ANNOTATION] = annotation[:-8] + "AAAAAAA="
    raw.put_manifest(signature_tag, json.dumps(signature_object).encode())
    _refused(project.verify(f"{name}:1.0"), "payload or its signature annotation was altered")
    raw.put_manifest(signature_tag, original)
    assert project.verify(f"{name}:1.0").returncode == 0

    # Attestations signed with our key, but about the other image.
    key = load_private_key(project.key.read_bytes(), COSIGN_PASSWORD, "cosign.key")
    attestation_tag = digest.replace(":", "-") + ".att"
    attestation_object = json.loads(raw.manifest(attestation_tag))
    for layer in attestation_object["layers"]:
        statement = json.loads(base64.b64decode(json.loads(raw.blob(layer["digest"]))["payload"]))
        statement["subject"][0]["digest"]["sha256"] = evil.removeprefix("sha256:")
        forged = dsse.seal(key, json.dumps(statement).encode())
        layer.update(digest=raw.put_blob(forged), size=len(forged))
    raw.put_manifest(attestation_tag, json.dumps(attestation_object).encode())
    _refused(project.verify(f"{name}:1.0"), f"attestation's subject is {evil}")


def test_tls_registry_with_htpasswd(project: Project, tmp_path: Path) -> None:
    with secure_registry(tmp_path / "secure") as secure:
        env = {"SSL_CERT_FILE": str(secure.ca_file)}
        anonymous = project.run(
            "publish", "--registry", f"https://{secure.host}/ci", "--key", str(project.key), env=env
        )
        _refused(anonymous, "needs credentials")
        credentials = {**env, "MESHSEED_REGISTRY_USER": USER, "MESHSEED_REGISTRY_PASSWORD": PASSWORD}
        # Small chunks: the layers go up in several PATCHes, the config in one PUT.
        report = project.publish(f"https://{secure.host}/ci", "--chunk-size", "64K", env=credentials)
        assert report["blobs"]["uploaded"] >= 3
        reference = "https://" + report["images"][0]["reference"]
        # verify names no --registry: the environment's login is for $MESHSEED_REGISTRY_HOST only.
        _refused(project.verify(reference, env=credentials), "needs credentials")
        verified = project.verify(reference, env={**credentials, "MESHSEED_REGISTRY_HOST": secure.host})
        assert verified.returncode == 0, verified.stderr
        _refused(project.verify(reference, env=env), "needs credentials")
        logged = project.run(
            "--debug",
            "publish",
            "--registry",
            f"https://{secure.host}/ci",
            "--key",
            str(project.key),
            env=credentials,
        )
        assert logged.returncode == 0
        assert PASSWORD not in logged.stderr and COSIGN_PASSWORD not in logged.stderr


def test_a_push_interrupted_half_way_is_resumed(project: Project, registry: Registry) -> None:
    # The network fails part way through the layers: one chunk's answer is lost (the
    # registry got it, so the client must ask before going on), then everything fails.
    cuts = Cuts(lost_answers=1, refuse_after=6)
    with cutting_proxy(registry.url, cuts) as proxy:
        broken = project.run(
            "publish", "--registry", f"{proxy}/resumed", "--key", str(project.key), "--chunk-size", "64K"
        )
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr
    assert "answer lost" in cuts.log and "refused" in cuts.log
    after_loss = cuts.log[cuts.log.index("answer lost") + 1 :]
    assert any(line.startswith("GET /v2/resumed/mini/blobs/uploads/") for line in after_loss)

    # Run again: what arrived is kept, the rest is sent, and the result verifies.
    report = project.publish(f"{registry.host}/resumed", "--chunk-size", "64K")
    assert report["blobs"]["present"] >= 1 and report["blobs"]["uploaded"] >= 1
    verified = project.verify(f"{registry.host}/resumed/mini:1.0@{layout_digest(project)}")
    assert verified.returncode == 0, verified.stderr


def test_checksums_are_signed_for_the_same_key(project: Project, registry: Registry, tmp_path: Path) -> None:
    project.publish(f"{registry.host}/sums")
    sums, signature = project.root / "dist/SHA256SUMS", project.root / "dist/SHA256SUMS.sig"
    assert openssl_verifies(project.public, sums.read_bytes(), signature.read_text(), tmp_path)
    assert project.verify(str(sums)).returncode == 0
    _refused(project.verify(str(sums), key=project.other_public), "does not verify with this key")
    listed = project.root / "dist/images/mini/index.json"
    original = listed.read_bytes()
    listed.chmod(0o644)
    listed.write_bytes(original + b" ")
    try:
        _refused(project.verify(str(sums)), "index.json: sha256 is")
    finally:
        listed.write_bytes(original)


def test_publish_needs_a_build_and_names_a_bad_key(
    project: Project, registry: Registry, tmp_path: Path
) -> None:
    result = project.run("publish", "--registry", f"{registry.host}/x", "--dist", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "build.json: missing" in result.stderr
    result = project.run(
        "publish",
        "--registry",
        f"{registry.host}/x",
        "--key",
        str(project.key),
        env={"COSIGN_PASSWORD": "wrong"},
    )
    assert result.returncode == 2 and "wrong password" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_store_entry_is_not_published(project: Project, registry: Registry) -> None:
    (entry,) = (project.root / ".meshseed/store").glob("*-image-own-mini")
    index = entry / "index.json"
    original = index.read_bytes()
    index.chmod(0o644)
    index.write_bytes(original.replace(b'"schemaVersion"', b'"schemaVersion" '))
    try:
        result = project.run("publish", "--registry", f"{registry.host}/damaged", "--key", str(project.key))
    finally:
        index.write_bytes(original)
        index.chmod(0o444)
    assert result.returncode == 1
    assert f"{entry.name}: index.json changed (recorded regular sha256:" in result.stderr
    assert "meshseed build --images --repair" in result.stderr
    assert RawRegistry(registry.url, "damaged/mini").status("1.0") == 404
