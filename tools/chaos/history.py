"""The recorded history of one chaos run: a directory that the checker can
re-check on its own (`rolegrid-chaos check DIR`).

    meta.json          run parameters: nodes, members, failure timeout, promised
                       times, region, mode, scenario or seed, t0_ms, end_ms
    events/<id>.jsonl  each node's --event-log (JSON lines, all incarnations)
    faults.jsonl       what the tool did and when: start, kill9, stop, exited,
                       pause, resume, partition, heal, fault, fault-clear, hook,
                       switchover, end (t_ms: CLOCK_MONOTONIC ms, the nodes' clock)
    workload.jsonl     one line per write: client, key, node, t0_ms, t1_ms,
                       outcome ok | refused | unknown
    observations.jsonl each node's role table as the tool saw it (on change)
    snapshots.jsonl    keys held by each live node after healing: one line per
                       node per snapshot, keys as per-client ranges of sequence
                       numbers, with the cut-off time of the writes required
    expects.jsonl      the scenario's expect lines and their outcome
    watchdog/<id>.jsonl each node's fake watchdog device (open, timeout,
                       keepalive, magic-close), when the run had a service
    hooks/<id>/        each node's hook directory (the stand-in service)
    logs/<id>.log      node output; result.txt: the printed report

Every time is CLOCK_MONOTONIC in milliseconds, the clock of the nodes' event
logs (the same for every process on the machine, namespaces included).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


def now_ms():
    return round(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000.0, 1)


# ---------------------------------------------------------------------------
# Keys of the workload: "<client>-<seq>", kept as ranges of seq per client.

def key_of(client, seq):
    return f"{client}-{seq:07d}"


def parse_key(key):
    client, _, seq = key.rpartition("-")
    try:
        return client, int(seq)
    except ValueError:
        return None, None


def to_ranges(keys):
    """{client: [[lo, hi], ...]} from workload keys (others are ignored)."""
    per = {}
    for k in keys:
        c, s = parse_key(k)
        if c is not None:
            per.setdefault(c, []).append(s)
    out = {}
    for c, seqs in per.items():
        seqs.sort()
        ranges = []
        for s in seqs:
            if ranges and s == ranges[-1][1] + 1:
                ranges[-1][1] = s
            elif not ranges or s != ranges[-1][1]:
                ranges.append([s, s])
        out[c] = ranges
    return out


# ---------------------------------------------------------------------------

class HistoryWriter:
    """Appends to a history directory; thread-safe (the workload writes from
    its client threads)."""

    def __init__(self, path):
        self.dir = Path(path)
        for sub in ("events", "logs", "hooks"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files = {}
        self.meta = {}

    def _file(self, name):
        f = self._files.get(name)
        if f is None:
            f = open(self.dir / name, "a")
            self._files[name] = f
        return f

    def append(self, name, record, flush=True):
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            f = self._file(name)
            f.write(line + "\n")
            if flush:
                f.flush()

    def flush(self):
        with self._lock:
            for f in self._files.values():
                f.flush()

    def fault(self, kind, **fields):
        rec = {"t_ms": now_ms(), "kind": kind}
        rec.update(fields)
        self.append("faults.jsonl", rec)
        return rec

    def write_meta(self, **fields):
        self.meta.update(fields)
        tmp = self.dir / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.dir / "meta.json")

    def close(self):
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files = {}


def _read_jsonl(path, offset=0):
    """(records, new offset); a torn last line (still being written) is left
    for the next read."""
    out = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return out, offset
    end = data.rfind(b"\n")
    if end < 0:
        return out, offset
    for line in data[:end].split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"_bad_line": line[:200].decode(errors="replace")})
    return out, offset + end + 1


class History:
    """A history directory, read (and re-read as it grows: refresh())."""

    def __init__(self, path):
        self.dir = Path(path)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir} is not a directory")
        self.meta = {}
        self.events = {}        # node id -> [event dict] in file order
        self.watchdogs = {}     # node id -> [fake watchdog operation] in file order
        self.faults = []
        self.workload = []
        self.observations = []
        self.snapshots = []
        self.expects = []
        self._offsets = {}
        self.refresh()

    def _more(self, name):
        path = self.dir / name
        recs, self._offsets[name] = _read_jsonl(path, self._offsets.get(name, 0))
        return recs

    def refresh(self):
        meta = self.dir / "meta.json"
        if meta.exists():
            self.meta = json.loads(meta.read_text())
        ev_dir = self.dir / "events"
        if ev_dir.is_dir():
            for p in sorted(ev_dir.glob("*.jsonl")):
                self.events.setdefault(p.stem, []).extend(self._more(f"events/{p.name}"))
        for nid in self.meta.get("nodes", []):
            self.events.setdefault(nid, [])
        wd_dir = self.dir / "watchdog"
        if wd_dir.is_dir():
            for p in sorted(wd_dir.glob("*.jsonl")):
                self.watchdogs.setdefault(p.stem, []).extend(self._more(f"watchdog/{p.name}"))
        self.faults += self._more("faults.jsonl")
        self.workload += self._more("workload.jsonl")
        self.observations += self._more("observations.jsonl")
        self.snapshots += self._more("snapshots.jsonl")
        self.expects += self._more("expects.jsonl")
        return self

    # -- derived ---------------------------------------------------------------
    @property
    def nodes(self):
        return list(self.meta.get("nodes") or sorted(self.events))

    @property
    def t0(self):
        if "t0_ms" in self.meta:
            return self.meta["t0_ms"]
        ts = [f["t_ms"] for f in self.faults[:1]] + [e[0]["t_ms"] for e in self.events.values() if e]
        return min(ts) if ts else 0.0

    @property
    def end(self):
        if self.meta.get("end_ms"):
            return self.meta["end_ms"]
        ts = [f["t_ms"] for f in self.faults[-1:]] + [e[-1]["t_ms"] for e in self.events.values() if e]
        ts += [w.get("t1_ms", 0) for w in self.workload[-50:]]
        return max(ts) if ts else 0.0

    def rel(self, t):
        """Seconds since the start of the run, for messages."""
        return (t - self.t0) / 1000.0
