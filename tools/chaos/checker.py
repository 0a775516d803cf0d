"""The history checker: rolegrid's promises, judged from a recorded history
alone (tools/chaos/history.py), so `rolegrid-chaos check DIR` can re-judge
any run and the tests can feed it histories with planted violations.

    report = check(History(dir))
    for v in report.violations: print(v)

What it checks (each violation names the nodes, epochs and times):

  overlap      never two nodes acting as master at overlapping times. A
               node's acting interval runs from an event of it with
               acting_master true to the last lease_bound_ms it logged in
               that stretch, cut short by a later event of it with
               acting_master false. A node that dies (kill -9) or is paused
               keeps its interval to its bound: only its own log can end it.
  epoch        per node process (incarnation), the epoch it logs never goes
               back; one master per epoch (the nodes acting at an epoch, and
               the established master every node's role table names for it);
               over the whole cluster's life, restarts of every node
               included, a master process acts only at an epoch above every
               epoch another process acted at before it. With --in-memory
               state (meta in_memory, and histories that predate it) a
               moment with every node down starts a new era of epochs.
  lost-write   every acknowledged write is held by every live node in every
               snapshot taken after healing (writes acknowledged before a
               moment with every node down are exempt: the grid is memory;
               a kill of every node counts from when the last one was reaped).
  liveness     while a majority of members is connected (running, not
               paused, every pair of them on one side of any partition and
               not cut either way; no partial fault anywhere: no lossy cut
               or message fault; duplicates do not count) the cluster is
               never without a
               master acting among such a majority for longer than the
               promised time (default 2 x failure-timeout + 1 s; +startup
               allowance after a majority (re)starts). With no fault at all
               that majority is every running member. A killed, paused or
               cut-off master stops counting at once.
  demotion     an old master restored (resumed, healed, restarted) while a
               newer master acts reports a non-master role within the
               promised time (+startup allowance after a restart).
  crash        a node exited without being told to.
  prepare      never two nodes running `prepare` for the same failing
               master and epoch at once (tools/chaos/prepares.py).
  service      never two nodes running the master's service at once: from
               a node's `master` hook start to its next step-down hook's
               end or its (fake) watchdog's expiry (tools/chaos/service.py).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

from .history import parse_key
from .intervals import overlap_violations
from .prepares import check_prepares
from .service import check_service

ROLE_EVENTS_NONMASTER = ("replica", "data", "witness")
STARTUP_ALLOWANCE_MS = 3000.0


@dataclass
class Violation:
    kind: str
    message: str
    nodes: tuple = ()
    epochs: tuple = ()
    times: tuple = ()

    def __str__(self):
        return f"[{self.kind}] {self.message}"


@dataclass
class Interval:
    """One stretch of a node acting as master (times in monotonic ms)."""
    node: str
    incarnation: object
    start: float
    bound: float
    end: float = 0.0
    epochs: set = field(default_factory=set)
    end_reason: str = "its last lease bound"

    @property
    def epoch(self):
        return max(self.epochs) if self.epochs else 0


@dataclass
class Report:
    violations: list
    intervals: list
    stats: dict

    @property
    def ok(self):
        return not self.violations


# ---------------------------------------------------------------------------
# Acting intervals

def _by_incarnation(events):
    """[(incarnation, [events])] in file order."""
    out = []
    for ev in events:
        if "_bad_line" in ev or "t_ms" not in ev:
            continue
        inc = ev.get("incarnation")
        if not out or out[-1][0] != inc:
            out.append((inc, []))
        out[-1][1].append(ev)
    return out


def acting_intervals(h):
    intervals = []
    for nid, events in h.events.items():
        for inc, evs in _by_incarnation(events):
            cur = None
            for ev in evs:
                if ev.get("acting_master"):
                    bound = float(ev.get("lease_bound_ms") or 0)
                    if cur is None:
                        cur = Interval(nid, inc, float(ev["t_ms"]), bound)
                    cur.bound = max(cur.bound, bound)
                    if ev.get("epoch") is not None:
                        cur.epochs.add(ev["epoch"])
                elif cur is not None:
                    t = float(ev["t_ms"])
                    if t < cur.bound:
                        cur.end = t
                        cur.end_reason = f"its event {ev.get('event')} at {h.rel(t):.3f} s"
                    else:
                        cur.end = cur.bound
                    intervals.append(cur)
                    cur = None
            if cur is not None:
                cur.end = cur.bound
                intervals.append(cur)
    for iv in intervals:
        iv.end = max(iv.end, iv.start)
    intervals.sort(key=lambda iv: iv.start)
    return intervals


def check_overlap(h, intervals):
    return overlap_violations(intervals, Violation, "overlap", lambda a, iv, ms: (
        f"two masters for {ms:.0f} ms: {a.node} (epoch {a.epoch}) acted from {h.rel(a.start):.3f} s "
        f"until {h.rel(a.end):.3f} s ({a.end_reason}) and {iv.node} (epoch {iv.epoch}) from "
        f"{h.rel(iv.start):.3f} s until {h.rel(iv.end):.3f} s ({iv.end_reason})"))


# ---------------------------------------------------------------------------
# Epochs

def check_epochs(h, intervals):
    out = []
    for nid, events in h.events.items():
        for inc, evs in _by_incarnation(events):
            prev = None
            for ev in evs:
                e = ev.get("epoch")
                if e is None:
                    continue
                if prev is not None and e < prev[0]:
                    out.append(Violation(
                        "epoch",
                        f"{nid} (incarnation {inc}) went back from epoch {prev[0]} (event {prev[1]} at "
                        f"{h.rel(prev[2]):.3f} s) to epoch {e} (event {ev.get('event')} at {h.rel(ev['t_ms']):.3f} s)",
                        (nid,), (prev[0], e), (prev[2], ev["t_ms"])))
                    break  # one report per process is enough
                prev = (e, ev.get("event"), ev["t_ms"])
    # With durable state the role table outlives every restart: one era. In
    # memory, after a moment with every node down the epochs start again, so
    # "one master per epoch" holds within each era.
    outages = FaultState(h).outages if h.meta.get("in_memory", True) else []
    out += _epochs_grow(h, intervals, outages)
    per_epoch = {}
    for iv in intervals:
        era = bisect.bisect_right(outages, iv.start)
        for e in iv.epochs:
            per_epoch.setdefault((era, e), {}).setdefault(iv.node, iv)
    for (_era, e), nodes in sorted(per_epoch.items()):
        if len(nodes) > 1:
            desc = ", ".join(f"{n} from {h.rel(iv.start):.3f} s" for n, iv in sorted(nodes.items()))
            out.append(Violation("epoch", f"epoch {e} has more than one master acting: {desc}",
                                 tuple(sorted(nodes)), (e,), tuple(iv.start for iv in nodes.values())))
    named = {}
    for ob in h.observations:
        if ob.get("phase") != "established" or not ob.get("master"):
            continue
        era = bisect.bisect_right(outages, ob["t_ms"])
        named.setdefault((era, ob["epoch"]), {}).setdefault(ob["master"], ob)
    for (_era, e), masters in sorted(named.items()):
        if len(masters) > 1:
            desc = "; ".join(f"{ob['observer']} saw {m} at {h.rel(ob['t_ms']):.3f} s" for m, ob in sorted(masters.items()))
            out.append(Violation("epoch", f"nodes disagree on the established master of epoch {e}: {desc}",
                                 tuple(sorted(masters)), (e,), tuple(ob["t_ms"] for ob in masters.values())))
    return out


def _epochs_grow(h, intervals, outages):
    """Within an era, each master process acts at an epoch above every epoch
    any other process acted at before it started."""
    out = []
    best = {}  # era -> (epoch, interval) of the highest epoch acted at so far
    for iv in sorted(intervals, key=lambda x: x.start):
        if not iv.epochs:
            continue
        era = bisect.bisect_right(outages, iv.start)
        prev = best.get(era)
        low = min(iv.epochs)
        if prev and (prev[1].node, prev[1].incarnation) != (iv.node, iv.incarnation) and low <= prev[0]:
            out.append(Violation(
                "epoch",
                f"{iv.node} (incarnation {iv.incarnation}) acted as master at epoch {low} from {h.rel(iv.start):.3f} s, "
                f"not above epoch {prev[0]} at which {prev[1].node} (incarnation {prev[1].incarnation}) acted from "
                f"{h.rel(prev[1].start):.3f} s: an epoch went back or was reused",
                (iv.node, prev[1].node), (low, prev[0]), (iv.start, prev[1].start)))
        if not prev or iv.epoch > prev[0]:
            best[era] = (iv.epoch, iv)
    return out


# ---------------------------------------------------------------------------
# What the tool did: node states over time

class FaultState:
    """Replays faults.jsonl: which nodes run, are paused, partitioned, cut
    or under message faults, after each record."""

    def __init__(self, h):
        self.h = h
        self.members = list(h.meta.get("members") or h.nodes)
        self.up = set()
        self.paused = set()
        self.partitioned = False
        self.side = {}  # node -> bridge (absent: 0)
        self.cuts = {}  # (from, to) -> percent dropped
        self.dups = {}  # node -> percent of packets to it duplicated
        self.msg_faults = set()
        self.steps = []  # (t, kind, record, quiet, up_count, connected majorities)
        self.deaths = {}  # node -> [t of kill/stop/exit]
        self.starts = {}  # node -> [t of start]
        self.outages = []  # t when no node was running
        self.step_majority = []  # the majority size after each step (member changes move it)
        for rec in h.faults:
            self._apply(rec)
            self.steps.append((rec["t_ms"], rec["kind"], rec, self.quiet(), len(self.up), self.majorities()))
            self.step_majority.append(self.majority)

    def _nodes(self, rec):
        if "nodes" in rec:
            return list(rec["nodes"])
        if "node" in rec:
            return [rec["node"]]
        return []

    def _apply(self, rec):
        k = rec["kind"]
        t = rec["t_ms"]
        ns = self._nodes(rec)
        if k == "start":
            self.up.update(ns)
            for n in ns:
                self.starts.setdefault(n, []).append(t)
                self.msg_faults.discard(n)  # a new process starts with no fault rules
        elif k in ("kill9", "stop", "exited"):
            for n in ns:
                if n in self.up:
                    self.deaths.setdefault(n, []).append(t)
                self.up.discard(n)
                self.paused.discard(n)
                self.msg_faults.discard(n)
            if not self.up and k != "stop":
                self.outages.append(rec.get("done_ms", t))  # the last process died by then
        elif k == "stopped":
            # a graceful stop ends when the processes have exited (they may
            # acknowledge writes between SIGTERM and their exit)
            if not self.up:
                self.outages.append(t)
        elif k == "pause":
            self.paused.update(ns)
        elif k == "resume":
            self.paused.difference_update(ns)
        elif k == "partition":
            self.partitioned = True
            for side, group in enumerate(rec.get("groups") or []):
                for n in group:
                    self.side[n] = side
        elif k == "heal":
            self.partitioned = False
            self.side, self.cuts, self.dups = {}, {}, {}
        elif k == "cuts":
            self.cuts = {(a, b): float(p) for a, b, p in rec.get("cuts") or []}
        elif k == "dups":
            self.dups = dict(rec.get("dups") or {})
        elif k == "fault":
            self.msg_faults.update(ns)
        elif k == "fault-clear":
            self.msg_faults.difference_update(ns)
        elif k == "members":
            # a settled member change: majorities count in the new configuration
            self.members = list(rec["members"])

    @property
    def majority(self):
        return len(self.members) // 2 + 1

    def quiet(self):
        working = len(self.up - self.paused)
        return (not self.paused and not self.partitioned and not self.cuts and not self.dups
                and not self.msg_faults and working >= self.majority)

    def connected(self, a, b):
        return (self.side.get(a, 0) == self.side.get(b, 0) and (a, b) not in self.cuts
                and (b, a) not in self.cuts)

    def majorities(self):
        """The maximal sets of at least a majority of members that run, are
        not paused and are pairwise connected both ways, as a frozenset of
        frozensets; empty when there is none or a partial fault (a lossy
        cut, a message fault) makes connectivity a matter of luck;
        duplicates leave it as it is."""
        if self.msg_faults or any(p < 100 for p in self.cuts.values()):
            return frozenset()
        working = sorted(n for n in self.up - self.paused if n in self.members)
        found = []
        for size in range(len(working), self.majority - 1, -1):
            for group in itertools.combinations(working, size):
                g = frozenset(group)
                if any(g <= f for f in found):
                    continue
                if all(self.connected(a, b) for a, b in itertools.combinations(group, 2)):
                    found.append(g)
        return frozenset(found)

    def connected_periods(self, end):
        """[(start, stop, cold, majorities, quiet)]: maximal periods with the
        same non-empty set of connected majorities; cold: it began with a
        majority (re)starting (or the run starting); quiet: no fault at its
        start."""
        periods = []
        cur = None
        prev_up = 0
        for (t, kind, rec, quiet, up, groups), majority in zip(self.steps, self.step_majority):
            if cur is not None and groups != cur[3]:
                cur[1] = t
                periods.append(tuple(cur))
                cur = None
            if groups and cur is None:
                cur = [t, None, prev_up < majority, groups, quiet]
            prev_up = up
        if cur is not None:
            cur[1] = max(end, cur[0])
            periods.append(tuple(cur))
        return periods

    def last_outage_before(self, t):
        i = bisect.bisect_left(self.outages, t)
        return self.outages[i - 1] if i > 0 else None


# ---------------------------------------------------------------------------
# Liveness and demotion

def _promise(h):
    ft = float(h.meta.get("failure_timeout_ms", 1000))
    return float(h.meta.get("promise_ms") or (2 * ft + 1000)), float(h.meta.get("demote_promise_ms") or h.meta.get("promise_ms") or (2 * ft + 1000))


def _serving_intervals(intervals, fs):
    """Acting intervals without the node's dead or paused stretches: for
    liveness, a killed or stopped master serves nobody even though its lease
    still fences the others (a resumed one may serve again)."""
    out = []
    off = {}  # node -> [(from, to)] when it could not serve
    since = {}
    for t, kind, rec, _q, _u, _g in fs.steps:
        for n in fs._nodes(rec):
            if kind in ("kill9", "stop", "exited", "pause") and n not in since:
                since[n] = t
            elif kind in ("resume", "start") and n in since:
                off.setdefault(n, []).append((since.pop(n), t))
    for n, t in since.items():
        off.setdefault(n, []).append((t, float("inf")))
    for iv in intervals:
        pieces = [(iv.start, iv.end)]
        for a, b in off.get(iv.node, []):
            nxt = []
            for s0, e0 in pieces:
                if b <= s0 or a >= e0:
                    nxt.append((s0, e0))
                    continue
                if s0 < a:
                    nxt.append((s0, a))
                if b < e0:
                    nxt.append((b, e0))
            pieces = nxt
        out += [(s0, e0, iv.node) for s0, e0 in pieces if e0 > s0]
    out.sort()
    return out


def _gaps(serving, start, stop, members):
    """Stretches of [start, stop) with none of `members` serving."""
    cursor, gaps = start, []
    for s, e, n in serving:
        if n not in members or e <= cursor or s >= stop:
            continue
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
        if cursor >= stop:
            break
    if cursor < stop:
        gaps.append((cursor, stop))
    return gaps


def _judged_gaps(h, fs, serving):
    """[(from, to, cold, where)]: stretches without a master acting among a
    connected majority, over consecutive connected periods (a gap that
    runs into the next period goes on there, so a node killed or started
    during it does not restart its clock)."""
    merged = []
    for start, stop, cold, groups, quiet in fs.connected_periods(h.end):
        members = set().union(*groups)
        where = ("while no fault was active" if quiet else
                 "while a majority was connected (" + " / ".join(",".join(sorted(g)) for g in sorted(groups, key=sorted))
                 + ")")
        for a, b in _gaps(serving, start, stop, members):
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b, cold and a == start, where])
    return merged


def check_liveness(h, intervals, fs):
    promise, _ = _promise(h)
    out = []
    serving = _serving_intervals(intervals, fs)
    for a, b, cold, where in _judged_gaps(h, fs, serving):
        # a cluster (re)starting from below a majority gets a start-up allowance for its first master
        allowance = promise + (STARTUP_ALLOWANCE_MS if cold else 0)
        if b - a > allowance:
            before = [n for s, e, n in serving if e <= a + 1]
            after = [n for s, e, n in serving if s >= b - 1]
            out.append(Violation(
                "liveness",
                f"no acting master from {h.rel(a):.3f} s to {h.rel(b):.3f} s ({b - a:.0f} ms) {where} "
                f"(promised at most {allowance:.0f} ms); "
                f"last master before: {before[-1] if before else 'none'}, next: {after[0] if after else 'none'}",
                tuple(x for x in (before[-1:] + after[:1])), (), (a, b)))
    return out


def _role_at(evs, t):
    """Role of a process from its events logged before t (None if none)."""
    role = None
    for ev in evs:
        if ev["t_ms"] > t:
            break
        if ev.get("role"):
            role = ev["role"]
    return role


def check_demotion(h, intervals, fs, stats=None):
    _, promise = _promise(h)
    out = []
    demotions = stats.setdefault("demotions", []) if stats is not None else []
    by_node = {}
    for iv in intervals:
        by_node.setdefault(iv.node, []).append(iv)
    procs = {nid: _by_incarnation(evs) for nid, evs in h.events.items()}
    cut = {"pause": {}, "partition": {}, "death": {}}  # cause -> node -> t of the fault that cut it off
    for t, kind, rec, _q, _u, _g in fs.steps:
        nodes = fs._nodes(rec)
        if kind == "pause":
            for n in nodes:
                cut["pause"][n] = t
        elif kind in ("kill9", "stop", "exited"):
            for n in nodes:
                cut["death"][n] = t
                cut["pause"].pop(n, None)
        elif kind == "partition":
            # any side may lack a majority (side 0 holds the most nodes)
            for g in rec.get("groups", []):
                for n in g:
                    cut["partition"].setdefault(n, t)
        restored = []
        if kind == "resume":
            restored = [(n, "resumed", False, cut["pause"]) for n in nodes]
        elif kind == "heal":
            restored = [(n, "healed", False, cut["partition"]) for n in list(cut["partition"])]
        elif kind == "start":
            restored = [(n, "restarted", True, cut["death"]) for n in nodes]
        for n, how, restart, table in restored:
            t_cut = table.pop(n, None)
            if t_cut is None or (how == "healed" and n not in fs.up):
                continue
            mine = [iv for iv in by_node.get(n, []) if iv.start <= t_cut < iv.end or
                    (restart and iv.start <= t_cut and iv.end >= t_cut - 1)]
            if not mine:
                continue
            old = mine[-1]
            newer = [iv for iv in intervals if iv.node != n and iv.epoch > old.epoch and iv.start <= t and iv.end > t]
            if not newer:
                continue
            nw = newer[0]
            allowance = promise + (STARTUP_ALLOWANCE_MS if restart else 0)
            if restart:
                evs = [ev for inc, es in procs.get(n, []) if inc != old.incarnation for ev in es if ev["t_ms"] >= t]
                settled = [ev for ev in evs if ev.get("state") not in (None, "starting") and ev.get("role")]
                first = settled[0] if settled else None
                if first is not None and first.get("role") in ROLE_EVENTS_NONMASTER:
                    demoted_at = first["t_ms"]
                else:
                    demoted_at = next((ev["t_ms"] for ev in settled if ev.get("role") in ROLE_EVENTS_NONMASTER), None)
            else:
                evs = next((es for inc, es in procs.get(n, []) if inc == old.incarnation), [])
                if _role_at(evs, t) in ROLE_EVENTS_NONMASTER:
                    demotions.append((n, how, 0.0, "had stepped down while cut off"))
                    continue  # it stepped down while cut off
                demoted_at = next((ev["t_ms"] for ev in evs if ev["t_ms"] >= t and ev.get("role") in ROLE_EVENTS_NONMASTER), None)
            if demoted_at is not None:
                demotions.append((n, how, demoted_at - t, f"{nw.node} master at epoch {nw.epoch}"))
            if demoted_at is None and h.end < t + allowance:
                continue  # a history still being recorded: its promised time has not run out yet
            if demoted_at is None:
                out.append(Violation(
                    "demotion",
                    f"{n} (master at epoch {old.epoch}) was {how} at {h.rel(t):.3f} s while {nw.node} was master at "
                    f"epoch {nw.epoch}, and never reported a non-master role afterwards",
                    (n, nw.node), (old.epoch, nw.epoch), (t,)))
            elif demoted_at - t > allowance:
                out.append(Violation(
                    "demotion",
                    f"{n} (master at epoch {old.epoch}) was {how} at {h.rel(t):.3f} s while {nw.node} was master at "
                    f"epoch {nw.epoch}, but demoted only at {h.rel(demoted_at):.3f} s ({demoted_at - t:.0f} ms; "
                    f"promised at most {allowance:.0f} ms)",
                    (n, nw.node), (old.epoch, nw.epoch), (t, demoted_at)))
    return out


# ---------------------------------------------------------------------------
# Acknowledged writes

def _subtract(required, held):
    """Ranges in `required` not covered by `held` (both sorted [[lo, hi]])."""
    out = []
    j = 0
    for lo, hi in required:
        cur = lo
        while j < len(held) and held[j][1] < cur:
            j += 1
        k = j
        while cur <= hi:
            if k >= len(held) or held[k][0] > hi:
                out.append([cur, hi])
                break
            if held[k][0] > cur:
                out.append([cur, held[k][0] - 1])
            cur = max(cur, held[k][1] + 1)
            k += 1
    return out


def _acked_index(h):
    """{client: [(t1, seq, record)] sorted by t1} of acknowledged writes."""
    idx = {}
    for w in h.workload:
        if w.get("outcome") != "ok":
            continue
        c, s = parse_key(w["key"])
        if c is None:
            continue
        idx.setdefault(c, []).append((w["t1_ms"], s, w))
    for v in idx.values():
        v.sort(key=lambda x: x[0])
    return idx


def check_writes(h, fs, snapshots=None, stats=None):
    out = []
    idx = _acked_index(h)
    groups = {}
    for snap in (h.snapshots if snapshots is None else snapshots):
        groups.setdefault((snap["label"], snap["cutoff_ms"]), []).append(snap)
    exempt_total = 0
    for (label, cutoff), snaps in groups.items():
        t_snap = max(s["t_ms"] for s in snaps)
        outage = fs.last_outage_before(t_snap)
        required = {}
        by_seq = {}
        for c, entries in idx.items():
            seqs = []
            for t1, s, w in entries:
                if t1 > cutoff:
                    break
                if outage is not None and t1 <= outage:
                    exempt_total += 1
                    continue
                seqs.append(s)
                by_seq[(c, s)] = w
            seqs.sort()
            rs = []
            for s in seqs:
                if rs and s == rs[-1][1] + 1:
                    rs[-1][1] = s
                else:
                    rs.append([s, s])
            required[c] = rs
        n_required = sum(hi - lo + 1 for rs in required.values() for lo, hi in rs)
        lacking = {}
        for snap in snaps:
            missing = []
            for c, rs in required.items():
                for lo, hi in _subtract(rs, snap["ranges"].get(c, [])):
                    missing.extend((c, s) for s in range(lo, hi + 1))
            if missing:
                lacking[snap["node"]] = missing
        if lacking:
            # one violation per snapshot: which nodes lack how many, and examples
            seen, samples = set(), []
            for node, missing in sorted(lacking.items()):
                for c, s in missing:
                    if (c, s) in seen:
                        continue
                    seen.add((c, s))
                    if len(samples) < 4:
                        w = by_seq.get((c, s), {})
                        samples.append(f"{w.get('key', c + '-' + str(s))} (through {w.get('node')}, acknowledged "
                                       f"at {h.rel(w.get('t1_ms', 0)):.3f} s, missing on {node})")
            counts = ", ".join(f"{n} lacks {len(m)}" for n, m in sorted(lacking.items()))
            t_snap = max(s["t_ms"] for s in snaps)
            out.append(Violation(
                "lost-write",
                f"snapshot '{label}' at {h.rel(t_snap):.3f} s, {(t_snap - cutoff) / 1000:.1f} s after the cut-off "
                f"(writes acknowledged up to {h.rel(cutoff):.3f} s, {n_required} of them): {counts}; "
                f"e.g. {'; '.join(samples)}",
                tuple(sorted(lacking)), (), (cutoff, t_snap)))
        if stats is not None:
            stats["writes_checked"] = max(stats.get("writes_checked", 0), n_required)
    if stats is not None:
        stats["writes_exempt"] = exempt_total
    return out


def check_crashes(h):
    out = []
    for rec in h.faults:
        if rec["kind"] == "exited":
            out.append(Violation("crash", f"{rec['node']} exited by itself at {h.rel(rec['t_ms']):.3f} s with code "
                                          f"{rec.get('code')}: {rec.get('last_line', '')}", (rec["node"],), (), (rec["t_ms"],)))
    return out


# ---------------------------------------------------------------------------

def check(h, snapshots=None, kinds=None):
    """Runs every check on History h; `snapshots` limits the write check to
    those snapshot records (the soak checks each round's new ones)."""
    intervals = acting_intervals(h)
    fs = FaultState(h)
    stats = {}
    violations = []
    wanted = kinds or ("overlap", "epoch", "liveness", "demotion", "lost-write", "crash", "service", "prepare")
    if "overlap" in wanted:
        violations += check_overlap(h, intervals)
    if "epoch" in wanted:
        violations += check_epochs(h, intervals)
    if "liveness" in wanted:
        violations += check_liveness(h, intervals, fs)
    if "demotion" in wanted:
        violations += check_demotion(h, intervals, fs, stats)
    if "lost-write" in wanted:
        violations += check_writes(h, fs, snapshots, stats)
    if "crash" in wanted:
        violations += check_crashes(h)
    if "service" in wanted:
        found, services = check_service(h, Violation)
        violations += found
        stats["services"] = len(services)
    if "prepare" in wanted:
        found, prepares = check_prepares(h, Violation, fs.deaths)
        violations += found
        stats["prepares"] = len(prepares)
    stats["intervals"] = len(intervals)
    stats["epochs"] = len({e for iv in intervals for e in iv.epochs})
    stats["acked"] = sum(1 for w in h.workload if w.get("outcome") == "ok")
    stats["unknown"] = sum(1 for w in h.workload if w.get("outcome") == "unknown")
    stats["refused"] = sum(1 for w in h.workload if w.get("outcome") == "refused")
    stats["snapshots"] = len({(s["label"], s["cutoff_ms"]) for s in h.snapshots})
    return Report(violations, intervals, stats)
