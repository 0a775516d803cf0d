"""Integration tests of the durable quorum register (issue 10): data dirs
that survive kill -9 of the whole cluster, lost and corrupt state recovered
under the sound rule, in-memory mode's bootstrap, bad data dirs refused in
one line, and disk faults that stop a node voting (never answering from
state it could not persist). Run through run.py (-k durable_).
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import time

import harness
from harness import TestFailure, check, note
from test_agent import (FT_S, agent_nodes, agent_test, check_one_master_at_a_time, events, kill_and_fail_over,
                        roles, started_cluster, summary, wait_roles)


def status(c, nid):
    return c.q(nid, "status")


def acceptor(c, nid):
    return status(c, nid)["acceptor"]


def every_epoch(c, ids):
    """Every epoch any node's event log ever named (all incarnations)."""
    out = set()
    for i in ids:
        for e in events(c, i):
            if isinstance(e.get("epoch"), int):
                out.add(e["epoch"])
    return out


def wait_voting(c, nid, timeout, what):
    return harness.wait_until(lambda: acceptor(c, nid)["voting"], timeout, what=f"{nid} {what}")


def log_lines(c, nid, needle):
    return [ln for ln in c[nid].log().splitlines() if needle in ln]


# ---------------------------------------------------------------------------
# Full-cluster restarts

@agent_test(timeout=60)
def durable_full_cluster_kill9_keeps_the_table_and_the_epoch_grows(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    kill_and_fail_over(c, ids, m, r, d, e)
    c[m].start()
    wait_roles(c, ids, 8, what=f"{m} back as replica", master=r, epoch=e + 1)
    before = max(every_epoch(c, ids))
    table_before = summary(roles(c, d))
    seen = {i: len(events(c, i)) for i in ids}
    for i in ids:
        c[i].kill9()
    for i in ids:
        c[i].start()
    c.wait_formed(timeout=15)
    for i in ids:
        check(acceptor(c, i)["voting"], f"{i} does not vote at once after a restart with its data dir: {acceptor(c, i)}")
        check(log_lines(c, i, "loaded intact"), f"{i} did not log that it loaded its state intact")
    snaps, _ = wait_roles(c, ids, 3 * FT_S + 5, what="a master after the full restart")
    s = snaps[ids[0]]
    note(f"before: master {table_before['master']} epoch {table_before['epoch']} (highest epoch logged {before}); "
         f"after the full kill -9 and restart: master {s['master']} epoch {s['epoch']}")
    check(s["epoch"] > before, f"the epoch after the full restart is {s['epoch']}, not above every earlier one ({before})")
    check_table_kept(c, ids, seen, table_before, s)
    check_one_master_at_a_time(c, ids)


def check_table_kept(c, ids, seen, before, after):
    """The restarted cluster went on from the table it had: its master took
    the next epoch (resumed), or, if it could not renew before the old lease
    ran out (the two race after a full restart), another node took over
    from exactly that entry. A lost table would show as a claim of a vacant
    role instead."""
    later = [e for i in ids for e in events(c, i)[seen[i]:]]
    vacant = [e for e in later if "the master role is vacant" in str(e.get("reason", ""))]
    check(not vacant, f"a node claimed a vacant master role after the restart (the table was lost?): {vacant[:1]}")
    if after["master"] == before["master"]:
        return
    entry = f"master {before['master']} (epoch {before['epoch']})"
    took = [e for e in later if e.get("event") == "+promoted" and e.get("reason", "").startswith(entry)]
    check(took, f"the master came back as {after['master']}, neither {before['master']} nor a takeover of its "
                f"entry ({entry}): the table was lost?")


@agent_test(timeout=60)
def durable_in_memory_full_restart_bootstraps_and_epochs_restart(c):
    # What --in-memory gives up, as the README says: a full restart forgets
    # the role table; the nodes bootstrap (every one recovering) at epoch 1.
    ids, m, r, (d,), e, _ = started_cluster(c, extra=["--in-memory"])
    kill_and_fail_over(c, ids, m, r, d, e)
    for i in ids:
        if c[i].running():
            c[i].kill9()
    t0 = time.monotonic()
    for i in ids:
        c[i].start()
    snaps, t1 = wait_roles(c, ids, 3 * FT_S + 8, what="a master after the in-memory full restart")
    s = snaps[ids[0]]
    check(s["epoch"] == 1, f"in-memory mode kept epoch {s['epoch']} across a full restart")
    boot = [i for i in ids if log_lines(c, i, "+quorum-ready: bootstrap")]
    check(boot, "no node logged a bootstrap")
    for i in ids:
        check(not log_lines(c, i, "loaded intact"), f"{i} claims to have loaded state in --in-memory mode")
    note(f"in-memory full restart -> master {s['master']} at epoch 1 after {t1 - t0:.2f} s "
         f"(bootstrap logged by {boot})")


# ---------------------------------------------------------------------------
# Lost and corrupt state: a fresh acceptor recovers under the sound rule

@agent_test(timeout=60)
def durable_lost_data_dir_recovers_from_ready_peers_before_voting(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    c[d].kill9()
    subprocess.run(["rm", "-rf", str(c[d].data_dir)], check=True)
    t0 = time.monotonic()
    c[d].start()
    # It must not vote before the wait (one failure timeout) plus its peers' answers.
    early = harness.wait_until(lambda: _answers(c, d), 3, what=f"{d} to answer")["acceptor"]
    check(not early["voting"] and early["state"].startswith("recovering"),
          f"{d} voted at once with an empty data dir: {early}")
    wait_voting(c, d, FT_S + 5, "voting again")
    took = time.monotonic() - t0
    check(log_lines(c, d, "holds no acceptor state"), f"{d} did not say its data dir was empty")
    rec = log_lines(c, d, "+quorum-ready: acceptor state recovered from")
    check(rec, f"{d} did not log where it recovered from")
    check(took >= FT_S * 0.9, f"{d} voted {took:.2f} s after its restart: before the recovery wait ({FT_S} s)")
    note(f"{d} restarted with its data dir deleted: voting after {took:.2f} s; {rec[-1].split('] ', 1)[-1]}")
    check(os.path.getsize(c[d].data_dir / "acceptor.state") > 0, "the recovered state was not written back")
    # It takes part in a failover afterwards.
    kill_and_fail_over(c, ids, m, r, d, e)
    check_one_master_at_a_time(c, ids)


def _answers(c, nid):
    try:
        return status(c, nid)
    except Exception:  # noqa: BLE001 - not up yet
        return None


@agent_test(timeout=60)
def durable_corrupt_state_is_reported_in_one_line_and_recovered(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    c[d].kill9()
    path = c[d].data_dir / "acceptor.state"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    c[d].start()
    wait_voting(c, d, FT_S + 5, "voting after recovering")
    bad = log_lines(c, d, "+state-corrupt")
    check(len(bad) == 1, f"{d} logged the corrupt state {len(bad)} times: {bad}")
    check("checksum mismatch" in bad[0], f"the line does not say what is wrong: {bad[0]}")
    check(log_lines(c, d, "+quorum-ready: acceptor state recovered from"), f"{d} did not recover from peers")
    note(bad[0].split("] ", 1)[-1])
    wait_roles(c, ids, 5, master=m)


@agent_test(timeout=90)
def durable_nodes_on_a_new_list_never_form_a_second_cluster(c):
    # Issue 14's hole, in the form no data dir can refuse: two data nodes
    # of a running five-node cluster come back in-memory, with a new node,
    # on the list "those two + n6". They are a majority of their own list,
    # and n3..n5 of theirs; started empty, they would elect a second master.
    ids, m, r, data, e, _ = started_cluster(c, n=5, extra=["--in-memory"])
    moved = data[:2]
    new_list = sorted(moved + ["n6"])
    for i in moved:
        c[i].kill9()
    fresh = [c.add_node(i, members=new_list, extra=["--in-memory", "--event-log", str(c.dir / f"{i}-new.events")])
             for i in new_list]
    for n in fresh:
        n.start()
    time.sleep(3 * FT_S + 1)
    for n in fresh:
        a = c.q(n, "status")["acceptor"]
        check(not a["voting"], f"{n.id} on the list {new_list} votes beside the cluster still running: {a}")
        check("no bootstrap in this life" in a["state"], f"{n.id} does not say why it waits: {a}")
        check("+bootstrap-held" in n.log(), f"{n.id} did not log why it waits")
        check(summary(c.q(n, "roles"))["master"] is None, f"{n.id} sees a master of a second cluster")
    gone = [i for i in ids if i not in moved and not c[i].running()]
    check(not gone, f"{gone} of the running cluster exited, refused by the nodes on the new list")
    s = summary(roles(c, m))
    check(s["master"] == m and s["epoch"] == e, f"the running cluster lost its master: {s}")
    note(f"{new_list} held off for {3 * FT_S + 1:.0f} s beside {m}'s cluster: {a['state']}")
    # The hold lasts for the nodes' lives: a partition between the two
    # lists must not end it. With the old cluster gone and the new nodes
    # restarted, the new list is a new cluster.
    for i in ids:
        if c[i].running():
            c[i].kill9()
    time.sleep(2 * FT_S)
    check(not any(c.q(n, "status")["acceptor"]["voting"] for n in fresh),
          "a node on the new list bootstrapped once the old cluster was gone, in the life that heard it")
    for n in fresh:
        n.kill9()
    t0 = time.monotonic()
    for n in fresh:
        n.start()

    def new_master():
        got = [summary(c.q(n, "roles")) for n in fresh]
        return got[0]["master"] if got[0]["master"] and all(g["master"] == got[0]["master"] for g in got) else None

    master = harness.wait_until(new_master, 3 * FT_S + 8, what=f"a master of {new_list} once the old cluster is gone")
    check(master in new_list, f"master {master} is not on the new list")
    note(f"still held {2 * FT_S:.0f} s after the old cluster stopped; once restarted, {master} became master of "
         f"{new_list} in {time.monotonic() - t0:.2f} s")


# ---------------------------------------------------------------------------
# Bad data dirs: one line and a non-zero exit

def _state_record(path, version):
    """The file with its format version replaced (checksum recomputed)."""
    raw = bytearray(path.read_bytes())
    length = struct.unpack_from("<I", raw, 16)[0]
    struct.pack_into("<I", raw, 4, version)
    body = bytes(raw[:20 + length])
    return body + hashlib.blake2b(body, digest_size=16).digest()


@agent_test(timeout=60)
def durable_bad_data_dirs_exit_with_one_line(c):
    ids, m, r, (d,), e, _ = started_cluster(c)
    problems = []

    def expect_exit(what, argv, code, needle):
        p = subprocess.run([str(harness.ROLEGRID)] + argv, capture_output=True, text=True, timeout=10)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        if p.returncode != code or len(lines) != 1 or needle not in lines[0]:
            problems.append(f"{what}: exit {p.returncode}, stderr {p.stderr!r} (wanted {code} and {needle!r})")
        else:
            note(f"{what}: exit {code}: {lines[0]}")

    base = c[d].argv()
    i = base.index("--data-dir")

    def with_dir(path):
        out = list(base)
        out[i + 1] = str(path)
        return out[1:]

    afile = c.dir / "a-file"
    afile.write_text("x")
    expect_exit("data dir is a file", with_dir(afile), 2, "not a directory")
    expect_exit("data dir in use by the running node", with_dir(c[d].data_dir), 1, "in use by another rolegrid")
    other = next(x for x in ids if x not in (d, m))
    expect_exit(f"{other}'s data dir given to {d}", with_dir(c[other].data_dir), 1, "in use")
    c[d].kill9()
    copy = c.dir / "copy-of-other"
    subprocess.run(["cp", "-r", str(c[other].data_dir), str(copy)], check=True)
    (copy / "lock").unlink()
    expect_exit(f"{other}'s state copied for {d}", with_dir(copy), 2, f"belongs to node '{other}'")
    future = c.dir / "future"
    future.mkdir()
    (future / "acceptor.state").write_bytes(_state_record(c[d].data_dir / "acceptor.state", 99))
    expect_exit("a newer format version", with_dir(future), 2, "format version 99")
    # Its own data dir, but a member list with one more node: refused, since
    # the nodes restarted on a new list and those left on the old one could
    # each be a majority of their own list (issue 14).
    grown = list(base)
    j = grown.index("--members")
    grown[j + 1] = grown[j + 1] + ",n9"
    expect_exit("its own data dir under another member list", grown[1:], 2, "differs from the list in --data-dir")
    check(not problems, "; ".join(problems))


# ---------------------------------------------------------------------------
# Disk faults: the node stops voting and says why, then votes again

@agent_test(timeout=90)
def durable_failed_fsync_stops_voting_never_answers_unpersisted(c):
    ids, m, r, (d,), e, _ = started_cluster(c, faults=True)
    c.q(d, "fault", "disk", "fail")
    harness.wait_until(lambda: not acceptor(c, d)["voting"], 3, what=f"{d} to stop voting on a failed save")
    a = acceptor(c, d)
    check("fdatasync" in a["disk_error"], f"{d}'s status does not say why: {a}")
    check(log_lines(c, d, "+disk-fault"), f"{d} did not log the disk fault")
    # Two of three still vote: the master keeps renewing.
    time.sleep(2 * FT_S)
    wait_roles(c, ids, 2, master=m, epoch=e)
    # With the replica's disk failing too, no majority can persist a vote:
    # the master must lose its lease and stop acting.
    c.q(r, "fault", "disk", "fail")
    harness.wait_until(lambda: not roles(c, m)["self"]["acting_master"], FT_S + 2,
                       what=f"{m} to stop acting once a majority cannot persist")
    # acting_master turns false at the bound itself; the event is logged at the next input.
    harness.wait_until(lambda: log_lines(c, m, "+lease-lost"), 2, what=f"{m} to log +lease-lost")
    for i in (d, r):
        c.q(i, "fault", "disk", "ok")
    for i in (d, r):
        wait_voting(c, i, 3, "voting again once its disk works")
        check(log_lines(c, i, "+disk-ok"), f"{i} did not log +disk-ok")
    snaps, _ = wait_roles(c, ids, 3 * FT_S + 5, what="a master once the disks work again")
    check_one_master_at_a_time(c, ids)
    note(f"after the disks recovered: master {snaps[ids[0]]['master']} at epoch {snaps[ids[0]]['epoch']}")


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@agent_test(timeout=90)
def durable_full_disk_and_read_only_dir(c):
    # A data dir on a full file system: the node runs but does not vote until
    # its state can be written; freeing space lets it vote.
    full = c.dir / "full"
    ro = c.dir / "ro"
    _mount_tmpfs(full, "64k")
    try:
        filler = full / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=64"], capture_output=True)
        ids = agent_nodes(c, 3)
        c["n3"].extra += ["--data-dir", str(full / "n3")]
        c.start_all()
        c.wait_formed()
        wait_roles(c, ids, 10, what="a master without n3's vote")
        a = harness.wait_until(lambda: (lambda x: x if x["disk_error"] else None)(acceptor(c, "n3")), FT_S + 5,
                               what="n3 to report its full disk")
        check(not a["voting"] and "No space left" in a["disk_error"], f"n3's acceptor status: {a}")
        note(f"n3 on a full disk: {a['state']}")
        filler.unlink()
        wait_voting(c, "n3", 3, "voting once space was freed")
        check(log_lines(c, "n3", "+disk-ok"), "n3 did not log +disk-ok")
        # A read-only file system at start: one line, exit 1.
        _mount_tmpfs(ro, "64k")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        argv = c["n3"].argv()
        argv[argv.index("--data-dir") + 1] = str(ro / "n3")
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        check(p.returncode != 0 and len(lines) == 1 and "Read-only" in lines[0],
              f"read-only data dir: exit {p.returncode}, stderr {p.stderr!r}")
        note(f"read-only data dir at start: exit {p.returncode}: {lines[0] if lines else ''}")
    finally:
        c.close()
        _umount(full)
        _umount(ro)
