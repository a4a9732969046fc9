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

from tests.integration.upstream_text import K3S_VERSION

K3S = r"""#!/bin/sh
# TEST DOUBLE of k3s (meshseed e2e): records, listens on 6443 as a server, joins the server
# it is given, keeps a table of the nodes' heartbeats, and answers the few kubectl calls
# `meshseed apply` makes from it.
out=/var/lib/meshseed-test
mkdir -p "$out"
case "$1" in
  --version)
    echo "k3s version @VERSION@ (e2e test double)"
    echo "go version go1.24.6"
    exit 0
    ;;
  kubectl)
    shift
    exec python3 - kubectl "$@" <<'PY'
@CLUSTER@
PY
    ;;
esac
echo "k3s $(cut -d' ' -f1 /proc/uptime) $(date +%s) $*" >> "$out/order.log"
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
exec python3 - daemon "$1" "$ip" "$server" <<'PY'
@CLUSTER@
PY
"""

# The cluster the k3s double pretends to be: each node's daemon writes its heartbeat
# into /var/lib/meshseed-test/cluster.json every 2 s; a joined node sends its table to
# its server on 6443 and merges the server's answer, so every server knows every node.
# kubectl reads that table: a node is Ready while its heartbeat is fresh, a server is an
# etcd member, and /readyz/etcd is "ok" while this node's own daemon beats.
CLUSTER = r"""
import datetime, json, os, socket, sys, threading, time

OUT = "/var/lib/meshseed-test"
TABLE = OUT + "/cluster.json"
ETCD_ROLE = "node-role.kubernetes.io/etcd"
FRESH = 40  # seconds; two guests' clocks may differ by a few
lock = threading.Lock()


def own_name():
    for line in open("/etc/rancher/k3s/config.yaml"):
        if line.startswith("node-name: "):
            return line.split(": ", 1)[1].strip().strip(chr(34))
    return socket.gethostname()


def load():
    try:
        with open(TABLE) as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


def merge(other):
    with lock:
        table = load()
        for name, entry in other.items():
            if name not in table or entry["heartbeat"] > table[name]["heartbeat"]:
                table[name] = entry
        temporary = TABLE + ".tmp"
        with open(temporary, "w") as file:
            json.dump(table, file)
        os.replace(temporary, TABLE)
        return table


def serve(ip):
    listener = socket.socket(socket.AF_INET6)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for _ in range(60):
        try:
            listener.bind((ip, 6443))
            break
        except OSError:
            time.sleep(1)
    listener.listen()
    while True:
        connection, address = listener.accept()
        with connection:
            line = connection.makefile("rb").readline().decode()
            if line.startswith("beat "):
                table = merge(json.loads(line[5:]))
                connection.sendall(json.dumps(table).encode() + b"\n")
                continue
            connection.sendall(b"k3s-double " + ip.encode() + b"\n")
            with open(OUT + "/served.log", "a") as log:
                log.write("served " + address[0] + "\n")


def daemon(role, ip, server):
    name = own_name()
    if role == "server":
        threading.Thread(target=serve, args=(ip,), daemon=True).start()
    while True:
        table = merge({name: {"heartbeat": time.time(), "server": role == "server"}})
        if server:
            try:
                with socket.create_connection((server, 6443), timeout=3) as connection:
                    connection.sendall(b"beat " + json.dumps(table).encode() + b"\n")
                    merge(json.loads(connection.makefile("rb").readline()))
            except (OSError, ValueError):
                pass
        time.sleep(2)


def node(name, entry):
    fresh = time.time() - entry["heartbeat"] < FRESH
    stamp = datetime.datetime.fromtimestamp(entry["heartbeat"], datetime.timezone.utc)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {ETCD_ROLE: "true"} if entry["server"] else {}},
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if fresh else "Unknown",
                    "lastHeartbeatTime": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ]
        },
    }


def kubectl(args):
    table = load()
    if args[:3] == ["get", "nodes", "-o"]:
        items = [node(name, entry) for name, entry in sorted(table.items())]
        print(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": items}))
    elif args[:2] == ["get", "node"]:
        if args[2] not in table:
            sys.exit("Error from server (NotFound): nodes " + chr(34) + args[2] + chr(34) + " not found")
        print(json.dumps(node(args[2], table[args[2]])))
    elif args == ["get", "--raw", "/readyz/etcd"]:
        own = table.get(own_name())
        if own is None or time.time() - own["heartbeat"] > 10:
            sys.exit("[-]etcd failed: reason withheld")
        print("ok")
    elif args[0] in ("drain", "uncordon"):
        with open(OUT + "/kubectl.log", "a") as log:
            log.write(" ".join([args[0], args[1], str(time.time())]) + "\n")
        print("node/" + args[1] + " " + args[0] + "ed")
    else:
        sys.exit("kubectl " + " ".join(args) + ": not something the k3s test double answers")


if sys.argv[1] == "kubectl":
    kubectl(sys.argv[2:])
else:
    daemon(*sys.argv[2:5])
"""
K3S = K3S.replace("@CLUSTER@", CLUSTER.strip("\n")).replace("@VERSION@", K3S_VERSION)

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
echo "mycelium $(cut -d' ' -f1 /proc/uptime) $(date +%s) $*" >> "$state/order.log"
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
