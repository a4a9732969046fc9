"""Garage's bootstrap Job, against a stand-in for Garage's admin API v2.

Garage cannot be installed here, so the rendered script runs against a fake that answers
with the shapes of Garage v2.0.0's OpenAPI description (doc/api/garage-admin-v2.json:
GetClusterStatusResponse, GetClusterLayoutResponse, GetBucketInfoResponse, and 404 for a
key or bucket that does not exist, src/api/admin/error.rs). What stays untested: Garage's
own behaviour behind those calls (connecting, computing and applying the layout).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.generated import Documents, config, manifests

__all__ = ["manifests"]  # a fixture


class FakeGarage:
    def __init__(self, members: list[str]) -> None:
        self.ids = {member: f"{index:02d}" * 32 for index, member in enumerate(members)}
        self.up = {self.ids[members[0]]}
        self.roles: list[dict[str, Any]] = []
        self.version = 0
        self.keys: dict[str, str] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.writes: list[str] = []

    def urlopen(self, request: urllib.request.Request, timeout: float) -> io.BytesIO:
        assert request.get_header("Authorization") == "Bearer token"
        url = request.full_url
        member = url.split("//")[1].split(":")[0]
        endpoint = url.split("/v2/")[1]
        body = json.loads(request.data) if request.data else None
        if body is not None:
            self.writes.append(endpoint.split("?")[0])
        answer = self.answer(member, endpoint, body)
        if answer is None:
            raise urllib.error.HTTPError(url, 404, "not found", None, io.BytesIO(b"{}"))  # type: ignore[arg-type]
        return io.BytesIO(json.dumps(answer).encode())

    def answer(self, member: str, endpoint: str, body: Any) -> Any:  # noqa: PLR0911 - one answer per endpoint
        name, _, query = endpoint.partition("?")
        value = query.partition("=")[2]
        if name == "GetClusterStatus":
            # A member sees itself, and the others once they are connected.
            seen = {self.ids[member]} | (self.up if self.ids[member] in self.up else set())
            nodes = [
                {"id": node, "hostname": host.split(".")[0], "isUp": True, "draining": False}
                for host, node in self.ids.items()
                if node in seen
            ]
            return {"layoutVersion": self.version, "nodes": nodes}
        if name == "ConnectClusterNodes":
            self.up |= {peer.split("@")[0] for peer in body}
            return [{"success": True, "error": None} for _ in body]
        if name == "GetClusterLayout":
            return {"version": self.version, "roles": self.roles, "stagedRoleChanges": []}
        if name == "UpdateClusterLayout":
            self.staged = body["roles"]
            return {}
        if name == "ApplyClusterLayout":
            assert body["version"] == self.version + 1
            self.roles, self.version = self.roles + self.staged, body["version"]
            return {}
        if name == "GetKeyInfo":
            return {"accessKeyId": value} if value in self.keys else None
        if name == "ImportKey":
            self.keys[body["accessKeyId"]] = body["secretAccessKey"]
            return {}
        if name == "GetBucketInfo":
            return self.buckets.get(value)
        if name == "CreateBucket":
            bucket = {"id": f"id-{body['globalAlias']}", "websiteAccess": False, "keys": []}
            self.buckets[body["globalAlias"]] = bucket
            return bucket
        if name == "AllowBucketKey":
            (bucket,) = [b for b in self.buckets.values() if b["id"] == body["bucketId"]]
            bucket["keys"].append({"accessKeyId": body["accessKeyId"], "permissions": body["permissions"]})
            return {}
        if name == "UpdateBucket":
            (bucket,) = [b for b in self.buckets.values() if b["id"] == value]
            bucket["websiteAccess"] = body["websiteAccess"]["enabled"]
            return {}
        raise AssertionError(endpoint)


def run(script: str, garage: FakeGarage, credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS", str(credentials))
    monkeypatch.setattr(urllib.request, "urlopen", garage.urlopen)
    namespace: dict[str, Any] = {"__name__": "bootstrap"}
    exec(compile(script, "bootstrap.py", "exec"), namespace)
    namespace["main"]()


def test_the_bootstrap_sets_up_garage_once_and_then_changes_nothing(
    manifests: dict[str, Documents], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = config(manifests, "garage-config", "bootstrap.py")
    for name, value in {"admin-token": "token", "key-id": "GKabc", "secret-key": "s3cret"}.items():
        (tmp_path / name).write_text(value + "\n")
    members = json.loads(script.split("MEMBERS = ")[1].split("\n")[0])
    assert len(members) == 3
    garage = FakeGarage(members)
    run(script, garage, tmp_path, monkeypatch)
    assert garage.up == set(garage.ids.values())
    assert sorted(role["id"] for role in garage.roles) == sorted(garage.ids.values())
    # One zone per member, so Garage keeps each object's copies on distinct servers.
    assert len({role["zone"] for role in garage.roles}) == 3
    assert garage.keys == {"GKabc": "s3cret"}
    assert {name: bucket["websiteAccess"] for name, bucket in garage.buckets.items()} == {
        "public-media": True,
        "private": False,
    }
    for bucket in garage.buckets.values():
        assert bucket["keys"][0]["permissions"]["read"] and bucket["keys"][0]["permissions"]["write"]
    garage.writes.clear()
    run(script, garage, tmp_path, monkeypatch)
    assert garage.writes == []


def test_garage_runs_one_member_per_server_with_a_quorum(manifests: dict[str, Documents]) -> None:
    every = [doc for found in manifests.values() for doc in found]
    (garage,) = [d for d in every if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "garage"]
    assert garage["metadata"]["labels"]["meshseed/quorum"] == "majority"
    assert garage["spec"]["replicas"] == 3
    (term,) = garage["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    toml = config(manifests, "garage-config", "garage.toml")
    assert "replication_factor = 3\n" in toml
    assert 'consistency_mode = "consistent"' in toml
    # Every listener on IPv6's any-address.
    assert sorted(line.split('"')[1] for line in toml.splitlines() if "bind_addr" in line) == [
        "[::]:3900",
        "[::]:3901",
        "[::]:3902",
        "[::]:3903",
    ]
