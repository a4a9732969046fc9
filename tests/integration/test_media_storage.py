"""Open edX's uploaded files, with the settings the build renders, against a real S3 server.

Garage is not installable here; moto's server mode (a separate process speaking S3 over
HTTP on ::1) is the most faithful S3 server PyPI has. Django's storage API and
django-storages' S3Storage with boto3 write and read the files exactly as the LMS does,
from the settings parsed out of the rendered LMS settings Secret. The test stands in for
DNS and caddy-edge: https://files.<lms_host> becomes moto's address, and the edge's
/public-media/ route to Garage's website endpoint becomes a public-read bucket policy.

What moto does not check, so this test cannot: a presigned URL's signature and expiry
(its IAM mode reads only the Authorization header). Anonymous access to the private
bucket is refused by moto as by Garage.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from builder.render import media
from tests.integration.generated import Documents, manifests, named

__all__ = ["manifests"]  # a fixture

HOST = "example.org"


def _free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "::1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("::1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"http://[::1]:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def rendered_settings(docs: dict[str, Documents]) -> str:
    every = [doc for found in docs.values() for doc in found]
    return str(named(every, "Secret", "openedx-settings-lms")["stringData"]["production.py"])


def storage_settings(settings: str) -> dict[str, Any]:
    """Run the meshseed block of the rendered settings alone, over empty stand-ins for the
    dicts it updates (Tutor's partials and edx-platform define them)."""
    start = settings.index("# meshseed: uploaded files on Garage")
    end = settings.index("# meshseed: end of uploaded files", start)
    namespace: dict[str, Any] = {"STORAGES": {}, "VIDEO_IMAGE_SETTINGS": {}, "VIDEO_TRANSCRIPTS_SETTINGS": {}}
    exec(compile(settings[start:end], "lms production.py", "exec"), namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


def through_the_edge(value: Any, public_host: str, server: str) -> Any:
    """The value with https://<files host> (and the bare host) replaced by the test server."""
    if isinstance(value, dict):
        return {key: through_the_edge(item, public_host, server) for key, item in value.items()}
    if isinstance(value, str):
        return value.replace(f"https://{public_host}", server).replace(public_host, server.split("//")[1])
    return value


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


@pytest.fixture(scope="module")
def settings(manifests: dict[str, Documents], s3_server: str) -> dict[str, Any]:
    import django  # noqa: PLC0415
    from django.conf import settings as django_settings  # noqa: PLC0415

    lms_host = next(host for host in [_lms_host(manifests)] if host)
    rendered = storage_settings(rendered_settings(manifests))
    assert rendered["AWS_S3_ENDPOINT_URL"] == f"https://{media.media_host(lms_host)}"
    values = through_the_edge(rendered, media.media_host(lms_host), s3_server)
    # Buckets as the bootstrap Job makes them; the public one readable without a signature.
    admin = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=values["AWS_S3_REGION_NAME"],
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
    )
    for bucket in media.BUCKETS:
        admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "garage"})
    public = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{media.PUBLIC_BUCKET}/*",
    }
    admin.put_bucket_policy(
        Bucket=media.PUBLIC_BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [public]})
    )
    if not django_settings.configured:
        # The edge stand-in is plain HTTP, so public URLs are too.
        django_settings.configure(AWS_S3_URL_PROTOCOL="http:", USE_TZ=True, **values)
        django.setup()
    return values


def _lms_host(docs: dict[str, Documents]) -> str:
    settings = rendered_settings(docs)
    marker = 'AWS_S3_ENDPOINT_URL = "https://files.'
    start = settings.index(marker) + len(marker)
    return settings[start : settings.index('"', start)]


def test_the_settings_put_every_upload_on_the_store(settings: dict[str, Any]) -> None:
    s3 = "storages.backends.s3.S3Storage"
    assert settings["STORAGES"]["default"]["BACKEND"] == s3
    for name in (
        "GRADES_DOWNLOAD",
        "FINANCIAL_REPORTS",
        "VIDEO_IMAGE_SETTINGS",
        "VIDEO_TRANSCRIPTS_SETTINGS",
    ):
        assert settings[name]["STORAGE_CLASS"] == s3, name
    assert settings["PROFILE_IMAGE_BACKEND"]["class"] == s3
    assert settings["OPENEDX_LEARNING"]["MEDIA"]["BACKEND"] == s3
    assert settings["ORA2_FILEUPLOAD_BACKEND"] == "s3"
    assert settings["FILE_UPLOAD_STORAGE_BUCKET_NAME"] == media.PRIVATE_BUCKET
    # Private unless named public: only images that pages show to everyone are public.
    private = [
        settings["STORAGES"]["default"]["OPTIONS"],
        settings["GRADES_DOWNLOAD"]["STORAGE_KWARGS"],
        settings["FINANCIAL_REPORTS"]["STORAGE_KWARGS"],
        settings["VIDEO_TRANSCRIPTS_SETTINGS"]["STORAGE_KWARGS"],
        settings["OPENEDX_LEARNING"]["MEDIA"]["OPTIONS"],
    ]
    for options in private:
        assert options["bucket_name"] == media.PRIVATE_BUCKET
        assert options["querystring_auth"] is True
    assert settings["AWS_QUERYSTRING_AUTH"] is True


def test_a_public_file_is_read_back_through_its_public_url(settings: dict[str, Any]) -> None:
    from django.core.files.base import ContentFile  # noqa: PLC0415
    from storages.backends.s3 import S3Storage  # noqa: PLC0415

    profile_images = S3Storage(**settings["PROFILE_IMAGE_BACKEND"]["options"])
    name = profile_images.save("learner.jpg", ContentFile(b"\xff\xd8 a profile image"))
    url = profile_images.url(name)
    assert "X-Amz-Signature" not in url
    assert url.startswith(f"{settings['AWS_S3_ENDPOINT_URL']}/{media.PUBLIC_BUCKET}/profile-images/")
    assert get(url) == (200, b"\xff\xd8 a profile image")


def test_a_private_file_needs_its_signed_url(settings: dict[str, Any]) -> None:
    from django.core.files.base import ContentFile  # noqa: PLC0415
    from django.core.files.storage import storages  # noqa: PLC0415
    from storages.backends.s3 import S3Storage  # noqa: PLC0415

    reports = S3Storage(**settings["GRADES_DOWNLOAD"]["STORAGE_KWARGS"])
    name = reports.save("course-v1_x/grade_report.csv", ContentFile(b"username,grade\nada,1.0\n"))
    signed = reports.url(name)
    assert "X-Amz-Signature=" in signed
    unsigned = signed.split("?")[0]
    assert unsigned.startswith(f"{settings['AWS_S3_ENDPOINT_URL']}/{media.PRIVATE_BUCKET}/grades/")
    assert get(unsigned)[0] == 403
    assert get(signed) == (200, b"username,grade\nada,1.0\n")
    # Django's default storage (imports, exports, anything else) is the private bucket too.
    default = storages["default"]
    other = default.save("exports/course.tar.gz", ContentFile(b"archive"))
    assert get(default.url(other).split("?")[0])[0] == 403
    assert get(default.url(other)) == (200, b"archive")
    # Written through one client, read through another: what another replica sees.
    with S3Storage(**settings["STORAGES"]["default"]["OPTIONS"]).open(other) as copy:
        assert copy.read() == b"archive"


def test_the_edge_routes_the_files_host(manifests: dict[str, Documents]) -> None:
    """Public files go to Garage's website endpoint with the bucket as Host; the rest, signed
    requests included, to the S3 API with the browser's own Host (the signature covers it)."""
    lms_host = _lms_host(manifests)
    every = [doc for found in manifests.values() for doc in found]
    edge = str(named(every, "ConfigMap", "caddy-config")["data"]["edge.Caddyfile"])
    site = edge[edge.index(f"@files host files.{lms_host}") :]
    site = site[: site.index("\n\t}\n")]
    assert f"handle_path /{media.PUBLIC_BUCKET}/* {{" in site
    assert f"header_up Host {media.PUBLIC_BUCKET}" in site
    assert "reverse_proxy garage.media.svc.cluster.local:3902" in site
    assert "reverse_proxy garage.media.svc.cluster.local:3900" in site


def test_the_backup_job_snapshots_every_bucket(
    manifests: dict[str, Documents], settings: dict[str, Any], s3_server: str, tmp_path: Path
) -> None:
    """The rendered backup script, with the test server standing in for Garage's Service,
    leaves a snapshot that the backup agent's verify accepts, holding every object."""
    from backup_agent.contents import verify  # noqa: PLC0415

    every = [doc for found in manifests.values() for doc in found]
    script = str(named(every, "ConfigMap", "backup-scripts")["data"]["garage-snapshot.py"])
    endpoint = script.split("ENDPOINT = ")[1].split("\n", maxsplit=1)[0]
    assert json.loads(endpoint) == "http://garage.media.svc.cluster.local:3900"
    (tmp_path / "snapshot.py").write_text(script.replace(endpoint, json.dumps(s3_server)))
    admin = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="garage",
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
    )
    admin.put_object(
        Bucket=media.PRIVATE_BUCKET, Key="../odd key/ü.txt", Body=b"odd", ContentType="text/plain"
    )
    (tmp_path / "backups").mkdir()
    (tmp_path / "metrics").mkdir()
    env = {
        **os.environ,
        "BACKUP_ROOT": str(tmp_path / "backups"),
        "METRICS_DIR": str(tmp_path / "metrics"),
        "AWS_ACCESS_KEY_ID": settings["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": settings["AWS_SECRET_ACCESS_KEY"],
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "snapshot.py")], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    (snapshot,) = (tmp_path / "backups" / "garage").iterdir()
    manifest = verify(snapshot)
    assert manifest["kind"] == "garage"
    index = json.loads((snapshot / "index.json").read_text())
    for bucket in media.BUCKETS:
        keys = [item["Key"] for item in admin.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert sorted(index[bucket]) == sorted(keys)
        for key in keys:
            stored = (snapshot / index[bucket][key]["file"]).read_bytes()
            assert stored == admin.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert index[media.PRIVATE_BUCKET]["../odd key/ü.txt"]["content_type"] == "text/plain"
    assert 'kind="garage"' in (tmp_path / "metrics" / "garage.prom").read_text()
