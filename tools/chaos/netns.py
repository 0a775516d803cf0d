"""The private network of a chaos run.

The tool first re-executes itself under
    unshare --net --mount --pid --fork --mount-proc --propagation private
so it runs as PID 1 of a new PID namespace, in a new (empty) network
namespace and a private mount namespace. Nothing it creates is visible
outside, and every process it starts dies with it (the kernel kills a PID
namespace when its init exits). Inside, a tmpfs is mounted on /run/netns so
`ip netns add` names stay private too.

Then, per cluster (class Network):

    node namespace rgc-<id>                    the tool's namespace
    +-------------------------+
    | eth0 10.77.0.<i>/24  ---+--- v<i> ----  bridge rgc-br0   (peer traffic;
    |   route 224.0.0.0/4     |               rgc-br1, rgc-br2 are the other
    |                         |               sides of a partition)
    | adm0 10.78.0.<i>/24  ---+--- a<i> ----  bridge rgc-adm  10.78.0.254/24
    +-------------------------+               (admin ports only, never cut)

A partition moves v<i> ends to other bridges; heal moves them back.
Partial faults stay on one bridge:
  - cuts (one-way loss between chosen nodes, any share up to 100%) are
    rules in an nftables table `bridge rgc`, hook forward: a frame from
    v<a> out through v<b> is an IPv4 packet from a to b (flooded multicast
    is judged per output port, so a cut drops b's copy only). ARP passes,
    as it does when a real link loses IP traffic one way;
  - duplicates: an nftables table `netdev rgc`, `dup` on the egress of
    v<i> (packets to node i). tc netem (delay, reordering) would be the
    tool for more, but this machine's kernel has no sch_netem; delay is
    the nodes' own fault injection (`fault ... delay`).
The admin network is separate, so the tool (and rolegridctl) always reach every
node's admin port; nodes talk to each other only over the 10.77 network.
Multicast stays on each bridge (snooping off: a bridge floods it to every
port on its side).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV_MARK = "ROLEGRID_CHAOS_PRIVATE_NS"
PEER_NET = "10.77.0"
ADMIN_NET = "10.78.0"
TOOL_ADMIN_IP = f"{ADMIN_NET}.254"
MAX_SIDES = 3  # bridges for partitions: at most three sides
NFT_TABLE = "rgc"  # bridge-family table holding the cuts


class NetError(Exception):
    """A namespace or link operation failed."""


def interfaces():
    with open("/proc/self/net/dev") as f:
        return [line.split(":", 1)[0].strip() for line in f.readlines()[2:]]


def reexec_private(argv):
    """Re-executes this program in its private namespaces (see the module
    comment) unless already there. Returns only when inside; exits with a
    one-line reason if that is impossible."""
    if os.environ.get(ENV_MARK) == "1" and os.getpid() == 1 and interfaces() == ["lo"]:
        return
    if os.environ.get(ENV_MARK):
        sys.exit(f"rolegrid-chaos: not in a private namespace after unshare (pid {os.getpid()}, "
                 f"interfaces {interfaces()})")
    if os.geteuid() != 0:
        sys.exit("rolegrid-chaos: run as root (it creates network namespaces, bridges and veth pairs)")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"rolegrid-chaos: '{tool}' is needed (util-linux, iproute2)")
    os.environ[ENV_MARK] = "1"
    cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc",
           "--propagation", "private", "--", sys.executable] + argv
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        sys.exit(f"rolegrid-chaos: cannot exec {' '.join(cmd[:8])}: {e}")


def setup_private_root():
    """Inside the private namespaces: lo up, a private /run/netns."""
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        _run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "rgc-netns", str(netns_dir)])
    else:
        # Do not create a directory on the host's /run: hide /run instead.
        _run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "rgc-run", "/run"])
        netns_dir.mkdir()
    _run(["ip", "link", "set", "lo", "up"])


def _run(cmd, check=True):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise NetError(f"'{' '.join(cmd)}' failed: {(r.stderr or r.stdout).strip()}")
    return r


def _ip_batch(lines):
    """Runs `ip -batch -` (one process for many commands)."""
    r = subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise NetError(f"ip -batch failed: {(r.stderr or r.stdout).strip()}")


def both_ways(pairs):
    """Each (a, b) pair and its reverse: a cut both ways."""
    return [p for a, b in pairs for p in ((a, b), (b, a))]


def ring_pairs(order):
    """The (a, b) pairs to cut so that each node reaches only its two
    neighbours in `order` (the last one's neighbour is the first)."""
    n = len(order)
    near = {(order[k], order[(k + d) % n]) for k in range(n) for d in (1, n - 1)}
    return [(a, b) for a in order for b in order if a != b and (a, b) not in near]


def _share(pct, what):
    """The nftables words that pick `pct` percent of packets ("" for all)."""
    if not 0 < pct <= 100:
        raise NetError(f"{what} is 1-100% of packets, got {pct}")
    return "" if pct >= 100 else f"numgen random mod 100 < {int(round(pct))} "


def _nft(script):
    """Runs an nftables script (one transaction)."""
    if shutil.which("nft") is None:
        raise NetError("'nft' is needed for cuts and duplicates (Debian package nftables; tools/setup.sh "
                       "installs it)")
    r = subprocess.run(["nft", "-f", "-"], input="\n".join(script) + "\n", capture_output=True, text=True,
                       timeout=20)
    if r.returncode != 0:
        raise NetError(f"nft failed: {(r.stderr or r.stdout).strip()}")


class Network:
    """Namespaces, veth pairs and bridges for the nodes `ids` (n-th id gets
    10.77.0.n and 10.78.0.n)."""

    def __init__(self, ids):
        if len(ids) > 200:
            raise NetError("at most 200 nodes")
        self.ids = list(ids)
        self.index = {nid: i + 1 for i, nid in enumerate(self.ids)}
        self.side = {nid: 0 for nid in self.ids}
        self.cuts = {}  # (from, to) -> percent dropped
        self.dups = {}  # node -> percent of packets to it sent twice
        self._created_ns = []
        self._created_links = []
        try:
            self._build()
        except Exception:
            self.teardown()
            raise

    @staticmethod
    def bridge(side):
        return f"rgc-br{side}"

    def netns(self, nid):
        return f"rgc-{nid}"

    def peer_ip(self, nid):
        return f"{PEER_NET}.{self.index[nid]}"

    def admin_ip(self, nid):
        return f"{ADMIN_NET}.{self.index[nid]}"

    def _veth(self, nid):
        return f"v{self.index[nid]}"

    def _build(self):
        lines = []
        for side in range(MAX_SIDES):
            br = self.bridge(side)
            lines += [f"link add {br} type bridge forward_delay 0 mcast_snooping 0", f"link set {br} up"]
            self._created_links.append(br)
        lines += ["link add rgc-adm type bridge forward_delay 0", f"addr add {TOOL_ADMIN_IP}/24 dev rgc-adm",
                  "link set rgc-adm up"]
        self._created_links.append("rgc-adm")
        _ip_batch(lines)
        for nid in self.ids:
            ns = self.netns(nid)
            _run(["ip", "netns", "add", ns])
            self._created_ns.append(ns)
            i = self.index[nid]
            _ip_batch([
                f"link add v{i} type veth peer name eth0 netns {ns}",
                f"link set v{i} master {self.bridge(0)} up",
                f"link add a{i} type veth peer name adm0 netns {ns}",
                f"link set a{i} master rgc-adm up",
            ])
            self._created_links += [f"v{i}", f"a{i}"]
            r = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join([
                "link set lo up",
                f"addr add {self.peer_ip(nid)}/24 dev eth0",
                "link set eth0 multicast on",
                "link set eth0 up",
                f"addr add {self.admin_ip(nid)}/24 dev adm0",
                "link set adm0 up",
                "route add 224.0.0.0/4 dev eth0",
            ]) + "\n", capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise NetError(f"setting up {ns}: {(r.stderr or r.stdout).strip()}")

    def exec_prefix(self, nid):
        """argv prefix that runs a program in `nid`'s namespace (ip netns
        exec execs it: the PID is the program's own)."""
        return ["ip", "netns", "exec", self.netns(nid)]

    def partition(self, groups):
        """groups: lists of node ids; group k goes on bridge k (k < 3). Nodes
        named in no group stay where they are."""
        if len(groups) > MAX_SIDES:
            raise NetError(f"at most {MAX_SIDES} sides")
        lines = []
        for side, group in enumerate(groups):
            for nid in group:
                if self.side[nid] != side:
                    lines.append(f"link set {self._veth(nid)} master {self.bridge(side)}")
                    self.side[nid] = side
        if lines:
            _ip_batch(lines)

    def heal(self):
        """Every node back on bridge 0, every cut and duplicate rule removed."""
        self.partition([self.ids])
        self.set_cuts({})
        self.set_dups({})

    def partitioned(self):
        return any(s != 0 for s in self.side.values())

    def faulted(self):
        return self.partitioned() or bool(self.cuts) or bool(self.dups)

    def set_cuts(self, cuts):
        """cuts: {(from_id, to_id): percent}: that share of IPv4 packets
        from one node to the other is dropped. Replaces every earlier cut
        (one `nft -f` transaction: the rules change atomically)."""
        if not cuts and not self.cuts:
            return
        rules = []
        for (a, b), pct in sorted(cuts.items()):
            share = _share(pct, "a cut")
            rules.append(f'    iifname "{self._veth(a)}" oifname "{self._veth(b)}" ether type ip {share}drop')
        script = [f"table bridge {NFT_TABLE} {{}}", f"delete table bridge {NFT_TABLE}"]
        if rules:
            script += [f"table bridge {NFT_TABLE} {{", "  chain cuts {",
                       "    type filter hook forward priority 0; policy accept;"] + rules + ["  }", "}"]
        _nft(script)
        self.cuts = dict(cuts)

    def dup_count(self):
        """Packets duplicated by the current rules (their nftables counters)."""
        if not self.dups:
            return 0
        r = _run(["nft", "-j", "list", "table", "netdev", NFT_TABLE], check=False)
        if r.returncode != 0:
            return 0
        import json
        total = 0
        for item in json.loads(r.stdout).get("nftables", []):
            for e in (item.get("rule") or {}).get("expr", []):
                if "counter" in e:
                    total += e["counter"].get("packets", 0)
        return total

    def set_dups(self, dups):
        """dups: {node: percent}: that share of the IPv4 packets to the node
        is sent to it twice (an nftables netdev table, `dup` on the egress
        of its bridge-side veth). Replaces every earlier rule."""
        if not dups and not self.dups:
            return
        script = [f"table netdev {NFT_TABLE} {{}}", f"delete table netdev {NFT_TABLE}"]
        if dups:
            script.append(f"table netdev {NFT_TABLE} {{")
            for nid, pct in sorted(dups.items()):
                v = self._veth(nid)
                share = _share(pct, "a duplicate share")
                script += [f"  chain dup_{v} {{", f'    type filter hook egress device "{v}" priority 0;',
                           f'    ether type ip {share}counter dup to "{v}"', "  }"]
            script.append("}")
        _nft(script)
        self.dups = dict(dups)

    def teardown(self):
        """Deletes what this Network created (the processes in its namespaces
        must already be gone)."""
        errors = []
        try:
            self.set_cuts({})
            self.set_dups({})
        except (NetError, OSError, subprocess.TimeoutExpired) as e:
            errors.append(str(e))
        for link in reversed(self._created_links):
            r = _run(["ip", "link", "del", link], check=False)
            if r.returncode != 0 and "Cannot find device" not in r.stderr:
                errors.append(r.stderr.strip())
        self._created_links = []
        for ns in self._created_ns:
            r = _run(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0:
                errors.append(r.stderr.strip())
        self._created_ns = []
        return errors
