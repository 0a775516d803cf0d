"""The service check: no two nodes run the master's service at once.

The chaos cluster gives every node a stand-in service (role hooks) and a
fake watchdog (tools/chaos/cluster.py). A node's service interval runs
from the start of its `master` hook (event hook-started) to the first of:
  - the end of its next step-down hook (a `replica` or `data` hook that
    ran), in any later incarnation;
  - its watchdog's expiry: the checker plays the hardware, which resets the
    machine (and so kills the service) when an armed device goes one
    timeout without a keepalive; a kill -9 of the node leaves the device
    armed, so a killed master's service ends there;
  - the end of the history.
No two nodes' intervals may overlap. A node whose device was never armed
(or that runs without one) keeps its service until a step-down hook ends
it: a killed master without a watchdog is reported.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .intervals import overlap_violations

STEP_DOWN_HOOKS = ("replica", "data")


@dataclass
class ServiceInterval:
    node: str
    start: float
    epoch: object = None
    end: float = 0.0
    end_reason: str = "the end of the run"


def watchdog_expiries(ops, end):
    """Sorted times at which the fake device `ops` would have fired. After
    firing the machine was reset: the device counts as closed until it is
    opened again."""
    out = []
    armed, last, timeout = False, None, None
    for op in ops:
        t = op.get("t_ms")
        if t is None:
            continue
        if armed and timeout is not None and t > last + timeout:
            out.append(last + timeout)
            armed = False
        ev = op.get("event")
        if ev == "open":
            armed, last = True, t
        elif ev == "timeout":
            timeout, last = float(op["timeout_ms"]), t
        elif ev == "keepalive" and armed:
            last = t
        elif ev == "magic-close":
            armed = False
    if armed and timeout is not None and last + timeout <= end:
        out.append(last + timeout)
    return out


def _close(iv, t, reason, expiries):
    i = bisect.bisect_right(expiries, iv.start)
    if i < len(expiries) and expiries[i] < t:
        iv.end, iv.end_reason = expiries[i], "its watchdog expired"
    else:
        iv.end, iv.end_reason = t, reason
    return iv


def service_intervals(h):
    out = []
    for nid, events in h.events.items():
        expiries = watchdog_expiries(h.watchdogs.get(nid, []), h.end)
        cur = None
        for ev in events:
            if "_bad_line" in ev or "t_ms" not in ev:
                continue
            kind, hook, t = ev.get("event"), ev.get("hook"), float(ev["t_ms"])
            if kind == "hook-started" and hook == "master" and cur is None:
                cur = ServiceInterval(nid, t, ev.get("epoch"))
            elif kind == "hook" and hook in STEP_DOWN_HOOKS and ev.get("ran") and cur is not None:
                out.append(_close(cur, t, f"its {hook} hook ended", expiries))
                cur = None
        if cur is not None:
            out.append(_close(cur, max(h.end, cur.start), "the end of the run", expiries))
    out.sort(key=lambda iv: iv.start)
    return out


def check_service(h, Violation):
    """[Violation] for every two nodes' service intervals that overlap."""
    ivs = service_intervals(h)
    return overlap_violations(ivs, Violation, "service", lambda a, iv, ms: (
        f"two services for {ms:.0f} ms: {a.node}'s (master hook at epoch {a.epoch}) ran from "
        f"{h.rel(a.start):.3f} s until {h.rel(a.end):.3f} s ({a.end_reason}) and {iv.node}'s "
        f"(epoch {iv.epoch}) from {h.rel(iv.start):.3f} s until {h.rel(iv.end):.3f} s ({iv.end_reason})")), ivs
