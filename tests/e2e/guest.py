"""The test guest: a small Debian 12 disk with cloud-init, built once as a store derivation.

mmdebstrap assembles the root filesystem from the Debian archive; the disk image, kernel
and initrd are the derivation's output, so later runs (and CI's second use in one run)
reuse it. The guest powers itself off a while after cloud-init's final stage, so that a
test reads its disk only once it was cleanly shut down.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builder.store.derivation import BuildContext, Derivation
from builder.store.progress import SilentProgress
from builder.store.realise import realise
from builder.store.store import Store
from tests.tools import require

PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "udev",
    "dbus",
    "cloud-init",
    "ifupdown",
    "iproute2",
    "kmod",
    "procps",
    "locales",
    "openssh-server",
    "e2fsprogs",
    "util-linux",
    "python3",
    # nft, for the seeds' host firewall.
    "nftables",
    # `meshseed apply` logs in as cloud-init's default user and runs sudo -n, as on a
    # Debian cloud image.
    "sudo",
)
# Test harness only: cloud-init runs, then the guest stops by itself after the number of
# seconds given as meshseed_linger= on the kernel command line.
POWEROFF_SCRIPT = """\
#!/bin/sh
# node-setup runs as its own unit, retried until it succeeds: wait until it has (active)
# or has given up (failed), or is not there to run (inactive), for 15 minutes at most.
for _ in $(seq 1 900); do
  case $(systemctl show -p ActiveState --value meshseed-node-setup.service) in
    active|failed|inactive) break ;;
  esac
  sleep 1
done
# What the host firewall holds after boot, for the test to read from the disk.
mkdir -p /var/lib/meshseed-test
nft list table inet meshseed > /var/lib/meshseed-test/nft.txt 2>&1 || true
# A guest that must meet a peer (a joining server, or the server it joins) stays up until
# the file named as meshseed_await= holds something, for 10 minutes at most: a fixed
# linger alone let the faster of two guests power off before the slower one reached it.
await=$(sed -n 's/.*meshseed_await=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
if [ -n "$await" ]; then
  for _ in $(seq 1 600); do
    [ -s "$await" ] && break
    sleep 1
  done
fi
linger=$(sed -n 's/.*meshseed_linger=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
sleep "${linger:-5}"
systemctl poweroff
"""
POWEROFF_UNIT = """\
[Unit]
Description=meshseed test: power off after cloud-init
After=cloud-final.service
# Wants, not Requires: a failed cloud-final (a refused payload) must power off too.
Wants=cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/meshseed-test-poweroff

[Install]
# Wanted by cloud-final itself: cloud-final orders itself after multi-user.target, so a
# unit wanted by multi-user.target and ordered after cloud-final would be a cycle.
WantedBy=cloud-final.service
"""

# Test harness only: `meshseed apply` reaches a guest over SSH through QEMU's user-mode
# network (a host-forwarded port on 127.0.0.1), on a second NIC that the seeds know
# nothing of. It gets QEMU's fixed guest address here, before sshd starts.
HOSTLINK_MAC_PREFIX = "52:54:00:00:0f:"
HOSTLINK_SCRIPT = f"""\
#!/bin/sh
# Only a guest started with the link has it; give its NIC 30 s to appear.
grep -q meshseed_hostlink /proc/cmdline || exit 0
for _ in $(seq 1 30); do
  for nic in /sys/class/net/*; do
    case $(cat "$nic/address") in
      {HOSTLINK_MAC_PREFIX}*)
        ip link set dev "${{nic##*/}}" up
        ip addr replace 10.0.2.15/24 dev "${{nic##*/}}"
        exit 0
        ;;
    esac
  done
  sleep 1
done
echo "meshseed-test: no NIC with MAC {HOSTLINK_MAC_PREFIX}*" >&2
exit 1
"""
HOSTLINK_UNIT = """\
[Unit]
Description=meshseed test: the host's SSH link
Before=ssh.service
After=systemd-udev-trigger.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/meshseed-test-hostlink

[Install]
WantedBy=multi-user.target
"""


def build_guest(ctx: BuildContext) -> None:
    mmdebstrap = require("mmdebstrap", "mmdebstrap")
    mkfs = require("mkfs.ext4", "e2fsprogs")
    rootfs = ctx.out.parent / f"{ctx.out.name}-rootfs"
    hooks = [
        'echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"',
        'rm -f "$1/etc/hostname"; echo -n > "$1/etc/machine-id"; rm -f "$1"/etc/ssh/ssh_host_*',
        'echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen"; chroot "$1" locale-gen; '
        'echo LANG=en_US.UTF-8 > "$1/etc/default/locale"',
        f"cat > \"$1/etc/systemd/system/meshseed-test-poweroff.service\" <<'UNIT'\n{POWEROFF_UNIT}UNIT",
        f"cat > \"$1/usr/local/sbin/meshseed-test-poweroff\" <<'SCRIPT'\n{POWEROFF_SCRIPT}SCRIPT",
        'chmod 0755 "$1/usr/local/sbin/meshseed-test-poweroff"',
        'chroot "$1" systemctl enable meshseed-test-poweroff.service',
        f"cat > \"$1/etc/systemd/system/meshseed-test-hostlink.service\" <<'UNIT'\n{HOSTLINK_UNIT}UNIT",
        f"cat > \"$1/usr/local/sbin/meshseed-test-hostlink\" <<'SCRIPT'\n{HOSTLINK_SCRIPT}SCRIPT",
        'chmod 0755 "$1/usr/local/sbin/meshseed-test-hostlink"',
        'chroot "$1" systemctl enable meshseed-test-hostlink.service',
        # The Mycelium test double stands in for a TUN with a dummy interface.
        'echo dummy > "$1/etc/modules-load.d/meshseed-test.conf"',
        # Only NoCloud: no waiting for metadata services that cannot answer here.
        'echo "datasource_list: [NoCloud, None]" > "$1/etc/cloud/cloud.cfg.d/90-meshseed-test.cfg"',
    ]
    argv = [mmdebstrap, "--quiet", "--variant=minbase", f"--include={','.join(ctx.inputs['packages'])}"]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    argv += [
        ctx.inputs["suite"],
        str(rootfs),
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=1800)
        boot = rootfs / "boot"
        shutil.copy(next(boot.glob("vmlinuz-*")), ctx.out / "vmlinuz")
        shutil.copy(next(boot.glob("initrd.img-*")), ctx.out / "initrd.img")
        subprocess.run(
            [mkfs, "-q", "-F", "-L", "rootfs", "-d", str(rootfs), str(ctx.out / "disk.img"), "3G"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def guest(store_root: Path) -> Path:
    """The guest's kernel, initrd and disk.img, built on first use."""
    store = Store(store_root)
    store.prepare()
    derivation = Derivation(
        name="e2e-guest",
        build=build_guest,
        inputs={
            "packages": list(PACKAGES),
            "suite": "bookworm",
            "unit": POWEROFF_UNIT,
            "script": POWEROFF_SCRIPT,
            "hostlink": [HOSTLINK_UNIT, HOSTLINK_SCRIPT],
        },
    )
    with store.shared():
        (result,) = realise(store, [derivation], jobs=1, progress=SilentProgress())
    return result.output.path
