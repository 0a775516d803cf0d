"""Integration-test harness: real `rolegrid` processes on loopback.

Python 3 standard library only. Everything here is bounded: every wait has a
timeout, every subprocess call has a timeout, and every process a Cluster
started is killed by its PID when the test ends, pass or fail (and, through
PR_SET_PDEATHSIG, if the runner itself dies).

Only run this inside a private network namespace (run.py takes care of it):
the nodes use multicast, and test traffic must never leave the namespace.

A test is a function decorated with @test(...) that takes a Cluster:

    @test(modes=BOTH)
    def forms(c):
        c.add_nodes(3)
        c.start_all()
        c.wait_formed()

Two ways to talk to a node:
  * c.ctl(node, *args, json=True)  runs the real `rolegridctl` (one process
    per call, ~5-10 ms); use it for what a user would do;
  * c.q(node, cmd, *args)          speaks the admin protocol directly over one
    kept-open connection (rgkit.admin.AdminConn); use it for tight polling loops,
    timing measurements and bulk writes, where spawning processes would load
    the 2 shared cores and blur the measurement.

The processes, the admin protocol and the waits live in tools/rgkit (shared
with rolegrid-chaos and the benchmarks); this module adds the test registry.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from rgkit.admin import AdminConn, AdminError, frame_keys, make_frame, read_secret, write_secret  # noqa: E402,F401
from rgkit.checks import CtlError, NodeExited, TestFailure, check, note, wait_until  # noqa: E402,F401
from rgkit.local import (BOTH, FAILURE_TIMEOUT_MS, MCAST_GROUP, MULTICAST, UNICAST, Cluster,  # noqa: E402,F401
                         Node)
from rgkit.paths import BUILD, REPO, ROLEGRID, ROLEGRIDCTL  # noqa: E402,F401
from rgkit.procs import die_with_parent as _die_with_parent  # noqa: E402,F401


# ---------------------------------------------------------------------------
# JSON-lines files the nodes write (event logs, fake watchdogs)

def json_lines(path):
    """Each line of the file as a dict; a missing file is empty, and a line
    being written right now (not yet valid JSON) is skipped."""
    import json
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def event_log(c, nid, kinds=None, since=None):
    """Node nid's event log (c.dir/<nid>.events, every incarnation), only
    the events named in `kinds` if given, and only from monotonic time
    `since` (seconds) on."""
    return [e for e in json_lines(c.dir / f"{nid}.events")
            if (kinds is None or e.get("event") in kinds) and (since is None or e.get("t_ms", 0) >= since * 1000.0)]


def settled_roles(c, ids):
    """(master, replica, epoch) once every node in `ids` sees the same
    established master, replica and epoch; else None."""
    seen = set()
    for i in ids:
        r = c.q(i, "roles")
        m = r["master"]
        if not m or m["phase"] != "established" or not r["replica"]:
            return None
        seen.add((m["node"], r["replica"]["node"], r["epoch"]))
    return seen.pop() if len(seen) == 1 else None


# ---------------------------------------------------------------------------
# Test registry

TESTS = []


class TestCase:
    def __init__(self, fn, mode, timeout):
        self.fn = fn
        self.mode = mode
        self.timeout = timeout
        self.name = fn.__name__ + (f"[{mode}]" if mode else "")


def test(modes=(None,), timeout=60):
    """Registers a test function, once per mode (None: mode-independent, the
    Cluster then uses multicast)."""

    def register(fn):
        for mode in modes:
            TESTS.append(TestCase(fn, mode, timeout))
        return fn

    return register
