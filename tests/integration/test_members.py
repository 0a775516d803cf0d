"""Integration tests of member changes while the cluster runs (issue 14):
`rolegridctl member remove`, what the removed node and the others do, and a
failover on the new configuration. Run through run.py (-k member_).
"""

from __future__ import annotations

import time

import harness
from harness import CtlError, check, note
from test_agent import (FT_S, agent_test, check_one_master_at_a_time, kill_and_fail_over, roles, started_cluster,
                        summary)


def members_of(c, nid):
    return c.q(nid, "status")["members"]


@agent_test(timeout=90)
def member_remove_a_data_node_then_fail_over_on_three(c):
    ids, m, r, data, e, _ = started_cluster(c, n=4)
    gone, stay = data[0], data[1]
    # The master is never removed: a switchover first.
    try:
        c.ctl(r, "member", "remove", m)
        check(False, f"removing the master {m} was accepted")
    except CtlError as err:
        check("is the master" in err.stderr, f"removing the master: {err.stderr.strip()}")
    t0 = time.monotonic()
    out = c.ctl(stay, "member", "remove", gone)
    took = time.monotonic() - t0
    check(out["version"] == 2 and gone not in out["members"], f"member remove {gone} answered {out}")
    note(f"member remove {gone}: settled in {took:.2f} s, members now {out['members']} (version {out['version']})")
    # The removed node stops by itself, saying why; the others use three members.
    code = c[gone].wait_exit(10)
    check(code != 0 and "removed from the cluster's members" in c[gone].log(),
          f"{gone} exited {code} without saying it was removed")
    live = [i for i in ids if i != gone]
    harness.wait_until(lambda: all(gone not in members_of(c, i) for i in live), 5,
                       what=f"every node to drop {gone} from its members")
    # Restarted with its data dir, it is refused in one line.
    c[gone].start()
    code = c[gone].wait_exit(10)
    check(code == 2 and "was removed from the cluster's members" in c[gone].log(),
          f"{gone} restarted after its removal: exit {code}")
    # A failover on the new configuration: 2 of 3 is a majority.
    t_kill, seen, _ = kill_and_fail_over(c, live, m, r, stay, e)
    note(f"after the removal, kill -9 of master {m}: {r} established on every live node within "
         f"{max(seen.values()):.2f} s")
    check(summary(roles(c, stay))["master"] == r, "the new master is not agreed")
    check_one_master_at_a_time(c, ids)
