"""Integration tests of the HTTP endpoint (--http): GET /metrics (Prometheus
text format) and GET /status (JSON) scraped from a real 3-node cluster and
checked against what the admin port says (roles, members, regions, events),
plus bad requests and bad option values. Run through run.py (-k http).

Each node's HTTP port is port_base + 80 + its slot: the harness keeps
port_base+1.. for listen, +41.. for admin and +99 for multicast.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time

import harness
from harness import ROLEGRID, TestFailure, check, note, test

FT_S = harness.FAILURE_TIMEOUT_MS / 1000
HTTP_SLOT = 80
ROLES = ("master", "replica", "data", "witness")
HOOKS = ("prepare", "master", "replica", "data", "abort")


# ---------------------------------------------------------------------------
# Set-up and HTTP

def http_nodes(c, n=3, hooks=None):
    nodes = c.add_nodes(n)
    for i, node in enumerate(nodes, 1):
        node.http = f"127.0.0.1:{c.port_base + HTTP_SLOT + i}"
        node.extra = ["--http", node.http, "--event-log", str(c.dir / f"{node.id}.events")]
        if hooks:
            node.extra += ["--hook-dir", str(hooks)]
    return nodes


def make_hooks(c, statuses):
    """A hook directory whose hooks exit with the given status (0 if not named)."""
    d = c.dir / "hooks"
    d.mkdir(exist_ok=True)
    for h in HOOKS:
        p = d / h
        p.write_text(f"#!/bin/sh\nexit {statuses.get(h, 0)}\n")
        os.chmod(p, 0o755)
    return d


def get(addr, path, method="GET", timeout=5.0):
    """(status, content type, body) of one request on a fresh connection."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read().decode()
    finally:
        conn.close()


def raw(addr, data, timeout=8.0):
    """Sends raw bytes; returns what the server answered before it closed
    (or b"" if it closed without answering)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            return b""  # closed while we were still sending: also a refusal
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text):
    """{name: [(labels dict, value)]}. Fails the test on a line that is not
    the text exposition format, or a sample whose family has no HELP and
    TYPE before it."""
    families = {}
    helped = set()
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(kind in ("counter", "gauge", "histogram", "summary", "untyped"), f"bad TYPE line {line!r}")
            families[name] = kind
            continue
        m = _SAMPLE.match(line)
        check(m is not None, f"not a metric line: {line!r}")
        name, labels_text, value = m.groups()
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = _LABEL.match(labels_text, pos)
                check(lm is not None, f"bad labels in {line!r}")
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        family = name
        if family not in families:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
        check(family in families and family in helped, f"{name} has no # HELP / # TYPE before it")
        check(name.startswith("rolegrid_"), f"{name} lacks the rolegrid_ prefix")
        out.setdefault(name, []).append((labels, float(value)))
    return out


def value(metrics, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`."""
    hits = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    check(len(hits) == 1, f"{len(hits)} samples of {name}{labels or ''} (want 1)")
    return hits[0]


def scrape(node):
    status, ctype, body = get(node.http, "/metrics")
    check(status == 200, f"GET /metrics on {node.id}: {status}")
    check(ctype.startswith("text/plain"), f"/metrics content type {ctype!r}")
    return parse_metrics(body)


def status_page(node):
    status, ctype, body = get(node.http, "/status")
    check(status == 200, f"GET /status on {node.id}: {status}")
    check(ctype.startswith("application/json"), f"/status content type {ctype!r}")
    return json.loads(body)


def settled_cluster(c, n=3):
    """Starts n HTTP nodes and waits for a master and a replica; returns
    (nodes, ids, master, replica, epoch)."""
    nodes = http_nodes(c, n)
    ids = [x.id for x in nodes]
    c.start_all()
    c.wait_formed()
    master, replica, epoch = harness.wait_until(lambda: harness.settled_roles(c, ids), 15,
                                                what="an established master and a replica")
    return nodes, ids, master, replica, epoch


def hook_events(c, nid):
    """{hook: (runs, failures)} from the node's own `events` answer."""
    out = {}
    for e in c.q(nid, "events"):
        if e.get("event") != "hook" or not e.get("ran"):
            continue
        runs, fails = out.get(e["hook"], (0, 0))
        bad = e["status"] != 0 or e.get("timed_out") or e.get("aborted")
        out[e["hook"]] = (runs + 1, fails + (1 if bad else 0))
    return out


# ---------------------------------------------------------------------------
# Checks of one node's scrape against the admin answers

def check_roles(c, node, m):
    roles = c.q(node.id, "roles")
    me = roles["self"]
    ones = [r for r in ROLES if value(m, "rolegrid_role", role=r) == 1]
    check(ones == [me["role"]], f"{node.id}: rolegrid_role is 1 for {ones}, roles says {me['role']}")
    check(all(value(m, "rolegrid_role", role=r) in (0, 1) for r in ROLES), f"{node.id}: rolegrid_role not 0/1")
    check(value(m, "rolegrid_epoch") == roles["epoch"],
          f"{node.id}: rolegrid_epoch {value(m, 'rolegrid_epoch')} != roles epoch {roles['epoch']}")
    check(value(m, "rolegrid_epoch_seen") == me["epoch_seen"], f"{node.id}: rolegrid_epoch_seen")
    lease = value(m, "rolegrid_lease_remaining_seconds")
    acting = value(m, "rolegrid_acting_master")
    if me["role"] == "master":
        check(acting == 1 and 0 < lease <= FT_S, f"{node.id} (master): acting {acting}, lease {lease} s")
        check(value(m, "rolegrid_promotions_total") >= 1, f"{node.id} (master): no promotion counted")
    else:
        check(acting == 0 and lease == 0, f"{node.id} ({me['role']}): acting {acting}, lease {lease} s")
    return roles


def check_members(c, node, m):
    want = {}
    for mem in c.members_view(node.id).values():
        want[mem["state"]] = want.get(mem["state"], 0) + 1
    got = {lab["state"]: v for lab, v in m["rolegrid_members"] if v}
    check(got == want, f"{node.id}: rolegrid_members {got} != members answer {want}")


def check_regions(c, node, m):
    want = {r["name"]: r["entries"] for r in c.q(node.id, "regions")}
    got = {lab["region"]: v for lab, v in m.get("rolegrid_region_entries", [])}
    check(got == want, f"{node.id}: rolegrid_region_entries {got} != regions answer {want}")
    return got


def check_hooks(c, node, m):
    want = hook_events(c, node.id)
    for h in HOOKS:
        runs, fails = want.get(h, (0, 0))
        got = (value(m, "rolegrid_hook_runs_total", hook=h), value(m, "rolegrid_hook_failures_total", hook=h))
        check(got == (runs, fails), f"{node.id}: hook {h} runs/failures {got} != events {(runs, fails)}")


def histogram(m, name):
    buckets = sorted(((float(lab["le"]), v) for lab, v in m[name + "_bucket"]), key=lambda b: b[0])
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}")
    check(buckets[-1][0] == float("inf"), f"{name} has no +Inf bucket")
    count = value(m, name + "_count")
    check(buckets[-1][1] == count, f"{name}: +Inf bucket {buckets[-1][1]} != count {count}")
    return count, value(m, name + "_sum")


def wait_checked(fn, what, timeout=5.0):
    """Runs fn until it passes: a scrape and the admin answers it is compared
    with are two moments, and a hook may finish between them."""
    return harness.wait_until(fn, timeout, interval=0.1, what=what)


# ---------------------------------------------------------------------------
# Tests

@test(timeout=90)
def http_metrics_and_status_match_the_cluster(c):
    hooks = make_hooks(c, {"replica": 3})
    nodes = http_nodes(c, 3, hooks=hooks)
    ids = [n.id for n in nodes]
    c.start_all()
    c.wait_formed()
    harness.wait_until(lambda: harness.settled_roles(c, ids), 15, what="an established master and a replica")

    for node in nodes:
        def one_node(node=node):
            m = scrape(node)
            check_roles(c, node, m)
            check_members(c, node, m)
            check_regions(c, node, m)
            check_hooks(c, node, m)
            for direction in ("sent", "received"):
                check(value(m, f"rolegrid_messages_{direction}_total", transport="udp") > 0,
                      f"{node.id}: no udp messages {direction}")
            for t in ("udp", "tcp"):
                check(value(m, "rolegrid_messages_unauthenticated_total", transport=t) == 0,
                      f"{node.id}: unauthenticated {t} messages in a clean cluster")
            for name in ("rolegrid_retransmits_total", "rolegrid_master_changes_total"):
                check(value(m, name) >= 0, f"{node.id}: {name}")
            check(value(m, "rolegrid_messages_dropped_total", reason="malformed") >= 0, "dropped")
            return m
        m = wait_checked(one_node, f"{node.id}'s /metrics to match its admin answers")
        role = next(r for r in ROLES if value(m, "rolegrid_role", role=r) == 1)
        runs = {h: int(value(m, "rolegrid_hook_runs_total", hook=h)) for h in HOOKS}
        note(f"{node.id}: role {role}, epoch {int(value(m, 'rolegrid_epoch'))}, "
             f"lease {value(m, 'rolegrid_lease_remaining_seconds'):.3f} s, "
             f"promotions {int(value(m, 'rolegrid_promotions_total'))}, hook runs {runs}, "
             f"replica hook failures {int(value(m, 'rolegrid_hook_failures_total', hook='replica'))}")
    replica = c.q(ids[0], "roles")["replica"]["node"]
    # The hook runs (and fails) a moment after the appointment the roles show.
    try:
        harness.wait_until(lambda: value(scrape(c[replica]), "rolegrid_hook_failures_total", hook="replica") >= 1,
                           3, what="the hook failure")
    except TestFailure:
        raise TestFailure(f"{replica}'s failing replica hook was not counted") from None

    # Write-through puts through n1: its latency count grows by exactly the
    # puts (the agent's own writes wait for nobody and are not measured), and
    # every node's region size is the number of keys.
    writer, other = nodes[0], nodes[1]
    before = {n.id: histogram(scrape(n), "rolegrid_write_latency_seconds")[0] for n in nodes}
    n_puts = 40
    c.put_many(writer.id, "web", [(f"k{i:03}", f"v{i}") for i in range(n_puts)])
    c.q(writer.id, "put", "web", "k000", "again")  # an overwrite: one more write, no new entry
    m = scrape(writer)
    count, total = histogram(m, "rolegrid_write_latency_seconds")
    check(count - before[writer.id] == n_puts + 1,
          f"write latency count grew by {count - before[writer.id]} after {n_puts + 1} puts")
    check(total > 0, "write latency sum is 0 after puts")
    other_count, _ = histogram(scrape(other), "rolegrid_write_latency_seconds")
    check(other_count == before[other.id], f"{other.id}'s write latency count moved without a put through it")
    note(f"write latency through {writer.id}: {int(count)} writes, mean {1000 * total / count:.2f} ms")
    for node in nodes:
        got = wait_checked(lambda node=node: check_regions(c, node, scrape(node)) or True,
                           f"{node.id}'s region sizes to match")
        check(value(scrape(node), "rolegrid_region_entries", region="web") == n_puts,
              f"{node.id}: region web does not hold {n_puts} entries")
        check(got, "regions")

    # /status: the admin status (with the role view) and members, as JSON.
    for node in nodes:
        def status_matches(node=node):
            s = status_page(node)
            roles = c.q(node.id, "roles")
            check(s["node"] == node.id, f"/status node {s['node']!r} on {node.id}")
            check(s["agent"]["self"]["role"] == roles["self"]["role"], f"{node.id}: /status role")
            check(s["agent"]["epoch"] == roles["epoch"], f"{node.id}: /status epoch")
            check(s["agent"]["master"]["node"] == roles["master"]["node"], f"{node.id}: /status master")
            states = {mem["id"]: mem["state"] for mem in s["members"]}
            check(states == c.states(node.id), f"{node.id}: /status members {states}")
            check(s["counters"]["writes_local"] == c.q(node.id, "status")["counters"]["writes_local"],
                  f"{node.id}: /status counters")
            return True
        wait_checked(status_matches, f"{node.id}'s /status to match its admin answers")

    # Other paths and methods.
    n1 = nodes[0]
    st, _, _ = get(n1.http, "/nope")
    check(st == 404, f"GET /nope: {st}")
    st, _, _ = get(n1.http, "/")
    check(st == 404, f"GET /: {st}")
    st, _, _ = get(n1.http, "/metrics?format=text")
    check(st == 200, f"GET /metrics?format=text: {st}")
    for method in ("POST", "PUT", "DELETE"):
        st, _, _ = get(n1.http, "/metrics", method=method)
        check(st == 405, f"{method} /metrics: {st}")
    # Keep-alive: several requests on one connection.
    host, port = n1.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for path in ("/metrics", "/status", "/metrics"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            check(r.status == 200, f"keep-alive GET {path}: {r.status}")
    finally:
        conn.close()
    note("404 for /nope and /, 405 for POST/PUT/DELETE, 3 requests on one kept-alive connection")


@test(timeout=90)
def http_bad_requests_and_options(c):
    nodes = http_nodes(c, 3)
    # n3 takes its --http from a config file instead.
    conf = c.dir / "n3.toml"
    conf.write_text(f'http = "{nodes[2].http}"\n')
    nodes[2].extra = ["--config", str(conf)]
    ids = [n.id for n in nodes]
    c.start_all()
    c.wait_formed()
    n1 = nodes[0]
    check(get(nodes[2].http, "/metrics")[0] == 200, "n3's --http from its config file does not serve")

    answers = {
        "garbage": raw(n1.http, b"\x00\x01\x02 not http at all\r\n\r\n"),
        "bad request line": raw(n1.http, b"GET\r\n\r\n"),
        "oversized header": raw(n1.http, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"),
        "oversized body": raw(n1.http, b"POST /metrics HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 65536),
        "bad content-length": raw(n1.http, b"GET /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
    }
    for what, answer in answers.items():
        first = answer.split(b"\r\n", 1)[0]
        check(answer == b"" or first.startswith(b"HTTP/1.1 400"), f"{what}: answered {first!r}")
        note(f"{what}: {first.decode(errors='replace') or 'closed'}")

    # Idle and half-sent connections up to the cap, then one more: the extra
    # one is closed at once; the held ones are closed by the read timeout,
    # after which a scrape works again. The node answers its peers and admin
    # port throughout.
    host, port = n1.http.rsplit(":", 1)
    held = []
    for i in range(16):
        s = socket.create_connection((host, int(port)), timeout=10)
        if i % 2:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        held.append(s)
    time.sleep(0.2)
    t0 = time.monotonic()
    try:
        extra = raw(n1.http, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        check(extra == b"", f"a connection over the cap was answered: {extra[:40]!r}")
        c.q(n1.id, "status")
        check(c.formed(ids), "the cluster did not stay formed while HTTP connections were held")
        for s in held:
            s.settimeout(10)
            try:
                got = s.recv(100)
            except ConnectionResetError:
                got = b""
            check(got == b"", "a held connection got data instead of being closed")
        closed_after = time.monotonic() - t0
    finally:
        for s in held:
            s.close()
    check(closed_after < 8, f"held connections closed only after {closed_after:.1f} s")
    note(f"16 held connections closed by the read timeout after {closed_after:.1f} s; the 17th was refused")
    m = wait_checked(lambda: scrape(n1), "a scrape to work again after the held connections")
    check(value(m, "rolegrid_http_bad_requests_total") >= 4, "bad requests were not counted")
    check(value(m, "rolegrid_http_refused_connections_total") >= 1, "the refused connection was not counted")
    check(all(n.running() for n in nodes), "a node exited")
    check(c.formed(ids), "the cluster is no longer formed")

    # Bad --http values: exit 2 with one line naming --http.
    p = c.port_base
    ok = ["--node", "n1", "--members", "n1,n2", "--listen", f"127.0.0.1:{p + 31}", "--admin", f"127.0.0.1:{p + 32}",
          "--seeds", f"127.0.0.1:{p + 33}", "--secret-file", str(c.secret_file), "--in-memory"]
    bad_conf = c.dir / "bad.toml"
    bad_conf.write_text('http = "localhost:80"\n')
    cases = [["--http", "nowhere"], ["--http", "127.0.0.1:99999"], ["--http", "300.1.1.1:80"], ["--http", ""],
             ["--http", f"127.0.0.1:{p + 32}"], ["--config", str(bad_conf)]]
    for extra in cases:
        r = subprocess.run([str(ROLEGRID)] + ok + extra, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=5)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        check(r.returncode == 2 and len(lines) == 1 and "--http" in lines[0],
              f"rolegrid {' '.join(extra)}: exit {r.returncode}, stderr {r.stderr!r}")
    note(f"bad --http rejected: {lines[0]}")
    # An HTTP port that cannot be bound: exit 1, one line.
    r = subprocess.run([str(ROLEGRID)] + ok + ["--http", n1.http], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=5)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    check(r.returncode == 1 and len(lines) == 1 and "--http" in lines[-1],
          f"--http on a taken port: exit {r.returncode}, stderr {r.stderr!r}")
    note(f"taken --http port: {lines[-1]}")


@test(timeout=120)
def http_health_checks_follow_the_master_and_fence_by_epoch(c):
    """GET/HEAD /master, /replica, /health and /master?epoch=N, and
    `rolegridctl fence EPOCH`, before and after a kill -9 of the master."""
    nodes, ids, master, replica, epoch = settled_cluster(c)
    by_id = {n.id: n for n in nodes}

    def answers(path):
        return {n.id: get(n.http, path)[0] for n in nodes if n.running()}

    def expect(path, yes, what):
        want = {i: (200 if i in yes else 503) for i in answers(path)}
        wait_checked(lambda: answers(path) == want or None, f"{path}: 200 exactly on {sorted(yes)} ({what})")

    expect("/master", {master}, "the master")
    expect(f"/master?epoch={epoch}", {master}, "the master at its epoch")
    expect(f"/master?epoch={epoch + 1}", set(), "nobody at a later epoch")
    expect("/replica", {replica}, "the replica")
    expect("/health", set(ids), "every member of a quorum")
    st, ctype, body = get(by_id[master].http, "/master")
    j = json.loads(body)
    check(ctype.startswith("application/json") and j["role"] == "master" and j["master_epoch"] == epoch,
          f"/master body: {body}")
    st, _, body = get(by_id[replica].http, "/master")
    j = json.loads(body)
    check(st == 503 and j["role"] == "replica" and j["master"] == master, f"/master on the replica: {st} {body}")
    check(get(by_id[master].http, "/master?epoch=x")[0] == 400, "a bad epoch is not a 400")
    # HEAD: same status, no body.
    host, port = by_id[master].http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for path, want in (("/master", 200), ("/replica", 503), ("/master", 200)):
            conn.request("HEAD", path)
            r = conn.getresponse()
            check(r.status == want and r.read() == b"" and int(r.getheader("Content-Length", "0")) > 0,
                  f"HEAD {path}: {r.status}, length {r.getheader('Content-Length')}")
    finally:
        conn.close()

    # The fencing token from the command line, --json after the command too.
    ok = c.ctl(master, "fence", str(epoch), json=False)
    check(f"fenced: {master} acts as master at epoch {epoch}" in ok, f"fence on the master: {ok}")
    r = c.ctl(replica, "fence", str(epoch), json=False, check=False)
    check(r.returncode == 1 and "not fenced" in r.stderr, f"fence on the replica: {r.returncode} {r.stderr}")
    r = c.ctl(master, "fence", str(epoch - 1) if epoch > 1 else "9", json=False, check=False)
    check(r.returncode == 1 and "not fenced" in r.stderr, f"fence at another epoch: {r.returncode} {r.stderr}")
    r = c.ctl(master, "fence", "abc", json=False, check=False)
    check(r.returncode != 0 and "usage: fence EPOCH" in r.stderr, f"fence abc: {r.returncode} {r.stderr}")
    after = c.ctl(master, "roles", "--json", json=False)
    check(json.loads(after)["self"]["node"] == master, "--json after the command")

    # Kill -9 the master: the health checks follow the new one.
    by_id[master].kill9()
    t0 = time.monotonic()
    rest = [i for i in ids if i != master]

    def new_master():
        a = answers("/master")
        up = [i for i, s in a.items() if s == 200]
        return up[0] if len(up) == 1 else None
    nm = harness.wait_until(new_master, 10, what="a new master answering /master")
    took = time.monotonic() - t0
    r = c.q(nm, "roles")
    check(r["epoch"] > epoch, f"the new master's epoch {r['epoch']} is not above {epoch}")
    expect(f"/master?epoch={epoch}", set(), "the old epoch fences nobody")
    expect(f"/master?epoch={r['epoch']}", {nm}, "the new epoch fences the new master")
    check(c.ctl(nm, "fence", str(r["epoch"]), json=False).startswith("fenced"), "fence on the new master")
    expect("/health", set(rest), "two of three still make a quorum")
    note(f"/master moved from {master} to {nm} {took:.2f} s after the kill; epoch {epoch} -> {r['epoch']}")


SERVICE_SLOT = 60  # the tiny per-node service: port_base + 60 + slot
FRONTEND_SLOT = 70


def start_services(c, nodes, stop):
    """A TCP service per node that answers its node id and closes, as the
    service each node would run; it keeps running when its node is killed."""
    import threading

    def serve(nid, port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            s.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = s.accept()
                except socket.timeout:
                    continue
                with conn:
                    conn.sendall(nid.encode())
    threads = []
    for i, n in enumerate(nodes, 1):
        t = threading.Thread(target=serve, args=(n.id, c.port_base + SERVICE_SLOT + i), daemon=True)
        t.start()
        threads.append(t)
    return threads


def haproxy_config(c, nodes, inter_ms):
    servers = "\n".join(f"    server {n.id} 127.0.0.1:{c.port_base + SERVICE_SLOT + i} check port "
                        f"{n.http.rsplit(':', 1)[1]}" for i, n in enumerate(nodes, 1))
    return f"""global
    stats socket {c.dir}/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{c.port_base + FRONTEND_SLOT}
    default_backend be
backend be
    option httpchk GET /master
    http-check expect status 200
    default-server inter {inter_ms}ms fall 1 rise 1 on-marked-down shutdown-sessions
{servers}
"""


def haproxy_up(c):
    """The servers HAProxy has UP, from its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(c.dir / "haproxy.sock"))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    cols = lines[0].lstrip("# ").split(",")
    up = set()
    for line in lines[1:]:
        row = dict(zip(cols, line.split(",")))
        if row.get("pxname") == "be" and row.get("svname") not in ("BACKEND", None) and \
                row.get("status", "").startswith("UP"):
            up.add(row["svname"])
    return up


def through_frontend(c):
    """The node id of the service HAProxy sent one connection to ('' if none)."""
    try:
        with socket.create_connection(("127.0.0.1", c.port_base + FRONTEND_SLOT), timeout=1) as s:
            return s.recv(64).decode()
    except OSError:
        return ""


@test(timeout=120)
def http_haproxy_follows_the_master(c):
    """Real HAProxy with `option httpchk GET /master` in front of a service
    on each node: after a kill -9 of the master, traffic reaches the new
    master within failure-timeout + one check interval (+ slack), and at no
    poll of the stats socket are two backends UP."""
    import shutil
    import threading
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    check(haproxy is not None, "haproxy is missing (tools/setup.sh installs it)")
    inter_ms = 200
    nodes = http_nodes(c, 3)
    ids = [n.id for n in nodes]
    by_id = {n.id: n for n in nodes}
    c.start_all()
    c.wait_formed()
    harness.wait_until(lambda: harness.settled_roles(c, ids), 15, what="an established master and a replica")
    master = c.q(ids[0], "roles")["master"]["node"]
    stop = threading.Event()
    start_services(c, nodes, stop)
    cfg = c.dir / "haproxy.cfg"
    cfg.write_text(haproxy_config(c, nodes, inter_ms))
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=open(c.dir / "haproxy.log", "w"),
                            stderr=subprocess.STDOUT)
    try:
        harness.wait_until(lambda: haproxy_up(c) == {master}, 10, what=f"HAProxy to have only {master} UP")
        check(through_frontend(c) == master, "traffic does not reach the master")
        most_up, polls = 0, 0
        # Watch the stats socket from here on: never two backends UP.
        watching = threading.Event()
        seen_two = []

        def watch():
            nonlocal most_up, polls
            while not watching.is_set():
                up = haproxy_up(c)
                polls += 1
                most_up = max(most_up, len(up))
                if len(up) > 1:
                    seen_two.append(sorted(up))
                time.sleep(0.02)
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        time.sleep(0.5)
        t0 = by_id[master].kill9()
        new, answers = None, []
        deadline = t0 + 10
        while time.monotonic() < deadline:
            who = through_frontend(c)
            answers.append(who)
            if who and who != master:
                new = who
                break
            time.sleep(0.02)
        took = time.monotonic() - t0
        check(new is not None, "traffic never reached a new master")
        # The old master's service still runs: it must get nothing from now on.
        later = [through_frontend(c) for _ in range(20)]
        time.sleep(0.5)
        watching.set()
        w.join(5)
        check(all(x == new for x in later), f"after the switch, connections went to {later}")
        check(not seen_two, f"two backends UP at once: {seen_two[:3]}")
        check(polls > 20, f"the stats socket was polled only {polls} times")
        bound = c.failure_timeout_ms / 1000 + inter_ms / 1000
        check(took <= bound + 0.6, f"traffic reached {new} {took:.2f} s after the kill, bound {bound:.2f} s + 0.6 s")
        note(f"kill -9 of {master}: HAProxy sent traffic to {new} after {took:.2f} s (failure-timeout "
             f"{c.failure_timeout_ms} ms + check interval {inter_ms} ms = {bound:.2f} s); {polls} stats polls, "
             f"at most {most_up} backend UP")
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@test(timeout=90)
def writes_if_epoch_are_fenced_by_the_master_epoch(c):
    """put / put-field / del --if-epoch N: accepted only on the node that
    acts as master at exactly epoch N; after a failover the old epoch is
    refused everywhere and the new one accepted on the new master."""
    nodes, ids, m, rep_, e = settled_cluster(c)
    c.ctl(m, "put", "svc", "k", "v1", "--if-epoch", str(e), json=False)
    check(c.q(rep_, "get", "svc", "k")["value"] == "v1", "the fenced put did not reach the replica")
    c.ctl(m, "put-field", "svc", "map", "f", "1", "--if-epoch", str(e), json=False)
    for args, where, why in ((("put", "svc", "k", "v2"), rep_, "not the master"),
                             (("put", "svc", "k", "v2"), m, "another epoch"),
                             (("del", "svc", "k"), rep_, "not the master")):
        epoch = e + 1 if why == "another epoch" else e
        r = c.ctl(where, *args, "--if-epoch", str(epoch), json=False, check=False)
        check(r.returncode == 1 and "if-epoch" in r.stderr, f"{args} on {where} at {epoch} ({why}): {r.returncode} "
              f"{r.stderr!r}")
    r = c.ctl(m, "put", "svc", "k", "v2", "--if-epoch", "zero", json=False, check=False)
    check(r.returncode == 1 and "usage" in r.stderr, f"--if-epoch zero: {r.returncode} {r.stderr!r}")
    check(c.q(m, "get", "svc", "k")["value"] == "v1", "a refused write changed the value")

    c.nodes[m].kill9()
    rest = [i for i in ids if i != m]
    new = harness.wait_until(lambda: (lambda r: r["master"]["node"] if r["master"] and r["master"]["node"] in rest
                                      and r["master"]["phase"] == "established" else None)(c.q(rest[0], "roles")),
                             10, what="a new master")
    e2 = c.q(new, "roles")["epoch"]
    harness.wait_until(lambda: c.ctl(new, "fence", str(e2), json=False), 5, what=f"{new} to act at epoch {e2}")
    for node in rest:
        r = c.ctl(node, "put", "svc", "k", "stale", "--if-epoch", str(e), json=False, check=False)
        check(r.returncode == 1, f"the old epoch {e} was accepted on {node} after the failover")
    c.ctl(new, "del", "svc", "k", "--if-epoch", str(e2), json=False)
    note(f"epoch {e}: accepted on master {m}, refused on {rep_} and at epoch {e + 1}; after the kill, epoch {e} "
         f"refused on {rest}, epoch {e2} accepted on {new}")
