"""Integration tests of member changes while the cluster runs (issue 14):
`rolegridctl member add` and `member remove`, what the added, the removed
and the other nodes do, and failovers on the new configurations. Run
through run.py (-k member_).
"""

from __future__ import annotations

import shutil
import threading
import time

import harness
from harness import CtlError, check, note
from test_agent import (agent_nodes, agent_test, check_one_master_at_a_time, kill_and_fail_over, roles,
                        started_cluster, summary, wait_roles)


def members_of(c, nid):
    return c.q(nid, "status")["members"]


def three_of_four(c):
    """n1..n4 declared; the cluster is n1..n3 (n4 waits to be added). Returns
    (ids, snapshots once n1..n3 agree on a master and a replica)."""
    ids = agent_nodes(c, 4)
    for i in ("n1", "n2", "n3"):
        c[i].members = ["n1", "n2", "n3"]
        c[i].start()
    c.wait_formed(["n1", "n2", "n3"])
    snaps, _ = wait_roles(c, ["n1", "n2", "n3"], 10, what="a master and a replica", entries=True)
    return ids, snaps


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
    # The removed node stops by itself (a graceful stop, exit 0), saying
    # why; the others use three members.
    code = c[gone].wait_exit(10)
    check(code == 0 and "removed from the cluster's members" in c[gone].log(),
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


@agent_test(timeout=90)
def member_add_a_fourth_node_fail_over_then_remove_it(c):
    ids, snaps = three_of_four(c)  # the cluster: n1..n3; n4 waits to be added
    s = snaps["n1"]
    m, r, e = s["master"], s["replica"], s["epoch"]
    # Started before it is added, the new node is refused (same version,
    # another list) and exits: nodes on a new list never form a cluster.
    c["n4"].start()
    code = c["n4"].wait_exit(10)
    check(code != 0 and "refused by" in c["n4"].log(), f"n4 started before `member add` kept running (exit {code})")
    t0 = time.monotonic()
    out = c.ctl(r, "member", "add", "n4")
    note(f"member add n4: settled in {time.monotonic() - t0:.2f} s, members {out['members']} "
         f"(version {out['version']})")
    check(out["version"] == 2 and "n4" in out["members"], f"member add answered {out}")
    # Now it starts with --join and an empty data dir, learns the
    # configuration from its peers, recovers its acceptor and takes part.
    shutil.rmtree(c["n4"].data_dir, ignore_errors=True)
    c["n4"].extra = list(c["n4"].extra) + ["--join"]
    c["n4"].start()
    c.wait_formed(ids, timeout=15)
    harness.wait_until(lambda: c.q("n4", "status")["acceptor"]["voting"], 10, what="n4 voting")
    check(members_of(c, "n4") == ids, f"n4's members: {members_of(c, 'n4')}")
    # A failover with four members: the master killed, 3 of 4 remain.
    live = [i for i in ids if i != m]
    d = next(i for i in live if i != r)
    t_kill, seen, _ = kill_and_fail_over(c, ids, m, r, d, e)
    note(f"kill -9 of master {m} with 4 members: {r} established on every live node within {max(seen.values()):.2f} s")
    # And removed again (a switchover first if it became the master).
    if r == "n4":
        c.ctl(r, "switchover", "--to", d)
        harness.wait_until(lambda: summary(roles(c, d))["master"] == d and summary(roles(c, d))["acting"], 10,
                           what=f"{d} to take over from n4")
    out = c.ctl(d, "member", "remove", "n4")
    check(out["version"] == 3 and "n4" not in out["members"], f"member remove n4 answered {out}")
    check(c["n4"].wait_exit(10) == 0, "n4 did not stop cleanly after its removal")
    # --join refuses its data dir from that life: added again, it must start empty.
    c["n4"].start()
    code = c["n4"].wait_exit(10)
    check(code == 2 and "--join: --data-dir" in c["n4"].log(), f"n4 --join with its old data dir: exit {code}")
    check_one_master_at_a_time(c, ids)


@agent_test(timeout=90)
def member_add_refused_while_a_member_is_down_then_the_dead_one_replaced(c):
    ids, snaps = three_of_four(c)
    m, r = snaps["n1"]["master"], snaps["n1"]["replica"]
    dead = next(i for i in ("n1", "n2", "n3") if i not in (m, r))
    c[dead].kill9()
    harness.wait_until(lambda: all(x["state"] == "failed" for x in c.q(m, "members") if x["id"] == dead), 5,
                       what=f"{m} to see {dead} failed")
    # Adding n4 now would need 3 of n1..n4 running; only 2 do. Refused at
    # once, naming the dead node, instead of hanging until the deadline.
    t0 = time.monotonic()
    try:
        c.ctl(m, "member", "add", "n4")
        check(False, "member add with a member down was accepted")
    except CtlError as err:
        took = time.monotonic() - t0
        check(dead in err.stderr and "remove it first" in err.stderr and took < 2,
              f"member add with {dead} down: {err.stderr.strip()} after {took:.2f} s")
        note(f"member add n4 with {dead} down: refused in {took:.2f} s: {err.stderr.strip()}")
    # The procedure it names: remove the dead node, then add the new one.
    out = c.ctl(m, "member", "remove", dead)
    check(out["version"] == 2 and dead not in out["members"], f"member remove {dead} answered {out}")
    out = c.ctl(r, "member", "add", "n4")
    check(out["version"] == 3 and "n4" in out["members"], f"member add n4 answered {out}")
    shutil.rmtree(c["n4"].data_dir, ignore_errors=True)
    c["n4"].extra = list(c["n4"].extra) + ["--join"]
    c["n4"].start()
    live = [m, r, "n4"]
    c.wait_formed(live, timeout=15)
    harness.wait_until(lambda: c.q("n4", "status")["acceptor"]["voting"], 10, what="n4 voting")
    check(all(sorted(members_of(c, i)) == sorted(live) for i in live), "the members do not agree on the new list")
    check_one_master_at_a_time(c, ids)


@agent_test(timeout=90)
def member_added_node_writes_under_its_configured_index_not_its_members_place(c):
    """A joiner's place in its `--members` list need not be its index in the
    configuration (a removed member's index is never given again). Until it
    has heard a peer, it does not know its index: its writes wait, and then
    carry the configuration's index, not another member's."""
    ids, snaps = three_of_four(c)
    m = snaps["n1"]["master"]
    # Remove n1 or n2 (never the master): n3 keeps index 2, and n4 is given 3.
    gone = "n1" if m != "n1" else "n2"
    live = [i for i in ("n1", "n2", "n3") if i != gone]
    c.ctl(m, "member", "remove", gone)
    check(c[gone].wait_exit(10) == 0, f"{gone} did not stop after its removal")
    out = c.ctl(m, "member", "add", "n4")
    check(out["version"] == 3 and "n4" in out["members"], f"member add n4 answered {out}")
    # n4's list is the new one: in it n4 sits at position 2, n3's index.
    c["n4"].members = sorted(live + ["n4"])
    c["n4"].extra = list(c["n4"].extra) + ["--join"]
    shutil.rmtree(c["n4"].data_dir, ignore_errors=True)
    # With its peers stopped it hears nobody, so it cannot know its index.
    for i in live:
        c[i].pause()
    result = {}

    def put(key):
        try:
            result["out"] = c.ctl("n4", "put", "joined", key, "v1", timeout_ms=20000)
        except CtlError as err:
            result["error"] = err.stderr.strip()
    try:
        c["n4"].start()
        harness.wait_until(lambda: c.q("n4", "status") is not None, 10, what="n4's admin port")
        # Held for good it is not: after 10 s (failure timeout 1 s) it fails, saying why.
        t0 = time.monotonic()
        put("k0")
        took = time.monotonic() - t0
        check("error" in result and "not yet learnt its index" in result["error"] and 9.5 < took < 15,
              f"a write held with no peer to learn from: {result} after {took:.1f} s")
        note(f"a write held with no peer to learn from failed after {took:.1f} s: {result.get('error')}")
        result.clear()
        writer = threading.Thread(target=put, args=("k1",))
        writer.start()
        harness.wait_until(lambda: c.q("n4", "status")["stream"]["held_writes"] == 1, 5,
                           what="n4 to hold the write until it knows its index")
        check("out" not in result and "error" not in result, f"the put returned while held: {result}")
    finally:
        for i in live:
            c[i].resume()
        resumed = time.monotonic()
    writer.join(30)
    check("out" in result, f"the held put did not succeed: {result}")
    note(f"the held put was answered {time.monotonic() - resumed:.3f} s after n4's peers resumed")
    index = {"n1": 0, "n2": 1, "n3": 2, "n4": 3}

    def entry(nid):  # the write's entry on nid, once it has it
        got = c.ctl(nid, "get", "joined", "k1", check=False)
        return got if isinstance(got, dict) else None
    for i in live + ["n4"]:
        harness.wait_until(lambda: entry(i), 5, what=f"{i} to hold the write")
        origin = int(entry(i)["version"]) & 0xFF  # a version is (lamport << 8) | origin index
        check(origin == index["n4"], f"{i}: the joiner's write carries origin index {origin}, not n4's "
                                     f"{index['n4']} (n3's is 2)")
    note(f"a write through n4 before it heard a peer was held, then carried index {index['n4']} on every node")
