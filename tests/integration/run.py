#!/usr/bin/env python3
"""Runs the integration tests (tests/integration/test_*.py) with real
rolegrid processes, inside a private network namespace.

    tests/integration/run.py [-k SUBSTRING]... [--list] [--keep]

It re-executes itself once under `unshare -n -m` (private network and mount
namespaces); inside, it brings lo up with multicast and routes 224.0.0.0/4 to lo, so no test packet
can leave the machine. Prints `PASS name (x.y s)` or `FAIL name: reason`
(with the node logs) per test and ends with `N passed, N failed`; exits 1 if
any test failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402

ENV_MARK = "ROLEGRID_IT_NETNS"


def interfaces():
    """Interface names of this process's network namespace."""
    names = []
    with open("/proc/self/net/dev") as f:
        for line in f.readlines()[2:]:
            names.append(line.split(":", 1)[0].strip())
    return names


def ensure_private_netns():
    """Runs the tests in a private network namespace and a private mount
    namespace (the disk-fault tests mount small tmpfs file systems there,
    which vanish with the runner): re-executes itself once under unshare."""
    if os.environ.get(ENV_MARK):
        if interfaces() != ["lo"]:
            sys.exit(f"run.py: still not in a private network namespace after unshare (interfaces: {interfaces()})")
        cmds = [["ip", "link", "set", "lo", "up"],
                ["ip", "link", "set", "lo", "multicast", "on"],
                ["ip", "route", "replace", "224.0.0.0/4", "dev", "lo"]]
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                sys.exit(f"run.py: '{' '.join(cmd)}' failed: {r.stderr.strip()}")
        return
    if shutil.which("unshare") is None:
        sys.exit("run.py: 'unshare' (util-linux) is needed to run the tests in a private network namespace")
    # unshare -m makes every mount private to the new namespace by default.
    unshare = ["unshare", "-n", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-n", "-m"]
    os.environ[ENV_MARK] = "1"
    sys.stdout.flush()
    try:
        os.execvp(unshare[0], unshare + ["--", sys.executable, str(Path(__file__).resolve())] + sys.argv[1:])
    except OSError as e:
        sys.exit(f"run.py: cannot exec {' '.join(unshare)}: {e}")


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def on_term(signum, frame):
    raise KeyboardInterrupt()


def load_tests():
    for path in sorted(HERE.glob("test_*.py")):
        importlib.import_module(path.stem)
    return harness.TESTS


def first_line(text):
    text = str(text).strip()
    return text.splitlines()[0] if text else "(no message)"


def run_one(case, index, keep):
    mode = case.mode or harness.MULTICAST
    safe = case.name.replace("[", "-").replace("]", "")
    cluster = harness.Cluster(safe, mode, port_base=20000 + 100 * (index % 400))
    start = time.monotonic()
    reason = detail = None
    signal.alarm(case.timeout)
    try:
        case.fn(cluster)
    except Timeout:
        reason = f"test did not finish within {case.timeout} s"
    except harness.TestFailure as e:
        reason = first_line(e)
        detail = str(e).strip()
    except Exception as e:  # noqa: BLE001 - any error fails the test, with its traceback
        reason = f"{type(e).__name__}: {first_line(e)}"
        detail = traceback.format_exc()
    finally:
        signal.alarm(0)
        try:
            cluster.close()
        except Exception as e:  # noqa: BLE001
            print(f"  (cleanup of {case.name} failed: {e})")
    elapsed = time.monotonic() - start
    if reason is None:
        print(f"PASS {case.name} ({elapsed:.1f} s)", flush=True)
        if not keep:
            cluster.remove_dir()
        return True
    print(f"FAIL {case.name}: {reason} ({elapsed:.1f} s)", flush=True)
    if detail and detail != reason:
        print("  " + detail.replace("\n", "\n  "))
    cluster.dump_logs()
    if keep:
        print(f"  (kept {cluster.dir})")
    else:
        cluster.remove_dir()
    sys.stdout.flush()
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose name contains SUBSTRING (repeatable: any of them)")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    ap.add_argument("--keep", action="store_true", help="keep every test's temp dir (secret and logs)")
    opts = ap.parse_args()

    tests = load_tests()
    if opts.k:
        tests = [t for t in tests if any(k in t.name for k in opts.k)]
    if opts.list:
        for t in tests:
            print(t.name)
        return 0
    for binary in (harness.ROLEGRID, harness.ROLEGRIDCTL):
        if not os.access(binary, os.X_OK):
            print(f"run.py: {binary} is missing: build first (tools/setup.sh)")
            print("0 passed, 1 failed")
            return 1

    ensure_private_netns()
    signal.signal(signal.SIGALRM, on_alarm)
    # A SIGTERM to the runner still cleans up: it unwinds like a failure.
    signal.signal(signal.SIGTERM, on_term)

    print(f"integration: {len(tests)} tests, binaries from {harness.BUILD}", flush=True)
    passed = failed = 0
    suite_start = time.monotonic()
    try:
        for i, case in enumerate(tests):
            if run_one(case, i, opts.keep):
                passed += 1
            else:
                failed += 1
    except KeyboardInterrupt:
        print("interrupted")
        failed += 1
    print(f"integration took {time.monotonic() - suite_start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
