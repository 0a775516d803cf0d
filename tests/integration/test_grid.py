"""Integration tests of the grid (issue 2): membership, replicated regions,
state transfer, anti-entropy, refusals and the command line, with real
rolegrid processes. Run through run.py."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import (BOTH, ROLEGRID, ROLEGRIDCTL, UNICAST, AdminConn, TestFailure, check, frame_keys, make_frame,
                     write_secret,
                     note, read_secret, test, wait_until)

R = "it"  # the region the tests write to
SLACK_S = 0.5  # what the issue allows beyond failure-timeout for detection


def started(c, n):
    c.add_nodes(n)
    c.start_all()
    c.wait_formed()
    return list(c.nodes)


def watch_states(c, observers, target, wanted, limit_s, t0, interval=0.05):
    """Polls each observer's view of `target` every `interval` s until all
    show `wanted` or `limit_s` + 2 s passed since t0. Returns ({observer:
    seconds from t0 to first seen}, {observer: [states seen]})."""
    seen_at = {}
    history = {o: [] for o in observers}
    hard_end = t0 + limit_s + 2.0
    while len(seen_at) < len(observers) and time.monotonic() < hard_end:
        for o in observers:
            if o in seen_at:
                continue
            st = c.members_view(o).get(target, {}).get("state", "absent")
            if not history[o] or history[o][-1] != st:
                history[o].append(st)
            if st == wanted:
                seen_at[o] = time.monotonic() - t0
        time.sleep(interval)
    return seen_at, history


# ---------------------------------------------------------------------------
# Forming a cluster

def _forms(c, n):
    t_start = time.time()
    ids = started(c, n)
    incs = {i: c.ctl(i, "status")["incarnation"] for i in ids}
    # Wall-clock microseconds of each process's start: they grow across
    # restarts of one id (two ids may share one: it only orders one id's lives).
    check(all(t_start * 1e6 - 1e6 <= v <= time.time() * 1e6 for v in incs.values()),
          f"incarnations are not the start times: {incs} (test started at {t_start * 1e6:.0f})")
    for i in ids:
        view = {m["id"]: m for m in c.ctl(i, "members")}
        check(set(view) == set(ids), f"{i} lists {sorted(view)}, expected {ids}")
        for j, m in view.items():
            check(m["state"] == "alive", f"{i} sees {j} {m['state']}")
            check(m["incarnation"] == incs[j], f"{i} sees {j} at incarnation {m['incarnation']}, it is {incs[j]}")
            check(m["self"] == (i == j), f"{i}: wrong self flag on {j}")
            check(m["address"] == c[j].listen, f"{i} sees {j} at {m['address']}, it listens on {c[j].listen}")
            if i != j:
                check(0 <= m["last_heard_ms"] < c.failure_timeout_ms,
                      f"{i} last heard {j} {m['last_heard_ms']} ms ago")
    text = c.ctl(ids[0], "members", json=False)
    for j in ids:
        line = next((ln for ln in text.splitlines() if ln.split()[:1] == [j]), "")
        check("alive" in line and str(incs[j]) in line, f"members text has no alive line for {j}:\n{text}")
    status = c.ctl(ids[-1], "status")
    check(status["mode"] == c.mode, f"status mode {status['mode']}, expected {c.mode}")
    check(sorted(status["alive"]) == sorted(ids[:-1]), f"status alive {status['alive']}")


@test(modes=BOTH)
def forms_3_nodes(c):
    _forms(c, 3)


@test(modes=BOTH)
def forms_5_nodes(c):
    _forms(c, 5)


# ---------------------------------------------------------------------------
# Write-through

def _expect_value(c, nodes, key, value, after):
    for o in nodes:
        got = c.ctl(o, "get", R, key)
        check(got["value"] == value, f"{after}: {o} has {key}={got['value']!r}, expected {value!r}")


@test(modes=BOTH)
def put_is_readable_everywhere_when_it_returns(c):
    ids = started(c, 3)
    # Several keys, from every node in turn; each read right after put returns.
    for rnd in range(3):
        for w in ids:
            key, value = f"k-{w}-{rnd}", f"v-{w}-{rnd}-{os.urandom(4).hex()}"
            c.ctl(w, "put", R, key, value)
            _expect_value(c, [o for o in ids if o != w], key, value, f"put on {w}")
    # The same key written from each node in turn: the last write wins everywhere.
    for w in ids:
        c.ctl(w, "put", R, "shared", f"from-{w}")
        _expect_value(c, ids, "shared", f"from-{w}", f"overwrite from {w}")
    versions = {o: c.ctl(o, "get", R, "shared")["version"] for o in ids}
    check(len(set(versions.values())) == 1, f"same value, different versions: {versions}")
    # Pipelined puts (many in flight on one connection) are write-through too.
    items = [(f"p-{i}", f"pv-{i}") for i in range(300)]
    c.put_many(ids[1], R, items)
    for o in ids:
        got = c.get_many(o, R, [k for k, _ in items])
        missing = [k for k, v in items if got[k] != v]
        check(not missing, f"{o} lacks {len(missing)} pipelined keys right after the puts returned, e.g. {missing[:3]}")
    # put-field merges fields; each node sees the merge at once.
    steps = [(ids[0], "a", "1", {"a": "1"}),
             (ids[1], "b", "2", {"a": "1", "b": "2"}),
             (ids[2], "a", "3", {"a": "3", "b": "2"})]
    for w, field, value, merged in steps:
        c.ctl(w, "put-field", R, "map", field, value)
        _expect_value(c, ids, "map", merged, f"put-field {field}={value} on {w}")
    text = c.ctl(ids[0], "get", R, "map", json=False)
    check(text.split() == ["a=3", "b=2"], f"get of a map prints {text!r}")
    # del: the key is gone everywhere.
    c.ctl(ids[1], "del", R, "k-n1-0")
    for o in ids:
        r = c.ctl(o, "get", R, "k-n1-0", check=False)
        check(not isinstance(r, dict) and r.returncode != 0,
              f"get of a deleted key on {o} succeeded: {r}")
        check("k-n1-0" in r.stderr, f"get of a deleted key on {o}: unclear message {r.stderr!r}")
    keysets = {o: set(c.ctl(o, "keys", R)) for o in ids}
    check(all(k == keysets[ids[0]] for k in keysets.values()), "nodes list different keys")
    check("k-n1-0" not in keysets[ids[0]] and "map" in keysets[ids[0]], "keys lists the wrong set")


# ---------------------------------------------------------------------------
# Failure detection and leaving

@test(modes=BOTH)
def kill9_is_failed_everywhere_within_timeout(c):
    ids = started(c, 3)
    victim, observers = ids[1], [ids[0], ids[2]]
    for o in observers:
        c.members_view(o)  # connections open before the kill, so polling costs no set-up
    limit = c.failure_timeout_ms / 1000 + SLACK_S
    t0 = c[victim].kill9()
    seen_at, history = watch_states(c, observers, victim, "failed", limit, t0)
    for o in observers:
        check(o in seen_at, f"{o} never showed {victim} failed within {limit + 2:.1f} s of kill -9 "
                            f"(states seen: {history[o]})")
    note("kill -9 -> failed: " + ", ".join(f"{o} {seen_at[o]:.2f} s" for o in observers))
    for o in observers:
        check(seen_at[o] <= limit, f"{o} showed {victim} failed {seen_at[o]:.2f} s after kill -9, "
                                   f"limit {limit:.1f} s (states seen: {history[o]})")
    for o in observers:
        states = c.states(o)
        check(all(states[x] == "alive" for x in observers), f"{o}'s view after the kill: {states}")


@test(modes=BOTH)
def sigterm_is_left_at_once(c):
    ids = started(c, 3)
    leaver, observers = ids[1], [ids[0], ids[2]]
    for o in observers:
        c.members_view(o)
    limit = 0.5
    t0 = c[leaver].term()
    seen_at, history = watch_states(c, observers, leaver, "left", limit, t0, interval=0.02)
    rc = c[leaver].wait_exit(5)
    check(rc == 0, f"{leaver} exited {rc} after SIGTERM")
    for o in observers:
        check(o in seen_at, f"{o} never showed {leaver} left (states seen: {history[o]})")
    note("SIGTERM -> left: " + ", ".join(f"{o} {seen_at[o]:.2f} s" for o in observers))
    for o in observers:
        check(seen_at[o] <= limit, f"{o} showed {leaver} left only {seen_at[o]:.2f} s after SIGTERM")
        check("failed" not in history[o], f"{o} saw {leaver} as failed: {history[o]}")
    # It stays left, and is not mistaken for a failure once the timeout passes.
    time.sleep(c.failure_timeout_ms / 1000 + 0.6)
    for o in observers:
        st = c.states(o)
        check(st[leaver] == "left", f"{o} shows {leaver} {st[leaver]} after the failure timeout")
        check(all(st[x] == "alive" for x in observers), f"{o}'s view: {st}")


# ---------------------------------------------------------------------------
# Restart with a new incarnation, and state transfer

@test(modes=BOTH)
def restarted_node_rejoins_with_new_incarnation_and_data(c):
    ids = started(c, 3)
    victim, others = ids[2], ids[:2]
    before = [(f"before-{i:04d}", f"b{i}-" + "x" * 40) for i in range(200)]
    c.put_many(others[0], R, before)
    c.ctl(others[1], "put-field", R, "fields", "f1", "one")
    old_inc = c.incarnation(victim)
    c[victim].kill9()
    wait_until(lambda: all(c.states(o)[victim] == "failed" for o in others), 3.0,
               what=f"{others} to see {victim} failed")
    during = [(f"down-{i:04d}", f"d{i}") for i in range(100)]
    c.put_many(others[1], R, during)
    c.ctl(others[0], "put-field", R, "fields", "f2", "two")
    c.ctl(others[0], "del", R, "before-0000")
    t0 = time.monotonic()
    c[victim].start()
    c.wait_formed(ids, timeout=10)
    note(f"{victim} rejoined and synced in {time.monotonic() - t0:.2f} s")
    new_inc = c.incarnation(victim)
    check(new_inc > old_inc, f"{victim} restarted with incarnation {new_inc}, not above {old_inc}")
    for o in others:
        m = c.members_view(o, fast=False)[victim]
        check(m["state"] == "alive" and m["incarnation"] == new_inc, f"{o} sees {victim} as {m}")
    expected = dict(before[1:] + during)
    keys = c.keys(victim, R)
    missing = sorted(set(expected) - keys)
    check(not missing, f"{victim} lacks {len(missing)} of {len(expected)} keys after rejoining, e.g. {missing[:5]}")
    check("before-0000" not in keys, f"{victim} still has a key deleted while it was down")
    got = c.get_many(victim, R, list(expected))
    wrong = [k for k, v in expected.items() if got[k] != v]
    check(not wrong, f"{victim} has wrong values for {len(wrong)} keys, e.g. {wrong[:5]}")
    check(c.ctl(victim, "get", R, "fields")["value"] == {"f1": "one", "f2": "two"},
          f"{victim} has fields {c.ctl(victim, 'get', R, 'fields')['value']}")
    check(c.ctl(victim, "get", R, "down-0099")["value"] == "d99", "rolegridctl get on the restarted node")


def _writer(c, node, stop, acked, errors, prefix, batch=32):
    """Keeps putting prefix-N keys on `node` until `stop` is set."""
    try:
        conn = AdminConn(node.admin, read_secret(node.secret_file), c.name, timeout=10.0)
    except OSError as e:
        errors.append(f"writer cannot connect: {e}")
        return
    i = 0
    try:
        while not stop.is_set():
            reqs = [("put", (R, f"{prefix}{i + j:06d}", f"w{i + j}")) for j in range(batch)]
            t = time.monotonic()
            conn.pipeline(reqs, window=batch, timeout=10.0)
            acked.append((time.monotonic(), time.monotonic() - t, [r[1][1] for r in reqs]))
            i += batch
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def _transfer_while_writing(c, bulk_n):
    c.add_nodes(4)
    ids = list(c.nodes)
    first, joiner = ids[:3], ids[3]
    for i in first:
        c[i].start()
    c.wait_formed(first)
    value = "v" * 100
    t = time.monotonic()
    for start in range(0, bulk_n, 5000):
        c.put_many(first[0], R, [(f"bulk-{i:06d}", value) for i in range(start, min(start + 5000, bulk_n))],
                   window=256, timeout=60.0)
    note(f"{bulk_n} puts of 100 B through one pipelined connection: {time.monotonic() - t:.2f} s")
    stop, acked, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(c, c[first[1]], stop, acked, errors, "live-"), daemon=True)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 3, 5.0, what="the writer to get going")
        t0 = time.monotonic()
        c[joiner].start()
        copying_seen, percents = False, []

        def synced():
            nonlocal copying_seen
            tr = c.q(joiner, "status")["transfer"]
            copying_seen |= tr["copying"]
            if tr["copying"]:
                percents.append(tr["percent"])
            return tr["synced"]

        wait_until(synced, 30.0, interval=0.02, what=f"{joiner} to finish its state transfer")
        t_synced = time.monotonic()
        time.sleep(0.5)  # the writer keeps going after the transfer, too
    finally:
        stop.set()
        writer.join(15)
    check(not writer.is_alive(), "the writer thread did not stop")
    check(not errors, f"a put failed during the state transfer: {errors[0] if errors else ''}")
    during = [b for b in acked if t0 <= b[0] <= t_synced]
    check(during, "no put completed while the joiner was being transferred: writes were held back")
    stall = max(b[1] for b in acked if b[0] >= t0)
    before_join = sorted(b[1] for b in acked if b[0] < t0)
    typical = before_join[len(before_join) // 2] if before_join else 0.0
    note(f"{joiner} synced {t_synced - t0:.2f} s after start; copying seen: {copying_seen} "
         f"(percents {percents[:1] + percents[-1:]}); {len(during)} batches of 32 puts completed meanwhile; "
         f"batch of 32 puts: median {typical * 1000:.0f} ms before the join, slowest after it {stall * 1000:.0f} ms")
    live = [k for b in acked for k in b[2]]
    expected = {f"bulk-{i:06d}" for i in range(bulk_n)} | set(live)
    c.wait_formed(ids, timeout=10)

    def holds_all():
        return expected <= c.keys(joiner, R)

    try:
        wait_until(holds_all, 10.0, interval=0.2, what=f"{joiner} to hold every key")
    except Exception:
        missing = sorted(expected - c.keys(joiner, R))
        raise TestFailure(f"{joiner} lacks {len(missing)} of {len(expected)} keys after its transfer, "
                             f"e.g. {missing[:5]}")
    got = c.get_many(joiner, R, live)
    wrong = [k for k in live if got[k] != f"w{int(k[5:])}"]
    check(not wrong, f"{joiner} has wrong values for keys written during the transfer: {wrong[:5]}")
    sample = [f"bulk-{i:06d}" for i in range(0, bulk_n, max(1, bulk_n // 500))]
    got = c.get_many(joiner, R, sample)
    check(all(got[k] == value for k in sample), f"{joiner} has wrong bulk values")
    sizes = {i: len(c.keys(i, R)) for i in ids}
    check(len(set(sizes.values())) == 1, f"members hold different numbers of keys: {sizes}")
    note(f"{joiner} holds all {len(expected)} keys ({len(live)} from the concurrent writer, "
         f"{32 * len(during)} of them acknowledged while {joiner} was being transferred)")


@test(modes=BOTH, timeout=120)
def state_transfer_while_writing(c):
    _transfer_while_writing(c, 20000)


@test()
def restarted_node_stamps_above_its_earlier_life_while_alone(c):
    """A node's Lamport clock restarts with its process. Restarted while it
    hears no one, its first write to a key must still get a version above
    the one its earlier life gave that key: members treat an equal version
    as the same write, so another value under it would never converge."""
    ids = started(c, 3)
    n, others = ids[2], ids[:2]
    c.ctl(n, "put", R, "k", "old")
    old = int(c.ctl(others[0], "get", R, "k")["version"])
    c[n].stop()
    for o in others:
        c[o].pause()
    try:
        c[n].start()
        wait_until(lambda: c.q(n, "status") is not None, 10.0, what=f"{n}'s admin port")
        c.ctl(n, "put", R, "k", "new")  # its data dir gives its index: not held
        new = int(c.ctl(n, "get", R, "k")["version"])
    finally:
        for o in others:
            c[o].resume()
    check(new >> 8 > old >> 8, f"{n} restarted alone stamped k with Lamport {new >> 8}, not above its earlier "
                               f"life's {old >> 8}")

    def agreed():
        return all(c.ctl(i, "get", R, "k")["value"] == "new" for i in ids)
    wait_until(agreed, 5.0, what="every node to hold the restarted node's write")
    note(f"{n}'s write after a lone restart: Lamport {new >> 8} above {old >> 8}, held by all")


# ---------------------------------------------------------------------------
# Partition (a stalled node) heals: anti-entropy and TILT

@test(modes=(UNICAST,))
def stalled_node_heals_by_anti_entropy_and_tilt(c):
    ids = started(c, 3)
    stalled, others = ids[2], ids[:2]
    inc = c.incarnation(stalled)
    c.put_many(others[0], R, [(f"pre-{i}", "p") for i in range(20)])
    c[stalled].close_conn()
    t0 = time.monotonic()
    c[stalled].pause()
    wait_until(lambda: all(c.states(o)[stalled] == "failed" for o in others), 3.0,
               what=f"{others} to see the stopped {stalled} failed")
    note(f"{others} saw the stopped {stalled} failed after {time.monotonic() - t0:.2f} s")
    written = {}
    for w in others:
        items = [(f"meanwhile-{w}-{i:03d}", f"{w}-{i}") for i in range(50)]
        c.put_many(w, R, items)
        written.update(items)
    c.ctl(others[1], "put-field", R, "fields", "g", "while-stopped")
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
    log_mark = len(c[stalled].log())
    c[stalled].resume()
    t_resume = time.monotonic()
    # From the moment it resumes, the stalled node must never call the others failed.
    views = []
    holds_at = None
    while time.monotonic() - t_resume < 5.0:
        view = c.states(stalled)
        views.append(view)
        if holds_at is None and set(written) <= c.keys(stalled, R):
            holds_at = time.monotonic() - t_resume
        if holds_at is not None and time.monotonic() - t_resume > 1.5:
            break
        time.sleep(0.05)
    after_log = c[stalled].log()[log_mark:]
    accused = [v for v in views if any(v[o] == "failed" for o in others)]
    check(not accused, f"{stalled} declared healthy members failed after resuming from a stall: {accused[:1]}")
    check("+member-failed" not in after_log, f"{stalled} logged a failure after resuming:\n{after_log}")
    suspected = [v for v in views if any(v[o] == "suspected" for o in others)]
    if suspected:
        note(f"{stalled} showed a peer suspected after resuming: {suspected[0]}")
    status = c.ctl(stalled, "status")
    check(status["tilt_count"] >= 1, f"{stalled} tilt_count is {status['tilt_count']} after a 2 s stall")
    check(holds_at is not None, f"{stalled} still lacks {len(set(written) - c.keys(stalled, R))} "
                                f"of the {len(written)} keys written while it was stopped, 5 s after resuming")
    note(f"{stalled} held every key written meanwhile {holds_at:.2f} s after resuming; "
         f"tilt_count {status['tilt_count']}; entries_reconciled {status['counters']['entries_reconciled']}")
    got = c.get_many(stalled, R, list(written))
    check(all(got[k] == v for k, v in written.items()), f"{stalled} has wrong values after anti-entropy")
    wait_until(lambda: c.ctl(stalled, "get", R, "fields")["value"] == {"g": "while-stopped"}, 3.0,
               what=f"{stalled} to get the field written while it was stopped")
    for o in others:
        wait_until(lambda: c.members_view(o)[stalled]["state"] == "alive", 3.0,
                   what=f"{o} to see {stalled} alive again")
        check(c.members_view(o)[stalled]["incarnation"] == inc, f"{stalled} changed incarnation without a restart")
    final = c.states(stalled)
    check(all(final[o] == "alive" for o in others), f"{stalled}'s view at the end: {final}")
    sizes = {i: len(c.keys(i, R)) for i in ids}
    check(len(set(sizes.values())) == 1, f"members hold different numbers of keys: {sizes}")


# ---------------------------------------------------------------------------
# Authentication and refusals

@test(modes=BOTH)
def wrong_secret_never_joins(c):
    c.add_nodes(3)
    ids = list(c.nodes)
    good, intruder = ids[:2], ids[2]
    bad_secret = c.dir / "wrong-secret"
    write_secret(bad_secret)
    c[intruder].secret_file = bad_secret
    for i in good:
        c[i].start()
    c.wait_formed(good)
    before = {i: c.q(i, "status")["counters"]["unauthenticated"] for i in good}
    c[intruder].start()
    end = time.monotonic() + c.failure_timeout_ms / 1000 * 2.5
    while time.monotonic() < end:
        for i in good:
            st = c.states(i).get(intruder)
            check(st != "alive", f"{i} lists the wrong-secret node {intruder} alive")
        if c[intruder].running():
            try:
                view = c.states(intruder)
            except OSError:
                view = {}
            check(all(view.get(i) != "alive" for i in good), f"the wrong-secret node sees others alive: {view}")
        time.sleep(0.1)
    after = {i: c.q(i, "status")["counters"]["unauthenticated"] for i in good}
    for i in good:
        check(after[i] > before[i], f"{i}: unauthenticated counter did not grow ({before[i]} -> {after[i]})")
    note(f"unauthenticated counters {before} -> {after}")
    if c[intruder].running():
        own = c.q(intruder, "status")["counters"]["unauthenticated"]
        check(own > 0, "the wrong-secret node counted nothing unauthenticated")
    # The inspector with the wrong secret gets no answer either.
    r = c.ctl(good[0], "status", check=False, secret_file=bad_secret, timeout_ms=2000)
    check(not isinstance(r, dict) and r.returncode != 0, "rolegridctl with a wrong secret got an answer")
    for i in good:
        check(c.states(i)[good[0] if i != good[0] else good[1]] == "alive", f"{i} lost its healthy peer")


@test(modes=BOTH)
def node_not_in_members_is_refused(c):
    ids = started(c, 3)
    outsider = c.add_node("n9", members=ids + ["n9"])
    t0 = time.monotonic()
    outsider.start()
    rc = outsider.wait_exit(5.0)
    took = time.monotonic() - t0
    last = outsider.last_start_log().strip().splitlines()[-1]
    check(rc != 0, f"n9 (not a member) exited {rc}")
    check("rolegrid:" in last and "n9" in last and "member" in last,
          f"n9's last line does not name the reason: {last!r}")
    note(f"n9 exited {rc} after {took:.2f} s: {last}")
    refusals = sum(c.q(i, "status")["counters"]["refusals_sent"] for i in ids)
    check(refusals >= 1, "no member counted a refusal")
    check(any("n9" in c[i].log() and "refus" in c[i].log() for i in ids), "no member logged the refusal of n9")
    for i in ids:
        view = c.states(i)
        check("n9" not in view or view["n9"] != "alive", f"{i} lists n9 as {view.get('n9')}")
        check(all(view[j] == "alive" for j in ids), f"{i}'s view after the refusal: {view}")


@test(modes=BOTH)
def second_process_with_live_id_is_refused(c):
    ids = started(c, 3)
    target = ids[1]
    inc = c.incarnation(target)
    dup = c.add_node(target)  # same id, new ports
    dup.start()
    rc = dup.wait_exit(5.0)
    last = dup.last_start_log().strip().splitlines()[-1]
    check(rc != 0, f"the second {target} exited {rc}")
    check("already live" in last, f"the second {target}'s last line does not say 'already live': {last!r}")
    note(f"second {target} exited {rc}: {last}")
    check(c[target].running(), f"the original {target} died (exit code {c[target].returncode()})")
    check(any("refusing" in c[i].log() and "already live" in c[i].log() for i in ids),
          f"no member logged why it refused the second {target}")
    end = time.monotonic() + c.failure_timeout_ms / 1000 * 1.5
    while time.monotonic() < end:
        for o in ids:
            m = c.members_view(o)[target]
            check(m["state"] == "alive" and m["incarnation"] == inc and m["address"] == c[target].listen,
                  f"{o} sees {target} as {m} after the duplicate was refused")
        time.sleep(0.1)
    check(c[target].running(), f"the original {target} died")


@test(modes=(UNICAST,))
def second_process_with_live_id_and_its_state_is_refused(c):
    # A second process with a live id and a copy of its data dir votes at
    # once. In unicast mode it hears no heartbeat (nobody knows its
    # address), so only the members' refusals can stop it; a voting node
    # ignores only refusals from a process it refused itself for running on
    # another list, so these still do.
    ids = started(c, 3)
    target = ids[1]
    copy = c.dir / "copied-state"
    subprocess.run(["cp", "-r", str(c[target].data_dir), str(copy)], check=True, timeout=10)
    (copy / "lock").unlink()
    dup = c.add_node(target, extra=["--data-dir", str(copy)])
    dup.start()
    rc = dup.wait_exit(5.0)
    last = dup.last_start_log().strip().splitlines()[-1]
    check(rc != 0, f"the second {target}, voting from a copy of its state, exited {rc}")
    check("refused by" in last and "already live" in last, f"the second {target}'s last line: {last!r}")
    check("loaded intact" in dup.last_start_log(), f"the second {target} did not load the copied state")
    note(f"second {target} with a copy of its data dir exited {rc}: {last}")
    check(c[target].running(), f"the original {target} died (exit code {c[target].returncode()})")


# ---------------------------------------------------------------------------
# Command line

def _run(argv, timeout=10):
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@test()
def bad_options_exit_with_one_line(c):
    secret = c.secret_file
    p = c.port_base
    ok = ["--node", "n1", "--members", "n1,n2", "--listen", f"127.0.0.1:{p + 1}", "--admin", f"127.0.0.1:{p + 2}",
          "--seeds", f"127.0.0.1:{p + 3}", "--secret-file", secret, "--in-memory"]

    def with_opt(name, value):
        out = list(ok)
        out[out.index(name) + 1] = value
        return out

    cases = [
        ("--bogus alone", ["--bogus"], None),
        ("--bogus with valid options", ok + ["--bogus"], "--bogus"),
        ("--listen not HOST:PORT", with_opt("--listen", "nowhere"), "--listen"),
        ("--listen port out of range", with_opt("--listen", "127.0.0.1:99999"), "--listen"),
        ("--admin not an address", with_opt("--admin", "300.1.1.1:80"), "--admin"),
        ("missing secret file", with_opt("--secret-file", c.dir / "no-such-file"), "secret"),
        ("--node not in --members", with_opt("--node", "n7"), "n7"),
        ("bad --failure-timeout", ok + ["--failure-timeout", "soon"], "--failure-timeout"),
        ("bad node id", with_opt("--node", "N_1"), "N_1"),
    ]
    # Secrets: weak, not base64, or readable by others are refused with status 2.
    readable = c.dir / "secret-0644"
    write_secret(readable)
    os.chmod(readable, 0o644)
    short = c.dir / "secret-short"
    short.write_text("c2VjcmV0\n")  # base64 of "secret"
    os.chmod(short, 0o600)
    text = c.dir / "secret-text"
    text.write_text("my cluster password\n")
    os.chmod(text, 0o600)
    cases += [
        ("secret readable by others", with_opt("--secret-file", readable), "readable by group or others"),
        ("secret of 6 bytes", with_opt("--secret-file", short), "at least 32"),
        ("secret not base64", with_opt("--secret-file", text), "base64"),
    ]
    problems = []
    for what, args, needle in cases:
        r = _run([ROLEGRID] + args, timeout=5)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.returncode != 2:
            problems.append(f"{what}: exited {r.returncode}, not 2")
        elif len(lines) != 1:
            problems.append(f"{what}: {len(lines)} lines on stderr: {r.stderr!r}")
        elif needle and needle not in lines[0]:
            problems.append(f"{what}: message does not name {needle!r}: {lines[0]!r}")
    # A port that cannot be bound: exit 1 with "rolegrid: <reason>".
    with socket.socket() as held:
        held.bind(("127.0.0.1", p + 2))
        held.listen()
        r = _run([ROLEGRID] + ok, timeout=5)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.returncode != 1 or len(lines) != 1 or not lines[0].startswith("rolegrid: "):
            problems.append(f"admin port in use: exit {r.returncode}, stderr {r.stderr!r}")
    r = _run([ROLEGRIDCTL, "--node", f"127.0.0.1:{p + 2}", "--secret-file", readable, "status"], timeout=5)
    if r.returncode != 2 or "readable by group or others" not in r.stderr:
        problems.append(f"rolegridctl with a readable secret: exit {r.returncode}, stderr {r.stderr!r}")
    # keygen: a good secret, mode 0600, never overwritten.
    made = c.dir / "made-secret"
    r = _run([ROLEGRID, "keygen", made], timeout=5)
    if r.returncode != 0 or (os.stat(made).st_mode & 0o777) != 0o600 or len(read_secret(made)) != 32:
        problems.append(f"keygen: exit {r.returncode}, mode {oct(os.stat(made).st_mode & 0o777) if made.exists() else '-'}")
    before = made.read_text() if made.exists() else ""
    r = _run([ROLEGRID, "keygen", made], timeout=5)
    if r.returncode != 2 or made.read_text() != before:
        problems.append(f"keygen over an existing secret: exit {r.returncode}, file changed {made.read_text() != before}")
    check(not problems, "; ".join(problems))

    r = _run([ROLEGRID, "--help"])
    check(r.returncode == 0, f"rolegrid --help exited {r.returncode}")
    options = ["--node", "--members", "--listen", "--admin", "--multicast", "--seeds", "--secret-file", "--cluster",
               "--heartbeat-interval", "--failure-timeout", "--probe-timeout", "--anti-entropy-interval", "--rcvbuf",
               "--log-level", "--config"]
    absent = [o for o in options if o not in r.stdout]
    check(not absent, f"rolegrid --help does not mention {absent}")
    for default in ("100ms", "1000ms"):
        check(default in r.stdout, f"rolegrid --help does not show the default {default}")

    r = _run([ROLEGRIDCTL, "--node", f"127.0.0.1:{p + 9}", "--secret-file", secret, "status"])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    check(r.returncode != 0 and len(lines) == 1, f"rolegridctl to a dead port: exit {r.returncode}, {r.stderr!r}")


# ---------------------------------------------------------------------------
# Bad input on every port

_TYPES = [1, 2, 10, 11, 12, 13, 14, 20, 21, 22, 23, 30, 31, 32, 33, 40, 41, 100, 101, 7, 255]  # 3: see below
_REFUSE = 3


def _garbage_bodies(rng):
    yield b""
    yield b"\0" * 64
    yield b"\xff" * 64
    yield struct.pack("<I", 0xFFFFFFF0) + b"abc"  # a huge count or length, then nothing
    for n in (1, 7, 33, 300, 5000):
        yield bytes(rng.getrandbits(8) for _ in range(n))


def _envelope(node, incarnation, *strings):
    """Envelope{Sender{node, incarnation}, msg} with a msg of strings only."""
    out = struct.pack("<I", len(node)) + node.encode() + struct.pack("<Q", incarnation)
    return out + b"".join(struct.pack("<I", len(x)) + x.encode() for x in strings)


def _tcp_send(addr, data, linger=0.05):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        try:
            s.sendall(data)
            time.sleep(linger)
            s.settimeout(0.2)
            s.recv(4096)
        except OSError:
            pass  # the node may close or reset the connection: that is fine


def _all_running(c, ids, after):
    for i in ids:
        c.check_running(i, after)


@test(modes=BOTH)
def bad_input_is_dropped_and_counted(c):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    ids = started(c, 3)
    target = c[ids[0]]
    key, cid = frame_keys(c.name, read_secret(c.secret_file))
    wrong_key, _ = frame_keys(c.name, b"not-the-secret-not-the-secret-32b")
    _, other_cid = frame_keys("another-cluster", read_secret(c.secret_file))
    before = c.q(target, "status")["counters"]
    host, port = target.listen.rsplit(":", 1)
    udp_to = [(host, int(port))]
    if c.mode == "multicast":
        udp_to.append((harness.MCAST_GROUP, c.mcast_port))
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        for mtype in _TYPES + [_REFUSE]:
            for body in _garbage_bodies(rng):
                datagrams = [
                    make_frame(wrong_key, cid, mtype, body),                # forged
                    make_frame(key, other_cid, mtype, body),                # another cluster
                    make_frame(key, cid, mtype, body)[:-5],                 # truncated
                    make_frame(key, cid, mtype, body, body_len=len(body) + 1000),  # lying length
                    make_frame(key, cid, mtype, body, version=9),           # unknown version
                    body,                                                   # no frame at all
                ]
                if mtype != _REFUSE:
                    datagrams.append(make_frame(key, cid, mtype, body))    # authenticated garbage
                for d in datagrams:
                    for to in udp_to:
                        u.sendto(d[:65000], to)
                        sent += 1
        u.sendto(make_frame(key, cid, 1, b"\0" * 62000), udp_to[0])  # above the datagram body limit
        time.sleep(0.2)
        _all_running(c, ids, "bad datagrams")
        # TCP: peer port and admin port, each abused on fresh connections.
        for addr in (target.listen, target.admin):
            for mtype in (1, 3, 10, 11, 13, 30, 32, 40, 100):
                for body in list(_garbage_bodies(rng))[:6]:
                    _tcp_send(addr, make_frame(key, cid, mtype, body), linger=0.0)
            _tcp_send(addr, make_frame(wrong_key, cid, 100, b"x" * 40))
            _tcp_send(addr, make_frame(key, cid, 100, b"", body_len=0xFFFFFFF0))  # claims 4 GiB
            _tcp_send(addr, make_frame(key, cid, 11, b"\0" * 10)[:12])          # truncated header, then close
            _tcp_send(addr, bytes(rng.getrandbits(8) for _ in range(3000)))
        _all_running(c, ids, "bad TCP frames")
        # Neither crashed nor stalled: it answers, the cluster is intact, writes still go through.
        c.wait_formed(ids, timeout=5)
        c.ctl(ids[1], "put", R, "after-garbage", "still-fine")
        for i in ids:
            check(c.ctl(i, "get", R, "after-garbage")["value"] == "still-fine", f"{i} lost a write after the garbage")
        after = c.q(target, "status")["counters"]
        grew = {k: after[k] - before[k] for k in ("unauthenticated", "decode_errors", "datagrams_dropped",
                                                  "bad_frames")}
        note(f"seed {seed}: {sent} bad datagrams + ~120 bad TCP frames; counters grew by {grew}")
        check(grew["unauthenticated"] > 0, f"seed {seed}: forged frames were not counted as unauthenticated: {grew}")
        check(grew["decode_errors"] > 0, f"seed {seed}: authenticated garbage was not counted as decode errors: {grew}")
        check(grew["datagrams_dropped"] + grew["bad_frames"] > 0, f"seed {seed}: malformed frames not counted: {grew}")
        # A refusal from someone who is not a member (and does not name this
        # node) is bad input too: it must not stop the node.
        for sender, reason in (("", ""), ("n9", "you are refused")):
            u.sendto(make_frame(key, cid, _REFUSE, _envelope(sender, 1, reason)), udp_to[0])
            time.sleep(0.2)
            _all_running(c, ids, f"an authenticated refuse datagram from non-member {sender!r} "
                                 f"(reason {reason!r}) sent to {target.id}'s listen port")
