"""Real rolegrid processes in the namespaces of a chaos.netns.Network, and the
faults the tool applies to them. Every fault is recorded in the history
(faults.jsonl) with the monotonic time it happened.

Processes: each node is started as `ip netns exec rgc-<id> rolegrid ...` in
a process group of its own (ip execs rolegrid, so the PID and group are the
node's). A node's hooks run in process groups of their own (the hook runner
puts them there so it can kill a hook with its children), so a pause stops
the node's group first, then the group of every descendant found in /proc,
and a resume continues them in the reverse order. Nothing here signals a
process the tool did not start: every PID is one of ours or a descendant of
one of ours, inside the tool's own PID namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from rgkit.admin import AdminConn, AdminError, read_secret, write_secret
from rgkit.paths import ROLEGRID, ROLEGRIDCTL
from rgkit.procs import die_with_parent, kill_and_reap

from .history import HistoryWriter, now_ms
from .netns import Network

CLUSTER_NAME = "chaos"
LISTEN_PORT = 7401
ADMIN_PORT = 7501
MCAST = "239.77.0.1:7400"
ROLES_TIMEOUT_S = 0.6


class ChaosError(Exception):
    """Something the scenario asked for cannot be done (the message says why)."""


def _proc_table():
    """{pid: (ppid, pgrp)} of every process in our PID namespace."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        out[int(d)] = (int(rest[1]), int(rest[2]))
    return out


def descendants(pid):
    """[(pid, pgrp)] of every descendant of pid."""
    table = _proc_table()
    kids = {}
    for p, (pp, g) in table.items():
        kids.setdefault(pp, []).append((p, g))
    out, todo = [], [pid]
    while todo:
        for p, g in kids.get(todo.pop(), []):
            out.append((p, g))
            todo.append(p)
    return out


def reap_orphans(known_pids):
    """As PID 1 of our namespace we inherit orphans (hooks of killed nodes);
    collect those that exited, never a child a Popen object waits for."""
    for p, (pp, _g) in _proc_table().items():
        if pp == os.getpid() and p not in known_pids:
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass


class ChaosNode:
    def __init__(self, cluster, nid, witness=False):
        self.cluster = cluster
        self.id = nid
        self.witness = witness
        net = cluster.net
        self.listen = f"{net.peer_ip(nid)}:{LISTEN_PORT}"
        self.admin = f"{net.admin_ip(nid)}:{ADMIN_PORT}"
        d = cluster.dir
        self.event_log = d / "events" / f"{nid}.jsonl"
        self.log_path = d / "logs" / f"{nid}.log"
        self.hook_dir = d / "hooks" / nid
        self.watchdog_log = d / "watchdog" / f"{nid}.jsonl"
        self.data_dir = d / "data" / nid
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.hook_dir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        # A node being added runs with --join (it learns the configuration
        # from its peers); its --members is the configuration that added it.
        self.join = False
        self.starts = 0
        self.paused = False
        self.exit_reported = False
        self.expected_exit = False
        self._conn = None

    # -- process -------------------------------------------------------------
    def argv(self):
        c = self.cluster
        args = [str(ROLEGRID), "--node", self.id, "--members", ",".join(c.members),
                "--listen", self.listen, "--admin", self.admin, "--secret-file", str(c.secret_file),
                "--cluster", CLUSTER_NAME, "--failure-timeout", f"{round(c.failure_timeout_ms)}ms",
                "--heartbeat-interval", f"{round(c.heartbeat_ms)}ms",
                "--hook-dir", str(self.hook_dir), "--event-log", str(self.event_log),
                "--enable-fault-injection"]
        if c.mode == "unicast":
            # The members of the moment, as an operator would list them: a
            # node added later is not in the earlier nodes' seeds.
            args += ["--seeds", ",".join(c.nodes[m].listen for m in c.members if m != self.id)]
        else:
            args += ["--multicast", MCAST]
        if self.witness:
            args.append("--witness")
        if self.join:
            args.append("--join")
        if c.service:
            # The fake device: the checker plays the hardware and ends a
            # service where the timer would have reset the machine.
            args += ["--watchdog", f"fake:{self.watchdog_log}", "--watchdog-mode", "required"]
        if c.in_memory:
            args.append("--in-memory")
        else:
            args += ["--data-dir", str(self.data_dir)]
        return args + list(c.node_options)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def up(self):
        return self.running() and not self.paused

    def start(self):
        if self.running():
            raise ChaosError(f"{self.id} is already running")
        self.close_conn()
        self.starts += 1
        self.paused = False
        self.exit_reported = False
        self.expected_exit = False
        argv = self.cluster.net.exec_prefix(self.id) + self.argv()
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts} at {time.strftime('%H:%M:%S')}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         process_group=0, preexec_fn=die_with_parent)
        # --join is for the first start after `member add` only: a later
        # start has a data dir holding state, which --join refuses.
        self.join = False

    def last_log_line(self):
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _signal_group(self, pgid, sig):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    def kill9(self):
        self.close_conn()
        self.expected_exit = True
        os.kill(self.proc.pid, signal.SIGKILL)
        if self.paused:
            self.resume_hooks()
        self.paused = False
        self.proc.wait(timeout=10)

    def term(self):
        self.close_conn()
        self.expected_exit = True
        if self.paused:
            raise ChaosError(f"{self.id} is paused: resume it before a graceful stop")
        os.kill(self.proc.pid, signal.SIGTERM)

    def pause(self):
        self.close_conn()
        pid = self.proc.pid
        self._signal_group(pid, signal.SIGSTOP)
        groups = []
        for _ in range(2):  # a hook started just before the stop: look twice
            for _p, g in descendants(pid):
                if g != pid and g not in groups:
                    groups.append(g)
                    self._signal_group(g, signal.SIGSTOP)
        self._hook_groups = groups
        self.paused = True
        return groups

    def resume_hooks(self):
        for g in getattr(self, "_hook_groups", []):
            self._signal_group(g, signal.SIGCONT)
        self._hook_groups = []

    def resume(self):
        self.resume_hooks()
        self._signal_group(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill_quietly(self):
        self.close_conn()
        if self.proc is None:
            return
        for p, _g in descendants(self.proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_and_reap(self.proc)

    # -- admin -----------------------------------------------------------------
    def conn(self, timeout=ROLES_TIMEOUT_S):
        if self._conn is None:
            self._conn = AdminConn(self.admin, self.cluster.secret, CLUSTER_NAME, timeout=timeout)
        return self._conn

    def close_conn(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def q(self, cmd, *args, timeout=ROLES_TIMEOUT_S):
        """One admin request from the tool's main thread."""
        try:
            return self.conn().call(cmd, *args, timeout=timeout)
        except (OSError, ConnectionError, TimeoutError):
            self.close_conn()
            raise


# The stand-in service's role hooks: the master hook "starts" it, a step-down
# hook "stops" it. They take a little time, so a step-down still running
# when another node's master hook starts shows up as an overlap. `prepare`
# takes a little time too, so two nodes preparing one failover at once show
# up in the prepare check.
SERVICE_HOOKS = {
    "prepare": "#!/bin/sh\nsleep 0.02\n",
    "master": "#!/bin/sh\nsleep 0.02\n",
    "replica": "#!/bin/sh\nsleep 0.05\n",
    "data": "#!/bin/sh\nsleep 0.05\n",
}


class ChaosCluster:
    """A cluster of real nodes in private namespaces, with its history."""

    def __init__(self, directory, n, failure_timeout_ms=700, heartbeat_ms=100, mode="multicast",
                 node_options=(), witnesses=(), meta=None, in_memory=False, service=True, members=None):
        self.dir = Path(directory)
        # A stand-in service on every node: role hooks that log when it runs
        # (hook-started / hook events) and a fake watchdog per node, for the
        # checker's service check.
        self.service = service
        # Acceptor state in each node's data dir (the default) or in memory.
        self.in_memory = in_memory
        self.history = HistoryWriter(self.dir)
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        # The configuration: the first `members` ids; the others wait for
        # `member add` (issue 14). Every member change updates it.
        self.members = self.ids[:members or n]
        self.failure_timeout_ms = failure_timeout_ms
        self.heartbeat_ms = heartbeat_ms
        self.mode = mode
        self.node_options = list(node_options)
        self.secret_file = self.dir / "secret"
        write_secret(self.secret_file)
        self.secret = read_secret(self.secret_file)
        self.net = Network(self.ids)
        self.nodes = {nid: ChaosNode(self, nid, witness=nid in witnesses) for nid in self.ids}
        self.lock = threading.RLock()  # faults vs. the observer thread
        self.t0 = now_ms()
        self.history.write_meta(nodes=self.ids, members=self.members, failure_timeout_ms=failure_timeout_ms,
                                heartbeat_ms=heartbeat_ms, mode=mode, t0_ms=self.t0, end_ms=None,
                                node_options=self.node_options, witnesses=list(witnesses), in_memory=in_memory,
                                rolegrid=str(ROLEGRID), service=service, **(meta or {}))
        if service:
            (self.dir / "watchdog").mkdir(exist_ok=True)
            for name, script in SERVICE_HOOKS.items():
                self.install_hook(name, script, self.ids)
        self.observer = None
        self.last_outage_ms = None  # the last time no node was running (the grid lives in memory)
        self.active_fault_nodes = set()  # nodes with message faults set (a restart clears them)
        self._exits = []  # nodes found exited by themselves, not yet taken by new_exits()

    def __getitem__(self, nid):
        return self.nodes[nid]

    def record(self, kind, **fields):
        return self.history.fault(kind, **fields)

    # -- processes ---------------------------------------------------------------
    def start(self, ids):
        with self.lock:
            for nid in ids:
                self.nodes[nid].start()
                self.active_fault_nodes.discard(nid)
            self.record("start", nodes=list(ids))

    def start_all(self):
        self.start(self.members)

    def kill9(self, ids):
        with self.lock:
            t = now_ms()
            for nid in ids:
                self.nodes[nid].kill9()
            # done_ms: every process reaped. A node may still acknowledge a
            # write between t and its death; an outage counts from done_ms.
            done = now_ms()
            self.history.append("faults.jsonl", {"t_ms": t, "kind": "kill9", "nodes": list(ids), "done_ms": done})
            self._note_outage(done)

    def wipe(self, ids):
        """Deletes stopped nodes' data dirs: their acceptor state is lost."""
        with self.lock:
            for nid in ids:
                node = self.nodes[nid]
                if node.running():
                    raise ChaosError(f"wipe {nid}: it is running (stop or kill it first)")
                shutil.rmtree(node.data_dir, ignore_errors=True)
            self.record("wipe", nodes=list(ids))

    def stop(self, ids, timeout=5.0):
        """Graceful stop (SIGTERM), waits for every exit. A node that does not
        exit in time is killed and reported."""
        with self.lock:
            t = now_ms()
            for nid in ids:
                self.nodes[nid].term()
            self.history.append("faults.jsonl", {"t_ms": t, "kind": "stop", "nodes": list(ids)})
        slow = []
        for nid in ids:
            node = self.nodes[nid]
            try:
                code = node.proc.wait(timeout=timeout)
                if code != 0:
                    self.record("note", text=f"{nid} exited with code {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                node.kill_quietly()
                slow.append(nid)
        if slow:
            self.record("note", text=f"{', '.join(slow)} did not exit within {timeout} s of SIGTERM (killed)")
        rec = self.record("stopped", nodes=list(ids), codes={nid: self.nodes[nid].proc.returncode for nid in ids})
        self._note_outage(rec["t_ms"])
        return slow

    def _note_outage(self, t):
        if not self.running_ids():
            self.last_outage_ms = t

    def pause(self, ids):
        with self.lock:
            t = now_ms()
            hooks = {}
            for nid in ids:
                hooks[nid] = self.nodes[nid].pause()
            self.history.append("faults.jsonl", {"t_ms": t, "kind": "pause", "nodes": list(ids),
                                                 "hook_groups": {k: v for k, v in hooks.items() if v}})

    def resume(self, ids):
        with self.lock:
            for nid in ids:
                self.nodes[nid].resume()
            self.record("resume", nodes=list(ids))

    def partition(self, groups):
        with self.lock:
            self.net.partition(groups)
            self.record("partition", groups=[list(g) for g in groups])

    def heal(self):
        """Ends partitions, cuts and duplicates."""
        with self.lock:
            self.net.heal()
            self.record("heal")

    def cut(self, cuts):
        """Replaces the cuts: {(from, to): percent of packets dropped}."""
        with self.lock:
            self.net.set_cuts(cuts)
            self.record("cuts", cuts=[[a, b, p] for (a, b), p in sorted(cuts.items())])

    def dup(self, dups):
        """Replaces the duplicates: {node: percent of the packets to it sent twice}."""
        with self.lock:
            self.net.set_dups(dups)
            self.record("dups", dups=dict(dups))

    def fault(self, nid, args):
        """A message fault through the node's admin port (`rolegridctl fault`)."""
        node = self.nodes[nid]
        with self.lock:
            try:
                node.q("fault", *args, timeout=2.0)
            except AdminError as e:
                raise ChaosError(f"{nid} refused 'fault {' '.join(args)}': {e}")
            if list(args) == ["clear"]:
                self.active_fault_nodes.discard(nid)
                self.record("fault-clear", nodes=[nid])
            else:
                self.active_fault_nodes.add(nid)
                self.record("fault", nodes=[nid], args=list(args))

    def clear_faults(self):
        """Clears message faults on every node that has some (the checker's
        replay knows which: recorded 'fault' without a later clear)."""
        for nid in sorted(self.active_fault_nodes):
            if self.nodes[nid].up:
                try:
                    self.fault(nid, ["clear"])
                except (ChaosError, OSError, TimeoutError, ConnectionError):
                    pass
            else:
                self.active_fault_nodes.discard(nid)
                self.record("fault-clear", nodes=[nid])


    def install_hook(self, name, script, ids):
        for nid in ids:
            path = self.nodes[nid].hook_dir / name
            if script is None:
                path.unlink(missing_ok=True)
            else:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(script)
                os.chmod(tmp, 0o755)
                tmp.replace(path)
        self.record("hook", hook=name, nodes=list(ids), script=script)

    def ctl(self, nid, *args, timeout_s=10):
        """Runs the real rolegridctl against a node (what an operator does)."""
        argv = [str(ROLEGRIDCTL), "--node", self.nodes[nid].admin, "--secret-file", str(self.secret_file),
                "--cluster", CLUSTER_NAME] + [str(a) for a in args]
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ChaosError(f"rolegridctl {' '.join(map(str, args))} did not finish within {timeout_s} s")

    # -- member changes (issue 14) ----------------------------------------------------
    def _member_change(self, verb, nid, via):
        """`rolegridctl member VERB NID` asked of `via`; the new member list.
        Recorded before and after, so a failed change shows in the history."""
        self.record("member-change", verb=verb, node=nid, via=via)
        r = self.ctl(via, "--json", "member", verb, nid, timeout_s=15)
        if r.returncode != 0:
            raise ChaosError(f"rolegridctl member {verb} {nid} (asked {via}) exited {r.returncode}: "
                             f"{(r.stderr or r.stdout).strip()}")
        answer = json.loads(r.stdout)
        with self.lock:
            self.members = [m for m in self.ids if m in answer["members"]]
            self.record("members", members=list(self.members), version=answer.get("version"))
        return answer

    def member_to_ask(self, target):
        """A running member other than `target` (None if there is none): the
        one a member change is asked of by default."""
        return next((i for i in self.members if i != target and self.nodes[i].up), None)

    def add_member(self, nid, via):
        """Adds a stopped node to the configuration, then starts it with
        --join and an empty data dir (what the README tells an operator)."""
        node = self.nodes[nid]
        if node.running():
            raise ChaosError(f"member add {nid}: it is running")
        answer = self._member_change("add", nid, via)
        shutil.rmtree(node.data_dir, ignore_errors=True)
        node.join = True
        self.start([nid])
        return answer

    def remove_member(self, nid, via, timeout=15.0):
        """Removes a node. A running one stops by itself once the change is
        settled (exit 0); it is recorded as a graceful stop from then on:
        like SIGTERM, it may acknowledge writes until it exits. A node that
        does not run (killed, stopped) is only taken off the list."""
        node = self.nodes[nid]
        node.join = False
        if not node.running():
            return self._member_change("remove", nid, via)
        node.expected_exit = True
        try:
            answer = self._member_change("remove", nid, via)
        except ChaosError:
            node.expected_exit = False  # refused: it runs on
            raise
        # The change is settled: from here the node stops, as on SIGTERM.
        with self.lock:
            self.history.append("faults.jsonl", {"t_ms": now_ms(), "kind": "stop", "nodes": [nid],
                                                 "reason": "removed"})
        try:
            code = node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            node.kill_quietly()
            code = None
        rec = self.record("stopped", nodes=[nid], codes={nid: code})
        self._note_outage(rec["t_ms"])
        if code != 0:
            raise ChaosError(f"{nid} did not stop cleanly after its removal (exit {code}): {node.last_log_line()}")
        return answer

    def check_exits(self):
        """Records nodes that exited without being told to; returns them.
        (The observer thread calls it too, every poll.)"""
        gone = []
        for node in self.nodes.values():
            if node.proc is not None and not node.exit_reported and node.proc.poll() is not None:
                node.exit_reported = True
                if not node.expected_exit:
                    gone.append(node.id)
                    rec = self.record("exited", node=node.id, code=node.proc.returncode, last_line=node.last_log_line())
                    self._note_outage(rec["t_ms"])
        self._exits += gone
        return gone

    def new_exits(self):
        """Nodes that exited by themselves since the last call (whoever noticed)."""
        with self.lock:
            self.check_exits()
            gone, self._exits = self._exits, []
        return gone

    # -- what the nodes say ---------------------------------------------------------
    def up_ids(self):
        return [nid for nid in self.ids if self.nodes[nid].up]

    def running_ids(self):
        return [nid for nid in self.ids if self.nodes[nid].running()]

    def roles(self, ids=None, timeout=ROLES_TIMEOUT_S):
        """{id: roles answer} of the up nodes that answered."""
        out = {}
        for nid in (ids or self.up_ids()):
            node = self.nodes[nid]
            if not node.up:
                continue
            try:
                out[nid] = node.q("roles", timeout=timeout)
            except (AdminError, OSError, ConnectionError, TimeoutError, ValueError):
                pass
        return out

    @staticmethod
    def acting(answers):
        return sorted(nid for nid, r in answers.items() if r.get("self", {}).get("acting_master"))

    def current_master(self, answers=None):
        """(id, epoch) of the one node acting as established master, or None
        (no master, or several claim it in these answers)."""
        answers = answers if answers is not None else self.roles()
        acting = self.acting(answers)
        if len(acting) != 1:
            return None
        r = answers[acting[0]]
        m = r.get("master") or {}
        if m.get("node") != acting[0] or m.get("phase") != "established":
            return None
        return acting[0], m.get("epoch")

    def current_replica(self, answers=None):
        answers = answers if answers is not None else self.roles()
        cm = self.current_master(answers)
        src = [answers[cm[0]]] if cm else list(answers.values())
        for r in src:
            rep = r.get("replica")
            if rep and rep.get("node"):
                return rep["node"]
        return None

    def data_nodes(self, answers=None):
        answers = answers if answers is not None else self.roles()
        return sorted(nid for nid, r in answers.items() if r.get("self", {}).get("role") == "data")

    def formed(self, ids=None):
        """Every up node synced and seeing every other up node alive at its
        current incarnation."""
        ids = ids or self.up_ids()
        status = {}
        for nid in ids:
            status[nid] = self.nodes[nid].q("status", timeout=1.0)
            if not status[nid].get("transfer", {}).get("synced"):
                return False
        for nid in ids:
            view = {m["id"]: m for m in self.nodes[nid].q("members", timeout=1.0)}
            for other in ids:
                m = view.get(other)
                if m is None or m.get("state") != "alive" or m.get("incarnation") != status[other]["incarnation"]:
                    return False
        return True

    def voting(self, ids=None):
        """Every up node's acceptor votes (loaded intact or recovered)."""
        ids = ids or self.up_ids()
        return all(self.nodes[nid].q("status", timeout=1.0).get("acceptor", {}).get("voting") for nid in ids)

    # -- the observer: every node's role table, recorded on change -------------------
    def start_observer(self, interval=0.2):
        self.observer = Observer(self, interval)
        self.observer.start()

    # -- end -------------------------------------------------------------------------
    def close(self):
        if self.observer:
            self.observer.stop()
        for node in self.nodes.values():
            node.expected_exit = True
            node.kill_quietly()
        reap_orphans({n.proc.pid for n in self.nodes.values() if n.proc})
        errors = self.net.teardown()
        self.history.close()
        return errors


class Observer(threading.Thread):
    """Polls `roles` on every up node (its own connections) and appends to
    observations.jsonl whenever a node's view changes; records nodes that
    exited by themselves."""

    def __init__(self, cluster, interval):
        super().__init__(daemon=True, name="observer")
        self.cluster = cluster
        self.interval = interval
        self._halt = threading.Event()
        self._conns = {}
        self._last = {}

    def stop(self):
        self._halt.set()
        self.join(timeout=5)
        for c in self._conns.values():
            c.close()

    def _ask(self, nid):
        node = self.cluster.nodes[nid]
        conn = self._conns.get(nid)
        if conn is not None and getattr(conn, "_incarnation_start", None) != node.starts:
            conn.close()
            conn = None
        if conn is None:
            conn = AdminConn(node.admin, self.cluster.secret, CLUSTER_NAME, timeout=ROLES_TIMEOUT_S)
            conn._incarnation_start = node.starts
            self._conns[nid] = conn
        try:
            return conn.call("roles", timeout=ROLES_TIMEOUT_S)
        except (OSError, ConnectionError, TimeoutError, AdminError, ValueError):
            conn.close()
            self._conns.pop(nid, None)
            return None

    def run(self):
        while not self._halt.is_set():
            with self.cluster.lock:  # notice a node that died by itself within a poll
                self.cluster.check_exits()
            for nid in self.cluster.ids:
                if self._halt.is_set():
                    break
                if not self.cluster.nodes[nid].up:
                    continue
                try:
                    r = self._ask(nid)
                except OSError:
                    r = None
                if not r:
                    continue
                m = r.get("master") or {}
                me = r.get("self", {})
                rep = r.get("replica") or {}
                key = (m.get("node"), m.get("epoch"), m.get("phase"), rep.get("node"), me.get("role"),
                       me.get("state"), me.get("acting_master"))
                if self._last.get(nid) != key:
                    self._last[nid] = key
                    self.cluster.history.append("observations.jsonl", {
                        "t_ms": now_ms(), "observer": nid, "master": m.get("node"), "epoch": m.get("epoch"),
                        "phase": m.get("phase"), "replica": rep.get("node"), "role": me.get("role"),
                        "state": me.get("state"), "acting": me.get("acting_master")})
            self._halt.wait(self.interval)
