"""An attacker on the cluster's network, without the key: it records real
traffic and replays it (issue 16). Each attack is first shown to work
against a node with a planted hole (`fault replay-hole on`: datagrams taken
without the session and replay checks), so these checks can fail; then it
must have no effect on the real code. The admin protocol's freshness is
structural (a handshake with fresh nonces), so its replay has no plant: the
test checks that the recorded requests were real and accepted when first
sent."""

from __future__ import annotations

import socket
import struct
import threading
import time

import harness
from harness import AdminConn, AdminError, check, note, read_secret, test, wait_until
from test_agent import fault, started_cluster

R = "it"
HANDSHAKE_FRAME = 44 + 32 + 16  # header, nonce, tag: all a node sends before the client proves the key
FT_S = harness.FAILURE_TIMEOUT_MS / 1000


class Recorder:
    """Joins the cluster's multicast group like any host on the link could
    and keeps every datagram with its source address (bodies are encrypted:
    the source is all it learns of who sent what)."""

    def __init__(self, c):
        self.c = c
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.MCAST_GROUP, c.mcast_port))
        mreq = socket.inet_aton(harness.MCAST_GROUP) + socket.inet_aton("127.0.0.1")
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.sock.settimeout(0.05)
        self.got = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.got.append((f"{src[0]}:{src[1]}", data))

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def of(self, node):
        """What `node` sent, in order."""
        return [d for src, d in self.got if src == node.listen]


def attacker_socket(c, targets):
    """A UDP socket that can send to the group on lo, and the addresses to
    send to: the group and each target's listen port."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    to = [(harness.MCAST_GROUP, c.mcast_port)]
    for t in targets:
        host, port = t.listen.rsplit(":", 1)
        to.append((host, int(port)))
    return u, to


def replay(c, datagrams, targets, seconds, every=0.1):
    """Sends the recorded datagrams again, all of them every `every` s for
    `seconds`, to the group and to each target's listen port."""
    sent = 0
    u, to = attacker_socket(c, targets)
    with u:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for d in datagrams:
                for dst in to:
                    u.sendto(d, dst)
                    sent += 1
            time.sleep(every)
    return sent


def record(c, seconds):
    rec = Recorder(c)
    time.sleep(seconds)
    rec.stop()
    return rec


def value(c, nid, key):
    """k's value on nid, or None if it has no such key."""
    try:
        return c.q(nid, "get", R, key)["value"]
    except AdminError:
        return None


def counters(c, nid):
    return c.q(nid, "status")["counters"]


def acting_master(c, nid):
    """The master `nid` sees established, or None."""
    m = c.q(nid, "roles")["master"]
    return m["node"] if m and m["phase"] == "established" else None


def detect_reasons(c, nodes, since_ms):
    """The reasons of the failover detect steps `nodes` logged since then."""
    return [e["outcome"] for n in nodes for e in harness.event_log(c, n, {"failover-step"})
            if e.get("step") == "detect" and e["t_ms"] >= since_ms and "master role is vacant" not in e["outcome"]]


def replay_while_dead(c, dead, survivors, frames, seconds):
    """Kills `dead` with SIGKILL and replays its recorded datagrams for
    `seconds`. Returns (when, in s after the kill, every survivor first saw
    a new master, or None if none did during the replay; the survivors
    whose membership saw `dead` other than alive during the replay)."""
    t = threading.Thread(target=lambda: replay(c, frames, [c[s] for s in survivors], seconds), daemon=True)
    c[dead].kill9()
    t0 = time.monotonic()
    t.start()
    took = None
    gone = set()
    while time.monotonic() - t0 < seconds:
        gone |= {s for s in survivors if c.states(s).get(dead) != "alive"}
        seen = {acting_master(c, s) for s in survivors}
        if took is None and len(seen) == 1 and None not in seen and dead not in seen:
            took = time.monotonic() - t0
        if took is not None and len(gone) == len(survivors):
            break
        time.sleep(0.05)
    t.join(seconds + 2)
    return took, gone


@test(timeout=120)
def attacker_replayed_heartbeats_keep_no_dead_master_alive(c):
    ids, m, r, data, epoch, _ = started_cluster(c, 3, faults=True)
    survivors = [i for i in ids if i != m]
    # Planted hole: the recording of the master keeps it "alive" at the survivors.
    frames = record(c, 1.0).of(c[m])
    check(len(frames) >= 5, f"recorded only {len(frames)} datagrams of the master {m}")
    for s in survivors:
        fault(c, s, "replay-hole", "on")
    t_kill = time.monotonic() * 1000
    took, gone = replay_while_dead(c, m, survivors, frames, 3 * FT_S)
    # The replay keeps the dead master alive in the membership. The role
    # table still shows its entry stopped, so a failover may come anyway,
    # judged from the entry ("alive and not renewed"), never from the
    # membership.
    fooled = detect_reasons(c, survivors, t_kill)
    check(not gone and (took is None or (fooled and all(") alive and not renewed" in x for x in fooled))),
          f"with the planted hole, the membership saw {m} gone (at {sorted(gone)}; {fooled}, new master {took} s "
          f"after the kill): the replay test cannot tell a hole from none")
    note(f"planted hole: {len(frames)} recorded datagrams of {m} replayed for {3 * FT_S:.1f} s kept it alive in "
         f"the membership; " + ("no failover" if took is None else
                                f"failover {took:.2f} s after the kill only from its stopped entry: {fooled[0]}"))
    for s in survivors:
        fault(c, s, "replay-hole", "off")
    wait_until(lambda: len({acting_master(c, s) for s in survivors} - {None, m}) == 1, 10,
               what="the failover once the hole is closed")
    c[m].start()
    c.wait_formed(timeout=10)
    # The real code: the same attack on the new master.
    m2 = acting_master(c, survivors[0])
    frames = record(c, 1.0).of(c[m2])
    check(len(frames) >= 5, f"recorded only {len(frames)} datagrams of the master {m2}")
    others = [i for i in ids if i != m2]
    before = {i: counters(c, i)["replayed"] for i in others}
    took, gone = replay_while_dead(c, m2, others, frames, 3 * FT_S)
    check(took is not None, f"no failover within {3 * FT_S:.1f} s while {m2}'s recorded datagrams were replayed")
    # The entry stops at the same moment as the heartbeats, so either may
    # start the run; the membership must see the master gone regardless.
    check(gone == set(others), f"the membership of {sorted(set(others) - gone)} never saw {m2} gone during the replay")
    grew = {i: counters(c, i)["replayed"] - before[i] for i in others}
    check(all(g > 0 for g in grew.values()), f"replayed datagrams were not counted: {grew}")
    note(f"real code: failover {took:.2f} s after killing {m2} during the replay of {len(frames)} of its "
         f"datagrams; counted as replayed: {grew}")


@test(timeout=90)
def attacker_replayed_old_heartbeat_does_not_stop_a_restarted_node(c):
    ids, m, r, data, epoch, _ = started_cluster(c, 3, faults=True)
    victim = data[0] if data else r
    frames = record(c, 0.6).of(c[victim])
    check(len(frames) >= 3, f"recorded only {len(frames)} datagrams of {victim}")
    c[victim].kill9()
    c[victim].start()
    c.wait_formed(timeout=10)
    before = counters(c, victim)
    replay(c, frames, [c[victim]], 1.5)
    time.sleep(0.3)
    check(c[victim].running(), f"{victim} exited after its old run's datagrams were replayed: "
                               f"{c[victim].last_start_log().strip().splitlines()[-1]}")
    after = counters(c, victim)
    check(after["unverified"] > before["unverified"], "the replayed datagrams were not counted as unverified")
    check(after["challenges_sent"] > before["challenges_sent"], "the unknown session was never challenged")
    c.wait_formed(timeout=5)
    note(f"real code: {victim} kept running; unverified +{after['unverified'] - before['unverified']}, "
         f"challenges +{after['challenges_sent'] - before['challenges_sent']}, none answered")
    # Planted hole: the same replay stops it.
    fault(c, victim, "replay-hole", "on")
    replay(c, frames, [c[victim]], 1.0)
    rc = c[victim].wait_exit(3.0)
    check(rc is not None, "with the planted hole the replay did not stop the node: the test cannot fail")
    last = c[victim].last_start_log().strip().splitlines()[-1]
    check("already live" in last, f"with the planted hole it exited for another reason: {last!r}")
    note(f"planted hole: {victim} exited {rc}: {last}")


@test(timeout=90)
def attacker_replayed_old_data_after_a_full_restart_changes_nothing(c):
    ids, m, r, data, epoch, _ = started_cluster(c, 3, faults=True)
    writer = ids[0]
    rec = Recorder(c)
    c.q(writer, "put", R, "k", "OLD")
    time.sleep(0.3)
    rec.stop()
    # The header is in clear: its type byte tells data (11) from heartbeats.
    frames = [d for d in rec.of(c[writer]) if d[5] == 11]
    check(frames, "recorded no data datagram of the put")
    for i in ids:
        c[i].kill9()
    for i in ids:
        c[i].start()
    c.wait_formed(timeout=15)
    # The regions are in memory: after a full restart k is gone, and must stay gone.
    replay(c, frames, [c[i] for i in ids], 1.0)
    time.sleep(0.3)
    values = {i: value(c, i, "k") for i in ids}
    check(all(v is None for v in values.values()), f"a replayed datagram of the old run brought k back: {values}")
    note(f"real code: {len(frames)} recorded data datagrams of {writer}'s old run replayed after a full restart; "
         f"k stays absent everywhere")
    for i in ids:
        fault(c, i, "replay-hole", "on")
    replay(c, frames, [c[i] for i in ids], 1.0)
    time.sleep(0.3)
    values = {i: value(c, i, "k") for i in ids}
    check(any(v == "OLD" for v in values.values()),
          f"with the planted hole the replay changed nothing ({values}): the test cannot fail")
    note(f"planted hole: the replay brought k back: {values}")


class RecordingAdminConn(AdminConn):
    """An admin client whose bytes on the wire are kept, as a tap would."""

    def __init__(self, *a, **kw):
        self.sent = bytearray()
        super().__init__(*a, **kw)

    def send_raw(self, data):
        self.sent += data
        super().send_raw(data)


def replay_tcp(addr, data):
    """Sends recorded bytes on a new connection; returns what came back
    before the node closed it (or 2 s passed)."""
    host, port = addr.rsplit(":", 1)
    got = b""
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(data)
        end = time.monotonic() + 2
        try:
            while time.monotonic() < end:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return got


@test(timeout=60)
def attacker_replayed_admin_commands_have_no_effect(c):
    ids, m, r, data, epoch, _ = started_cluster(c, 3)
    node = c[ids[0]]
    secret = read_secret(c.secret_file)
    # A put, recorded on the wire.
    tap = RecordingAdminConn(node.admin, secret, c.name)
    check(tap.call("put", R, "k", "OLD") is not None, "the recorded put was not accepted")
    tap.close()
    c.q(ids[0], "put", R, "k", "NEW")
    tap2 = RecordingAdminConn(node.admin, secret, c.name)
    tap2.call("maintenance", "on")
    tap2.close()
    c.q(ids[0], "maintenance", "off")
    before = c.q(ids[0], "status")["counters"]
    for rec in (tap.sent, tap2.sent):
        got = replay_tcp(node.admin, bytes(rec))
        check(len(got) <= HANDSHAKE_FRAME, f"the node answered a replayed connection with {len(got)} bytes "
                                         "(more than its handshake)")
    time.sleep(0.2)
    values = {i: c.q(i, "get", R, "k")["value"] for i in ids}
    check(all(v == "NEW" for v in values.values()), f"a replayed put changed k: {values}")
    check(not c.q(ids[0], "roles").get("maintenance"), "a replayed 'maintenance on' switched maintenance on")
    after = c.q(ids[0], "status")["counters"]
    check(after["bad_frames"] > before["bad_frames"], f"the replayed frames were not counted: {before} -> {after}")
    note(f"replayed a recorded put ({len(tap.sent)} bytes) and 'maintenance on' ({len(tap2.sent)} bytes): no effect, "
         f"bad frames +{after['bad_frames'] - before['bad_frames']}")


def _flood_datagrams(c, targets, stop, recorded, counts):
    """Garbage, wrong-key frames and replays, as fast as one thread sends them."""
    from harness import frame_keys, make_frame
    wrong_key, cid = frame_keys(c.name, b"an attacker's guess, 32 bytes!!!")
    forged = [make_frame(wrong_key, cid, t, bytes(64)) for t in (1, 2, 3, 11)]
    junk = [bytes((i * 37 + j) % 256 for j in range(200)) for i in range(8)]
    pool = forged + junk + recorded
    u, to = attacker_socket(c, targets)
    with u:
        i = 0
        while not stop.is_set():
            try:
                u.sendto(pool[i % len(pool)], to[i % len(to)])
            except OSError:
                pass
            i += 1
            if i % 2000 == 0:
                time.sleep(0.01)  # leave the nodes some of the two cores
    counts["datagrams"] = i


def _hold_connections(addrs, n, stop, counts):
    """n idle connections, refilled as the node closes them, plus a few
    that dribble one byte at a time (slowloris)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    socks = []
    opened = 0
    while not stop.is_set():
        socks = [s for s in socks if s.fileno() != -1]
        while len(socks) < n and not stop.is_set():
            host, port = addrs[opened % len(addrs)].rsplit(":", 1)
            try:
                s = socket.create_connection((host, int(port)), timeout=1)
            except OSError:
                break
            s.setblocking(False)
            socks.append(s)
            opened += 1
        for s in socks[:20]:
            try:
                s.send(b"R")
            except OSError:
                s.close()
        # Notice the ones the node closed.
        for s in socks:
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    s.close()
            except BlockingIOError:
                pass
            except OSError:
                s.close()
        stop.wait(0.2)
    counts["connections_opened"] = opened
    for s in socks:
        s.close()


@test(timeout=120)
def attacker_flood_of_connections_and_garbage_leaves_the_master_serving(c):
    ids, m, r, data, epoch, _ = started_cluster(c, 3)
    master = c[m]
    recorded = record(c, 0.5).got
    recorded = [d for _src, d in recorded][:50]
    before = counters(c, m)
    stop = threading.Event()
    counts = {}
    threads = [threading.Thread(target=_flood_datagrams, args=(c, [master], stop, recorded, counts), daemon=True),
               threading.Thread(target=_hold_connections, args=([master.listen, master.admin], 1000, stop, counts),
                                daemon=True)]
    for t in threads:
        t.start()
    lat = []
    roles_seen = set()
    t_end = time.monotonic() + 8
    time.sleep(1)  # let the connections pile up
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        conn = AdminConn(master.admin, read_secret(c.secret_file), c.name, timeout=5)  # a new client each time
        roles = conn.call("roles")
        conn.close()
        lat.append((time.monotonic() - t0) * 1000)
        mm = roles["master"]
        roles_seen.add((mm["node"], mm["phase"], roles["epoch"]) if mm else None)
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(10)
    after = counters(c, m)
    lat.sort()
    grew = {k: after[k] - before[k] for k in ("unauthenticated", "unverified", "replayed", "handshake_timeouts",
                                              "bad_frames", "refused_connections", "handshakes_evicted")}
    note(f"{counts.get('datagrams', 0)} datagrams and {counts.get('connections_opened', 0)} connections in ~9 s; "
         f"admin round trip (new connection each) p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms over "
         f"{len(lat)} calls; counters grew {grew}")
    check(roles_seen == {(m, "established", epoch)}, f"the master did not keep its role through the flood: {roles_seen}")
    check(counts.get("connections_opened", 0) >= 1000, f"only {counts.get('connections_opened')} connections opened")
    check(lat[-1] < 1000, f"an admin call took {lat[-1]:.0f} ms under the flood")
    check(grew["unauthenticated"] > 0 and grew["replayed"] > 0 and grew["handshakes_evicted"] > 0,
          f"the flood was not dropped and counted: {grew}")
    c.wait_formed(timeout=5)


@test(timeout=120)
def secret_rotation_by_rolling_restarts_keeps_the_cluster(c):
    """The README's procedure: accept the new secret everywhere, then send
    with it everywhere, then drop the old one; one rolling restart each."""
    ids, m, r, data, epoch, _ = started_cluster(c, 3)
    old = c.secret_file
    new = c.dir / "secret.new"
    harness.write_secret(new)
    steps = [("accept the new one", old, ["--accept-secret-file", str(new)]),
             ("send with the new one", new, ["--accept-secret-file", str(old)]),
             ("drop the old one", new, [])]
    base_extra = {i: list(c[i].extra) for i in ids}
    for what, secret, extra in steps:
        for i in ids:
            c[i].stop()
            c[i].secret_file = secret
            c[i].extra = base_extra[i] + extra
            c[i].start()
            c.wait_formed(timeout=10)  # the restarted node and the others: one cluster at every moment
            c.ctl(i, "put", R, f"rot-{i}", what)
        wait_until(lambda: harness.settled_roles(c, ids), 10, what=f"one master and replica after '{what}'")
        note(f"after '{what}': formed, roles {harness.settled_roles(c, ids)}")
    for i in ids:
        check(c.ctl(i, "get", R, f"rot-{ids[-1]}")["value"] == "drop the old one", f"{i} misses the last write")
    r = c.ctl(ids[0], "status", check=False, secret_file=old, timeout_ms=2000)
    check(not isinstance(r, dict) and r.returncode != 0, "the old secret still opens the admin port after the rotation")
