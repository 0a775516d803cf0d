"""Child processes that die with their parent (PR_SET_PDEATHSIG), so a
killed test runner or tool never leaves a node running."""

from __future__ import annotations

import ctypes
import signal

# ---------------------------------------------------------------------------
# Processes

def die_with_parent():
    # Runs in the child between fork and exec: SIGKILL it if the runner dies.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None

