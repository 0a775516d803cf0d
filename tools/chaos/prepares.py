"""The prepare check: one failover operation at a time.

A node's `prepare` hook runs from its hook-started event to its hook event
(the end), or to the node's kill or exit (its agent can no longer stop
it). Both events name the failing master and epoch the failover is for
(`for_master`, `for_epoch`). No two nodes may run `prepare` for the same
failing master and epoch at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrepareRun:
    node: str
    failing: tuple
    start: float
    end: float = 0.0


def _deaths(h):
    out = {}
    for rec in h.faults:
        if rec["kind"] in ("kill9", "stop", "exited"):
            for n in rec.get("nodes") or [rec.get("node")]:
                out.setdefault(n, []).append(rec["t_ms"])
    return out


def prepare_runs(h):
    deaths = _deaths(h)
    runs = []
    for nid, events in h.events.items():
        cur = None
        for ev in events:
            if "_bad_line" in ev or "t_ms" not in ev or ev.get("hook") != "prepare":
                continue
            if ev.get("event") == "hook-started" and "for_epoch" in ev:
                cur = PrepareRun(nid, (ev.get("for_master"), ev["for_epoch"]), float(ev["t_ms"]))
            elif ev.get("event") == "hook" and cur is not None:
                cur.end = float(ev["t_ms"])
                runs.append(cur)
                cur = None
        if cur is not None:
            later = [t for t in deaths.get(nid, []) if t >= cur.start]
            cur.end = min(later) if later else max(h.end, cur.start)
            runs.append(cur)
    runs.sort(key=lambda r: r.start)
    return runs


def check_prepares(h, Violation):
    out = []
    runs = prepare_runs(h)
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if b.start >= a.end:
                continue
            if a.node != b.node and a.failing == b.failing:
                out.append(Violation(
                    "prepare",
                    f"two prepares for {a.failing[0]} at epoch {a.failing[1]}: {a.node} from {h.rel(a.start):.3f} s "
                    f"to {h.rel(a.end):.3f} s and {b.node} from {h.rel(b.start):.3f} s to {h.rel(b.end):.3f} s",
                    (a.node, b.node), (a.failing[1],), (max(a.start, b.start), min(a.end, b.end))))
    return out, runs
