"""Assertions and bounded waits for tests and tools: every wait has a
timeout and says what it waited for."""

from __future__ import annotations

import time

from .admin import AdminError


class TestFailure(AssertionError):
    """An assertion of a test did not hold; the message says which."""


class NodeExited(TestFailure):
    """A node the test needs has exited: no point waiting any longer."""


class CtlError(Exception):
    def __init__(self, args, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"rolegridctl {' '.join(args)} exited {rc}: {stderr.strip() or stdout.strip()}")


def note(message):
    """A line of detail printed under the running test (timings, counts)."""
    print(f"  . {message}", flush=True)


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def wait_until(predicate, timeout, interval=0.05, what=None):
    """Polls predicate() every `interval` s until it returns a truthy value,
    which is returned. Exceptions from the predicate count as "not yet" (the
    node may still be starting). Raises TestFailure after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except NodeExited:
            raise
        except (TestFailure, CtlError, AdminError, OSError, ValueError, KeyError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            desc = what or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise TestFailure(f"timed out after {timeout:.1f} s waiting for {desc}{extra}")
        time.sleep(interval)

