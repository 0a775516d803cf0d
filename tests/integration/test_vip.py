"""hooks/vip: a virtual IP that follows the master (issue 13).

Each node gets a veth interface of its own in the test's namespace, its
"host's NIC", and its own hook dir with hooks/vip linked as master, replica
and data and a vip.conf naming that interface. The test samples which
interfaces hold the VIP every 20 ms while the master moves (switchover,
cut-off, kill -9 with its host's NIC gone) and checks: the VIP is on the
acting master's interface, and never on two live interfaces at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import harness
from harness import REPO, check, note, test, wait_until

VIP = "10.77.0.100/24"
FT_S = harness.FAILURE_TIMEOUT_MS / 1000


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=5)


def dev(nid):
    return f"rgvip-{nid}"


def holders(ids):
    """The nodes whose interface holds the VIP now."""
    out = []
    for i in ids:
        r = ip("-o", "addr", "show", "dev", dev(i))
        if r.returncode == 0 and f"inet {VIP} " in r.stdout:
            out.append(i)
    return out


def hook_dir(c, nid):
    d = c.dir / f"hooks-{nid}"
    d.mkdir()
    os.symlink(REPO / "hooks" / "vip", d / "vip")
    for h in ("master", "replica", "data"):
        os.symlink("vip", d / h)
    (d / "vip.conf").write_text(f"VIP={VIP}\nDEV={dev(nid)}\n")
    return d


def acting(c, ids):
    views = set()
    for i in ids:
        try:
            m = c.q(i, "roles")["master"]
        except Exception:  # noqa: BLE001 - a node cut off or dead answers nothing useful
            continue
        views.add(m["node"] if m and m["phase"] == "established" else None)
    return views.pop() if len(views) == 1 else None


class Sampler:
    """Records the VIP's holders among the live interfaces every 20 ms."""

    def __init__(self, ids):
        self.ids = ids
        self.dead = set()
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), holders([i for i in self.ids if i not in self.dead])))
            self._stop.wait(0.02)

    def stop(self):
        self._stop.set()
        self._t.join(2)

    def overlaps(self):
        return [(t, h) for t, h in self.samples if len(h) > 1]


@test(timeout=120)
def vip_follows_the_master_and_is_never_on_two_live_hosts(c):
    nodes = c.add_nodes(3)
    ids = [n.id for n in nodes]
    for i in ids:
        ip("link", "del", dev(i))
        # A veth pair stands for the host's NIC and the switch port it plugs into.
        r = ip("link", "add", dev(i), "type", "veth", "peer", "name", dev(i) + "p")
        check(r.returncode == 0, f"cannot add a veth interface: {r.stderr.strip()}")
        ip("link", "set", dev(i), "up")
        ip("link", "set", dev(i) + "p", "up")
    sampler = None
    try:
        for n in nodes:
            n.extra = ["--event-log", str(c.dir / f"{n.id}.events"), "--hook-dir", str(hook_dir(c, n.id)),
                       "--enable-fault-injection"]
        c.start_all()
        c.wait_formed()
        m = wait_until(lambda: (lambda a: a if a and holders(ids) == [a] else None)(acting(c, ids)), 15,
                       what="a master holding the VIP")
        sampler = Sampler(ids)
        # 1. Switchover: the VIP moves with the role.
        m, r, _ = wait_until(lambda: harness.settled_roles(c, ids), 10, what="one master and replica")
        c.ctl(m, "switchover", "--to", r, json=False)
        t0 = time.monotonic()
        wait_until(lambda: acting(c, ids) == r and holders(ids) == [r], 10, what=f"the VIP on {r} after the switchover")
        note(f"switchover {m} -> {r}: VIP on {r}'s interface {time.monotonic() - t0:.2f} s after the command")
        # 2. The master cut off from both peers: it loses its lease, its step-down hook removes the VIP.
        m = r
        others = [i for i in ids if i != m]
        t0 = time.monotonic()
        for p in others:
            c.ctl(m, "fault", "drop", p, "100", "both", json=False)
        new = wait_until(lambda: (lambda a: a if a and a != m and holders(ids) == [a] else None)(acting(c, others)),
                         6 * FT_S, what="the VIP on the new master after the cut")
        note(f"{m} cut off: VIP on {new} {time.monotonic() - t0:.2f} s later, and gone from {m}")
        c.ctl(m, "fault", "clear", json=False)
        c.wait_formed(timeout=10)
        wait_until(lambda: harness.settled_roles(c, ids), 10, what="the cluster to settle after the heal")
        # 3. kill -9 of the master, whose host dies with it (its NIC goes away).
        m = acting(c, ids)
        others = [i for i in ids if i != m]
        sampler.dead.add(m)
        t0 = c[m].kill9()
        ip("link", "del", dev(m))
        new = wait_until(lambda: (lambda a: a if a and a != m and holders(others) == [a] else None)(acting(c, others)),
                         6 * FT_S, what="the VIP on the new master after the kill")
        note(f"{m} killed with its host: VIP on {new} {time.monotonic() - t0:.2f} s later")
        sampler.stop()
        bad = sampler.overlaps()
        check(not bad, f"the VIP was on two live interfaces at once: {bad[:3]}")
        note(f"{len(sampler.samples)} samples every 20 ms: never on two live interfaces")
    finally:
        if sampler:
            sampler.stop()
        for i in ids:
            ip("link", "del", dev(i))
