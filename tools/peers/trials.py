"""The measurements: failover, restored old master, replicated writes,
catch-up and memory. Each takes a started System (see systems.py)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time

from . import env
from .env import log, wait_for

FAULTS = ("restart", "pause", "partition")


def ms_since(t):
    return (time.monotonic() - t) * 1000


# -- failover ---------------------------------------------------------------------------------

def failover(sys_, trials, rng):
    """kill -9 of the master at a random phase of the heartbeat; time until a
    new one is established and has accepted a write."""
    out = []
    last_kill = None
    for t in range(trials):
        m = wait_for(sys_.stable, 90, f"stable {sys_.name} before trial {t + 1}", interval=0.05,
                     state=sys_.describe)
        if last_kill is not None:
            time.sleep(max(0.0, sys_.min_gap_s - (time.monotonic() - last_kill)))
        time.sleep(rng.uniform(0, sys_.phase_s))
        t0 = last_kill = time.monotonic()
        sys_.kill9(m)
        new = wait_for(lambda: sys_.new_master(m), 60, f"new {sys_.name} master", interval=0.005,
                       state=sys_.describe)
        out.append(ms_since(t0))
        log(f"    trial {t + 1:2}: killed {m}, {new} took over in {out[-1]:6.0f} ms")
        sys_.restart(m, after_failover=True)
    return out


# -- restored old master ----------------------------------------------------------------------

class Sampler(threading.Thread):
    """Asks every host who holds the role, as fast as the answers come (about
    every 2-15 ms), from its own connections."""

    def __init__(self, sys_):
        super().__init__(daemon=True)
        self.sys_ = sys_
        self.samples = []  # (monotonic, holders)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                hs = frozenset(self.sys_.holders())
            except Exception:
                hs = None
            if hs is not None:
                self.samples.append((time.monotonic(), hs))
            self.halt.wait(0.002)

    def stop(self):
        self.halt.set()
        self.join(10)

    def dual_ms(self):
        """Time with two or more holders (each sample stands until the next)."""
        total = 0.0
        for (t, hs), (t2, _) in zip(self.samples, self.samples[1:]):
            if len(hs) >= 2:
                total += t2 - t
        return total * 1000


class Writer(threading.Thread):
    """A client that keeps writing unique keys to the old master, as a client
    that has not heard of the failover would; records what was acknowledged."""

    def __init__(self, sys_, host, tag):
        super().__init__(daemon=True)
        self.sys_, self.host, self.tag = sys_, host, tag
        self.acked = []
        self.after_fault = 0
        self.fault_at = None
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            key = f"{self.tag}-{i}"
            i += 1
            ok = self.sys_.up(self.host) and self.sys_.write(self.host, key)
            if ok:
                self.acked.append(key)
                if self.fault_at is not None:
                    self.after_fault += 1
            self.halt.wait(0.002 if ok else 0.01)

    def stop(self):
        self.halt.set()
        self.join(10)


def restore(sys_, fault, trials, hold_s=1.0):
    """Per trial: fault on the master, wait for the failover, hold the fault
    hold_s more (a pause or partition well past the detection timeout), then
    restart / resume / heal and wait until one master is left."""
    out = []
    for t in range(trials):
        m = wait_for(sys_.stable, 120, f"stable {sys_.name} before {fault} trial {t + 1}", interval=0.05,
                     state=sys_.describe)
        sampler = Sampler(sys_)
        sampler.start()
        writer = Writer(sys_, m, f"{fault}{t}-{time.monotonic_ns()}") if sys_.has_writes else None
        if writer:
            writer.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        if writer:
            writer.fault_at = t0
        getattr(sys_, {"restart": "kill9", "pause": "pause", "partition": "partition"}[fault])(m)
        new = wait_for(lambda: sys_.new_master(m), 60, f"failover of {sys_.name} ({fault})", interval=0.005,
                       state=sys_.describe)
        failover_ms = ms_since(t0)
        if fault != "restart":
            time.sleep(hold_s)
        t1 = time.monotonic()
        {"restart": lambda: sys_.restart(m), "pause": lambda: sys_.resume(m), "partition": sys_.heal}[fault]()

        def one_master():
            hs = sys_.holders()
            if len(hs) != 1:
                return None
            (h,) = hs
            return h if h == m or sys_.demoted(m) else None
        final = wait_for(one_master, 60, f"a single {sys_.name} master after the {fault}", interval=0.005,
                         state=sys_.describe)
        single_ms = ms_since(t1)
        time.sleep(0.5)  # a role that flaps back shows in the samples
        sampler.stop()
        acked, lost, after = 0, 0, 0
        if writer:
            writer.stop()
            acked, after = len(writer.acked), writer.after_fault
            via = wait_for(sys_.stable, 120, f"stable {sys_.name} after the {fault}", interval=0.05)
            keys = set(writer.acked)
            lost = len(keys - sys_.present(keys, via))
        r = {"fault": fault, "old": m, "new": new, "final": final, "failover_ms": failover_ms,
             "single_ms": single_ms, "dual_ms": sampler.dual_ms(), "acked": acked, "acked_after_fault": after,
             "lost": lost, "samples": len(sampler.samples)}
        out.append(r)
        kept = "old master kept the role" if final == m else f"{final} kept the role"
        log(f"    {fault:9} trial {t + 1}: failover {failover_ms:5.0f} ms, one master {single_ms:6.0f} ms after the "
            f"{ {'restart': 'restart', 'pause': 'resume', 'partition': 'heal'}[fault]} ({kept}), two masters "
            f"{r['dual_ms']:6.0f} ms, writes acked by old master after the fault {after}, lost {lost}")
    return out


# -- replicated writes ------------------------------------------------------------------------

def client(build, *args):
    r = env.run([str(build / "tools" / args[0])] + [str(a) for a in args[1:]], timeout=300)
    return json.loads(r.stdout)


def cpu_ticks(sys_):
    """User + system clock ticks the system's servers (every host) have used."""
    total = 0
    for h in sys_.ids:
        with open(f"/proc/{sys_.pid(h)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def with_cpu(sys_, run):
    """run() -> its result, with the servers' CPU per op (us) added."""
    t0 = cpu_ticks(sys_)
    r = run()
    r["server_cpu_us"] = (cpu_ticks(sys_) - t0) * 1e6 / os.sysconf("SC_CLK_TCK") / r.get("ops", r.get("puts"))
    return r


def writes(sys_, build, reps, scale=1.0):
    """1 client and 16 clients, one write at a time each, acknowledged by
    both replicas; `reps` runs of each. For Redis also 16 clients of SET
    alone, which waits for no replica: the rate with replication taken off
    the client's path, a ceiling for the comparison on this machine."""
    res = {"1": [], "16": [], "16-nowait": []}
    name = sys_.name
    m = wait_for(sys_.stable, 60, f"stable {name}", interval=0.05)
    n1, n16 = (int(2000 * scale), int(10000 * scale)) if name == "etcd" else (int(5000 * scale), int(40000 * scale))
    for rep in range(reps):
        if name == "rolegrid":
            base = ["rg-bench-client", "--secret-file", sys_.c.secret_file, "--cluster", sys_.cluster_name]
            one = client(build, *base, "--node", sys_.admin(m), "--n", n1, "--region", f"w{rep}", "latency")
            many = with_cpu(sys_, lambda: client(build, *base, "--node", ",".join(sys_.admin(h) for h in sys_.ids),
                                                 "--n", n16, "--clients", 16, "--region", f"w{rep}", "clients"))
        elif name == "redis":
            base = ["rg-bench-peers-client", "--addr", sys_.addr(m), "--replicas", 2]
            one = client(build, *base, "--n", n1, "--clients", 1, "--prefix", f"w{rep}a", "redis-wait")
            many = with_cpu(sys_, lambda: client(build, *base, "--n", n16, "--clients", 16, "--prefix", f"w{rep}b",
                                                 "redis-wait"))
            res["16-nowait"].append(with_cpu(sys_, lambda: client(build, *base, "--n", n16, "--clients", 16,
                                                                  "--prefix", f"w{rep}c", "redis-set")))
        else:
            base = ["rg-bench-peers-client"]
            one = client(build, *base, "--addr", sys_.addr(m), "--n", n1, "--clients", 1, "--prefix", f"w{rep}a",
                         "etcd-put")
            many = with_cpu(sys_, lambda: client(build, *base, "--addr", ",".join(sys_.addr(h) for h in sys_.ids),
                                                 "--n", n16, "--clients", 16, "--prefix", f"w{rep}b", "etcd-put"))
        res["1"].append(one)
        res["16"].append(many)
        log(f"    run {rep + 1}: 1 client {one['per_second']:8.0f}/s p50 {one['p50_us']:7.0f} us p99 "
            f"{one['p99_us']:7.0f} us; 16 clients {many['per_second']:8.0f}/s p50 {many['p50_us']:7.0f} us "
            f"p99 {many['p99_us']:7.0f} us, server CPU {many['server_cpu_us']:5.1f} us/write"
            + (f"; SET alone {res['16-nowait'][-1]['per_second']:8.0f}/s" if res["16-nowait"] else ""))
    if not res["16-nowait"]:
        del res["16-nowait"]
    return res


# -- catch-up and memory ----------------------------------------------------------------------

def rss_all(sys_):
    return {h: env.rss_mib(sys_.pid(h)) for h in sys_.ids}


def catchup(sys_, build, entries):
    """Loads `entries` x 100 B, reads every member's RSS, then brings one
    member back empty and times it until it holds everything."""
    name = sys_.name
    wait_for(sys_.stable, 60, f"stable {name}", interval=0.05)
    t0 = time.monotonic()
    if name == "rolegrid":
        m = sys_.ids[0]
        load = client(build, "rg-bench-client", "--secret-file", sys_.c.secret_file, "--cluster", sys_.cluster_name,
                      "--node", sys_.admin(m), "--region", "big", "--n", entries, "--window", 4000,
                      "--value-size", 100, "load")

        def count(h):
            try:
                return sum(r["entries"] for r in sys_.q(h, "regions", timeout=5) if r["name"] == "big")
            except Exception:
                return -1
    elif name == "redis":
        m = sys_.stable()
        load = client(build, "rg-bench-peers-client", "--addr", sys_.addr(m), "--n", entries,
                      "--window", 1000, "--prefix", "k", "redis-load")

        def count(h):
            try:
                return sys_.r(h, "DBSIZE", timeout=5)
            except Exception:
                return -1
    else:
        m = sys_.stable()
        load = client(build, "rg-bench-peers-client", "--addr", ",".join(sys_.addr(h) for h in sys_.ids),
                      "--n", entries, "--batch", 128, "--clients", 6, "--prefix", "k", "etcd-load")

        def count(h):
            try:
                return sys_.count(h)
            except Exception:
                return -1
    load_s = time.monotonic() - t0
    wait_for(lambda: all(count(h) == entries for h in sys_.ids), 300, f"{entries} entries on every {name} member",
             interval=0.5)
    time.sleep(1.0)
    rss = rss_all(sys_)
    log(f"    loaded {entries} entries in {load_s:.1f} s; RSS MiB " + ", ".join(f"{h} {v:.0f}" for h, v in rss.items()))

    # The member to empty: one that is not the master / leader.
    x = sys_.ids[-1] if (sys_.stable() or m) != sys_.ids[-1] else sys_.ids[-2]
    if name == "rolegrid":
        sys_.c.stop([x])
        time.sleep(0.5)
        t1 = time.monotonic()
        sys_.c.start([x])

        def caught_up():
            try:
                st = sys_.q(x, "status", timeout=2)
            except Exception:
                return False
            tr = st.get("transfer", {})
            return tr.get("synced") and not tr.get("copying") and count(x) == entries
    elif name == "redis":
        sys_.kill9(x)
        time.sleep(0.5)
        t1 = time.monotonic()
        sys_.restart(x)  # no persistence: it starts empty and asks its master for a full sync

        def caught_up():
            i = sys_.info(x)
            return (i and i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0"
                    and count(x) == entries)
    else:
        # An etcd member's identity lives in its data directory: an empty one
        # joins as a new member (remove, add, start with state "existing").
        ids = {h: sys_.status(h)["header"]["member_id"] for h in sys_.ids}
        via = next(h for h in sys_.ids if h != x)
        sys_.kill9(x)
        sys_.post(via, "/v3/cluster/member/remove", {"ID": ids[x]}, timeout=10)
        shutil.rmtree(sys_.dir / x / "data")
        sys_.post(via, "/v3/cluster/member/add", {"peerURLs": [sys_.peer_url(x)]}, timeout=10)
        time.sleep(0.5)
        t1 = time.monotonic()
        sys_.start_one(x, state="existing")

        def caught_up():
            return count(x) == entries
    wait_for(caught_up, 600, f"the new {name} member to catch up", interval=0.05)
    catch_ms = ms_since(t1)
    time.sleep(1.0)
    rss_new = rss_all(sys_)
    log(f"    {x} restarted empty, caught up with {entries} entries in {catch_ms:.0f} ms; its RSS {rss_new[x]:.0f} MiB")
    return {"entries": entries, "load_s": load_s, "load_per_s": entries / load_s, "rss_mib": rss,
            "rss_new_mib": rss_new[x], "catchup_ms": catch_ms, "member": x}
