"""Integration tests of hooks that must not outlive their role: a `master`
hook still running when the master loses its lease is killed with its
process group, and the new role's hook runs after it. Run through run.py
(-k hooks_).
"""

from __future__ import annotations

import os
import time

import harness
from harness import check, note, test

FT_S = harness.FAILURE_TIMEOUT_MS / 1000

HOOK = """#!/bin/sh
echo "start $(basename $0) $ROLEGRID_EPOCH $$" >> "{log}-$ROLEGRID_NODE"
{body}
echo "end $(basename $0) $ROLEGRID_EPOCH $$" >> "{log}-$ROLEGRID_NODE"
"""


def make_hooks(c, bodies):
    d = c.dir / "hooks"
    d.mkdir(exist_ok=True)
    for h in ("prepare", "master", "replica", "data", "abort"):
        p = d / h
        p.write_text(HOOK.format(log=c.dir / "hooks.log", body=bodies.get(h, "")))
        os.chmod(p, 0o755)
    return d


def hook_lines(c, nid):
    try:
        return [ln.split() for ln in (c.dir / f"hooks.log-{nid}").read_text().splitlines()]
    except FileNotFoundError:
        return []


def node_events(c, nid, kind=None):
    return harness.event_log(c, nid, None if kind is None else {kind})


@test(timeout=90)
def hooks_master_hook_killed_when_the_lease_is_lost(c):
    """The master's `master` hook runs for 30 s (a service in the
    foreground). The master is cut off from both peers: it loses its lease,
    its `master` hook is killed at once, then its new role's hook runs."""
    hooks = make_hooks(c, {"master": "sleep 30"})
    nodes = c.add_nodes(3)
    for n in nodes:
        n.extra = ["--event-log", str(c.dir / f"{n.id}.events"), "--hook-dir", str(hooks),
                   "--hook-timeout", "60s", "--enable-fault-injection"]
    ids = [n.id for n in nodes]
    c.start_all()
    c.wait_formed()

    def master():
        views = {(r["master"] or {}).get("node") for r in (c.q(i, "roles") for i in ids)}
        m = views.pop() if len(views) == 1 else None
        return m if m and any(ln[:2] == ["start", "master"] for ln in hook_lines(c, m)) else None
    m = harness.wait_until(master, 15, what="a master running its master hook")
    pid = next(ln[3] for ln in hook_lines(c, m) if ln[:2] == ["start", "master"])
    t0 = time.monotonic()
    for p in ids:
        if p != m:
            c.ctl(m, "fault", "drop", p, "100", "both", json=False)
    try:
        killed = harness.wait_until(
            lambda: next((e for e in node_events(c, m, "hook") if e["hook"] == "master" and e.get("superseded")), None),
            3 * FT_S + 2, what=f"{m}'s master hook to be killed")
        took = killed["t_ms"] / 1000 - t0
        check(killed["status"] == 137, f"the killed master hook's status: {killed}")
        lost = [e for e in node_events(c, m) if e["event"] in ("+lease-lost", "+demoted") and e["t_ms"] > t0 * 1000]
        check(lost and lost[0]["t_ms"] <= killed["t_ms"] + 50, f"the hook was killed before the role was lost: {lost}")
        def next_role_hook():
            lines = hook_lines(c, m)
            i = [ln[:2] for ln in lines].index(["start", "master"])
            return next((ln for ln in lines[i + 1:] if ln[0] == "start" and ln[1] in ("replica", "data")), None)
        after = harness.wait_until(next_role_hook, 5, what=f"{m}'s new role's hook, after its master hook")
        lines = hook_lines(c, m)
        check(["end", "master"] not in [ln[:2] for ln in lines], f"the master hook finished normally: {lines}")
        check(not os.path.exists(f"/proc/{pid}"), f"the master hook's shell {pid} still runs")
    finally:
        c.ctl(m, "fault", "clear", json=False, check=False)
    note(f"{m} cut off: master hook killed {took:.2f} s later (status 137, failure timeout {FT_S:.1f} s), "
         f"then its {after[1]} hook ran")


def settled_with_slow_step_down(c, seconds):
    """3 nodes whose step-down hooks (replica, data) take `seconds` and
    whose hook log lines carry wall-clock ms, to compare across nodes;
    returns (ids, master, replica) once every first hook has finished."""
    hooks = make_hooks(c, {"replica": f"sleep {seconds}", "data": f"sleep {seconds}"})
    for h in ("master", "replica", "data"):
        p = hooks / h
        p.write_text(p.read_text().replace("$ROLEGRID_EPOCH $$", "$ROLEGRID_EPOCH $$ $(date +%s%3N)"))
    nodes = c.add_nodes(3)
    for n in nodes:
        n.extra = ["--event-log", str(c.dir / f"{n.id}.events"), "--hook-dir", str(hooks)]
    ids = [n.id for n in nodes]
    c.start_all()
    c.wait_formed()
    m, rep, _ = harness.wait_until(lambda: harness.settled_roles(c, ids), 15, what="a master and a replica")
    harness.wait_until(lambda: all(sum(ln[0] == "start" for ln in hook_lines(c, i)) ==
                                   sum(ln[0] == "end" for ln in hook_lines(c, i)) for i in ids), 10,
                       what="the first hooks to finish")
    return ids, m, rep


@test(timeout=90)
def hooks_switchover_orders_the_step_down_before_the_new_master(c):
    """In a switchover the old master's step-down hook (0.5 s long here)
    finishes before the new master's `master` hook starts: the two never
    run at once, on different nodes."""
    ids, m, rep = settled_with_slow_step_down(c, 0.5)
    target = next(i for i in ids if i not in (m, rep))
    t0 = time.time() * 1000
    c.ctl(m, "switchover", "--to", target, json=False)

    def new_master_hook():
        return next((ln for ln in hook_lines(c, target) if ln[:2] == ["start", "master"] and int(ln[4]) > t0), None)
    start_new = harness.wait_until(new_master_hook, 10, what=f"{target}'s master hook")
    step_down = harness.wait_until(
        lambda: next((ln for ln in hook_lines(c, m) if ln[0] == "end" and ln[1] in ("replica", "data")
                      and int(ln[4]) > t0), None), 10, what=f"{m}'s step-down hook to end")
    gap = int(start_new[4]) - int(step_down[4])
    check(gap >= 0, f"{target}'s master hook started {-gap} ms before {m}'s step-down hook ended")
    note(f"switchover {m} -> {target}: {m}'s {step_down[1]} hook (0.5 s) ended, {gap} ms later {target}'s "
         f"master hook started")


@test(timeout=90)
def hooks_graceful_stop_waits_for_the_step_down_hook(c):
    """SIGTERM to the master whose step-down hook takes 0.8 s: the node
    stops acting at once, and leaves (exits) only after that hook has
    ended, so the next master's `master` hook starts after it."""
    ids, m, _ = settled_with_slow_step_down(c, 0.8)
    t0 = time.time() * 1000
    c[m].term()
    rc = c[m].wait_exit(15)
    exited = time.time() * 1000
    check(rc == 0, f"{m} exited {rc} after SIGTERM")
    step_down = next((ln for ln in hook_lines(c, m) if ln[0] == "end" and ln[1] in ("replica", "data")
                      and int(ln[4]) > t0), None)
    check(step_down is not None, f"{m}'s step-down hook did not finish before it exited: {hook_lines(c, m)[-3:]}")
    rest = [i for i in ids if i != m]

    def new_master_hook():
        return next((ln for i in rest for ln in hook_lines(c, i) if ln[:2] == ["start", "master"]
                     and int(ln[4]) > t0), None)
    start_new = harness.wait_until(new_master_hook, 10, what="the new master's master hook")
    gap = int(start_new[4]) - int(step_down[4])
    check(gap >= 0, f"the new master hook started {-gap} ms before {m}'s step-down hook ended")
    note(f"SIGTERM to {m}: its {step_down[1]} hook (0.8 s) ended {int(step_down[4]) - t0:.0f} ms later, it exited "
         f"after {exited - t0:.0f} ms, the new master's hook started {gap} ms after the step-down ended")
