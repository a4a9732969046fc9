"""Clearly named test doubles of k3s, its install script and Mycelium, for booted guests.

Real k3s and Mycelium cannot be downloaded here. The doubles record how they were run
(arguments, environment, config, and the order, by uptime) under /var/lib/meshseed-test
(Mycelium's double, confined by its hardened unit, under its state directory), and do
just enough for the next step: Mycelium's double puts the node's overlay address on a
`mycelium` TUN device and relays the peers' packets over UDP 9651 (so that they arrive on
that device, as the host firewall expects); k3s's double
listens on the overlay address at 6443 on a server, and a joining node connects to it.
"""

from __future__ import annotations

import io
import tarfile

K3S = r"""#!/bin/sh
# TEST DOUBLE of k3s (meshseed e2e): records, listens on 6443 as a server, joins the server it is given.
out=/var/lib/meshseed-test
mkdir -p "$out"
echo "k3s $(cut -d' ' -f1 /proc/uptime) $*" >> "$out/order.log"
echo "$*" > "$out/k3s.args"
cp /etc/rancher/k3s/config.yaml "$out/k3s-config.yaml"
ip=$(sed -n 's/^node-ip: //p' /etc/rancher/k3s/config.yaml)
server=$(sed -n 's/^server: https:\/\/\[\(.*\)\]:6443$/\1/p' /etc/rancher/k3s/config.yaml)
if [ -n "$server" ]; then
  python3 -c '
import socket, sys, time
for _ in range(240):
    try:
        with socket.create_connection((sys.argv[1], 6443), timeout=3) as s:
            s.sendall(b"join\n")
            print("joined", sys.argv[1], s.recv(64).decode().strip(), flush=True)
            break
    except OSError as error:
        time.sleep(1)
else:
    print("never reached", sys.argv[1], flush=True)
' "$server" >> "$out/join.log" 2>&1 &
fi
if [ "$1" = server ]; then
  exec python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 6443))
s.listen()
while True:
    c, addr = s.accept()
    c.recv(64)
    c.sendall(b"k3s-double " + sys.argv[1].encode() + b"\n")
    with open("/var/lib/meshseed-test/served.log", "a") as log:
        log.write("served " + addr[0] + "\n")
    c.close()
' "$ip"
fi
exec sleep infinity
"""

INSTALL = r"""#!/bin/sh
# TEST DOUBLE of k3s' install.sh (meshseed e2e): records, writes a unit as the real one would, starts it.
set -eu
out=/var/lib/meshseed-test
mkdir -p "$out"
echo "install $(cut -d' ' -f1 /proc/uptime) INSTALL_K3S_EXEC=$INSTALL_K3S_EXEC INSTALL_K3S_SKIP_DOWNLOAD=$INSTALL_K3S_SKIP_DOWNLOAD" >> "$out/order.log"
name=k3s
[ "$INSTALL_K3S_EXEC" = agent ] && name=k3s-agent
cat > "/etc/systemd/system/$name.service" <<UNIT
[Unit]
Description=k3s (meshseed test double)
[Service]
ExecStart=/usr/local/bin/k3s $INSTALL_K3S_EXEC
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now "$name.service"
"""

MYCELIUM = r"""#!/bin/sh
# TEST DOUBLE of mycelium (meshseed e2e): records, then carries the overlay as Mycelium
# does: the node's address on a TUN device named "mycelium" with a route for 400::/7, and
# packets for a peer's overlay address sent to the peer's public address on UDP 9651 (a
# small relay; real Mycelium speaks its own protocol there, over TCP or QUIC).
state=/var/lib/mycelium
echo "mycelium $(cut -d' ' -f1 /proc/uptime) $*" >> "$state/order.log"
echo "$*" > "$state/mycelium.args"
ls -l /etc/mycelium/priv_key.bin > "$state/key.ls" 2>&1
tun=$(echo "$*" | sed -n 's/.*--tun-name \([^ ]*\).*/\1/p')
overlay=$(grep -o 'inet6 [0-9a-f:]*' /usr/local/lib/meshseed/wait-for-overlay | cut -d' ' -f2)
cat > "$state/peers" <<'MAP'
@ROUTES@
MAP
cat > "$state/relay.py" <<'RELAY'
import fcntl, os, select, socket, struct, subprocess, sys
tun, overlay, peers_file = sys.argv[1], sys.argv[2], sys.argv[3]
peers = {}
for line in open(peers_file):
    if line.strip():
        public, address = line.split()
        peers[address] = public
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", tun.encode(), 0x0001 | 0x1000))  # TUNSETIFF: TUN, no packet info
for argv in (["link", "set", tun, "mtu", "1400", "up"], ["-6", "addr", "add", overlay + "/128", "dev", tun, "nodad"], ["-6", "route", "replace", "400::/7", "dev", tun]):
    subprocess.run(["ip", *argv], check=True)
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.bind(("::", 9651))
while True:
    ready, _, _ = select.select([fd, sock], [], [])
    if fd in ready:
        packet = os.read(fd, 2048)
        public = peers.get(socket.inet_ntop(socket.AF_INET6, packet[24:40]))
        if public:
            sock.sendto(packet, (public, 9651))
    if sock in ready:
        os.write(fd, sock.recvfrom(2048)[0])
RELAY
python3 "$state/relay.py" "$tun" "$overlay" "$state/peers" &
relay=$!
for _ in $(seq 1 50); do
  ip -6 addr show dev "$tun" 2>/dev/null | grep -q "$overlay" && break
  sleep 0.2
done
echo "overlay $overlay up" >> "$state/order.log"
# Crash once, after k3s has started, as a real Mycelium may: the unit restarts it, and
# k3s must follow (its VXLAN device went with the old TUN device).
if [ ! -e "$state/crashed" ]; then
  for _ in $(seq 1 600); do
    grep -q '^k3s ' /var/lib/meshseed-test/order.log 2>/dev/null && break
    sleep 1
  done
  sleep 5
  touch "$state/crashed"
  echo "crash $(cut -d' ' -f1 /proc/uptime)" >> "$state/order.log"
  kill "$relay"
  exit 1
fi
wait "$relay"
"""


def mycelium_archive(routes: dict[str, str]) -> bytes:
    """The Mycelium release archive's double: a tar.gz with one `mycelium` file.

    `routes` maps each node's public address to its overlay address.
    """
    script = MYCELIUM.replace(
        "@ROUTES@", "\n".join(f"{public} {overlay}" for public, overlay in sorted(routes.items()))
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("mycelium")
        info.mode, info.size = 0o755, len(script)
        archive.addfile(info, io.BytesIO(script.encode()))
    return buffer.getvalue()
