"""A VM booted the way a machine boots a flashed disk: UEFI firmware (Debian's OVMF) and
the disk alone, no kernel given from outside; QEMU under TCG, its one NIC on a hub
of its own: nothing beyond it.

The image holds nothing for tests, so nothing in it powers the guest off: the test waits
for lines on the serial console and then presses the (ACPI) power button through QEMU's
monitor, and reads the disk once the guest has shut down cleanly.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools import require

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BOOT_TIMEOUT = 1200.0


@dataclass
class DiskGuest:
    name: str
    work: Path
    # A raw disk image, booted and written in place.
    disk: Path
    # The NIC the seed configures, plugged into a hub of its own: a link to nowhere.
    mac: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def serial(self) -> Path:
        return self.work / f"{self.name}.serial.log"

    @property
    def monitor(self) -> Path:
        return self.work / f"{self.name}.monitor"

    def start(self) -> None:
        qemu = require("qemu-system-x86_64", "qemu-system-x86")
        if not OVMF_CODE.exists():
            require("ovmf-is-missing", "ovmf")
        variables = self.work / f"{self.name}.vars.fd"
        shutil.copyfile(OVMF_VARS, variables)
        argv = [qemu, "-accel", "tcg", "-machine", "q35", "-smp", "1", "-m", "1536"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"]
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={variables}"]
        argv += ["-drive", f"file={self.disk},if=virtio,format=raw"]
        argv += ["-netdev", "hubport,id=n0,hubid=0", "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}"]
        argv += ["-display", "none", "-no-reboot", "-serial", f"file:{self.serial}"]
        argv += ["-monitor", f"unix:{self.monitor},server=on,wait=off"]
        with (self.work / f"{self.name}.qemu.log").open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def wait_for(self, *patterns: str, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait until the console matches every regular expression; the console."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            console = self.console()
            if all(re.search(pattern, console) for pattern in patterns):
                return console
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} stopped early:\n{console[-4000:]}")
            time.sleep(3)
        missing = [pattern for pattern in patterns if not re.search(pattern, self.console())]
        raise AssertionError(f"{self.name}: no {missing} in {timeout} s:\n{self.console()[-4000:]}")

    def power_down(self, timeout: float = 300) -> None:
        """Press the power button and wait for a clean shutdown."""
        assert self.process is not None
        with socket.socket(socket.AF_UNIX) as monitor:
            monitor.connect(str(self.monitor))
            monitor.sendall(b"system_powerdown\n")
            time.sleep(1)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not shut down:\n{self.console()[-3000:]}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def partitions(disk: Path) -> dict[str, dict[str, int]]:
    """The disk's GPT partitions by name: start and size, in bytes."""
    table = json.loads(
        subprocess.run(
            [require("sfdisk", "fdisk"), "--json", str(disk)], capture_output=True, check=True, text=True
        ).stdout
    )["partitiontable"]
    sector = table.get("sectorsize", 512)
    return {
        part["name"]: {"start": part["start"] * sector, "size": part["size"] * sector}
        for part in table["partitions"]
    }


def debugfs(disk: Path, command: str) -> subprocess.CompletedProcess[bytes]:
    """A debugfs request against the disk's root file system, read in place."""
    offset = partitions(disk)["root"]["start"]
    return subprocess.run(
        [require("debugfs", "e2fsprogs"), "-R", command, f"{disk}?offset={offset}"],
        capture_output=True,
        check=False,
    )


def read(disk: Path, path: str) -> bytes:
    return debugfs(disk, f"cat {path}").stdout


def exists(disk: Path, path: str) -> bool:
    return b"Inode:" in debugfs(disk, f"stat {path}").stdout


def decompress(image: Path, target: Path) -> Path:
    subprocess.run([require("zstd", "zstd"), "-q", "-d", "-f", str(image), "-o", str(target)], check=True)
    return target
