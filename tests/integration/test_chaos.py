"""The chaos history checker (tools/chaos/checker.py) is able to fail.

Each test writes a history directory (the layout `rolegrid-chaos` records:
meta.json, events/<id>.jsonl, faults.jsonl, workload.jsonl,
observations.jsonl, snapshots.jsonl), plants one violation in a clean
history and asserts the checker reports exactly that kind, with the nodes,
epochs and times involved; the clean history must pass. Two sources:
  - a small synthetic history built here, event by event;
  - a real history recorded by `rolegrid-chaos run tests/chaos/master-kill.chaos
    --keep ...` (tests/chaos/histories/master-kill), copied and edited.
No process is started; run through run.py like the other integration tests.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness import REPO, check, test

sys.path.insert(0, str(REPO / "tools"))
from chaos.checker import check as check_history  # noqa: E402
from chaos.history import History, to_ranges  # noqa: E402

RECORDED = REPO / "tests" / "chaos" / "histories" / "master-kill"
CHAOS = REPO / "tools" / "rolegrid-chaos"


# ---------------------------------------------------------------------------
# A synthetic history: 3 nodes, failure-timeout 500 ms (promise 2 s).
#   1.0 s  start n1 n2 n3          1.5 s  n1 master (epoch 1), renews to 4.0 s
#   1.6 s  n2 replica               4.0 s  kill -9 n1 (its bound: 4.5 s)
#   5.5 s  n2 master (epoch 2), renews until the end (9.0 s)
#   6.0 s  n1 restarted; 6.3 s it reports replica at epoch 2
#   writes c0-1..c0-100 through n2, acknowledged 1.5-8.5 s; snapshot at 8.9 s

class Synth:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.meta = {"nodes": ["n1", "n2", "n3"], "members": ["n1", "n2", "n3"], "failure_timeout_ms": 500,
                     "t0_ms": 1000.0, "end_ms": 9000.0}
        self.events = {n: [] for n in self.meta["nodes"]}
        self.faults = []
        self.workload = []
        self.snapshots = []
        self.observations = []
        self.build()

    def ev(self, node, t, event, role, state, epoch, inc, acting=False, bound=0, **kw):
        e = {"t_ms": t, "node": node, "incarnation": inc, "event": event, "role": role, "state": state,
             "epoch": epoch, "acting_master": acting, "lease_bound_ms": bound if acting else 0}
        e.update(kw)
        self.events[node].append(e)
        return e

    def leases(self, node, inc, epoch, start, stop):
        t = start
        while t < stop:
            self.events[node].append({"t_ms": t, "node": node, "incarnation": inc, "event": "lease", "epoch": epoch,
                                      "acting_master": True, "lease_bound_ms": t + 475})
            t += 100

    def build(self):
        self.faults.append({"t_ms": 1000.0, "kind": "start", "nodes": ["n1", "n2", "n3"]})
        for n, inc in (("n1", 11), ("n2", 21), ("n3", 31)):
            self.ev(n, 1000 + inc, "start", "data", "starting", 0, inc)
        self.ev("n1", 1500, "+promoted", "master", "master", 1, 11, True, 1975)
        self.leases("n1", 11, 1, 1600, 4000)
        self.ev("n2", 1500, "+data", "data", "data", 1, 21)
        self.ev("n2", 1600, "+replica", "replica", "replica", 1, 21)
        self.ev("n3", 1500, "+data", "data", "data", 1, 31)
        self.faults.append({"t_ms": 4000.0, "kind": "kill9", "nodes": ["n1"]})
        self.ev("n2", 5400, "failover-step", "replica", "designating", 1, 21, step="designate")
        self.ev("n2", 5500, "+promoted", "master", "master", 2, 21, True, 5975)
        self.leases("n2", 21, 2, 5600, 9000)
        self.ev("n3", 5600, "+data", "data", "data", 2, 31)
        self.faults.append({"t_ms": 6000.0, "kind": "start", "nodes": ["n1"]})
        self.ev("n1", 6010, "start", "data", "starting", 0, 12)
        self.ev("n1", 6300, "+demoted", "replica", "replica", 2, 12)
        for i in range(1, 101):
            t1 = 1500 + i * 70
            self.workload.append({"client": "c0", "seq": i, "key": f"c0-{i:07d}", "node": "n2", "t0_ms": t1 - 5,
                                  "t1_ms": t1, "outcome": "ok"})
        self.workload.append({"client": "c0", "seq": 101, "key": "c0-0000101", "node": "n2", "t0_ms": 8600,
                              "t1_ms": 8700, "outcome": "unknown"})
        for n in ("n1", "n2", "n3"):
            self.snapshots.append({"t_ms": 8900.0, "cutoff_ms": 8800.0, "label": "final", "node": n,
                                   "ranges": to_ranges(f"c0-{i:07d}" for i in range(1, 101)), "count": 100})
        for n in ("n2", "n3"):
            self.observations.append({"t_ms": 1700.0, "observer": n, "master": "n1", "epoch": 1,
                                      "phase": "established", "role": "data", "state": "data", "acting": False})
            self.observations.append({"t_ms": 5700.0, "observer": n, "master": "n2", "epoch": 2,
                                      "phase": "established", "role": "data", "state": "data", "acting": n == "n2"})

    def write(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "events").mkdir(parents=True)
        (self.dir / "meta.json").write_text(json.dumps(self.meta))
        for n, evs in self.events.items():
            evs = sorted(evs, key=lambda e: (e["incarnation"], e["t_ms"]))
            (self.dir / "events" / f"{n}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
        for name, recs in (("faults", self.faults), ("workload", self.workload), ("snapshots", self.snapshots),
                           ("observations", self.observations)):
            (self.dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return self.dir


def verdict(directory):
    return check_history(History(directory))


def kinds(rep):
    return sorted({v.kind for v in rep.violations})


def expect_only(rep, kind, *words):
    """Exactly `kind` reported, and its message names every word."""
    check(kinds(rep) == [kind], f"expected only a {kind} violation, got {kinds(rep) or 'none'}: "
                                f"{[str(v) for v in rep.violations]}")
    text = " ".join(str(v) for v in rep.violations)
    for w in words:
        check(w in text, f"the {kind} report does not name {w!r}: {text}")


def synth(c):
    return Synth(c.dir / "history")


@test()
def chaos_checker_clean_synthetic_history_passes(c):
    s = synth(c)
    rep = verdict(s.write())
    check(rep.ok, f"clean history reported: {[str(v) for v in rep.violations]}")
    check(len(rep.intervals) == 2, f"expected 2 acting intervals, got {len(rep.intervals)}")
    check(rep.stats["writes_checked"] == 100, f"checked {rep.stats.get('writes_checked')} writes, expected 100")


@test()
def chaos_checker_reports_two_overlapping_masters(c):
    s = synth(c)
    # n3 claims the master role at epoch 3 while n2 still acts at epoch 2
    s.ev("n3", 7000, "+promoted", "master", "master", 3, 31, True, 7475)
    s.leases("n3", 31, 3, 7100, 7400)
    s.ev("n3", 7400, "+lease-lost", "replica", "replica", 3, 31)
    rep = verdict(s.write())
    expect_only(rep, "overlap", "n2", "n3", "epoch 2", "epoch 3")
    v = rep.violations[0]
    check(abs(v.times[0] - 7000) < 1 and abs(v.times[1] - 7400) < 1, f"overlap times {v.times}, expected 7000-7400")


@test()
def chaos_checker_counts_a_killed_masters_lease(c):
    s = synth(c)
    # n2 starts acting 300 ms after n1 was killed: n1's last bound (4.475 s) still held
    s.events["n2"] = [e for e in s.events["n2"] if e["t_ms"] < 5400]
    s.ev("n2", 4300, "+promoted", "master", "master", 2, 21, True, 4775)
    s.leases("n2", 21, 2, 4400, 9000)
    rep = verdict(s.write())
    expect_only(rep, "overlap", "n1", "n2")


@test()
def chaos_checker_reports_a_lost_acknowledged_write(c):
    s = synth(c)
    s.snapshots[2]["ranges"] = to_ranges(f"c0-{i:07d}" for i in range(1, 101) if i != 50)
    rep = verdict(s.write())
    expect_only(rep, "lost-write", "n3 lacks 1", "c0-0000050", "100 of them")


@test()
def chaos_checker_exempts_writes_before_a_full_outage(c):
    s = synth(c)
    for t, kind in ((8750.0, "kill9"), (8760.0, "start")):
        s.faults.append({"t_ms": t, "kind": kind, "nodes": ["n1", "n2", "n3"]})
    s.meta["end_ms"] = 8760.0
    s.snapshots = [dict(x, ranges={}, count=0) for x in s.snapshots]
    rep = verdict(s.write())
    check(rep.ok, f"writes before a full outage were required: {[str(v) for v in rep.violations]}")
    check(rep.stats["writes_exempt"] == 100, f"exempt {rep.stats.get('writes_exempt')}, expected 100")


@test()
def chaos_checker_reports_an_epoch_going_back(c):
    s = synth(c)
    s.ev("n3", 8000, "+data", "data", "data", 1, 31)
    rep = verdict(s.write())
    expect_only(rep, "epoch", "n3", "epoch 2", "epoch 1")


def _full_restart_then_epoch_1(s):
    """Every node killed at 9.0 s and started again; n1 then acts at epoch 1,
    an epoch below the 2 that n2 acted at before the outage."""
    for t, kind in ((9000.0, "kill9"), (9100.0, "start")):
        s.faults.append({"t_ms": t, "kind": kind, "nodes": ["n1", "n2", "n3"]})
    s.ev("n1", 9110, "start", "data", "starting", 0, 13)
    s.ev("n1", 9500, "+promoted", "master", "master", 1, 13, True, 9975)
    s.leases("n1", 13, 1, 9600, 10000)
    s.meta["end_ms"] = 10000.0
    return s


@test()
def chaos_checker_reports_an_epoch_reused_after_a_durable_full_restart(c):
    s = _full_restart_then_epoch_1(synth(c))
    s.meta["in_memory"] = False
    rep = verdict(s.write())
    expect_only(rep, "epoch", "n1", "epoch 1", "epoch 2", "went back or was reused")


@test()
def chaos_checker_lets_in_memory_epochs_restart_after_a_full_outage(c):
    s = _full_restart_then_epoch_1(synth(c))
    s.meta["in_memory"] = True
    rep = verdict(s.write())
    check("epoch" not in kinds(rep), f"in-memory epochs restarting after a full outage were reported: "
                                     f"{[str(v) for v in rep.violations]}")


@test()
def chaos_checker_reports_two_masters_named_for_one_epoch(c):
    s = synth(c)
    s.observations.append({"t_ms": 6000.0, "observer": "n1", "master": "n3", "epoch": 2, "phase": "established",
                           "role": "replica", "state": "replica", "acting": False})
    rep = verdict(s.write())
    expect_only(rep, "epoch", "epoch 2", "n2", "n3")


@test()
def chaos_checker_reports_a_late_demotion(c):
    s = synth(c)
    # the restarted old master keeps reporting master until 13.5 s (promise 2 s + 3 s start-up)
    s.events["n1"] = [e for e in s.events["n1"] if not (e["incarnation"] == 12 and e["event"] == "+demoted")]
    s.ev("n1", 6300, "+resumed", "master", "master", 2, 12)
    s.ev("n1", 13500, "+demoted", "replica", "replica", 2, 12)
    s.meta["end_ms"] = 14000.0
    s.leases("n2", 21, 2, 9000, 14000)
    rep = verdict(s.write())
    expect_only(rep, "demotion", "n1", "n2", "epoch 1", "epoch 2")


@test()
def chaos_checker_reports_a_demotion_that_never_comes_once_its_time_ran_out(c):
    s = synth(c)
    # the restarted old master never reports a non-master role
    s.events["n1"] = [e for e in s.events["n1"] if not (e["incarnation"] == 12 and e["event"] == "+demoted")]
    s.ev("n1", 6300, "+resumed", "master", "master", 2, 12)
    # while the history is still short of its promised time (6 s + 2 s + 3 s): no verdict yet
    s.meta["end_ms"] = 10500.0
    rep = verdict(s.write())
    check("demotion" not in kinds(rep), f"a demotion still within its time was reported: {[str(v) for v in rep.violations]}")
    s.meta["end_ms"] = 14000.0
    s.leases("n2", 21, 2, 9000, 14000)
    rep = verdict(s.write())
    expect_only(rep, "demotion", "n1", "never reported a non-master role")


@test()
def chaos_checker_reports_a_late_demotion_after_a_pause(c):
    s = synth(c)
    # n2 paused at 7 s while master; n3 takes over; n2 resumed at 9.5 s but
    # reports replica only at 12.5 s (3 s > promise 2 s)
    s.events["n2"] = [e for e in s.events["n2"] if e["t_ms"] < 7000]
    s.faults.append({"t_ms": 7000.0, "kind": "pause", "nodes": ["n2"]})
    s.ev("n3", 8600, "+promoted", "master", "master", 3, 31, True, 9075)
    s.leases("n3", 31, 3, 8700, 13000)
    s.faults.append({"t_ms": 9500.0, "kind": "resume", "nodes": ["n2"]})
    s.ev("n2", 12500, "+demoted", "replica", "replica", 3, 21)
    s.meta["end_ms"] = 13000.0
    rep = verdict(s.write())
    expect_only(rep, "demotion", "n2", "n3", "resumed")


@test()
def chaos_checker_reports_no_master_while_faults_are_quiet(c):
    s = synth(c)
    # n2 promotes only 3 s after the kill (promise: 2 s)
    s.events["n2"] = [e for e in s.events["n2"] if e["t_ms"] < 5400]
    s.ev("n2", 7000, "+promoted", "master", "master", 2, 21, True, 7475)
    s.leases("n2", 21, 2, 7100, 9000)
    rep = verdict(s.write())
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "n1", "n2")


def _n2_promotes_at_7s(s):
    """n2 promotes only at 7 s (rel. 6 s) instead of 5.5 s; the liveness verdict."""
    s.events["n2"] = [e for e in s.events["n2"] if e["t_ms"] < 5400]
    s.ev("n2", 7000, "+promoted", "master", "master", 2, 21, True, 7475)
    s.leases("n2", 21, 2, 7100, 9000)
    return check_history(History(s.write()), kinds=("liveness",))


def _cut_off_n1(s, fault):
    """n1 is cut off at 4 s (rel. 3 s) by `fault` instead of killed; n2
    promotes only at 7 s (rel. 6 s): 3 s without a master on the connected
    side, where 2 s is promised."""
    s.faults = [f for f in s.faults if f["kind"] != "kill9" and f["t_ms"] != 6000.0] + fault
    s.faults.append({"t_ms": 8500.0, "kind": "heal"})
    s.faults.sort(key=lambda f: f["t_ms"])
    return _n2_promotes_at_7s(s)


@test()
def chaos_checker_reports_no_master_on_the_connected_side_of_a_partition(c):
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "partition", "groups": [["n2", "n3"], ["n1"]]}])
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "majority was connected (n2,n3)")


@test()
def chaos_checker_reports_no_master_on_the_connected_side_of_cuts(c):
    both = [[a, b, 100] for a in ("n1",) for b in ("n2", "n3")] + [[b, "n1", 100] for b in ("n2", "n3")]
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "cuts", "cuts": both}])
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "majority was connected (n2,n3)")
    # one way only (n1 deaf): n1 and the others are not connected either
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "cuts", "cuts": [["n2", "n1", 100], ["n3", "n1", 100]]}])
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "(n2,n3)")


def _late_failover_across_a_member_change(s, before, after):
    """Members `before` at the start, `after` from a settled change at 3 s
    (rel. 2 s); n1 killed at 4 s, n2 promotes only at 7 s: 3 s without a
    master while n2 and n3 run."""
    s.meta["members"] = before
    s.faults.append({"t_ms": 3000.0, "kind": "members", "members": after, "version": 2})
    s.faults.sort(key=lambda f: f["t_ms"])
    return _n2_promotes_at_7s(s)


@test()
def chaos_checker_counts_the_majority_in_the_current_configuration(c):
    # 5 members shrunk to n1..n3 (n4, n5 never ran): n2 and n3 are 2 of 3,
    # a majority, so the 3 s gap breaks the promise.
    rep = _late_failover_across_a_member_change(synth(c), ["n1", "n2", "n3", "n4", "n5"], ["n1", "n2", "n3"])
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "n1", "n2")
    # grown from 3 to 5 with the new ones not running: 2 of 5 is no
    # majority, nothing is promised.
    rep = _late_failover_across_a_member_change(synth(c), ["n1", "n2", "n3"], ["n1", "n2", "n3", "n4", "n5"])
    check(rep.ok, f"liveness judged without a majority of the grown configuration: "
                  f"{[str(v) for v in rep.violations]}")


@test()
def chaos_checker_does_not_judge_liveness_under_partial_loss(c):
    # 50% loss each way, or message faults: connectivity is luck, the promise does not apply
    lossy = [[a, b, 50] for a in ("n1", "n2", "n3") for b in ("n1", "n2", "n3") if a != b]
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "cuts", "cuts": lossy}])
    check(rep.ok, f"liveness judged under partial loss: {[str(v) for v in rep.violations]}")
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "fault", "nodes": ["n2"], "args": ["delay", "n3", "50"]}])
    check(rep.ok, f"liveness judged under a message fault: {[str(v) for v in rep.violations]}")


@test()
def chaos_checker_judges_liveness_under_duplicates(c):
    rep = _cut_off_n1(synth(c), [{"t_ms": 4000.0, "kind": "partition", "groups": [["n2", "n3"], ["n1"]]},
                                 {"t_ms": 4000.0, "kind": "dups", "dups": {"n2": 20, "n3": 20}}])
    expect_only(rep, "liveness", "from 3.000 s to 6.000 s", "(n2,n3)")


@test()
def chaos_checker_short_pause_keeps_the_master_serving(c):
    s = synth(c)
    # n2 paused 300 ms at 6 s and resumed: it keeps acting (no failover); the
    # 3 s after the resume must not count as a time without a master
    s.faults.append({"t_ms": 6000.0, "kind": "pause", "nodes": ["n2"]})
    s.faults.append({"t_ms": 6300.0, "kind": "resume", "nodes": ["n2"]})
    s.faults.sort(key=lambda f: f["t_ms"])
    rep = verdict(s.write())
    check(rep.ok, f"a short pause was reported: {[str(v) for v in rep.violations]}")


@test()
def chaos_checker_reports_a_crash(c):
    s = synth(c)
    s.faults.append({"t_ms": 8000.0, "kind": "exited", "node": "n3", "code": 134, "last_line": "Aborted"})
    rep = verdict(s.write())
    expect_only(rep, "crash", "n3", "134")


# ---------------------------------------------------------------------------
# The recorded history of a real run

def recorded(c):
    check(RECORDED.is_dir(), f"{RECORDED} is missing")
    d = c.dir / "recorded"
    shutil.copytree(RECORDED, d)
    return d


def read_jsonl(p):
    return [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]


def write_jsonl(p, recs):
    Path(p).write_text("".join(json.dumps(r) + "\n" for r in recs))


def masters(d):
    """[(node, first acting event, last acting event)] in the recorded run."""
    rep = check_history(History(d))
    return rep.intervals


@test()
def chaos_checker_recorded_history_passes(c):
    d = recorded(c)
    rep = verdict(d)
    check(rep.ok, f"recorded clean history reported: {[str(v) for v in rep.violations]}")
    check(len({iv.node for iv in rep.intervals}) >= 2, "the recorded run should contain a failover")
    r = subprocess.run([sys.executable, str(CHAOS), "check", str(d)], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stdout.startswith("PASS"), f"rolegrid-chaos check: {r.returncode} {r.stdout[:300]}")


@test()
def chaos_checker_recorded_planted_overlap(c):
    d = recorded(c)
    ivs = masters(d)
    old, new = ivs[0], next(iv for iv in ivs if iv.node != ivs[0].node)
    # the old master logs one more lease bound, reaching 200 ms into the new master's time
    evs = read_jsonl(d / "events" / f"{old.node}.jsonl")
    last = max(i for i, e in enumerate(evs) if e.get("acting_master") and e.get("incarnation") == old.incarnation)
    extra = copy.deepcopy(evs[last])
    extra.update(event="lease", t_ms=evs[last]["t_ms"] + 1, lease_bound_ms=new.start + 200)
    evs.insert(last + 1, extra)
    write_jsonl(d / "events" / f"{old.node}.jsonl", evs)
    rep = verdict(d)
    expect_only(rep, "overlap", old.node, new.node)
    r = subprocess.run([sys.executable, str(CHAOS), "check", str(d)], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and r.stdout.startswith("FAIL") and "[overlap]" in r.stdout,
          f"rolegrid-chaos check did not fail: {r.returncode} {r.stdout[:400]}")


@test()
def chaos_checker_recorded_planted_lost_write(c):
    d = recorded(c)
    snaps = read_jsonl(d / "snapshots.jsonl")
    acked = [w for w in read_jsonl(d / "workload.jsonl") if w["outcome"] == "ok"]
    victim = acked[len(acked) // 2]
    s = next(x for x in reversed(snaps) if x["label"] == "final")
    client, seq = victim["key"].rsplit("-", 1)
    seq = int(seq)
    s["ranges"][client] = [r for lo, hi in s["ranges"][client] for r in ([lo, seq - 1], [seq + 1, hi])
                           if r[0] <= r[1]] if any(lo <= seq <= hi for lo, hi in s["ranges"][client]) else s["ranges"][client]
    write_jsonl(d / "snapshots.jsonl", snaps)
    rep = verdict(d)
    expect_only(rep, "lost-write", s["node"], victim["key"])


@test()
def chaos_checker_recorded_planted_epoch_going_back(c):
    d = recorded(c)
    ivs = masters(d)
    new = next(iv for iv in ivs if iv.node != ivs[0].node)
    evs = read_jsonl(d / "events" / f"{new.node}.jsonl")
    i = next(i for i, e in enumerate(evs) if e.get("acting_master") and e["t_ms"] >= new.start)
    back = copy.deepcopy(evs[i + 1])
    back.update(epoch=new.epoch - 1, event="note", text="planted", t_ms=evs[i + 1]["t_ms"])
    evs.insert(i + 2, back)
    write_jsonl(d / "events" / f"{new.node}.jsonl", evs)
    rep = verdict(d)
    expect_only(rep, "epoch", new.node, f"epoch {new.epoch} ", f"to epoch {new.epoch - 1}")


@test()
def chaos_checker_recorded_planted_late_demotion(c):
    d = recorded(c)
    ivs = masters(d)
    old = ivs[0]
    faults = read_jsonl(d / "faults.jsonl")
    restart = next(f for f in faults if f["kind"] == "start" and old.node in f["nodes"] and f["t_ms"] > old.start + 1)
    evs = read_jsonl(d / "events" / f"{old.node}.jsonl")
    # the restarted old master reports `master` for 6 s before its real events
    late = 6000.0
    out = []
    for e in evs:
        if e.get("incarnation") != old.incarnation and e["t_ms"] >= restart["t_ms"] and e.get("state") != "starting":
            e = dict(e, t_ms=e["t_ms"] + late)
        out.append(e)
    first = next(e for e in out if e.get("incarnation") != old.incarnation and e.get("state") != "starting")
    fake = dict(first, t_ms=restart["t_ms"] + 300, event="+resumed", role="master", state="master", acting_master=False)
    out.insert(out.index(first), fake)
    write_jsonl(d / "events" / f"{old.node}.jsonl", out)
    rep = verdict(d)
    check("demotion" in kinds(rep), f"no demotion violation: {[str(v) for v in rep.violations]}")
    text = " ".join(str(v) for v in rep.violations if v.kind == "demotion")
    check(old.node in text and "restarted" in text, f"demotion report: {text}")


# ---------------------------------------------------------------------------
# The service check (tools/chaos/service.py): synthetic service events on
# the synthetic history. n1's master hook runs at 1.55 s (epoch 1); its
# watchdog is kept alive until the kill at 4.0 s (last keepalive 3.9 s,
# timeout 450 ms: expiry 4.35 s); n2's master hook starts at 5.55 s and its
# service runs to the end.

def with_service(s, n1_watchdog=True, n2_start=5550):
    s.ev("n1", 1550, "hook-started", "master", "master", 1, 11, True, 1975, hook="master", pid=100)
    s.ev("n1", 1570, "hook", "master", "master", 1, 11, True, 1975, hook="master", ran=True, status=0, took_ms=20)
    s.ev("n2", n2_start, "hook-started", "master", "master", 2, 21, True, 5975, hook="master", pid=200)
    wd = s.dir / "watchdog"
    s.watchdog = {"n1": [], "n2": []}
    if n1_watchdog:
        s.watchdog["n1"] = ([{"event": "open", "t_ms": 1500}, {"event": "timeout", "timeout_ms": 450, "t_ms": 1500}]
                            + [{"event": "keepalive", "t_ms": t} for t in range(1600, 4000, 100)])
    s.watchdog["n2"] = ([{"event": "open", "t_ms": 5500}, {"event": "timeout", "timeout_ms": 450, "t_ms": 5500}]
                        + [{"event": "keepalive", "t_ms": t} for t in range(5600, 9000, 100)])
    d = s.write()
    wd.mkdir()
    for n, ops in s.watchdog.items():
        write_jsonl(wd / f"{n}.jsonl", ops)
    return d


@test()
def chaos_checker_service_ends_at_a_killed_masters_watchdog_expiry(c):
    rep = verdict(with_service(synth(c)))
    check(rep.ok, f"clean history with services reported: {[str(v) for v in rep.violations]}")
    check(rep.stats.get("services") == 2, f"service intervals: {rep.stats}")


@test()
def chaos_checker_reports_a_killed_masters_service_without_a_watchdog(c):
    rep = verdict(with_service(synth(c), n1_watchdog=False))
    expect_only(rep, "service", "n1", "n2", "the end of the run")


@test()
def chaos_checker_reports_a_service_started_before_the_old_ones_watchdog_expired(c):
    # n2's master hook at 4.2 s (planted): n1's watchdog runs until 4.35 s
    rep = check_history(History(with_service(synth(c), n2_start=4200)), kinds=("service",))
    expect_only(rep, "service", "n1", "n2", "its watchdog expired", "for 150 ms")


@test()
def chaos_checker_reports_a_step_down_hook_ending_after_the_new_master_hook(c):
    s = synth(c)
    # n1's step-down (replica) hook, running 3.9-5.7 s, ends 150 ms after n2's master hook starts
    s.ev("n1", 5700, "hook", "replica", "replica", 1, 11, hook="replica", ran=True, status=0, took_ms=1800)
    rep = check_history(History(with_service(s, n1_watchdog=False)), kinds=("service",))
    expect_only(rep, "service", "n1", "n2", "its replica hook ended", "for 150 ms")


@test(timeout=180)
def chaos_service_check_catches_a_switchover_that_does_not_wait(c):
    """tests/chaos/switchover-slow-stepdown.chaos run with the planted hole
    `fault master early-handover on` before each switchover: the new
    master's hook starts while the old one's 500 ms step-down hook runs, and
    the service check fails the run. (The real file passes in the suite.)"""
    src = (REPO / "tests" / "chaos" / "switchover-slow-stepdown.chaos").read_text()
    planted = src.replace("\nswitchover to ", "\nfault master early-handover on\nswitchover to ")
    check(planted.count("early-handover on\nswitchover to") == 2, "the scenario no longer has two switchovers")
    p = c.dir / "planted.chaos"
    p.write_text(planted)
    r = subprocess.run([sys.executable, str(CHAOS), "run", str(p), "--keep", str(c.dir / "history")],
                       capture_output=True, text=True, timeout=170)
    out = r.stdout
    check(r.returncode == 1 and "[service] two services" in out,
          f"planted early handover not caught: exit {r.returncode}\n{out[-1500:]}")
    rep = verdict(c.dir / "history")
    check(kinds(rep) in (["service"], ["liveness", "service"]), f"unexpected kinds: {[str(v) for v in rep.violations]}")


# ---------------------------------------------------------------------------
# The prepare check (tools/chaos/prepares.py): n2's prepare for n1's
# failure at epoch 1 runs 5.20-5.35 s in the synthetic history.

def with_prepare(s):
    s.ev("n2", 5200, "hook-started", "replica", "preparing", 1, 21, hook="prepare", pid=300, for_master="n1",
         for_epoch=1)
    s.ev("n2", 5350, "hook", "replica", "preparing", 1, 21, hook="prepare", ran=True, status=0, took_ms=150)
    return s


@test()
def chaos_checker_one_prepare_passes(c):
    rep = verdict(with_prepare(synth(c)).write())
    check(rep.ok and rep.stats.get("prepares") == 1, f"one prepare: {rep.stats} {[str(v) for v in rep.violations]}")


@test()
def chaos_checker_reports_two_prepares_for_one_failing_master(c):
    s = with_prepare(synth(c))
    s.ev("n3", 5300, "hook-started", "data", "preparing", 1, 31, hook="prepare", pid=400, for_master="n1",
         for_epoch=1)
    s.ev("n3", 5500, "hook", "data", "preparing", 1, 31, hook="prepare", ran=True, status=1, took_ms=200)
    rep = check_history(History(s.write()), kinds=("prepare",))
    expect_only(rep, "prepare", "n1 at epoch 1", "n2", "n3")


@test()
def chaos_checker_ends_a_killed_nodes_prepare_at_the_kill(c):
    s = with_prepare(synth(c))
    s.ev("n3", 4500, "hook-started", "data", "preparing", 1, 31, hook="prepare", pid=400, for_master="n1",
         for_epoch=1)
    s.faults.append({"t_ms": 4800.0, "kind": "kill9", "nodes": ["n3"]})
    s.faults.append({"t_ms": 5900.0, "kind": "start", "nodes": ["n3"]})
    rep = check_history(History(s.write()), kinds=("prepare",))
    check(rep.ok, f"a killed node's prepare overlapped: {[str(v) for v in rep.violations]}")
    s.faults = [f for f in s.faults if f.get("nodes") != ["n3"]]  # never killed: it runs to the end
    rep = check_history(History(s.write()), kinds=("prepare",))
    expect_only(rep, "prepare", "n2", "n3")


# ---------------------------------------------------------------------------
# The partial-fault verbs of the scenario language: good lines parse to the
# steps the runner expects; bad ones fail with a one-line reason and the line.

@test()
def chaos_scenario_partial_fault_verbs_parse_and_refuse_bad_lines(c):
    from chaos.scenario import ParseError, parse
    sc = parse("t.chaos", "nodes 5\nwait master within 8s as OLD\ncut OLD -> others 30%\ncut others <-> OLD\n"
                          "reach OLD only replica\nring n2,n1\ndup any 20%\nheal\n")
    steps = [(s.cmd, s.args) for s in sc.steps]
    check(steps[1] == ("cut", {"src": ["OLD"], "dst": "others", "both": False, "percent": 30.0}), f"cut: {steps[1]}")
    check(steps[2][1]["both"] and steps[2][1]["percent"] == 100.0, f"cut both ways: {steps[2]}")
    check(steps[3] == ("reach", {"target": ["OLD"], "only": ["replica"]}), f"reach: {steps[3]}")
    check(steps[4] == ("ring", {"order": ["n2", "n1"]}), f"ring: {steps[4]}")
    check(steps[5] == ("dup", {"targets": ["any"], "percent": 20.0}), f"dup: {steps[5]}")
    for line, words in (("cut n1 => n2", "usage: cut"), ("cut n1 -> n2 150%", "not a percentage"),
                        ("cut others -> others", "'others' on one side only"), ("dup n1 0%", "not a percentage"),
                        ("reach n1,n2 only n3", "one node"), ("cut n7 -> n1", "not a node of this scenario")):
        try:
            parse("t.chaos", f"nodes 5\n{line}\n")
            check(False, f"'{line}' parsed")
        except ParseError as e:
            check(words in str(e) and ":2:" in str(e), f"'{line}': {e}")
    try:
        parse("t.chaos", "nodes 3\nring\n")
        check(False, "a ring of 3 parsed")
    except ParseError as e:
        check("at least 4 nodes" in str(e), str(e))
