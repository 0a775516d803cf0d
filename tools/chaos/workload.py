"""The workload: clients writing unique keys to a replicated region through
several nodes, recording which writes were acknowledged.

Each client has its own thread and admin connection (tests/integration's
AdminConn). Client k starts on node k (mod N); when its node stops answering
(killed, paused, restarting) it records the writes in flight as `unknown`
and moves to the next node. A put is acknowledged by the node only once
every member in the writer's view applied it, so an `ok` write must be on
every live node after healing; `refused` (the node said no) and `unknown`
(no answer) writes are not required anywhere.

Keys are "c<k>-<seq>" (history.key_of), so a node's key set is a few ranges
per client and snapshots stay small however long a soak runs.
"""

from __future__ import annotations

import threading
import time

from rgkit.admin import AdminConn, AdminError

from .cluster import CLUSTER_NAME
from .history import key_of, now_ms, to_ranges

REGION = "chaos"


class Workload:
    def __init__(self, cluster, clients=3, rate=40.0, window=1, region=REGION, put_timeout_s=None):
        self.cluster = cluster
        self.clients = clients
        self.rate = rate          # puts per second per client; 0: as fast as answers come
        self.window = window      # puts in flight per client
        self.region = region
        ft = cluster.failure_timeout_ms / 1000.0
        self.put_timeout_s = put_timeout_s or (3 * ft + 3.0)
        self.tag = f"{int(now_ms())}"
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()
        self.counts = {"ok": 0, "refused": 0, "unknown": 0}
        self._acked = []  # (t1, key)
        self.running = False

    def set_load(self, rate, window):
        self.rate, self.window = rate, window

    def start(self):
        if self.running or self.clients <= 0:
            return
        self._stop.clear()
        self.running = True
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True, name=f"client-c{k}")
                         for k in range(self.clients)]
        for t in self._threads:
            t.start()
        self.cluster.record("workload", state="on", clients=self.clients, rate=self.rate, window=self.window)

    def stop(self):
        if not self.running:
            return
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.put_timeout_s + 2)
        self.running = False
        self.cluster.history.flush()
        self.cluster.record("workload", state="off", **self.counts)

    def _record(self, client, seq, key, node, t0, outcome, err=None):
        t1 = now_ms()
        rec = {"client": client, "seq": seq, "key": key, "node": node, "t0_ms": t0, "t1_ms": t1, "outcome": outcome}
        if err:
            rec["err"] = err[:160]
        self.cluster.history.append("workload.jsonl", rec, flush=False)
        with self._lock:
            self.counts[outcome] += 1
            if outcome == "ok":
                self._acked.append((t1, key))

    def acked_keys(self, cutoff=None, after=None):
        with self._lock:
            return {k for t, k in self._acked if (cutoff is None or t <= cutoff) and (after is None or t > after)}

    def _client(self, k):
        name = f"c{k}"
        ids = self.cluster.ids
        target = k % len(ids)
        seq = 0
        conn = node_id = None
        inflight = {}  # rid -> (seq, key, t0)
        next_t = time.monotonic()
        while not self._stop.is_set():
            if conn is None:
                node_id = ids[target % len(ids)]
                node = self.cluster.nodes[node_id]
                if not node.running():
                    target += 1
                    self._stop.wait(0.02)
                    continue
                try:
                    conn = AdminConn(node.admin, self.cluster.secret, CLUSTER_NAME, timeout=self.put_timeout_s)
                except OSError:
                    conn = None
                    target += 1
                    self._stop.wait(0.05)
                    continue
            try:
                while len(inflight) < max(1, self.window) and not self._stop.is_set():
                    seq += 1
                    key = key_of(name, seq)
                    rid, frame = conn.encode("put", (self.region, key, f"{key}:{self.tag}"))
                    inflight[rid] = (seq, key, now_ms())
                    conn.send_raw(frame)
                    if self.rate:
                        break
                rid = min(inflight)
                s, key, t0 = inflight[rid]
                try:
                    conn.wait(rid, timeout=self.put_timeout_s)
                    self._record(name, s, key, node_id, t0, "ok")
                except AdminError as e:
                    self._record(name, s, key, node_id, t0, "refused", str(e))
                    self._stop.wait(0.05)
                del inflight[rid]
            except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                for rid, (s, key, t0) in sorted(inflight.items()):
                    self._record(name, s, key, node_id, t0, "unknown", f"{type(e).__name__}: {e}")
                inflight.clear()
                conn.close()
                conn = None
                target += 1
                continue
            if self.rate:
                next_t += 1.0 / self.rate
                delay = next_t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_t = time.monotonic()
        # stopping: wait for the answers still due
        if conn is not None:
            for rid, (s, key, t0) in sorted(inflight.items()):
                try:
                    conn.wait(rid, timeout=self.put_timeout_s)
                    self._record(name, s, key, node_id, t0, "ok")
                except AdminError as e:
                    self._record(name, s, key, node_id, t0, "refused", str(e))
                except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                    self._record(name, s, key, node_id, t0, "unknown", f"{type(e).__name__}: {e}")
            conn.close()


def node_keys(cluster, nid, region=REGION, timeout=10.0):
    return set(cluster.nodes[nid].q("keys", region, "", "100000000", timeout=timeout))


def snapshot(cluster, workload, label, wait_s=10.0, after=None, known_missing=None):
    """Waits (up to wait_s) until every live node holds every write
    acknowledged so far (after the last full outage `after`), then records
    each live node's keys in snapshots.jsonl. Returns ({node: missing}, n).
    known_missing {node: keys}: writes already found missing earlier; a
    node lacking only those is not waited for again (the soak)."""
    cutoff = now_ms()
    required = workload.acked_keys(cutoff, after) if workload else set()
    live = cluster.up_ids()
    deadline = time.monotonic() + wait_s
    held, missing = {}, {}
    pending = list(live)
    while pending:
        for nid in list(pending):
            try:
                keys = node_keys(cluster, nid, workload.region if workload else REGION)
            except (AdminError, OSError, ConnectionError, TimeoutError, ValueError) as e:
                missing[nid] = f"no answer: {e}"
                continue
            held[nid] = keys
            missing[nid] = required - keys
            if not missing[nid] or (known_missing and missing[nid] <= known_missing.get(nid, set())):
                pending.remove(nid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    t = now_ms()
    for nid in live:
        if nid in held:
            cluster.history.append("snapshots.jsonl", {
                "t_ms": t, "cutoff_ms": cutoff, "label": label, "node": nid, "count": len(held[nid]),
                "waited_ms": round(t - cutoff), "ranges": to_ranges(held[nid])})
    return {nid: m for nid, m in missing.items() if m}, len(required)
