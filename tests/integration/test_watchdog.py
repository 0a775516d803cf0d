"""Integration tests of the watchdog (--watchdog, --watchdog-mode). This
machine has no watchdog device, so the nodes use the fake one
(`fake:FILE`): it appends a JSON line per operation (open, timeout,
keepalive, magic-close) with CLOCK_MONOTONIC milliseconds, the clock of
time.monotonic() and of the event logs. The test plays the hardware: a
device that was opened and not magic-closed expires at its last keepalive
plus its timeout, and would reset the machine then.
"""

from __future__ import annotations

import signal
import subprocess
import time

import harness
from harness import ROLEGRID, check, note, test

FT_MS = harness.FAILURE_TIMEOUT_MS


def wd_path(c, nid):
    return c.dir / f"wd-{nid}.log"


def wd_ops(c, nid):
    return harness.json_lines(wd_path(c, nid))


def node_events(c, nid, kind=None):
    return harness.event_log(c, nid, None if kind is None else {kind})


def wd_nodes(c, n, per_node=None, mode="required"):
    nodes = c.add_nodes(n)
    for node in nodes:
        device = (per_node or {}).get(node.id, f"fake:{wd_path(c, node.id)}")
        node.extra = ["--event-log", str(c.dir / f"{node.id}.events"), "--watchdog", device,
                      "--watchdog-mode", mode]
    return [x.id for x in nodes]


def master_of(c, ids):
    """The established master every node in `ids` agrees on, or None."""
    settled = harness.settled_roles(c, ids)
    return settled[0] if settled else None


@test(timeout=90)
def watchdog_fences_a_hung_master(c):
    """SIGSTOP of the master: its (fake) watchdog, kept alive on every
    renewal, expires before the master's own lease bound, hence before the
    new master acts. After SIGCONT it steps down and magic-closes."""
    ids = wd_nodes(c, 3)
    c.start_all()
    c.wait_formed()
    m = harness.wait_until(lambda: master_of(c, ids), 15, what="an established master")
    ops = harness.wait_until(lambda: [o for o in wd_ops(c, m) if o["event"] == "keepalive"][5:] and wd_ops(c, m),
                             5, what=f"{m}'s watchdog to be kept alive")
    check(ops[0]["event"] == "open" and ops[1]["event"] == "timeout", f"{m}'s watchdog: {ops[:3]}")
    timeout_ms = ops[1]["timeout_ms"]
    check(0 < timeout_ms < FT_MS * 0.95, f"watchdog timeout {timeout_ms} ms is not below the lease bound")
    for other in ids:
        if other != m:
            check(not wd_ops(c, other), f"{other} opened its watchdog without being master: {wd_ops(c, other)}")
    roles = c.q(m, "roles")
    check(roles["self"]["watchdog"]["armed"] and roles["self"]["watchdog"]["mode"] == "required",
          f"roles answer: {roles['self']}")

    t0 = time.monotonic()
    c.nodes[m].pause()
    try:
        def new_master():
            for i in ids:
                if i == m:
                    continue
                p = [e for e in node_events(c, i, "+promoted") if e["t_ms"] > t0 * 1000]
                if p:
                    return i, p[0]
            return None
        n, promoted = harness.wait_until(new_master, 10, what="a new master")
        ops = wd_ops(c, m)
        check(ops[-1]["event"] == "keepalive", f"a hung master's watchdog was touched: {ops[-3:]}")
        expiry = ops[-1]["t_ms"] + timeout_ms
        bounds = [e["lease_bound_ms"] for e in node_events(c, m, "lease")]
        check(bounds and expiry <= max(bounds), f"watchdog expiry {expiry} after {m}'s last lease bound {max(bounds)}")
        check(expiry < promoted["t_ms"], f"watchdog expiry {expiry} not before {n}'s promotion {promoted['t_ms']}")
        harness.wait_until(lambda: any(o["event"] == "open" for o in wd_ops(c, n)), 5,
                           what=f"the new master {n} to arm its watchdog")
    finally:
        c.nodes[m].signal(signal.SIGCONT)
    harness.wait_until(lambda: wd_ops(c, m)[-1]["event"] == "magic-close", 10,
                       what=f"{m} to disarm its watchdog after it resumed and stepped down")
    note(f"{m} paused: its watchdog (timeout {timeout_ms} ms) expired {expiry - t0 * 1000:.0f} ms after the pause, "
         f"{max(bounds) - expiry:.0f} ms before its lease bound and {promoted['t_ms'] - expiry:.0f} ms before {n} "
         f"was promoted; after SIGCONT it magic-closed")


@test(timeout=90)
def watchdog_required_refuses_to_act_without_one(c):
    """required: a node whose watchdog cannot be armed stops (exit 1) the
    moment it would act as master, and another node takes over; a Linux
    device with a lease too short for whole seconds is refused at start."""
    ids = wd_nodes(c, 3, per_node={"n1": f"fake:{c.dir}/no-such-dir/wd.log"})
    c.start_all()
    # No wait_formed(): n1 may already be gone by then, if it was the first
    # to claim the role.
    def master_or_n1_gone():
        # n1 dies the moment it would become master: maybe the first time.
        if not c.nodes["n1"].running():
            return "n1"
        try:
            return master_of(c, ids)
        except harness.NodeExited:
            return "n1"
    m = harness.wait_until(master_or_n1_gone, 15, what="a master (or n1 gone)")
    if m != "n1" and c.nodes["n1"].running():
        c.ctl(m, "switchover", "--to", "n1", json=False, check=False)
    harness.wait_until(lambda: not c.nodes["n1"].running(), 10, what="n1 to stop when its watchdog fails")
    check(c.nodes["n1"].returncode() == 1, f"n1 exit code {c.nodes['n1'].returncode()}")
    log = c.nodes["n1"].last_start_log()
    check("the required watchdog failed" in log, f"n1's log: {log[-300:]}")
    check(any(e.get("event") == "watchdog-failed" for e in node_events(c, "n1")), "no watchdog-failed event")
    acted = node_events(c, "n1", "lease")
    check(not acted, f"n1 acted as master without its watchdog: {acted[:2]}")
    rest = ["n2", "n3"]
    new = harness.wait_until(lambda: (lambda m: m if m in rest else None)(master_of(c, rest)), 15,
                             what="n2 or n3 to take over")
    check(any(o["event"] == "keepalive" for o in wd_ops(c, new)), f"{new} acts without its watchdog")

    # A Linux device counts whole seconds: with a 1 s lease it is refused at start.
    n = c.nodes["n2"]
    r = subprocess.run([str(ROLEGRID), "--node", "x1", "--members", "x1,x2,x3", "--listen", "127.0.0.1:1",
                        "--admin", "127.0.0.1:2", "--seeds", "127.0.0.1:3", "--secret-file", str(n.secret_file), "--in-memory",
                        "--watchdog", "/dev/watchdog", "--watchdog-mode", "required"],
                       capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "--failure-timeout" in lines[0],
          f"short lease with a Linux device: exit {r.returncode}, {r.stderr!r}")
    r = subprocess.run([str(ROLEGRID), "--node", "x1", "--members", "x1,x2,x3", "--listen", "127.0.0.1:1",
                        "--admin", "127.0.0.1:2", "--seeds", "127.0.0.1:3", "--secret-file", str(n.secret_file), "--in-memory",
                        "--watchdog-mode", "required"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "needs --watchdog DEVICE" in r.stderr, f"required without a device: {r.stderr!r}")
    note(f"n1 (broken watchdog) exited 1 when made master, without acting; {new} took over; "
         f"{lines[0]}")


@test(timeout=90)
def watchdog_fences_a_cut_off_master_with_a_slow_step_down(c):
    """A master cut off from its peers, whose step-down hook (stopping the
    service) takes 2 s. Keepalives follow committed renewals only, so its
    watchdog runs out no later than the moment it stops acting (its lease
    bound): the machine is reset before the slow hook could matter, and
    before the new master's `master` hook starts."""
    import test_hooks
    hooks = test_hooks.make_hooks(c, {"replica": "sleep 2", "data": "sleep 2"})
    ids = wd_nodes(c, 3)
    for nid in ids:
        c.nodes[nid].extra += ["--hook-dir", str(hooks), "--enable-fault-injection"]
    c.start_all()
    c.wait_formed()
    m = harness.wait_until(lambda: master_of(c, ids), 15, what="an established master")
    harness.wait_until(lambda: any(e["hook"] == "master" for e in node_events(c, m, "hook-started")), 10,
                       what=f"{m}'s master hook to start")
    time.sleep(0.5)  # a few renewals: keepalives
    t0 = time.monotonic() * 1000
    for p in ids:
        if p != m:
            c.ctl(m, "fault", "drop", p, "100", "both", json=False)
    try:
        def stepped_down():
            return next((e for e in node_events(c, m) if e["event"] in ("+lease-lost", "+demoted")
                         and e["t_ms"] > t0), None)
        lost = harness.wait_until(stepped_down, 6 * FT_MS / 1000 + 4, what=f"{m} to stop acting")

        def new_master_hook():
            for i in ids:
                if i != m:
                    s = [e for e in node_events(c, i, "hook-started") if e["hook"] == "master" and e["t_ms"] > t0]
                    if s:
                        return i, s[0]
            return None
        n, started = harness.wait_until(new_master_hook, 10, what="the new master's master hook")
    finally:
        c.ctl(m, "fault", "clear", json=False, check=False)
    ops = [o for o in wd_ops(c, m) if o["t_ms"] > t0 - 3000]
    pings = [o for o in ops if o["event"] in ("keepalive", "timeout", "open") and o["t_ms"] <= lost["t_ms"]]
    timeout_ms = next(o["timeout_ms"] for o in wd_ops(c, m) if o["event"] == "timeout")
    check(pings, f"{m}'s watchdog ops around the cut: {ops}")
    expiry = pings[-1]["t_ms"] + timeout_ms
    check(expiry <= lost["t_ms"], f"{m}'s watchdog would expire at {expiry}, after it stopped acting at "
                                  f"{lost['t_ms']}: its slow step-down hook could outlive the fence")
    check(expiry < started["t_ms"], f"watchdog expiry {expiry} not before {n}'s master hook at {started['t_ms']}")
    note(f"{m} cut off: its watchdog expired {expiry - t0:.0f} ms after the cut, {lost['t_ms'] - expiry:.0f} ms "
         f"before it stopped acting ({lost['event']}) and {started['t_ms'] - expiry:.0f} ms before {n}'s master "
         f"hook started")
