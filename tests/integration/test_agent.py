"""Integration tests of the HA agent (issue 3): roles, failover, FIG. 3,
claims 3-5, partitions, switchover, maintenance, hooks and witnesses, with
real rolegrid processes. Run through run.py (tests/integration/run.py -k agent_).

Every node writes an event log (--event-log, JSON lines, CLOCK_MONOTONIC
milliseconds: the clock of Python's time.monotonic(), so a test compares the
nodes' event times with its own kill and restart times). "Never two masters"
is judged from those logs: a node acts as master from an event with
acting_master true until the last lease bound it logged in that stint
(strict); for a switchover, where the old master cuts its own bound short,
until its first event that no longer acts (see acting_spans).

Hooks, where a test uses them, are shell scripts (make_hooks) that append a
`start` and an `end` line with the wall-clock ms (`date`: cheap, and the
clock of the event logs' `wall` field) and their pid to hooks-<node>.log in
the test's directory; a hook the node kills has no `end` line, and its end
is then the node's own `hook` event.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import signal
import time
import traceback

import harness
from harness import AdminError, CtlError, TestFailure, check, note, test

FT_S = harness.FAILURE_TIMEOUT_MS / 1000  # --failure-timeout: also the master's lease
HB_S = 0.1                                # --heartbeat-interval default: the renewal period
BACKOFF_S = 2.0                           # --failover-backoff default
HOOK_NAMES = ("prepare", "master", "replica", "data", "abort")
STEPPING = ("preparing", "designating", "broadcasting", "establishing")
ANY = object()


def ms(t):
    """time.monotonic() seconds -> the event logs' t_ms."""
    return t * 1000.0


def wall_ms(t):
    """time.monotonic() seconds -> wall-clock ms (the hook scripts' clock)."""
    return (t + time.time() - time.monotonic()) * 1000.0


def event_wall_ms(e):
    """An event's `wall` field (UTC, ms) as wall-clock ms."""
    d = datetime.datetime.strptime(e["wall"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp() * 1000.0


# ---------------------------------------------------------------------------
# Set-up

def agent_nodes(c, n, extra=(), hooks=None, faults=False, per_node=None):
    """Declares n nodes n1..nN, each with its event log (and hooks, fault
    injection, extra flags); returns their ids."""
    nodes = c.add_nodes(n)
    for node in nodes:
        args = ["--event-log", str(c.dir / f"{node.id}.events")]
        if hooks:
            args += ["--hook-dir", str(hooks)]
        if faults:
            args.append("--enable-fault-injection")
        node.extra = args + list(extra) + list((per_node or {}).get(node.id, ()))
    return [x.id for x in nodes]


HOOK_SCRIPT = """#!/bin/sh
# rolegrid integration-test hook: logs start and end (wall-clock ms) and its pid.
LOG="{logdir}/hooks-$ROLEGRID_NODE.log"
name=${{0##*/}}
echo "start $name $(date +%s%3N) $$ hook=$ROLEGRID_HOOK role=$ROLEGRID_ROLE epoch=$ROLEGRID_EPOCH prev=$ROLEGRID_PREV_MASTER node=$ROLEGRID_NODE" >> "$LOG"
status=0
{body}
echo "end $name $(date +%s%3N) $$ status=$status" >> "$LOG"
exit $status
"""


def make_hooks(c, bodies=None):
    """A hook directory with all five hooks; `bodies` adds shell lines to
    some (e.g. {"prepare": "sleep 4"}, {"master": "status=3"})."""
    d = c.dir / "hooks"
    d.mkdir(exist_ok=True)
    for h in HOOK_NAMES:
        p = d / h
        p.write_text(HOOK_SCRIPT.format(logdir=c.dir, body=(bodies or {}).get(h, ":")))
        os.chmod(p, 0o755)
    return d


def hook_log(c, nid):
    """[{kind: start|end, name, ms, pid, **fields}] of node nid, in order."""
    out = []
    try:
        text = (c.dir / f"hooks-{nid}.log").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] not in ("start", "end"):
            continue
        rec = {"kind": parts[0], "name": parts[1], "ms": int(parts[2]), "pid": int(parts[3])}
        for kv in parts[4:]:
            k, _, v = kv.partition("=")
            rec[k] = v
        out.append(rec)
    return out


def hook_runs(c, nid):
    """Each hook run of nid: the script's start (and end, if it ended by
    itself) paired with the node's `hook` event for it, in order. The i-th
    started script is the i-th `hook` event with ran=true: hooks run one at a
    time, in order."""
    log = hook_log(c, nid)
    starts = [r for r in log if r["kind"] == "start"]
    ends = {r["pid"]: r for r in log if r["kind"] == "end"}
    evs = [e for e in events(c, nid) if e.get("event") == "hook" and e.get("ran")]
    runs = []
    for i, s in enumerate(starts):
        ev = evs[i] if i < len(evs) else None
        runs.append({"name": s["name"], "start": s["ms"], "end": ends.get(s["pid"], {}).get("ms"),
                     "status": ev["status"] if ev else None, "event": ev, "env": s, "pid": s["pid"],
                     "finished_ms": event_wall_ms(ev) if ev else None})
    return runs, evs


def hooks_idle(c, ids):
    """Every hook each node queued has finished (missing ones count too)."""
    for i in ids:
        evs = events(c, i, {"hook-queued", "hook"})
        if sum(e["event"] == "hook-queued" for e in evs) != sum(e["event"] == "hook" for e in evs):
            return False
    return True


def wait_hooks_idle(c, ids, timeout=5.0):
    harness.wait_until(lambda: hooks_idle(c, ids), timeout, interval=0.02, what="the nodes' hooks to finish")


def reap_hooks(c):
    """Kills (by process group) any hook script of this test still running:
    the nodes put each hook in its own group, so a node killed with -9
    leaves a running hook behind."""
    hooks_dir = str(c.dir / "hooks")
    for path in c.dir.glob("hooks-*.log"):
        nid = path.name[len("hooks-"):-len(".log")]
        log = hook_log(c, nid)
        ended = {r["pid"] for r in log if r["kind"] == "end"}
        for r in log:
            if r["kind"] != "start" or r["pid"] in ended:
                continue
            try:
                cmdline = open(f"/proc/{r['pid']}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if hooks_dir in cmdline:
                try:
                    os.killpg(r["pid"], signal.SIGKILL)
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Event logs

# The node's event log (every incarnation), optionally only some kinds and
# only from monotonic time `since` (seconds) on.
events = harness.event_log


def wait_event(c, nid, pred, timeout, what, interval=0.02):
    return harness.wait_until(lambda: next((e for e in events(c, nid) if pred(e)), None), timeout,
                              interval=interval, what=what)


def acting_spans(evs, strict=True):
    """[{start, end, epoch, incarnation}] during which the node acted as
    master: from an event with acting_master true to the last lease bound it
    logged before it stopped (strict), or to the first event that no longer
    acts if that is earlier (strict=False: the node cut its bound short,
    e.g. a switchover)."""
    spans, cur = [], None
    for e in evs:
        if e.get("acting_master") and e.get("event") != "start":
            if cur is None:
                cur = {"start": e["t_ms"], "end": e["lease_bound_ms"], "epoch": e.get("epoch"),
                       "incarnation": e.get("incarnation")}
            else:
                cur["end"] = max(cur["end"], e["lease_bound_ms"])
        elif cur is not None:
            if not strict:
                cur["end"] = min(cur["end"], e["t_ms"])
            spans.append(cur)
            cur = None
    if cur is not None:
        spans.append(cur)
    return spans


def check_one_master_at_a_time(c, ids, strict=True):
    """Fails if two nodes' acting spans overlap; returns {id: spans}."""
    spans = {i: acting_spans(events(c, i), strict) for i in ids}
    for a in ids:
        for b in ids:
            if a >= b:
                continue
            for x in spans[a]:
                for y in spans[b]:
                    if x["start"] < y["end"] and y["start"] < x["end"]:
                        raise TestFailure(
                            f"two acting masters at once: {a} acted {x['start']}..{x['end']} ms (epoch {x['epoch']}), "
                            f"{b} acted {y['start']}..{y['end']} ms (epoch {y['epoch']}); overlap "
                            f"{min(x['end'], y['end']) - max(x['start'], y['start'])} ms")
    return spans


def event_summary(c, nid, limit=60):
    evs = [e for e in events(c, nid) if e.get("event") not in ("lease", "hook-queued")]
    lines = []
    for e in evs[-limit:]:
        extra = {k: v for k, v in e.items() if k not in ("t_ms", "wall", "node", "incarnation", "event", "role",
                                                          "state", "epoch", "acting_master", "lease_bound_ms")}
        lines.append(f"    {e.get('t_ms')} {e.get('event')} role={e.get('role')} state={e.get('state')} "
                     f"epoch={e.get('epoch')} acting={e.get('acting_master')} bound={e.get('lease_bound_ms')} "
                     f"inc={e.get('incarnation')} {json.dumps(extra, sort_keys=True) if extra else ''}")
    return lines


def agent_test(timeout=45):
    """@test, plus: on failure the message carries each node's event log
    (role changes, hooks, failover steps; lease renewals left out), and
    hook scripts left running are killed."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(c):
            try:
                fn(c)
            except (TestFailure, CtlError, AdminError, OSError, ValueError, KeyError, TypeError, IndexError) as e:
                head = str(e) if isinstance(e, TestFailure) else f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                detail = [head, "  event logs (t_ms monotonic):"]
                for node in c.nodes.values():
                    detail.append(f"  -- {node.id}")
                    detail += event_summary(c, node.id)
                raise TestFailure("\n".join(detail)) from None
            finally:
                c.close()
                reap_hooks(c)

        return test(timeout=timeout)(run)

    return wrap


class Soft:
    """Collects failed checks so one run reports every broken behaviour."""

    def __init__(self):
        self.failed = []

    def check(self, cond, message):
        if not cond:
            self.failed.append(message)
            note(f"CHECK FAILED: {message}")
        return cond

    def done(self):
        if self.failed:
            raise TestFailure(f"{len(self.failed)} checks failed: " + " | ".join(self.failed))


# ---------------------------------------------------------------------------
# Roles as the nodes see them

def roles(c, nid):
    return c.q(nid, "roles")


def summary(r):
    m, rep = r.get("master"), r.get("replica")
    return {"master": m["node"] if m else None, "phase": m["phase"] if m else None, "epoch": r["epoch"],
            "replica": rep["node"] if rep else None, "role": r["self"]["role"], "state": r["self"]["state"],
            "acting": r["self"]["acting_master"], "epoch_seen": r["self"]["epoch_seen"],
            "maintenance": r["maintenance"], "entries": {n["id"]: n["role"] for n in r["nodes"]},
            "hooks": {n["id"]: n.get("hook") for n in r["nodes"]}}


def snapshots(c, ids):
    out = {}
    for i in ids:
        c.check_running(i)
        out[i] = summary(roles(c, i))
    return out


def judge(snaps, ids, witnesses=(), entries=False, master=None, replica=ANY, epoch=None):
    """None if every node in ids agrees on one established master (and
    replica, epoch) and each says its own role accordingly, else why not."""
    s0 = snaps[ids[0]]
    for i in ids:
        for k in ("master", "phase", "epoch", "replica"):
            if snaps[i][k] != s0[k]:
                return f"{ids[0]} and {i} disagree on {k}: {s0[k]} vs {snaps[i][k]}"
    if s0["master"] is None or s0["phase"] != "established":
        return f"no established master (master {s0['master']}, phase {s0['phase']})"
    if master is not None and s0["master"] != master:
        return f"master is {s0['master']}, expected {master}"
    if replica is ANY and s0["replica"] is None:
        return "no replica"
    if replica is not ANY and s0["replica"] != replica:
        return f"replica is {s0['replica']}, expected {replica}"
    if epoch is not None and s0["epoch"] != epoch:
        return f"epoch is {s0['epoch']}, expected {epoch}"

    def want(j):
        return ("master" if j == s0["master"] else "replica" if j == s0["replica"]
                else "witness" if j in witnesses else "data")

    for i in ids:
        if snaps[i]["role"] != want(i):
            return f"{i} says its role is {snaps[i]['role']} (state {snaps[i]['state']}), expected {want(i)}"
        if snaps[i]["acting"] != (i == s0["master"]):
            return f"{i} acting_master={snaps[i]['acting']}"
        if entries:
            for j in ids:
                if snaps[i]["entries"].get(j) != want(j):
                    return f"{i} shows {j}'s nodes entry as {snaps[i]['entries'].get(j)}, expected {want(j)}"
    return None


def wait_roles(c, ids, timeout, what="", interval=0.05, **expect):
    """Polls until judge() passes; returns (snapshots, monotonic time)."""
    deadline = time.monotonic() + timeout
    last, why = {}, "no answer yet"
    while True:
        try:
            last = snapshots(c, ids)
            why = judge(last, ids, **expect)
            if why is None:
                return last, time.monotonic()
        except (AdminError, CtlError, OSError, ValueError, KeyError, TimeoutError) as e:
            why = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            views = {i: {k: v for k, v in s.items() if k != "hooks"} for i, s in last.items()}
            raise TestFailure(f"within {timeout:.1f} s, no agreement{' on ' + what if what else ''}: {why}; "
                              f"last views: {views}")
        time.sleep(interval)


def started_cluster(c, n=3, timeout=10.0, settle_hooks=True, **kw):
    """Starts n agent nodes; waits for one master and one replica agreed by
    all (and, with hooks, for the first hooks to finish). Returns (ids,
    master, replica, data nodes, epoch, seconds from start)."""
    ids = agent_nodes(c, n, **kw)
    t0 = time.monotonic()
    c.start_all()
    c.wait_formed()
    snaps, t = wait_roles(c, ids, timeout, what="the first master and replica", entries=True)
    # The first claims that lost may still be settling (a late refusal logs
    # +failover-aborted): a test's faults start once none is in flight.
    harness.wait_until(lambda: not any(summary(roles(c, i))["state"] in STEPPING for i in ids), 3,
                       what="the first claims to settle")
    if kw.get("hooks") and settle_hooks:
        wait_hooks_idle(c, ids)
    s = snaps[ids[0]]
    m, r = s["master"], s["replica"]
    return ids, m, r, [i for i in ids if i not in (m, r)], s["epoch"], t - t0


def fault(c, nid, *rule):
    return c.q(nid, "fault", *[str(x) for x in rule])


def cut(c, side_a, side_b):
    """Drops every message between the two sides, with rules on every node."""
    for a in side_a:
        for b in side_b:
            fault(c, a, "drop", b, 100, "both")
            fault(c, b, "drop", a, 100, "both")


def heal(c, ids):
    for i in ids:
        fault(c, i, "clear")


def first_after(evs, name, t, node_inc=None):
    for e in evs:
        if e.get("event") == name and e["t_ms"] >= ms(t) and (node_inc is None or e.get("incarnation") == node_inc):
            return e
    return None


def kill_and_fail_over(c, ids, m, r, d, e):
    """kill -9 of master m; waits until every live node shows r established
    at e+1. Returns (kill time, {node: seconds to see it}, r's +promoted event)."""
    live = [i for i in ids if i != m and c[i].running()]
    for i in live:
        roles(c, i)  # connections open before the kill
    t0 = c[m].kill9()
    seen = {}
    deadline = t0 + FT_S + 5
    while len(seen) < len(live) and time.monotonic() < deadline:
        for i in live:
            if i in seen:
                continue
            try:
                s = summary(roles(c, i))
            except (AdminError, OSError, TimeoutError):
                continue
            if s["master"] == r and s["phase"] == "established" and s["epoch"] == e + 1:
                seen[i] = time.monotonic() - t0
        time.sleep(0.01)
    check(len(seen) == len(live), f"after kill -9 of {m}, only {sorted(seen)} of {live} showed {r} established "
                                  f"at epoch {e + 1} within {FT_S + 5:.1f} s")
    prom = first_after(events(c, r), "+promoted", t0)
    check(prom is not None and prom["epoch"] == e + 1, f"{r}'s event log has no +promoted at epoch {e + 1}: {prom}")
    return t0, seen, prom


# ---------------------------------------------------------------------------
# 1. A fresh cluster

@agent_test()
def agent_fresh_cluster_one_master_one_replica(c):
    ids = agent_nodes(c, 3)
    t0 = time.monotonic()
    c.start_all()
    c.wait_formed()
    snaps, t = wait_roles(c, ids, 10, what="the first master and replica", entries=True)
    s = snaps[ids[0]]
    m, r = s["master"], s["replica"]
    d = [i for i in ids if i not in (m, r)]
    note(f"start -> {m} master, {r} replica, {d[0]} data at epoch {s['epoch']}, agreed by every node "
         f"(roles and nodes/<id> entries): {t - t0:.2f} s")
    check(r is not None and r != m, f"replica {r}, master {m}")
    check(s["epoch"] == 1, f"a fresh cluster's first master has epoch {s['epoch']}, expected 1")
    # The same answer through the real rolegridctl, from every node.
    for i in ids:
        j = c.ctl(i, "master")
        check(j["node"] == m and j["epoch"] == 1 and j["phase"] == "established",
              f"`rolegridctl master` on {i}: {j}")
        check(j["admin"] == c[m].admin and j["listen"] == c[m].listen,
              f"`rolegridctl master` on {i} gives {m}'s addresses as {j.get('listen')}/{j.get('admin')}, "
              f"it has {c[m].listen}/{c[m].admin}")
        rj = c.ctl(i, "roles")
        check(rj["master"]["node"] == m and rj["replica"]["node"] == r and rj["epoch"] == 1,
              f"`rolegridctl roles --json` on {i}: master {rj['master']}, replica {rj['replica']}")
        check(rj["self"]["node"] == i, f"roles on {i} names itself {rj['self']['node']}")
    lease = roles(c, m)["master"].get("lease_remaining_ms")
    check(lease is not None and 0 < lease <= harness.FAILURE_TIMEOUT_MS,
          f"the master shows lease_remaining_ms {lease}")
    text = c.ctl(d[0], "roles", json=False)
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.split()[:1] and ln.split()[0] in ids}
    for i, want in ((m, "master"), (r, "replica"), (d[0], "data")):
        check(i in rows and rows[i][1] == "yes" and rows[i][2] == want, f"roles text has no '{i} yes {want}' "
                                                                       f"row:\n{text}")
    # The event logs: one +promoted in the cluster, by m at epoch 1; the
    # logs' clock is time.monotonic()'s.
    promoted = {i: events(c, i, {"+promoted"}) for i in ids}
    check(len(promoted[m]) == 1 and promoted[m][0]["epoch"] == 1, f"{m}'s +promoted events: {promoted[m]}")
    check(all(not promoted[i] for i in ids if i != m), f"+promoted events: {promoted}")
    starts = {i: events(c, i, {"start"}) for i in ids}
    for i in ids:
        check(len(starts[i]) == 1 and abs(starts[i][0]["t_ms"] - ms(t0)) < 2000,
              f"{i}'s start event at t_ms {starts[i][0]['t_ms'] if starts[i] else None}, the test started it at "
              f"{ms(t0):.0f} (event-log clock is not CLOCK_MONOTONIC?)")
    # Still the same a little later: no flapping.
    time.sleep(0.5)
    snaps2, _ = wait_roles(c, ids, 1, master=m, replica=r, epoch=1, entries=True)
    check(all(not events(c, i, {"+promoted", "+demoted", "+lease-lost"}, since=t) for i in ids if i != m),
          "role changes after the cluster settled")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 2. The master killed

@agent_test()
def agent_master_killed_replica_takes_over(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    t0, seen, prom = kill_and_fail_over(c, ids, m, r, d, e)
    t_all = max(seen.values())
    t_prom = prom["t_ms"] / 1000 - t0
    snaps, t_rep = wait_roles(c, [r, d], 5, what="the new replica", master=r, replica=d, epoch=e + 1, entries=True)
    note(f"kill -9 {m} -> {r} +promoted (its event log): {t_prom:.2f} s; established at epoch {e + 1} on all live "
         f"nodes: {t_all:.2f} s ({', '.join(f'{i} {s:.2f}' for i, s in sorted(seen.items()))}); "
         f"{d} replica: {t_rep - t0:.2f} s")
    lf = roles(c, r)["last_failover"]
    note("last failover on " + r + ": " + ", ".join(f"{s['step']} {s['took_ms']} ms ({s['outcome']})" for s in lf))
    # A confirm read may come first: after a kill the stopped entry and the
    # membership's verdict come together, and a run judged by the entry reads.
    check([s["step"] for s in lf if s["step"] != "confirm"] ==
          ["detect", "reserve", "prepare", "designate", "broadcast", "establish"], f"{r}'s last failover steps: {lf}")
    # The membership's verdict and the stopped entry (a master silent since
    # the kill) come at about the same moment: either may start the run.
    verdicts = (f"master {m} (epoch {e}) not alive", f"master {m} (epoch {e}) silent")
    check(lf[0]["outcome"].startswith(verdicts), f"detect step: {lf[0]}")
    check(prom.get("reason", "").startswith(verdicts), f"+promoted reason: {prom}")
    # `rolegridctl events --json` shows the same role change and steps.
    evs = c.ctl(r, "events")
    names = [x["event"] for x in evs]
    check("+promoted" in names and "failover-step" in names, f"`rolegridctl events` on {r}: {names}")
    # d: +replica after the kill, nothing else.
    d_changes = [x["event"] for x in events(c, d, since=t0) if x["event"].startswith("+")]
    check(d_changes == ["+replica"], f"{d}'s role changes after the kill: {d_changes}")
    check(t_all <= FT_S + 1.0, f"kill -> new master established on every live node took {t_all:.2f} s, "
                               f"expected <= failure-timeout + 1 s = {FT_S + 1.0:.1f} s")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 3. FIG. 3: the old master restarted after the failover

@agent_test()
def agent_restarted_old_master_demotes_itself(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    t0, seen, prom = kill_and_fail_over(c, ids, m, r, d, e)
    wait_roles(c, [r, d], 5, master=r, replica=d, epoch=e + 1)
    t1 = time.monotonic()
    c[m].start()
    snaps, t2 = wait_roles(c, ids, 8, what=f"{m} demoted to replica", master=r, replica=m, epoch=e + 1, entries=True)
    inc = c.incarnation(m)
    mine = [x for x in events(c, m) if x.get("incarnation") == inc]
    start = next((x for x in mine if x["event"] == "start"), None)
    dem = next((x for x in mine if x["event"] == "+demoted"), None)
    check(dem is not None, f"{m}'s new incarnation logged no +demoted: {[x['event'] for x in mine]}")
    check(dem["role"] == "replica" and dem["epoch"] == e + 1 and dem["from"] == "master" and dem["to"] == "replica",
          f"{m}'s +demoted event: {dem}")
    check(not any(x.get("acting_master") for x in mine), f"{m} acted as master after its restart")
    note(f"kill -> {r} established everywhere {max(seen.values()):.2f} s; restart {m} -> +demoted "
         f"{dem['t_ms'] / 1000 - t1:.2f} s (agent start -> +demoted {(dem['t_ms'] - start['t_ms']) / 1000:.2f} s); "
         f"agreed by every node {t2 - t1:.2f} s")
    # r was never disturbed, d stepped back to data for m.
    check(not events(c, r, {"+lease-lost", "+demoted", "+promoted"}, since=t1), f"{r} changed role after the restart")
    d_changes = [x["event"] for x in events(c, d, since=t1) if x["event"].startswith("+")]
    check(d_changes == ["+data"], f"{d}'s role changes after {m}'s restart: {d_changes}")
    spans = check_one_master_at_a_time(c, ids)
    check(len(spans[m]) == 1 and len(spans[r]) == 1 and spans[m][0]["end"] <= spans[r][0]["start"],
          f"acting spans: {spans}")
    note(f"{m}'s last lease bound -> {r}'s first acting moment: {spans[r][0]['start'] - spans[m][0]['end']:.0f} ms")
    check(dem["t_ms"] / 1000 - t1 <= 3.0, f"restart -> demoted took {dem['t_ms'] / 1000 - t1:.2f} s")


# ---------------------------------------------------------------------------
# 4. Claim 5: the master restored while `prepare` runs

@agent_test()
def agent_master_restored_during_prepare_aborts_it(c):
    hooks = make_hooks(c, {"prepare": "sleep 4"})
    ids, m, r, (d,), e, _ = started_cluster(c, hooks=hooks)
    roles(c, r)
    t0 = c[m].kill9()
    # The hook itself, not only the state: a run judged by the stopped entry
    # confirms with a read first, which a master back in time simply answers.
    harness.wait_until(lambda: any(x.get("hook") == "prepare" for x in events(c, r, {"hook-started"}, since=t0)),
                       FT_S + 3, interval=0.02, what=f"{r} to start its prepare hook")
    t_prep = time.monotonic()
    c[m].start()
    ab = wait_event(c, r, lambda x: x["event"] == "+failover-aborted" and x["t_ms"] >= ms(t0), 4,
                    f"{r} to abort its failover")
    # m's new process takes the role back at a new epoch (an epoch never
    # names two master processes), without any failover by r.
    snaps, t2 = wait_roles(c, ids, 8, what=f"{m} master again", master=m, replica=r, epoch=e + 1, entries=True)
    note(f"kill -9 {m} -> {r} preparing {t_prep - t0:.2f} s; restart -> failover aborted "
         f"{ab['t_ms'] / 1000 - t_prep:.2f} s; restart -> {m} master again everywhere {t2 - t_prep:.2f} s")
    check(ab["reason"] == f"master {m} restored during prepare", f"{r}'s +failover-aborted: {ab}")
    wait_hooks_idle(c, [r])
    hooks_after = [x for x in events(c, r, {"hook"}, since=t0)]
    check([x["hook"] for x in hooks_after] == ["prepare", "abort"], f"{r}'s hooks after the kill: {hooks_after}")
    p, a = hooks_after[0], hooks_after[1]
    check(p["aborted"] and p["ran"] and p["status"] == 128 + signal.SIGKILL and p["took_ms"] < 4000,
          f"{r}'s prepare hook was not killed by the abort: {p}")
    check(a["ran"] and a["status"] == 0 and not a["aborted"], f"{r}'s abort hook: {a}")
    runs, _ = hook_runs(c, r)
    pr = [x for x in runs if x["name"] == "prepare"]
    check(len(pr) == 1 and pr[0]["end"] is None, f"prepare script ran {len(pr)} times or finished its sleep: {pr}")
    check(pr[0]["env"]["prev"] == m and pr[0]["env"]["epoch"] == str(e) and pr[0]["env"]["role"] == "replica",
          f"prepare's environment: {pr[0]['env']}")
    steps = [x for x in events(c, r, {"failover-step"}, since=t0) if x["step"] != "confirm"]
    check([x["step"] for x in steps] == ["detect", "reserve", "prepare"] and steps[2]["outcome"].startswith("aborted: "),
          f"{r}'s failover steps: {[(x['step'], x['outcome']) for x in steps]}")
    # No failover happened: nobody designated or promoted, the epoch stayed.
    for i in ids:
        check(not events(c, i, {"+promoted", "broadcast"}, since=t0), f"{i} promoted or broadcast after the kill")
    check(roles(c, r)["self"]["epoch_seen"] == e + 1, f"{r} saw an epoch other than {e + 1}")
    inc = c.incarnation(m)
    res = [x for x in events(c, m) if x.get("incarnation") == inc and x["event"].startswith("+")]
    check([x["event"] for x in res] == ["+resumed"] and res[0]["epoch"] == e + 1,
          f"{m}'s role changes after its restart: {[(x['event'], x['epoch']) for x in res]} (expected +resumed at "
          f"epoch {e + 1}: the table still named its earlier process at epoch {e})")
    check(res[0].get("from") == "master" and res[0].get("to") == "master", f"{m}'s +resumed: {res[0]}")
    check("restarted as master" in res[0].get("reason", ""), f"{m}'s +resumed does not say why: {res[0]}")
    # Still so after the failover backoff: no late failover.
    time.sleep(BACKOFF_S - (time.monotonic() - ab["t_ms"] / 1000) + 0.3)
    wait_roles(c, ids, 1, master=m, replica=r, epoch=e + 1)
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 5. Claim 3: the master restored after the designation, before the broadcast completes

@agent_test()
def agent_master_restored_during_broadcast_gets_role_back(c):
    hooks = make_hooks(c)
    ids, m, r, (d,), e, _ = started_cluster(c, hooks=hooks, faults=True, extra=["--broadcast-timeout", "4s"])
    fault(c, r, "drop-app", "agent.ack", "in")  # r never hears an acknowledgement
    roles(c, r)
    t0 = c[m].kill9()

    def designated():
        s = summary(roles(c, r))
        return s["master"] == r and s["phase"] == "designated" and s["epoch"] == e + 1

    harness.wait_until(designated, FT_S + 3, interval=0.02, what=f"{r} designated at epoch {e + 1}")
    t_des = time.monotonic()
    c[m].start()
    hb = wait_event(c, r, lambda x: x["event"] == "+handed-back" and x["t_ms"] >= ms(t0), 3.5,
                    f"{r} to hand the role back")
    snaps, t2 = wait_roles(c, ids, 8, what=f"{m} master again", master=m, replica=r, epoch=e + 1, entries=True)
    inc = c.incarnation(m)
    mine = [x for x in events(c, m) if x.get("incarnation") == inc and x["event"].startswith("+")]
    note(f"kill -> {r} designated {t_des - t0:.2f} s; restart -> {r} +handed-back {hb['t_ms'] / 1000 - t_des:.2f} s; "
         f"restart -> {m} master again everywhere {t2 - t_des:.2f} s")
    check([x["event"] for x in mine] == ["+handed-back"] and mine[0]["epoch"] == e + 1 and mine[0]["acting_master"],
          f"{m}'s role changes after its restart: {[(x['event'], x['epoch']) for x in mine]} (expected +handed-back "
          f"at epoch {e + 1})")
    steps = [(x["step"], x["outcome"]) for x in events(c, r, {"failover-step"}, since=t0) if x["step"] != "confirm"]
    check([s for s, _ in steps] == ["detect", "reserve", "prepare", "designate", "broadcast"], f"{r}'s steps: {steps}")
    check(steps[4][1] == f"old master {m} restored after 1 of 2 acknowledgements", f"broadcast step: {steps[4]}")
    check(hb["role"] == "replica" and not hb["acting_master"], f"{r}'s +handed-back event: {hb}")
    # r never acted; it ran prepare then abort (undoing prepare), and is replica again.
    check(not any(x.get("acting_master") for x in events(c, r)), f"{r} acted as master")
    check(not events(c, r, {"+promoted"}), f"{r} was promoted")
    wait_hooks_idle(c, [r])
    runs, _ = hook_runs(c, r)
    after = [(x["name"], x["status"]) for x in runs if x["start"] >= wall_ms(t0)]
    check(after == [("prepare", 0), ("abort", 0)], f"{r}'s hooks after the kill: {after}")
    check(roles(c, r)["self"]["epoch_seen"] == e + 1, "epoch seen by the replica")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 6. Claim 4: the broadcast not acknowledged by a quorum

@agent_test()
def agent_unacknowledged_broadcast_vacates(c):
    hooks = make_hooks(c)
    ids, m, r, (d,), e, _ = started_cluster(c, hooks=hooks, faults=True, extra=["--broadcast-timeout", "500ms"])
    fault(c, r, "drop-app", "agent.ack", "in")
    t0 = c[m].kill9()
    vac = wait_event(c, r, lambda x: x["event"] == "+vacated" and x["t_ms"] >= ms(t0), FT_S + 4,
                     f"{r} to vacate the role")
    t_vac = vac["t_ms"] / 1000
    steps = [x for x in events(c, r, {"failover-step"}, since=t0) if x["step"] != "confirm"]
    check([x["step"] for x in steps] == ["detect", "reserve", "prepare", "designate", "broadcast"],
          f"{r}'s steps: {[(x['step'], x['outcome']) for x in steps]}")
    b = steps[-1]
    check(b["outcome"] == "only 1 acknowledged, quorum is 2" and 500 <= b["took_ms"] <= 800,
          f"broadcast step: {b['outcome']} in {b['took_ms']} ms")
    check(vac["role"] == "replica" and not vac["acting_master"] and vac["epoch"] == e + 1, f"+vacated event: {vac}")
    wait_hooks_idle(c, [r])
    runs, _ = hook_runs(c, r)
    after = [(x["name"], x["status"]) for x in runs if wall_ms(t0) <= x["start"] <= event_wall_ms(vac) + 1000]
    check(after == [("prepare", 0), ("abort", 0)], f"{r}'s hooks from the kill to +vacated: {after}")
    fault(c, r, "clear")
    t_clear = time.monotonic()
    snaps, t2 = wait_roles(c, [r, d], BACKOFF_S + FT_S + 3, what="a master again", epoch=e + 2, entries=True)
    s = snaps[r]
    note(f"kill -> {r} +vacated {t_vac - t0:.2f} s (broadcast {b['took_ms']} ms); +vacated -> {s['master']} master "
         f"at epoch {e + 2} agreed by {r}, {d}: {t2 - t_vac:.2f} s (fault cleared {t_clear - t_vac:.2f} s after "
         f"+vacated)")
    check(s["master"] in (r, d) and s["replica"] == ({r, d} - {s["master"]}).pop(), f"after recovery: {s}")
    check(t2 - t_vac <= BACKOFF_S + FT_S + 1, f"+vacated -> master again took {t2 - t_vac:.2f} s, expected <= "
                                             f"failover-backoff + failure-timeout + 1 s")
    # Before the vacate, nobody acted.
    for i in (r, d):
        check(not [x for x in events(c, i, since=t0) if x.get("acting_master") and x["t_ms"] < vac["t_ms"]],
              f"{i} acted as master before {r} vacated")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 7. A partition of the master alone

@agent_test()
def agent_partitioned_master_steps_down(c):
    hooks = make_hooks(c)
    ids, m, r, (d,), e, _ = started_cluster(c, hooks=hooks, faults=True)
    t_cut = time.monotonic()
    cut(c, [m], [r, d])
    ll = wait_event(c, m, lambda x: x["event"] == "+lease-lost" and x["t_ms"] >= ms(t_cut), FT_S + 2,
                    f"{m} to lose its lease")
    snaps, t_new = wait_roles(c, [r, d], FT_S + 5, what="a master on the majority side", master=r, replica=d,
                              epoch=e + 1)
    sm = summary(roles(c, m))
    check(sm["role"] == "replica" and not sm["acting"], f"{m}, cut off, says: {sm}")
    prom = first_after(events(c, r), "+promoted", t_cut)
    note(f"cut -> {m} +lease-lost {ll['t_ms'] / 1000 - t_cut:.2f} s; cut -> {r} +promoted "
         f"{prom['t_ms'] / 1000 - t_cut:.2f} s, agreed by {r}, {d} {t_new - t_cut:.2f} s")
    check(ll["t_ms"] / 1000 - t_cut <= FT_S + 0.1, f"{m} acted {ll['t_ms'] / 1000 - t_cut:.2f} s into the partition "
                                                    f"(lease {FT_S:.1f} s)")
    wait_hooks_idle(c, [m])
    runs, _ = hook_runs(c, m)
    rep = [x for x in runs if x["start"] >= event_wall_ms(ll)]
    check(rep and rep[0]["name"] == "replica" and rep[0]["env"]["role"] == "replica",
          f"{m}'s hooks after +lease-lost: {[(x['name'], x['status']) for x in rep]}")
    t_heal = time.monotonic()
    heal(c, ids)
    snaps, t_healed = wait_roles(c, ids, 10, what=f"one master after the heal", master=r, replica=m, epoch=e + 1,
                                 entries=True)
    dem = first_after(events(c, m), "+demoted", t_heal)
    check(dem is not None and dem["epoch"] == e + 1, f"{m} logged no +demoted at epoch {e + 1} after the heal: {dem}")
    note(f"heal -> {m} +demoted {dem['t_ms'] / 1000 - t_heal:.2f} s; heal -> agreed by all {t_healed - t_heal:.2f} s")
    check(not [x for x in events(c, m, since=t_cut) if x.get("acting_master") and x["t_ms"] > ll["t_ms"]],
          f"{m} acted as master again after losing its lease")
    check(not events(c, r, {"+lease-lost", "+demoted"}, since=t_cut), f"{r} lost the role after the heal")
    spans = check_one_master_at_a_time(c, ids)
    gap = spans[r][-1]["start"] - spans[m][-1]["end"]
    note(f"{m}'s last lease bound -> {r}'s first acting moment: {gap:.0f} ms")


# ---------------------------------------------------------------------------
# 8. A minority partition of 5 nodes

@agent_test()
def agent_minority_never_promotes(c):
    ids, m, r, data, e, _ = started_cluster(c, n=5, faults=True, extra=["--eviction-delay", "10s"])
    minority = [r, data[0]]
    majority = [m] + data[1:]
    t_cut = time.monotonic()
    cut(c, minority, majority)
    bad = []
    master_gone_for_r = False
    while time.monotonic() < t_cut + 3.5:
        master_gone_for_r = master_gone_for_r or c.states(r).get(m) not in ("alive", None)
        for i in majority:
            s = summary(roles(c, i))
            if s["master"] != m or s["epoch"] != e or s["phase"] != "established" or (i == m and not s["acting"]):
                bad.append((round(time.monotonic() - t_cut, 2), i, s["master"], s["epoch"], s["phase"], s["acting"]))
        for i in minority:
            s = summary(roles(c, i))
            if s["acting"] or s["role"] == "master":
                bad.append((round(time.monotonic() - t_cut, 2), i, "acting", s["role"]))
        time.sleep(0.1)
    check(not bad, f"during the partition: {bad[:10]}")
    # The replica sees the master gone, but cannot reserve the failover
    # without a majority: no `prepare` on the minority side, ever.
    check(master_gone_for_r, f"{r} never saw {m} gone: the minority path was not exercised")
    tries = []
    for i in minority:
        steps = events(c, i, {"failover-step"}, since=t_cut)
        tries += [x["outcome"] for x in steps if x["step"] == "reserve"]
        check(not [x for x in steps if x["step"] not in ("detect", "confirm", "reserve")],
              f"{i} went past the reservation in the minority: {steps[:4]}")
        prepares = [x for x in events(c, i, {"hook-queued"}, since=t_cut) if x.get("hook") == "prepare"]
        check(not prepares, f"{i} queued prepare in the minority: {prepares[:2]}")
    note(f"{r} (minority) saw {m} gone; reservation attempts in 3.5 s: {len(tries)} "
         f"({'; '.join(sorted(set(tries)))}), no prepare")
    for i in minority:
        check(not events(c, i, {"+promoted", "broadcast"}, since=t_cut), f"{i} promoted itself or broadcast")
    check(not events(c, m, {"+lease-lost", "+demoted"}, since=t_cut), f"{m} lost its role in the majority")
    t_heal = time.monotonic()
    heal(c, ids)
    snaps, t2 = wait_roles(c, ids, 10, what="all five after the heal", master=m, replica=r, epoch=e, entries=True)
    note(f"heal -> all five agree on {m} (epoch {e}), replica {r}: {t2 - t_heal:.2f} s")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 9. Switchover to a data node

@agent_test()
def agent_switchover_to_data_node(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    # Asked of the replica: rolegridctl finds the master. The master learns
    # that d finished its state transfer from d's heartbeats, so right after
    # start-up it may still refuse for that reason: retry that refusal only.
    refusals = []
    while True:
        t_req = time.monotonic()
        try:
            out = c.ctl(r, "switchover", "--to", d)
            break
        except CtlError as err:
            if "has not finished state transfer" not in err.stderr or len(refusals) >= 20:
                raise
            refusals.append(err.stderr.strip())
            time.sleep(0.05)
    if refusals:
        note(f"switchover refused {len(refusals)} time(s) first: {refusals[0]}")
    check(out == {"switchover": d}, f"switchover answer: {out}")
    snaps, t2 = wait_roles(c, ids, 5, what=f"{d} master after the switchover", master=d, replica=m, epoch=e + 1,
                           entries=True)
    so = first_after(events(c, m), "+switchover-out", t_req)
    prom = first_after(events(c, d), "+promoted", t_req)
    check(so is not None and prom is not None, f"+switchover-out {so}, +promoted {prom}")
    check(not so["acting_master"] and so["role"] == "replica", f"{m}'s +switchover-out event: {so}")
    last_acting = max((x for x in events(c, m) if x.get("acting_master")), key=lambda x: x["t_ms"])
    gap = prom["t_ms"] - so["t_ms"]
    note(f"switchover {m} -> {d}: request -> agreed by all {t2 - t_req:.2f} s; {m} stopped (+switchover-out, its "
         f"last acting event at {so['t_ms'] - last_acting['t_ms']} ms before) -> {d} +promoted: {gap} ms")
    check(last_acting["t_ms"] <= so["t_ms"] <= prom["t_ms"],
          f"order: {m} last acting {last_acting['t_ms']}, +switchover-out {so['t_ms']}, {d} +promoted {prom['t_ms']}")
    check(gap <= (HB_S + 0.2) * 1000, f"no master for {gap} ms during the switchover (renewal {HB_S * 1000:.0f} ms)")
    check(prom["epoch"] == e + 1 and prom["reason"] == "switchover", f"{d}'s +promoted: {prom}")
    check(not [x for x in events(c, m) if x.get("acting_master") and x["t_ms"] > so["t_ms"]],
          f"{m} acted after +switchover-out")
    r_changes = [x["event"] for x in events(c, r, since=t_req) if x["event"].startswith("+")]
    check(r_changes == ["+data"], f"{r}'s role changes: {r_changes}")
    check_one_master_at_a_time(c, ids, strict=False)


# ---------------------------------------------------------------------------
# 10. Maintenance mode

@agent_test()
def agent_maintenance_stops_failover(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    out = c.ctl(d, "maintenance", "on")
    check(out == {"maintenance": True}, f"maintenance on: {out}")
    harness.wait_until(lambda: all(summary(roles(c, i))["maintenance"] for i in ids), 3,
                       what="every node to show maintenance on")
    t0 = c[m].kill9()
    bad = []
    while time.monotonic() < t0 + 2 * FT_S + 0.5:
        for i in (r, d):
            s = summary(roles(c, i))
            if s["master"] != m or s["epoch"] != e or s["state"] in STEPPING or s["acting"]:
                bad.append((round(time.monotonic() - t0, 2), i, s["master"], s["epoch"], s["state"]))
        time.sleep(0.05)
    check(not bad, f"with maintenance on, after kill -9 of {m}: {bad[:10]}")
    for i in (r, d):
        check(not events(c, i, {"failover-step", "+promoted"}, since=t0), f"{i} started a failover in maintenance")
    t_off = time.monotonic()
    out = c.ctl(r, "maintenance", "off")
    check(out == {"maintenance": False}, f"maintenance off: {out}")
    snaps, t2 = wait_roles(c, [r, d], FT_S + 4, interval=0.02, what="the failover after maintenance off", master=r,
                           replica=d, epoch=e + 1)
    check(not snaps[r]["maintenance"], "maintenance still on")
    lf = roles(c, r)["last_failover"]
    note(f"maintenance on: no failover for {t_off - t0:.2f} s after kill -9 of {m}; off -> {r} established on "
         f"{r}, {d}: {t2 - t_off:.2f} s (steps: " + ", ".join(f"{s['step']} {s['took_ms']} ms" for s in lf) + ")")
    check(t2 - t_off <= 1.5, f"maintenance off -> failover took {t2 - t_off:.2f} s")
    check_one_master_at_a_time(c, ids)


# ---------------------------------------------------------------------------
# 11. Hooks: a failing one, a hanging one, order and no overlap

@agent_test(timeout=60)
def agent_hooks_fail_hang_and_run_in_order(c):
    hooks = make_hooks(c, {"master": "status=3", "replica": "sleep 60"})
    ids, m, r, (d,), e, _ = started_cluster(c, hooks=hooks, extra=["--hook-timeout", "1s"], settle_hooks=False)
    soft = Soft()
    # The master hook's exit status 3, shown by every node's `roles`.
    harness.wait_until(lambda: all((summary(roles(c, i))["hooks"].get(m) or {}).get("status") == 3 for i in ids), 3,
                       what=f"every node to show {m}'s master hook status 3")
    text = c.ctl(d, "roles", json=False)
    row = next((ln for ln in text.splitlines() if ln.split()[:1] == [m]), "")
    soft.check("master exit 3" in row, f"roles text for {m}: {row!r}")
    # r's replica hook hangs; kill the master meanwhile, so r's prepare and
    # master hooks queue behind it.
    harness.wait_until(lambda: any(x["name"] == "replica" for x in hook_runs(c, r)[0]), 3,
                       what=f"{r}'s replica hook to start")
    t_kill = c[m].kill9()
    snaps, t2 = wait_roles(c, [r, d], 15, what="the failover", master=r, replica=d, epoch=e + 1)
    note(f"kill -9 {m} (while {r}'s replica hook hung) -> {r} established: {t2 - t_kill:.2f} s")
    # Wait for d's replica hook (hung) and r's master hook to finish.

    def settled():
        rr, _ = hook_runs(c, r)
        dr, _ = hook_runs(c, d)
        return (rr and rr[-1]["name"] == "master" and rr[-1]["event"] is not None and
                dr and dr[-1]["name"] == "replica" and dr[-1]["event"] is not None)

    harness.wait_until(settled, 12, what=f"{r}'s master hook and {d}'s replica hook to finish")
    # The dead old master's row says it is down, not a second master.
    text = c.ctl(d, "roles", json=False)
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.split()[:1] and ln.split()[0] in ids}
    soft.check(rows.get(m, [])[1:5] == ["no", "down", "was", "master"], f"roles text for dead {m}: {rows.get(m)}")
    soft.check(rows.get(r, [])[1:3] == ["yes", "master"], f"roles text for {r}: {rows.get(r)}")
    runs = {i: hook_runs(c, i) for i in ids}
    for i in ids:
        note(f"{i} hooks: " + ", ".join(f"{x['name']}={x['status']}"
                                        f"{'(killed after %d ms)' % x['event']['took_ms'] if x['event'] and x['event']['timed_out'] else ''}"
                                        for x in runs[i][0]))
    seqs = {i: [x["name"] for x in runs[i][0]] for i in ids}
    soft.check(seqs[m] == ["data", "master"], f"{m}'s hooks {seqs[m]}, expected data, master")
    soft.check(seqs[r] == ["data", "replica", "prepare", "master"], f"{r}'s hooks {seqs[r]}, expected data, replica, "
                                                                    f"prepare, master")
    soft.check(seqs[d] == ["data", "replica"], f"{d}'s hooks {seqs[d]}, expected data, replica")
    for i in ids:
        run_list, evs = runs[i]
        soft.check(len(run_list) == len(evs), f"{i}: {len(run_list)} scripts started, {len(evs)} hook events ran")
        soft.check(all(x["event"] is None or x["event"]["hook"] == x["name"] for x in run_list),
                   f"{i}: scripts {[x['name'] for x in run_list]} vs events {[x['hook'] for x in evs]}")
        # No overlap: each starts after the node recorded the previous one's end.
        for a, b in zip(run_list, run_list[1:]):
            soft.check(a["finished_ms"] is not None and b["start"] >= a["finished_ms"],
                       f"{i}: {b['name']} started at {b['start']} before {a['name']} ended at {a['finished_ms']}")
        for x in run_list:
            env = x["env"]
            soft.check(env["node"] == i and env["hook"] == x["name"], f"{i} {x['name']} environment: {env}")
            if x["name"] in ("master", "replica", "data"):
                soft.check(env["role"] == x["name"], f"{i} {x['name']} hook with ROLEGRID_ROLE={env['role']}")
    # Exit statuses.
    for i, name in ((m, "master"), (r, "master")):
        x = [y for y in runs[i][0] if y["name"] == name][-1]
        soft.check(x["status"] == 3 and x["end"] is not None, f"{i}'s {name} hook: status {x['status']}")
    rm = [y for y in runs[r][0] if y["name"] == "master"][-1]
    soft.check(rm["env"]["epoch"] == str(e + 1) and rm["env"]["prev"] == m, f"{r}'s master hook env: {rm['env']}")
    for i in (r, d):
        x = [y for y in runs[i][0] if y["name"] == "replica"][-1]
        ev = x["event"]
        soft.check(x["end"] is None and ev["timed_out"] and ev["status"] in (124, 137),
                   f"{i}'s hanging replica hook: {ev}")
        soft.check(900 <= ev["took_ms"] <= 1600, f"{i}'s hanging replica hook was killed after {ev['took_ms']} ms, "
                                                 f"--hook-timeout is 1s")
    # Recorded and shown: every live node shows each one's last hook.
    final = {r: ("master", 3), d: ("replica", None)}
    harness.wait_until(lambda: all((summary(roles(c, i))["hooks"].get(d) or {}).get("name") == "replica" and
                                   (summary(roles(c, i))["hooks"].get(r) or {}).get("name") == "master"
                                   for i in (r, d)), 3, what="last hooks shown")
    for i in (r, d):
        hk = summary(roles(c, i))["hooks"]
        soft.check(hk[r]["status"] == 3, f"{i} shows {r}'s last hook {hk[r]}")
        soft.check(hk[d]["status"] in (124, 137), f"{i} shows {d}'s last hook {hk[d]}")
        soft.check(hk[m]["name"] == "master" and hk[m]["status"] == 3, f"{i} shows {m}'s last hook {hk[m]}")
    # The last hook run matches each node's final role.
    for i, (role, _) in final.items():
        soft.check(seqs[i][-1] == role, f"{i}'s last hook {seqs[i][-1]}, its role {role}")
    soft.check(any("hook master exited with status 3" in ln for ln in c[r].log().splitlines()),
               f"{r}'s log does not say its master hook exited 3")
    soft.done()


# ---------------------------------------------------------------------------
# 12. Two members, with and without a witness

@agent_test()
def agent_two_members_without_witness_never_promote(c):
    ids = agent_nodes(c, 2)
    c.start_all()
    c.wait_formed()
    for i in ids:
        harness.wait_until(lambda: "2-member topology: no automatic promotion" in c[i].log(), 3,
                           what=f"{i} to say at start-up that it never promotes")
    t0 = time.monotonic()
    harness.wait_until(lambda: all(summary(roles(c, i))["state"] == "data" for i in ids), 3,
                       what="both nodes to settle")
    time.sleep(2 * FT_S + 0.5)
    for i in ids:
        s = summary(roles(c, i))
        check(s["master"] is None and s["role"] == "data" and not s["acting"], f"{i}: {s}")
    t_kill = c[ids[0]].kill9()
    time.sleep(2 * FT_S + 0.5)
    s = summary(roles(c, ids[1]))
    check(s["master"] is None and s["role"] == "data" and not s["acting"], f"{ids[1]} after kill -9 of {ids[0]}: {s}")
    for i in ids:
        check(not events(c, i, {"+promoted", "broadcast", "failover-step"}), f"{i} tried to become master")
    line = next(ln for ln in c[ids[1]].log().splitlines() if "2-member topology" in ln)
    note(f"start-up: {line.split('] ', 1)[-1]}")
    note(f"no master for {time.monotonic() - t0:.1f} s, {time.monotonic() - t_kill:.1f} s of it after kill -9 "
         f"of {ids[0]}")


@agent_test()
def agent_two_members_and_witness_fail_over(c):
    hooks = make_hooks(c)
    ids = agent_nodes(c, 3, hooks=hooks, per_node={"n3": ["--witness"]})
    w = "n3"
    c.start_all()
    c.wait_formed()
    snaps, _ = wait_roles(c, ids, 10, what="a master and replica next to the witness", witnesses=(w,), entries=True)
    s = snaps[w]
    m, r, e = s["master"], s["replica"], s["epoch"]
    check({m, r} == {"n1", "n2"}, f"master {m}, replica {r}")
    check("+witness" in c[w].log(), f"{w} does not say it is a witness")
    t0, seen, prom = kill_and_fail_over(c, ids, m, r, w, e)
    snaps, t2 = wait_roles(c, [r, w], 3, master=r, replica=None, epoch=e + 1, witnesses=(w,), entries=True)
    note(f"kill -9 {m} -> {r} established on {r} and the witness: {max(seen.values()):.2f} s")
    c[m].start()
    snaps, t3 = wait_roles(c, ids, 8, what=f"{m} back as replica", master=r, replica=m, epoch=e + 1, witnesses=(w,),
                           entries=True)
    note(f"restart {m} -> replica: {t3 - t2:.2f} s")
    check(summary(roles(c, w))["role"] == "witness", "witness role")
    check(not [x for x in events(c, w) if x.get("acting_master") or x["event"] in ("+promoted", "+replica", "+data",
                                                                                    "failover-step", "broadcast")],
          f"the witness took a role or tried to")
    check(not hook_log(c, w), f"the witness ran hooks: {hook_log(c, w)}")
    check_one_master_at_a_time(c, ids)
