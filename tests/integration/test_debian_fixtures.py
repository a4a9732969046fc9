"""The Debian archive fixture is what apt would accept: signed, hashed, indexed and reproducible."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import time
from pathlib import Path

import pytest

from tests.integration.debian_fixtures import (
    ARCHIVES,
    EPOCH,
    PACKAGE_SPECS,
    SPECS_BY_KEY,
    Archive,
    DebRepo,
    build_archives,
    expected_closure,
    parse_deb822,
    release_date,
    signer,
)
from tests.integration.oci_fixtures import http_request, run
from tests.tools import require

pytestmark = pytest.mark.integration

BINARY = "main/binary-amd64"
INDEX_NAMES = ("Packages", "Packages.gz", "Packages.xz")
# One ` <sha256> <size> <path>` line of a Release checksum field, with the size right-aligned in 8
# columns as dak writes it.
_CHECKSUM_LINE = re.compile(r" ([0-9a-f]{64}) ([ 0-9]{8}) (\S+)")


def dists(repo: DebRepo, archive: Archive) -> Path:
    return repo.root / archive.directory / "dists" / archive.suite


def release_checksums(release: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from the SHA256 field of a Release file, checking dak's line format."""
    (fields,) = parse_deb822(release)
    checksums = {}
    for line in fields["SHA256"].splitlines()[1:]:
        match = _CHECKSUM_LINE.fullmatch(" " + line)
        assert match is not None, f"malformed SHA256 line: {line!r}"
        checksums[match[3]] = (match[1], int(match[2]))
    return checksums


def gpgv(repo: DebRepo, home: Path, *files: Path, check: bool = True) -> int:
    program = require("gpgv", "gpgv")
    # Its own home: gpgv must not consult the invoking user's trustedkeys.
    home.mkdir(mode=0o700, exist_ok=True)
    argv = [program, "--homedir", str(home), "--keyring", str(repo.keyring), *map(str, files)]
    return run(argv, check=check).returncode


def test_archives_are_served_over_http(deb_repo: DebRepo) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/debian", deb_repo.url)
    assert deb_repo.security_url == f"{deb_repo.url}-security"
    assert deb_repo.epoch == EPOCH
    for archive, base in zip(ARCHIVES, (deb_repo.url, deb_repo.security_url), strict=True):
        for name in ("Release", "InRelease", "Release.gpg", f"{BINARY}/Packages.xz"):
            response = http_request(f"{base}/dists/{archive.suite}/{name}")
            assert response.status == 200, name
            assert response.body == (dists(deb_repo, archive) / name).read_bytes()
            # Served as stored: apt hashes the bytes it receives, so no transparent decompression.
            assert "content-encoding" not in response.headers
    for key in deb_repo.packages:
        response = http_request(deb_repo.deb_url(key))
        assert response.status == 200, key
        assert response.body == deb_repo.deb_path(key).read_bytes()
    assert http_request(f"{deb_repo.url}/dists/sid/Release").status == 404


def test_packages_index_parses_and_lists_every_package(deb_repo: DebRepo) -> None:
    assert set(deb_repo.packages) == {spec.key for spec in PACKAGE_SPECS}
    for archive in ARCHIVES:
        directory = dists(deb_repo, archive) / BINARY
        packages = (directory / "Packages").read_bytes()
        # The compressed indexes hold the very same bytes; apt may pick any of them.
        assert gzip.decompress((directory / "Packages.gz").read_bytes()) == packages
        assert lzma.decompress((directory / "Packages.xz").read_bytes()) == packages
        stanzas = parse_deb822(packages.decode())
        expected = sorted(spec.key for spec in PACKAGE_SPECS if spec.archive is archive)
        assert [f"{s['Package']}={s['Version']}" for s in stanzas] == expected
        for stanza in stanzas:
            key = f"{stanza['Package']}={stanza['Version']}"
            assert stanza == deb_repo.packages[key]
            assert stanza["Filename"].startswith(f"pool/main/{stanza['Package'][0]}/{stanza['Package']}/")
            assert stanza["Section"] == "misc"
            assert stanza["Priority"] == "optional"
            assert stanza["Architecture"] == SPECS_BY_KEY[key].architecture

    app = deb_repo.packages["mini-app=1.0-1"]
    assert app["Pre-Depends"] == "mini-base"
    assert app["Depends"] == "mini-base (>= 1.0), mini-virtual, missing-package | mini-libfoo (>= 2.0)"
    assert app["Filename"] == "pool/main/m/mini-app/mini-app_1.0-1_amd64.deb"
    for version in ("2.0-1", "2.0-1+deb12u1"):
        assert deb_repo.packages[f"mini-libfoo={version}"]["Provides"] == "mini-virtual"
    assert deb_repo.packages["mini-arch-all=1.0"]["Filename"].endswith("_all.deb")
    assert "Depends" not in deb_repo.packages["mini-unrelated=3.0"]


def test_release_hashes_match_the_indexes(deb_repo: DebRepo) -> None:
    for archive in ARCHIVES:
        directory = dists(deb_repo, archive)
        release = (directory / "Release").read_text()
        (fields,) = parse_deb822(release)
        assert fields["Origin"] == "Debian"
        assert fields["Suite"] == fields["Codename"] == archive.suite
        assert fields["Date"] == release_date(deb_repo.epoch) == "Sat, 14 Nov 2026 00:00:00 UTC"
        assert fields["Architectures"] == "amd64"
        assert fields["Components"] == "main"
        checksums = release_checksums(release)
        assert set(checksums) == {f"{BINARY}/{name}" for name in INDEX_NAMES}
        for path, (sha256, size) in checksums.items():
            data = (directory / path).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha256, size), path


def test_gpgv_verifies_inrelease_and_release_gpg(deb_repo: DebRepo, tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    for archive in ARCHIVES:
        directory = dists(deb_repo, archive)
        assert gpgv(deb_repo, home, directory / "InRelease") == 0
        assert gpgv(deb_repo, home, directory / "Release.gpg", directory / "Release") == 0
        # InRelease signs exactly the Release text (dash-escaping aside, which this text never needs).
        inrelease = (directory / "InRelease").read_text()
        assert inrelease.startswith("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n")
        assert (directory / "Release").read_text() in inrelease
        assert (directory / "Release.gpg").read_text().startswith("-----BEGIN PGP SIGNATURE-----")

        # The signature really covers the content: one changed byte and gpgv refuses.
        tampered = tmp_path / f"{archive.directory}-Release"
        tampered.write_text((directory / "Release").read_text().replace("main", "mainx", 1))
        assert gpgv(deb_repo, home, directory / "Release.gpg", tampered, check=False) != 0


def test_debs_match_their_stanzas_and_list_their_contents(deb_repo: DebRepo) -> None:
    dpkg_deb = require("dpkg-deb", "dpkg")
    for key, stanza in deb_repo.packages.items():
        deb = deb_repo.deb_path(key)
        data = deb.read_bytes()
        assert hashlib.sha256(data).hexdigest() == stanza["SHA256"], key
        assert hashlib.md5(data).hexdigest() == stanza["MD5sum"], key
        assert len(data) == int(stanza["Size"]), key

        # The .deb's own control file agrees with the index about everything the index copies from it.
        (control,) = parse_deb822(run([dpkg_deb, "--field", str(deb)]).stdout.decode())
        archive_fields = {"Filename", "Size", "MD5sum", "SHA256"}
        assert control == {k: v for k, v in stanza.items() if k not in archive_fields}, key

        listing = run([dpkg_deb, "--contents", str(deb)]).stdout.decode()
        paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
        spec = SPECS_BY_KEY[key]
        assert {entry.path.rstrip("/") for entry in spec.entries} <= {p.rstrip("/") for p in paths}, key
        # --root-owner-group: nothing in any package belongs to the user who built it.
        assert all(line.split()[1] == "root/root" for line in listing.splitlines()), key

    base = run([dpkg_deb, "--contents", str(deb_repo.deb_path("mini-base=1.0"))]).stdout.decode()
    modes = {line.split()[5]: line.split()[0] for line in base.splitlines()}
    assert modes["./usr/bin/mini-suid"] == "-rwsr-xr-x"
    assert modes["./bin/busybox"] == "-rwxr-xr-x"
    assert modes["./etc/mini/"] == "drwxr-xr-x"
    for applet in ("sh", "cat", "echo"):
        assert f"./bin/{applet} -> busybox" in base


def test_unpacked_base_runs_and_keeps_setuid(deb_repo: DebRepo, tmp_path: Path) -> None:
    dpkg_deb = require("dpkg-deb", "dpkg")
    for key in ("mini-base=1.0", "mini-app=1.0-1", "mini-libfoo=2.0-1+deb12u1"):
        run([dpkg_deb, "--extract", str(deb_repo.deb_path(key)), str(tmp_path)])
    assert (tmp_path / "usr/bin/mini-suid").stat().st_mode & 0o7777 == 0o4755
    assert (tmp_path / "usr/lib/mini/libfoo.txt").read_text() == "libfoo 2.0-1+deb12u1\n"
    # bin/sh is the static busybox, so it runs the package's script without anything from the host.
    sh = str(tmp_path / "bin/sh")
    script = (tmp_path / "usr/bin/mini-app").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert run([sh, "-c", script]).stdout == b"mini-app ok\n"


def test_archive_is_reproducible_from_the_epoch(deb_repo: DebRepo, tmp_path: Path) -> None:
    """A second build with a different key gives the same bytes for everything but the signatures."""
    rebuilt = tmp_path / "www"
    with signer() as signing:
        packages = build_archives(rebuilt, tmp_path / "build", signing, deb_repo.epoch)
    assert packages == deb_repo.packages
    signatures = {"InRelease", "Release.gpg"}
    first = sorted(p.relative_to(deb_repo.root) for p in deb_repo.root.rglob("*") if p.is_file())
    second = sorted(p.relative_to(rebuilt) for p in rebuilt.rglob("*") if p.is_file())
    assert first == second
    for path in first:
        if path.name not in signatures:
            assert (rebuilt / path).read_bytes() == (deb_repo.root / path).read_bytes(), path


def test_apt_get_accepts_the_archive_and_resolves_the_closure(deb_repo: DebRepo, tmp_path: Path) -> None:
    """The real apt, in a private root: update verifies signatures and hashes, then resolves mini-app."""
    apt_get = require("apt-get", "apt")
    root = tmp_path / "apt"
    for directory in (
        "etc/apt/apt.conf.d",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
        "var/log/apt",
        "download",
    ):
        (root / directory).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()  # nothing installed
    config = [
        f'Dir "{root}/";',
        # APT_CONFIG is read before the parts directory, so this keeps the host's apt.conf.d out.
        f'Dir::Etc::Parts "{root}/etc/apt/apt.conf.d/";',
        f'Dir::State::status "{root}/var/lib/dpkg/status";',
        'Dir::Bin::Methods "/usr/lib/apt/methods/";',
        'APT::Architecture "amd64";',
        'APT::Architectures { "amd64"; };',
        'Acquire::Languages "none";',
        'Acquire::http::Proxy "DIRECT";',  # only ever 127.0.0.1, even with a proxy configured
        'Acquire::Retries "0";',
    ]
    if os.geteuid() == 0:
        # As root apt would download as _apt, which cannot write into pytest's tmp_path.
        config.append('APT::Sandbox::User "root";')
    if time.time() < deb_repo.epoch:
        # Only a host clock behind the fixed epoch makes the Release "not valid yet".
        config.append('Acquire::Check-Date "false";')
    (root / "apt.conf").write_text("\n".join(config) + "\n")
    (root / "etc/apt/sources.list").write_text(
        f"deb [signed-by={deb_repo.keyring}] {deb_repo.url} bookworm main\n"
        f"deb [signed-by={deb_repo.keyring}] {deb_repo.security_url} bookworm-security main\n"
    )
    proxy_variables = {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"}
    env = {k: v for k, v in os.environ.items() if k not in proxy_variables}
    env |= {"APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C.UTF-8"}

    update = run([apt_get, "update"], env=env)
    # apt-get update exits 0 on some failures (an unsigned or unverifiable suite is only skipped
    # with a warning), so its messages are checked too.
    messages = update.stdout.decode() + update.stderr.decode()
    assert not re.search(r"^(W|E|Err):", messages, re.MULTILINE), messages

    simulated = run([apt_get, "--simulate", "install", "mini-app"], env=env).stdout.decode()
    installs = dict(re.findall(r"^Inst (\S+) \((\S+) ", simulated, re.MULTILINE))
    assert installs == expected_closure(), simulated

    run([apt_get, "download", "mini-app", "mini-libfoo"], env=env, cwd=root / "download")
    downloaded = {path.name: path.read_bytes() for path in (root / "download").iterdir()}
    for key in ("mini-app=1.0-1", "mini-libfoo=2.0-1+deb12u1"):
        deb = downloaded[Path(deb_repo.packages[key]["Filename"]).name]
        assert hashlib.sha256(deb).hexdigest() == deb_repo.packages[key]["SHA256"]
