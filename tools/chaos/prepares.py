"""The prepare check: one failover operation at a time.

A node's `prepare` hook runs from its hook-started event to its hook event
(the end), or to the node's kill or exit (its agent can no longer stop
it). Both events name the failing master and epoch the failover is for
(`for_master`, `for_epoch`). No two nodes may run `prepare` for the same
failing master and epoch at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .intervals import concurrent_pairs


@dataclass
class PrepareRun:
    node: str
    failing: tuple
    start: float
    end: float = 0.0


def prepare_runs(h, deaths):
    """`deaths`: node -> times it was killed, stopped or exited (FaultState)."""
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


def check_prepares(h, Violation, deaths):
    out = []
    runs = prepare_runs(h, deaths)
    for a, b, lo, hi in concurrent_pairs(runs):
        if a.failing == b.failing:  # b started before a ended: both ran at once
            out.append(Violation(
                "prepare",
                f"two prepares for {a.failing[0]} at epoch {a.failing[1]}: {a.node} from {h.rel(a.start):.3f} s "
                f"to {h.rel(a.end):.3f} s and {b.node} from {h.rel(b.start):.3f} s to {h.rel(b.end):.3f} s",
                (a.node, b.node), (a.failing[1],), (lo, hi)))
    return out, runs
