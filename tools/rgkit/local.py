"""A cluster of real rolegrid processes on loopback (ports from a block per
test), for the integration tests and the failover benchmark. Only run it
inside a private network namespace: the nodes use multicast."""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .admin import AdminConn, AdminError, read_secret, write_secret
from .checks import CtlError, NodeExited, TestFailure, check, note, wait_until
from .paths import ROLEGRID, ROLEGRIDCTL
from .procs import die_with_parent, kill_and_reap

MULTICAST = "multicast"
UNICAST = "unicast"
BOTH = (MULTICAST, UNICAST)

MCAST_GROUP = "239.77.0.1"
FAILURE_TIMEOUT_MS = 1000


class Node:
    """One rolegrid process (and its restarts), named by its node id."""

    def __init__(self, cluster, nid, listen_port, admin_port, members, secret_file, extra):
        self.cluster = cluster
        self.id = nid
        self.listen = f"127.0.0.1:{listen_port}"
        self.admin = f"127.0.0.1:{admin_port}"
        self.members = list(members)
        self.secret_file = secret_file
        self.extra = list(extra)
        self.proc = None
        self.starts = 0
        self.log_path = cluster.dir / f"{nid}.log"
        if self.log_path.exists() or any(n.log_path == self.log_path for n in cluster.all_nodes):
            self.log_path = cluster.dir / f"{nid}-{admin_port}.log"
        self._conn = None

    def argv(self):
        c = self.cluster
        args = [str(ROLEGRID), "--node", self.id, "--members", ",".join(self.members),
                "--listen", self.listen, "--admin", self.admin, "--secret-file", str(self.secret_file),
                "--cluster", c.name, "--failure-timeout", f"{c.failure_timeout_ms}ms"]
        if c.mode == MULTICAST:
            args += ["--multicast", f"{MCAST_GROUP}:{c.mcast_port}"]
        else:
            seeds = [c.listen_of(m) for m in self.members if m != self.id and c.listen_of(m)]
            args += ["--seeds", ",".join(seeds)]
        # Durable state in a dir of the node's own, kept across its restarts,
        # unless the test asks for --in-memory or names a dir itself.
        if "--in-memory" not in self.extra and "--data-dir" not in self.extra:
            args += ["--data-dir", str(self.data_dir)]
        return args + self.extra

    @property
    def data_dir(self):
        return self.log_path.with_suffix(".data")

    def start(self):
        check(self.proc is None or self.proc.poll() is not None, f"{self.id} is already running")
        self.close_conn()
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.starts} at {time.strftime('%H:%M:%S')}: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        log.close()
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig):
        check(self.running(), f"{self.id} is not running (exit code {self.returncode()})")
        os.kill(self.proc.pid, sig)

    def kill9(self):
        """SIGKILL; returns the monotonic time just before the kill."""
        self.close_conn()
        t = time.monotonic()
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        return t

    def term(self):
        """SIGTERM (graceful leave); returns the monotonic time of the signal."""
        self.close_conn()
        t = time.monotonic()
        self.signal(signal.SIGTERM)
        return t

    def stop(self, timeout=5.0):
        """Graceful stop; returns the exit code. Kills it if it hangs."""
        if not self.running():
            return self.returncode()
        self.term()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise TestFailure(f"{self.id} did not exit within {timeout} s of SIGTERM")

    def pause(self):
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def restart(self):
        if self.running():
            self.kill9()
        return self.start()

    def wait_exit(self, timeout):
        """Waits for the process to exit by itself; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.id} (pid {self.pid}) still running after {timeout} s")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def last_start_log(self):
        text = self.log()
        i = text.rfind("==== start #")
        return text[i:] if i >= 0 else text

    def conn(self):
        if self._conn is None:
            self._conn = AdminConn(self.admin, read_secret(self.secret_file), self.cluster.name)
        return self._conn

    def close_conn(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def kill_quietly(self):
        self.close_conn()
        if self.proc is None:
            return
        kill_and_reap(self.proc)


class Cluster:
    """The processes, ports and temp dir of one test.

    Ports come from a block reserved for this test (`port_base`), so a test
    never meets a previous test's sockets: listen ports at base+1.., admin
    ports at base+41.., the multicast port at base+99."""

    def __init__(self, name, mode, port_base, failure_timeout_ms=FAILURE_TIMEOUT_MS):
        # The cluster name is the node's --cluster ([a-z0-9-]{1,32}): unique
        # per test, so a straggler of another test could never be accepted.
        self.name = f"it-{port_base}"
        self.test_name = name
        self.mode = mode
        self.port_base = port_base
        self.mcast_port = port_base + 99
        self.failure_timeout_ms = failure_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix=f"rg-it-{name}-"))
        self.secret_file = self.dir / "secret"
        write_secret(self.secret_file)
        self.nodes = {}      # id -> the first node declared with that id
        self.all_nodes = []  # every node declared, including second processes with a taken id
        self.default_members = []
        self._slot = 0

    # -- nodes -------------------------------------------------------------
    def add_node(self, nid, members=None, secret_file=None, extra=(), listen_port=None, admin_port=None):
        """Declares a node (not started). Default members: every node added
        with default members, i.e. call add_nodes() first."""
        self._slot += 1
        check(self._slot < 40, "too many nodes for one port block")
        node = Node(self, nid,
                    listen_port or self.port_base + self._slot,
                    admin_port or self.port_base + 40 + self._slot,
                    members if members is not None else self.default_members,
                    secret_file or self.secret_file, extra)
        self.all_nodes.append(node)
        self.nodes.setdefault(nid, node)
        return node

    def add_nodes(self, n, prefix="n"):
        ids = [f"{prefix}{i}" for i in range(1, n + 1)]
        self.default_members = ids
        return [self.add_node(i) for i in ids]

    def listen_of(self, nid):
        node = self.nodes.get(nid)
        return node.listen if node else None

    def __getitem__(self, nid):
        return self.nodes[nid]

    def start_all(self):
        for node in self.nodes.values():
            node.start()

    def running_nodes(self):
        return [n for n in self.nodes.values() if n.running()]

    def check_running(self, nid, after=None):
        """Fails the test at once (with the reason the node gave) if it exited;
        `after` says what the test had just done."""
        node = self.nodes[nid]
        if not node.running():
            lines = node.last_start_log().strip().splitlines()
            when = f" after {after}" if after else ""
            raise NodeExited(f"{nid} exited (code {node.returncode()}){when}: {lines[-1] if lines else 'no output'}")

    # -- talking to nodes ----------------------------------------------------
    def ctl(self, node, *args, json=True, check=True, secret_file=None, timeout_ms=5000):
        """Runs rolegridctl against `node` (a Node or node id). Returns the
        parsed JSON (json=True) or stdout text; raises CtlError when it exits
        non-zero and check=True."""
        node = self.nodes[node] if isinstance(node, str) else node
        argv = [str(ROLEGRIDCTL), "--node", node.admin, "--secret-file", str(secret_file or node.secret_file),
                "--cluster", self.name, "--timeout", str(timeout_ms)]
        if json:
            argv.append("--json")
        argv += [str(a) for a in args]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout_ms / 1000 + 5)
        except subprocess.TimeoutExpired:
            raise CtlError(args, "timeout", "", f"rolegridctl did not finish within {timeout_ms / 1000 + 5} s")
        if r.returncode != 0:
            if check:
                raise CtlError([str(a) for a in args], r.returncode, r.stdout, r.stderr)
            return r
        if json:
            return jsonlib.loads(r.stdout)
        return r.stdout

    def q(self, node, cmd, *args, timeout=5.0):
        """One request over the node's kept-open admin connection."""
        node = self.nodes[node] if isinstance(node, str) else node
        try:
            return node.conn().call(cmd, *args, timeout=timeout)
        except (OSError, ConnectionError, TimeoutError):
            node.close_conn()
            raise

    def members_view(self, node, fast=True):
        """{id: member dict} as `node` sees them."""
        arr = self.q(node, "members") if fast else self.ctl(node, "members")
        return {m["id"]: m for m in arr}

    def states(self, node):
        return {i: m["state"] for i, m in self.members_view(node).items()}

    def incarnation(self, node):
        return self.q(node, "status")["incarnation"]

    def put_many(self, node, region, items, window=64, timeout=60.0):
        """Pipelined puts of (key, value) pairs through one admin connection."""
        node = self.nodes[node] if isinstance(node, str) else node
        reqs = [("put", (region, k, v)) for k, v in items]
        return node.conn().pipeline(reqs, window=window, timeout=timeout)

    def get_many(self, node, region, keys, window=256, timeout=60.0):
        """{key: value or None} read through one admin connection."""
        node = self.nodes[node] if isinstance(node, str) else node
        out = {}
        conn = node.conn()
        for k in keys:
            rid, frame = conn.encode("get", (region, k))
            conn.send_raw(frame)
            try:
                out[k] = conn.wait(rid, timeout)["value"]
            except AdminError:
                out[k] = None
        return out

    def keys(self, node, region, prefix=""):
        """Every key of `region` on `node` (the node's `keys` answers at most
        LIMIT keys, 1000 unless asked for more)."""
        args = [region, prefix, "100000000"]
        try:
            return set(self.q(node, "keys", *args, timeout=20.0))
        except AdminError:
            return set()

    # -- waiting -------------------------------------------------------------
    def formed(self, ids=None):
        """True when every node in `ids` is synced and sees every other one
        alive with the incarnation that node reports for itself."""
        ids = ids or [n.id for n in self.nodes.values() if n.running()]
        for i in ids:
            self.check_running(i)
        incs = {i: self.q(i, "status") for i in ids}
        for i in ids:
            if not incs[i]["transfer"]["synced"]:
                return False
            view = self.members_view(i)
            for j in ids:
                m = view.get(j)
                if m is None or m["state"] != "alive" or m["incarnation"] != incs[j]["incarnation"]:
                    return False
        return True

    def wait_formed(self, ids=None, timeout=10.0):
        ids = ids or [n.id for n in self.nodes.values() if n.running()]
        try:
            wait_until(lambda: self.formed(ids), timeout, interval=0.05,
                       what=f"{', '.join(ids)} to form a cluster")
        except TestFailure:
            for i in ids:
                self.check_running(i)
            views = {}
            for i in ids:
                try:
                    views[i] = self.states(i)
                except Exception as e:  # noqa: BLE001 - only for the report
                    views[i] = f"unreachable: {e}"
            raise TestFailure(f"{', '.join(ids)} did not form a cluster within {timeout} s; views: {views}")

    # -- cleanup ---------------------------------------------------------------
    def close(self):
        """Kills every process this cluster started, by PID (each Node holds
        its one live process: a restart only starts after the previous one
        was reaped, so no PID here can have been reused)."""
        for node in self.all_nodes:
            node.kill_quietly()

    def dump_logs(self, out=sys.stdout, max_lines=80):
        for node in self.all_nodes:
            lines = node.log().splitlines()
            shown = lines[-max_lines:]
            out.write(f"----- log of {node.id} ({node.log_path}, last {len(shown)} of {len(lines)} lines)\n")
            for line in shown:
                out.write(f"  | {line}\n")
        for extra in sorted(self.dir.glob("*.extra.log")):
            out.write(f"----- {extra.name}\n{extra.read_text(errors='replace')}\n")
        out.flush()

    def remove_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)


