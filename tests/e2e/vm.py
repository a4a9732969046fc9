"""Booting test guests with QEMU (TCG), and reading their disks afterwards."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.guest import HOSTLINK_MAC_PREFIX
from tests.tools import require

BOOT_TIMEOUT = 900


@dataclass
class Guest:
    """One VM: its overlay disk, its drives, its serial log and its link to a peer."""

    name: str
    work: Path
    kernel: Path
    initrd: Path
    disk: Path
    drives: list[Path]
    linger: int = 5
    # A file in the guest that must be non-empty before it powers off (see guest.py).
    await_file: str | None = None
    mac: str | None = None
    link: tuple[Path, Path] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Which boot of this guest: the second boots the same disk again.
    boot: int = 1
    # With a port: the guest's sshd on 127.0.0.1:port, through QEMU's user-mode network
    # on a second NIC (the harness's, see guest.py), which reaches nothing else.
    ssh_port: int | None = None

    @property
    def serial(self) -> Path:
        return self.work / f"{self.name}.serial.{self.boot}.log"

    @property
    def overlay(self) -> Path:
        return self.work / f"{self.name}.qcow2"

    @property
    def raw(self) -> Path:
        """The raw copy of the disk that read_* work on, made on first use."""
        return self.work / f"{self.name}.raw"

    def start(self) -> None:
        qemu_img = require("qemu-img", "qemu-utils")
        qemu = require("qemu-system-x86_64", "qemu-system-x86")
        if self.boot == 1:
            subprocess.run(
                [
                    qemu_img,
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    str(self.disk),
                    "-F",
                    "raw",
                    str(self.overlay),
                ],
                check=True,
            )
        argv = [
            qemu,
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-smp",
            "1",
            "-m",
            "1024",
            "-kernel",
            str(self.kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            self.kernel_command_line(),
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.serial}",
        ]
        for drive in self.drives:
            argv += ["-drive", f"file={drive},if=virtio,format=raw,readonly=on"]
        if self.link is not None:
            local, remote = self.link
            argv += [
                "-netdev",
                f"dgram,id=n0,local.type=unix,local.path={local},remote.type=unix,remote.path={remote}",
                "-device",
                f"virtio-net-pci,netdev=n0,mac={self.mac}",
            ]
        elif self.ssh_port is None:
            argv += ["-nic", "none"]
        if self.ssh_port is not None:
            index = self.name[-1] if self.name[-1].isdigit() else "0"
            argv += [
                "-netdev",
                f"user,id=h0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-10.0.2.15:22",
                "-device",
                f"virtio-net-pci,netdev=h0,mac={HOSTLINK_MAC_PREFIX}0{index}",
            ]
        with (self.work / f"{self.name}.qemu.log").open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)

    def kernel_command_line(self) -> str:
        line = f"root=/dev/vda rw console=ttyS0 meshseed_linger={self.linger}"
        if self.await_file is not None:
            line += f" meshseed_await={self.await_file}"
        if self.ssh_port is not None:
            line += " meshseed_hostlink"
        return line

    def boot_again(self) -> None:
        """Start the powered-off guest again, from the disk its first boot left."""
        self.boot += 1
        # The raw copy is of the disk as the last boot left it.
        self.raw.unlink(missing_ok=True)
        self.start()

    def wait(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait for the guest to power itself off; its serial log."""
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.name} did not power off in {timeout} s:\n{self.console()[-4000:]}"
            ) from None
        return self.console()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def raw_disk(self) -> Path:
        raw = self.raw
        if not raw.exists():
            qemu_img = require("qemu-img", "qemu-utils")
            subprocess.run([qemu_img, "convert", "-O", "raw", str(self.overlay), str(raw)], check=True)
        return raw

    def read(self, path: str) -> str:
        debugfs = require("debugfs", "e2fsprogs")
        result = subprocess.run(
            [debugfs, "-R", f"cat {path}", str(self.raw_disk())], capture_output=True, text=True, check=False
        )
        return result.stdout

    def stat(self, path: str) -> tuple[int, int, int]:
        """(mode, uid, gid) of a file on the guest's disk."""
        debugfs = require("debugfs", "e2fsprogs")
        result = subprocess.run(
            [debugfs, "-R", f"stat {path}", str(self.raw_disk())], capture_output=True, text=True, check=False
        )
        mode = re.search(r"Mode:\s+0?([0-7]+)", result.stdout)
        user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", result.stdout)
        assert mode and user, f"{path} is not on {self.name}'s disk: {result.stderr.strip()}"
        return int(mode[1], 8) & 0o7777, int(user[1]), int(user[2])

    def exists(self, path: str) -> bool:
        debugfs = require("debugfs", "e2fsprogs")
        result = subprocess.run(
            [debugfs, "-R", f"stat {path}", str(self.raw_disk())], capture_output=True, text=True, check=False
        )
        return "Inode:" in result.stdout


def wait_all(guests: list[Guest], timeout: float = BOOT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for guest in guests:
        guest.wait(max(1.0, deadline - time.monotonic()))
