"""Child processes that die with their parent (PR_SET_PDEATHSIG), so a
killed test runner or tool never leaves a node running."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

# ---------------------------------------------------------------------------
# Processes

def die_with_parent():
    # Runs in the child between fork and exec: SIGKILL it if the runner dies.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def rss_mib(pid):
    """VmRSS of one process in MiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def kill_and_reap(proc, timeout=5):
    """SIGKILL (which also ends a SIGSTOPped process) unless it already
    exited, then wait up to `timeout` s for it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None

