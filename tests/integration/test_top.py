"""Integration tests of `rolegridctl top` (run.py -k ctl_top): the refreshing
cluster table, run without a TTY so its frames are plain text separated by a
blank line."""

from __future__ import annotations

import re
import subprocess
import threading
import json
import time

import harness
from harness import check, note, test, wait_until


def run_top(c, node, *args, timeout=20):
    argv = [str(harness.ROLEGRIDCTL), "--node", c[node].admin, "--secret-file", str(c.secret_file),
            "--cluster", c.name, "top", *map(str, args)]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def frames(text):
    """Each frame as {"header": role-table line, "rows": {id: row dict}, "text": the frame}."""
    out = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        header = next((ln for ln in lines if ln.startswith("master ")), "")
        rows = {}
        in_table = False
        for ln in lines:
            if ln.startswith("ID "):
                in_table = True
                continue
            if in_table and ln.strip():
                f = ln.split(None, 7)
                rows[f[0]] = dict(zip(("id", "state", "role", "epoch", "lease", "rate", "lag", "answer"), f))
        out.append({"header": header, "rows": rows, "text": block})
    return out


@test(modes=harness.BOTH, timeout=60)
def ctl_top_shows_members_roles_rates_and_a_killed_node(c):
    ids = [n.id for n in c.add_nodes(3)]
    c.start_all()
    c.wait_formed()
    master, replica, epoch = wait_until(lambda: harness.settled_roles(c, ids), 10, what="a master and a replica")
    data = next(i for i in ids if i not in (master, replica))
    c.put_many(data, "top", [(f"warm-{i}", "v") for i in range(50)])

    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            c.put_many(data, "top", [(f"k-{i}-{j}", "v") for j in range(20)])
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        r = run_top(c, master, "--iterations", 2, "--interval", "0.5s")
    finally:
        stop.set()
        t.join(timeout=10)
    check(r.returncode == 0, f"top exited {r.returncode}: {r.stderr.strip()}")
    check("\x1b" not in r.stdout, "escape codes in the output although stdout is not a TTY")
    fs = frames(r.stdout)
    check(len(fs) == 2, f"expected 2 frames, got {len(fs)}:\n{r.stdout}")
    last = fs[-1]
    note(last["text"].replace("\n", "\n    "))
    check(re.search(rf"^master {master}  replica {replica}  epoch {epoch}  phase established", last["header"]),
          f"header names master {master}, replica {replica}, epoch {epoch}: {last['header']!r}")
    for nid in ids:
        row = last["rows"].get(nid)
        check(row is not None, f"no row for {nid}")
        want = c.q(nid, "roles")["self"]["role"]
        check(row["role"] == want and row["state"] == "alive" and row["answer"] == "ok",
              f"{nid}: expected alive, role {want}, answered; got {row}")
        check(row["epoch"] == str(epoch), f"{nid}: epoch {row['epoch']}, expected {epoch}")
        check(row["lag"].isdigit(), f"{nid}: lag {row['lag']!r} is not a count")
        check(row["rate"] != "-", f"{nid}: no write rate in the second frame")
        check((row["lease"] != "-") == (nid == master), f"{nid}: lease {row['lease']!r}")
    check(re.fullmatch(r"\d+ms", last["rows"][master]["lease"]), f"master's lease: {last['rows'][master]['lease']}")
    check(float(last["rows"][data]["rate"]) > 0, f"{data} wrote but shows {last['rows'][data]['rate']} writes/s")
    check(fs[0]["rows"][data]["rate"] == "-", "the first frame has no earlier sample to compute a rate from")

    # --json: one JSON object per refresh, with the same view.
    r = run_top(c, master, "--iterations", 2, "--interval", "200ms", "--json")
    snaps = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    check(r.returncode == 0 and len(snaps) == 2, f"top --json: exit {r.returncode}, {len(snaps)} lines: {r.stdout!r}")
    s = snaps[-1]
    check(s["master"] == master and s["replica"] == replica and s["epoch"] == epoch, f"top --json view: {s}")
    by = {m["id"]: m for m in s["members"]}
    check(sorted(by) == sorted(ids) and all(m["reached"] for m in by.values()), f"top --json members: {by}")
    check(by[master]["role"] == "master" and isinstance(by[master]["lease_remaining_ms"], int),
          f"top --json master row: {by[master]}")

    # A member that accepts connections but never answers costs one timeout, not a hang.
    c[data].pause()
    t0 = time.monotonic()
    r = run_top(c, master, "--iterations", 1)
    took = time.monotonic() - t0
    check(r.returncode == 0 and took < 4, f"top with {data} paused: exit {r.returncode} after {took:.1f} s")
    row = frames(r.stdout)[0]["rows"][data]
    check(row["answer"].startswith("unreachable"), f"paused {data} is not shown unreachable: {row}")
    note(f"paused {data}: one refresh took {took:.2f} s, shown {' '.join(row.values())}")

    c[data].kill9()
    r = run_top(c, master, "--iterations", 1)
    check(r.returncode == 0, f"top exited {r.returncode} with {data} killed: {r.stderr.strip()}")
    row = frames(r.stdout)[0]["rows"][data]
    check(row["answer"].startswith("unreachable"), f"killed {data} is not shown unreachable: {row}")

    def shown_not_alive():
        row = frames(run_top(c, master, "--iterations", 1).stdout)[0]["rows"][data]
        return row if row["state"] in ("suspected", "failed") else None

    wait_until(shown_not_alive, 5, interval=0.2, what=f"{data} shown suspected or failed")


@test(timeout=30)
def ctl_top_bad_options_and_unreachable_node(c):
    c.add_nodes(1)
    c.start_all()
    c.wait_formed()
    for args in (["--bogus"], ["--interval", "soon"], ["--interval", "10ms"], ["--iterations", "-1"],
                 ["--iterations", "many"]):
        r = run_top(c, "n1", *args)
        err = r.stderr.strip()
        check(r.returncode == 2, f"top {' '.join(args)} exited {r.returncode}, expected 2")
        check(err.startswith("rolegridctl: ") and "\n" not in err, f"top {' '.join(args)}: not one line: {err!r}")
        check(r.stdout == "", f"top {' '.join(args)} printed a frame")
    c["n1"].kill9()
    r = run_top(c, "n1", "--iterations", 1, timeout=10)
    err = r.stderr.strip()
    check(r.returncode == 2 and err.startswith("rolegridctl: ") and "\n" not in err and r.stdout == "",
          f"top of a dead node: exit {r.returncode}, stderr {err!r}")


@test(timeout=20)
def ctl_bad_command_lines(c):
    # No node needed: each is refused before any connection, with one line
    # that names what was wrong.
    cases = ((["frob"], "unknown command 'frob'"), (["--node", "127.0.0.1:1", "frob"], "unknown command 'frob'"),
             ([], "subcommand is required"), (["roles", "--bogus"], "--bogus"), (["get", "r"], "KEY is required"))
    for args, want in cases:
        r = subprocess.run([str(harness.ROLEGRIDCTL), *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=10)
        err = r.stderr.strip()
        check(r.returncode == 2 and err.startswith("rolegridctl: ") and "\n" not in err and want in err,
              f"rolegridctl {' '.join(args)}: exit {r.returncode}, stderr {err!r}, wanted one line with {want!r}")
