"""node-setup's download step, run for real: the generated script's functions, with curl,
against a server on 127.0.0.1 that fails, refuses or serves the wrong bytes.

The boot test (tests/e2e) covers the whole script in a VM from an air-gap payload; here
the download path gets what a VM cannot reach: a first attempt that fails, a failure with
curl's reason in the log and the banner, and a sha256 mismatch that is final.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from builder.render.node import REFUSED_STATUS
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.tools import require

PAYLOAD = b"pretend k3s binary\n"


@pytest.fixture(scope="module")
def node_setup(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("node-setup")
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    write_test_lock(root)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((root / "dist" / "nodes" / "edx1" / "user-data").read_text())
    (script,) = [
        f["content"] for f in data["write_files"] if f["path"] == "/usr/local/lib/meshseed/node-setup"
    ]
    return str(script)


class Flaky(http.server.BaseHTTPRequestHandler):
    """Drops the first connection without an answer, then serves by path."""

    requests: ClassVar[list[str]] = []
    files: ClassVar[dict[str, bytes]] = {}
    # Where the stand-in timedatectl logs each question, and how many came first.
    clock_log: ClassVar[Path] = Path("/nonexistent")
    asked_before_first_request: ClassVar[int] = 0

    def do_GET(self) -> None:
        if not type(self).requests and type(self).clock_log.exists():
            type(self).asked_before_first_request = type(self).clock_log.read_text().count("asked")
        type(self).requests.append(self.path)
        if len(type(self).requests) == 1:
            self.close_connection = True
            return
        body = type(self).files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Flaky.requests, Flaky.files = [], {"/k3s": PAYLOAD, "/other": b"not what the seed pins\n"}
    Flaky.clock_log, Flaky.asked_before_first_request = Path("/nonexistent"), 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


SYNCED = "#!/bin/sh\necho yes\n"


def run_get(
    script: str, work: Path, url: str, sha256: str, timedatectl: str = SYNCED
) -> subprocess.CompletedProcess[str]:
    """The script's own definitions (paths moved under `work`), then one `get`;
    `timedatectl` stands in for the node's (by default: the clock is synchronised)."""
    require("curl", "curl")
    head = script[: script.index("\nget ")]
    head = re.sub(
        r"^(LOG|STAGE|STEPS|BANNER)=/\S*", lambda m: f"{m.group(1)}={work}/{m.group(1)}", head, flags=re.M
    )
    head = head.replace("chmod 0700 /var/lib/meshseed\n", "")
    assert "/var/lib/meshseed" not in head.split("get() {")[0].split("set -eu")[1]
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "timedatectl").write_text(timedatectl)
    (bin_dir / "timedatectl").chmod(0o755)
    program = work / "setup.sh"
    program.write_text(f"{head}\nget k3s {url} {sha256}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", str(program)], capture_output=True, text=True, check=False, env=env, timeout=300
    )


def test_a_download_that_fails_once_is_retried_and_verified(
    node_setup: str, server: str, tmp_path: Path
) -> None:
    result = run_get(node_setup, tmp_path, f"{server}/k3s", hashlib.sha256(PAYLOAD).hexdigest())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "STAGE" / "k3s").read_bytes() == PAYLOAD
    assert not (tmp_path / "STAGE" / "k3s.partial").exists()
    assert Flaky.requests == ["/k3s", "/k3s"]
    assert "verified k3s" in (tmp_path / "LOG").read_text()
    # A second run finds the verified file and downloads nothing.
    assert run_get(node_setup, tmp_path, f"{server}/k3s", hashlib.sha256(PAYLOAD).hexdigest()).returncode == 0
    assert len(Flaky.requests) == 2


def test_a_failed_download_says_curls_reason_and_stays_visible(
    node_setup: str, server: str, tmp_path: Path
) -> None:
    result = run_get(node_setup, tmp_path, f"{server}/missing", hashlib.sha256(PAYLOAD).hexdigest())
    assert result.returncode == 1, result.stdout + result.stderr
    log = (tmp_path / "LOG").read_text()
    # Every attempt's reason: the dropped connection, then the 404s.
    assert f"ERROR: cannot download k3s from {server}/missing: curl: (52) Empty reply from server" in log
    assert "curl: (22) The requested URL returned error: 404" in log
    assert "cannot download k3s" in (tmp_path / "BANNER").read_text()
    assert not list((tmp_path / "STAGE").iterdir())


def test_a_sha256_mismatch_is_final(node_setup: str, server: str, tmp_path: Path) -> None:
    result = run_get(node_setup, tmp_path, f"{server}/other", hashlib.sha256(PAYLOAD).hexdigest())
    assert result.returncode == REFUSED_STATUS, result.stdout + result.stderr
    assert "refusing to install it" in (tmp_path / "BANNER").read_text()
    assert not list((tmp_path / "STAGE").iterdir())


def test_downloads_wait_for_the_clock_to_be_synchronised(
    node_setup: str, server: str, tmp_path: Path
) -> None:
    # timesyncd says "no" twice (the script asks every 5 s), then "yes".
    Flaky.clock_log = tmp_path / "asked"
    clock = f"#!/bin/sh\necho asked >> {Flaky.clock_log}\n[ $(wc -l < {Flaky.clock_log}) -ge 3 ] && echo yes || echo no\n"
    result = run_get(node_setup, tmp_path, f"{server}/k3s", hashlib.sha256(PAYLOAD).hexdigest(), clock)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Flaky.clock_log.read_text().count("asked") == 3
    assert Flaky.asked_before_first_request == 3
