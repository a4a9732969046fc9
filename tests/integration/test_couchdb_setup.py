"""The CouchDB setup Job's script, run with sh and curl in a network namespace against a
stand-in for the members' API (Apache CouchDB cannot be installed here).

The namespace's /etc/hosts points the members' Service names at ::1, where a small server
answers as a cluster being finished would, and requires the admin's Basic credentials
on everything but /_up. The netrc is the one the Secret holds, mounted where the Job
mounts it (moved under the test's folder).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.generated import Documents, config, every, manifests, named
from tests.integration.netns import Link, link
from tests.tools import require

__all__ = ["link", "manifests"]  # fixtures

COUCHDB = """
import base64, http.server, json, socket, sys
members, expected, log = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
state = {"finished": False, "dbs": set()}
class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def _allowed(self):
        with open(log, "a") as out:
            out.write(f"{self.command} {self.path} {self.headers.get('Authorization', '-')}\\n")
        if self.path == "/_up" or self.headers.get("Authorization") == "Basic " + expected:
            return True
        self._send(401, {"error": "unauthorized"})
        return False
    def do_GET(self):
        if not self._allowed():
            return
        if self.path == "/_up":
            self._send(200, {"status": "ok"})
        elif self.path == "/_cluster_setup":
            self._send(200, {"state": "cluster_finished" if state["finished"] else "cluster_enabled"})
        elif self.path == "/_membership":
            nodes = [f"couchdb@{member}" for member in members]
            self._send(200, {"all_nodes": nodes, "cluster_nodes": nodes})
    def do_POST(self):
        if self._allowed():
            self.rfile.read(int(self.headers["Content-Length"]))
            state["finished"] = True
            self._send(201, {"ok": True})
    def do_PUT(self):
        if self._allowed():
            code = 412 if self.path in state["dbs"] else 201
            state["dbs"].add(self.path)
            self._send(code, {"ok": True})
class Server(http.server.HTTPServer):
    address_family = socket.AF_INET6
Server(("::1", int(sys.argv[4])), Handler).serve_forever()
"""


@pytest.fixture
def hosts(link: Link, manifests: dict[str, Documents]) -> Iterator[list[str]]:
    """The members' names at ::1 in the server namespace's /etc/hosts."""
    script = config(manifests, "couchdb-config", "setup.sh")
    members = sorted({line.split("/")[2].split(":")[0] for line in script.splitlines() if '"http://' in line})
    directory = Path("/etc/netns") / link.server
    directory.mkdir(parents=True)
    (directory / "hosts").write_text("::1 localhost " + " ".join(members) + "\n")
    try:
        yield members
    finally:
        shutil.rmtree(directory)


def _job(manifests: dict[str, Documents]) -> dict[str, Any]:
    jobs = [
        doc
        for doc in every(manifests)
        if doc["kind"] == "Job" and doc["metadata"]["name"].startswith("couchdb-setup")
    ]
    (job,) = jobs
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_the_setup_job_never_puts_the_password_on_a_command_line(manifests: dict[str, Documents]) -> None:
    spec = _job(manifests)
    (container,) = spec["containers"]
    script = config(manifests, "couchdb-config", "setup.sh")
    # Not in the environment either (a child's /proc/<pid>/environ is as readable to root,
    # but never on argv, which every user on the node can read).
    assert "env" not in container
    assert " -u " not in script and "--user" not in script and "PASSWORD" not in script
    assert script.count('--netrc-file "$netrc"') == 4
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["credentials"] == {"name": "credentials", "mountPath": "/credentials", "readOnly": True}
    credentials = next(volume for volume in spec["volumes"] if volume["name"] == "credentials")
    assert credentials["secret"]["items"] == [{"key": "netrc", "path": "netrc"}]
    assert credentials["secret"]["defaultMode"] == 0o400


def test_the_setup_script_finishes_the_cluster_with_the_netrc(
    link: Link, hosts: list[str], manifests: dict[str, Documents], tmp_path: Path
) -> None:
    require("curl", "curl")
    secret = named(every(manifests), "Secret", "couchdb-credentials")["stringData"]
    password = secret["password"]
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "netrc").write_text(secret["netrc"])
    (tmp_path / "credentials" / "netrc").chmod(0o400)
    script = config(manifests, "couchdb-config", "setup.sh").replace(
        "/credentials/", f"{tmp_path}/credentials/"
    )
    (tmp_path / "setup.sh").write_text(script)
    (tmp_path / "couchdb.py").write_text(COUCHDB)
    port = int(script.split('first="http://', 1)[1].split(":", 1)[1].split('"', 1)[0])
    expected = base64.b64encode(f"admin:{password}".encode()).decode()
    link.start(
        [
            sys.executable,
            tmp_path / "couchdb.py",
            json.dumps(hosts),
            expected,
            tmp_path / "requests.log",
            str(port),
        ],
        cwd=tmp_path,
    )
    for attempt in (1, 2):  # and again: every step is safe to repeat
        result = subprocess.run(
            ["ip", "netns", "exec", link.server, "sh", "-eu", str(tmp_path / "setup.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, (attempt, result.stdout, result.stderr)
        assert f"all {len(hosts)} members are in _membership" in result.stdout
        assert password not in result.stdout + result.stderr
    requests = (tmp_path / "requests.log").read_text().splitlines()
    authorized = [line for line in requests if not line.startswith("GET /_up ")]
    assert authorized and all(line.endswith(f"Basic {expected}") for line in authorized), requests
    assert "cluster already finished" in result.stdout
