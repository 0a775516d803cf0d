"""Where tools/bench-vs-peers runs: packages, private namespaces, processes.

The tool re-executes itself through rolegrid-chaos's netns.reexec_private
(new network, mount and PID namespaces; it becomes PID 1 there, so every
process it starts dies with it even if it is killed), and builds each
system's hosts with chaos.netns.Network: one network namespace per host on a
bridge (peer traffic, 10.77.0.x, where partitions happen) plus an admin
bridge (10.78.0.x) through which the tool reaches every host, never cut.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rgkit.procs import die_with_parent, rss_mib  # noqa: F401 (env.rss_mib: every server is one process)

REPO = Path(__file__).resolve().parents[2]

PACKAGES = {"redis-server": "redis-server", "redis-sentinel": "redis-sentinel", "etcd": "etcd-server",
            "etcdctl": "etcd-client", "keepalived": "keepalived"}


def install_missing(systems):
    """apt-get installs the peers' packages that are missing (needs the
    network, so it runs before the tool enters its namespaces)."""
    want = {"redis": ["redis-server", "redis-sentinel"], "etcd": ["etcd", "etcdctl"], "keepalived": ["keepalived"]}
    missing = sorted({PACKAGES[b] for s in systems for b in want.get(s, []) if shutil.which(b) is None})
    if not missing:
        return
    print(f"bench-vs-peers: installing {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True, env=env,
                   stdout=subprocess.DEVNULL)
    # Debian starts the services it installs where systemd runs; the
    # benchmark starts its own instances and wants the ports free.
    for unit in ("redis-server", "redis-sentinel", "etcd", "keepalived"):
        subprocess.run(["systemctl", "stop", unit], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mount_tmpfs(path, size="12g"):
    """etcd 3.4 (Debian 12) has no --unsafe-no-fsync: its data directories
    go on a tmpfs instead, where fsync costs nothing, so all three members
    hold their data in memory as the comparison asks. The mount lives in the
    tool's private mount namespace only."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=700", "rg-peers", str(path)], check=True)


# -- network namespaces from the tool's threads ---------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def address_held(netns, ip):
    """True if `ip` is configured in network namespace `netns`: a bind to a
    non-local address fails. setns() moves only the calling thread, for a
    few microseconds, far cheaper than running `ip` per poll."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(fd)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            finally:
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(fd)
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


# -- processes --------------------------------------------------------------------------------

class Proc:
    """One server process in a host's namespace, in a process group of its own
    (`ip netns exec` execs the program, so the PID and group are its own)."""

    all = []  # every Proc ever started, killed at the end by PID

    def __init__(self, argv, log_path, netns_prefix=(), cwd=None):
        self.argv = list(argv)
        self.prefix = list(netns_prefix)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.p = None
        self.paused = False
        Proc.all.append(self)

    def start(self, extra=()):
        if self.running():
            raise RuntimeError(f"{self.argv[0]} already running")
        with open(self.log_path, "ab") as log:
            self.p = subprocess.Popen(self.prefix + self.argv + list(extra), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, process_group=0, cwd=self.cwd,
                                      preexec_fn=die_with_parent)
        self.paused = False
        return self

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p is not None and self.p.poll() is None

    def _sig(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self):
        if self.running():
            self._sig(signal.SIGKILL)
            self.p.wait(timeout=10)
        self.paused = False
        reap_orphans()

    def term(self, timeout=10):
        if self.running():
            if self.paused:
                self._sig(signal.SIGCONT)
            self._sig(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.paused = False
        reap_orphans()

    def pause(self):
        self._sig(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._sig(signal.SIGCONT)
        self.paused = False


    @classmethod
    def kill_all(cls):
        for p in cls.all:
            if p.p is not None and p.p.poll() is None:
                try:
                    os.killpg(p.p.pid, signal.SIGCONT)
                    os.killpg(p.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        reap_orphans()


def reap_orphans():
    """As PID 1 of the namespace the tool inherits the children of killed
    daemons (keepalived's VRRP child); collect those, never a child that a
    Popen object waits for."""
    ours = {p.p.pid for p in Proc.all if p.p is not None}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in ours:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == me:
            try:
                os.waitpid(int(d), os.WNOHANG)
            except ChildProcessError:
                pass


def run(argv, timeout=600, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))}...: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


# -- waiting and statistics -------------------------------------------------------------------

class Timeout(Exception):
    pass


def wait_for(fn, timeout, what, interval=0.01, state=None):
    """Polls fn until it returns something true; on timeout the message
    says what `state()` shows."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = ""
            if state is not None:
                try:
                    extra = f" ({state()})"
                except Exception as e:  # the state is only for the message
                    extra = f" (state unknown: {e})"
            raise Timeout(f"no {what} within {timeout:.0f} s{extra}")
        time.sleep(interval)


def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """(min, max) of the samples, or None."""
    return (min(xs), max(xs)) if xs else None


def log(msg):
    print(msg, flush=True)
    sys.stdout.flush()
