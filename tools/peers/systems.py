"""The four systems behind one interface, each on hosts of its own private
network (chaos.netns.Network: peer bridge 10.77.0.x where partitions happen,
admin bridge 10.78.0.x through which the tool reaches every host).

Interface (host ids are strings; "master" means master / leader / VIP holder):
  start(), close()
  stable()            the master if the whole system is healthy, else None
  new_master(old)     a master other than `old`, established and accepting a
                      write (see each class for what that means), else None
  holders()           hosts that hold the role right now, as far as they say
  demoted(h)          h is up and does not hold the role
  kill9(h), restart(h, after_failover), pause(h), resume(h), partition(h), heal()
  write(h, key)       one write through host h; True if acknowledged (None: no writes)
  present(keys, via)  which of `keys` the system holds, read through host `via`
  pid(h)              the server's PID on host h (for RSS)
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import env
from chaos.netns import Network

MASTER_NAME = "mymaster"
VIP = "10.77.0.100"



def rg_heartbeat_ms(ft_ms):
    # As tools/bench-failover: below 500 ms the heartbeat and the probe
    # timeout scale with failure-timeout, so that detection does too.
    return 100 if ft_ms >= 500 else max(5, ft_ms // 5)


def rg_timing(ft_ms):
    """--heartbeat-interval X, then --probe-timeout Y where it is scaled."""
    out = ["--heartbeat-interval", f"{rg_heartbeat_ms(ft_ms)}ms"]
    if ft_ms < 500:
        out += ["--probe-timeout", f"{max(10, ft_ms // 3)}ms"]
    return out

class Setting:
    """One column of matching settings: detection timeout 1000 ms, or the
    smallest each system runs stably with."""

    def __init__(self, name, rg_ms, redis_down_ms, redis_failover_ms, etcd_hb, etcd_election, vrrp_advert):
        self.name = name
        self.rg_ms = rg_ms
        self.redis_down_ms = redis_down_ms
        self.redis_failover_ms = redis_failover_ms
        self.etcd_hb = etcd_hb
        self.etcd_election = etcd_election
        self.vrrp_advert = vrrp_advert

    def describe(self, system):
        return {
            "rolegrid": f"--failure-timeout {self.rg_ms}ms " + " ".join(rg_timing(self.rg_ms)),
            "redis": f"down-after-milliseconds {self.redis_down_ms}, failover-timeout {self.redis_failover_ms}, quorum 2",
            "etcd": f"--heartbeat-interval {self.etcd_hb} --election-timeout {self.etcd_election}",
            "keepalived": f"VRRPv3 advert_int {self.vrrp_advert} s (master down after ~3 adverts)",
        }[system]


class System:
    name = ""
    has_writes = True
    min_gap_s = 0.0  # between two kills

    def __init__(self, workdir, setting, n):
        self.dir = Path(workdir) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.setting = setting
        self.n = n
        self._local = threading.local()
        self.paused = set()

    def conns(self):
        c = getattr(self._local, "conns", None)
        if c is None:
            c = self._local.conns = {}
        return c

    def up(self, h):
        return self.running(h) and h not in self.paused

    # -- faults every system takes the same way: through the process of host
    # h (proc) and the hosts' network (network) --------------------------------------
    def proc(self, h):
        raise NotImplementedError

    def network(self):
        return self.net

    def pause(self, h):
        self.proc(h).pause()
        self.paused.add(h)

    def resume(self, h):
        self.proc(h).resume()
        self.paused.discard(h)

    def partition(self, h):
        self.network().partition([[o for o in self.ids if o != h], [h]])

    def heal(self):
        self.network().heal()

    def describe(self):
        """A line for error messages: who runs, who holds the role."""
        return (f"running {[h for h in self.ids if self.running(h)]}, paused {sorted(self.paused)}, "
                f"holders {sorted(self.holders())}; last log lines: {self.log_tails()}")

    def log_tails(self, lines=3):
        out = []
        for f in sorted(self.dir.rglob("*.log")):
            try:
                tail = f.read_text(errors="replace").strip().splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"{f.relative_to(self.dir)}: " + " | ".join(tail))
        return "; ".join(out)


class _OneNode:
    """One node of a ChaosCluster as a process to pause and resume (the
    cluster records the fault in its history)."""

    def __init__(self, cluster, h):
        self.c, self.h = cluster, h

    def pause(self):
        self.c.pause([self.h])

    def resume(self):
        self.c.resume([self.h])


# ---------------------------------------------------------------------------------------------
class Rolegrid(System):
    """rolegrid-chaos's own cluster code (tools/chaos/cluster.py): one node
    per namespace, multicast on the peer bridge."""

    name = "rolegrid"

    def __init__(self, workdir, setting, n):
        super().__init__(workdir, setting, n)
        from chaos.cluster import ChaosCluster, CLUSTER_NAME
        from rgkit.admin import AdminConn, AdminError
        self._AdminConn, self.AdminError, self.cluster_name = AdminConn, AdminError, CLUSTER_NAME
        hb_ms = rg_heartbeat_ms(setting.rg_ms)
        self.c = ChaosCluster(self.dir, n, failure_timeout_ms=setting.rg_ms, heartbeat_ms=hb_ms,
                              node_options=["--log-level", "warn"] + rg_timing(setting.rg_ms)[2:])
        self.ids = self.c.ids
        self.phase_s = hb_ms / 1000.0

    def start(self):
        self.c.start_all()

    def close(self):
        self.c.close()

    def running(self, h):
        return self.c.nodes[h].running()

    def pid(self, h):
        return self.c.nodes[h].proc.pid

    def admin(self, h):
        return self.c.nodes[h].admin

    def q(self, h, cmd, *args, timeout=0.3):
        node = self.c.nodes[h]
        key = (h, node.starts)
        conns = self.conns()
        conn = conns.get(key)
        try:
            if conn is None:
                conn = conns[key] = self._AdminConn(node.admin, self.c.secret, self.cluster_name, timeout=timeout)
            return conn.call(cmd, *args, timeout=timeout)
        except self.AdminError:
            raise
        except Exception:
            if conn is not None:
                conn.close()
            conns.pop(key, None)
            raise

    def roles(self, h):
        try:
            return self.q(h, "roles")
        except Exception:
            return None

    @staticmethod
    def established(r):
        m = (r or {}).get("master") or {}
        return m.get("node") if m.get("phase") == "established" else None

    def stable(self):
        seen, rs = set(), {}
        for h in self.ids:
            if not self.up(h):
                return None
            rs[h] = self.roles(h)
            seen.add(self.established(rs[h]))
        if len(seen) != 1 or None in seen:
            return None
        m = seen.pop()
        if not rs[m]["self"].get("acting_master") or not (rs[m].get("replica") or {}).get("node"):
            return None
        return m

    def new_master(self, old):
        live = [h for h in self.ids if h != old and self.up(h)]
        ms = {self.established(self.roles(h)) for h in live}
        if len(ms) != 1 or None in ms or old in ms:
            return None
        m = ms.pop()
        return m if self.write(m, f"probe-{time.monotonic_ns()}", region="probe") else None

    def holders(self):
        out = set()
        for h in self.ids:
            if self.up(h):
                r = self.roles(h)
                if r and r["self"].get("acting_master"):
                    out.add(h)
        return out

    def demoted(self, h):
        r = self.roles(h) if self.up(h) else None
        return bool(r) and not r["self"].get("acting_master") and r["self"].get("role") in ("replica", "data")

    def kill9(self, h):
        self.c.kill9([h])

    def restart(self, h, after_failover=False):
        self.c.start([h])

    def proc(self, h):
        return _OneNode(self.c, h)

    def network(self):
        return self.c

    def write(self, h, key, region="stale"):
        try:
            self.q(h, "put", region, key, "v" * 100, timeout=0.3)
            return True
        except Exception:
            return False

    def present(self, keys, via):
        have = set(self.q(via, "keys", "stale", "", str(10 ** 7), timeout=10))
        return {k for k in keys if k in have}


# ---------------------------------------------------------------------------------------------
class RedisError(Exception):
    pass


class Resp:
    """A minimal RESP client over one kept-open connection (polling only;
    the load comes from rg-bench-peers-client)."""

    def __init__(self, addr, timeout):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.s.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError(f"bad reply {line!r}")

    def cmd(self, *args, timeout=None):
        if timeout is not None:
            self.s.settimeout(timeout)
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.s.sendall(out)
        return self._reply()


def info_fields(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


class Redis(System):
    """1 master + 2 replicas, a sentinel beside each (quorum 2). No
    persistence: the replicas hold the copies, as rolegrid's members do."""

    name = "redis"

    def __init__(self, workdir, setting, n=3, with_sentinels=True):
        super().__init__(workdir, setting, n)
        self.ids = [f"r{i}" for i in range(1, n + 1)]
        self.net = Network(self.ids)
        self.phase_s = min(1.0, setting.redis_down_ms / 1000)  # sentinels ping every min(down-after, 1 s)
        self.with_sentinels = with_sentinels
        # A sentinel does not start or vote in a second failover of the same
        # master within 2 x failover-timeout of the last one: trials are
        # spaced so that no kill waits for that.
        self.min_gap_s = 2 * setting.redis_failover_ms / 1000 + 0.3
        self.srv, self.sen = {}, {}
        for i, h in enumerate(self.ids):
            d = self.dir / h
            d.mkdir(exist_ok=True)
            conf = d / "redis.conf"
            lines = ["bind 0.0.0.0", "port 6379", "protected-mode no", 'save ""', "appendonly no", "daemonize no",
                     f"dir {d}", "repl-diskless-sync yes", "repl-diskless-sync-delay 0", "loglevel warning",
                     "logfile \"\""]
            if i > 0:
                lines.append(f"replicaof {self.net.peer_ip(self.ids[0])} 6379")
            conf.write_text("\n".join(lines) + "\n")
            self.srv[h] = env.Proc(["redis-server", str(conf)], d / "redis.log", self.net.exec_prefix(h))
            sconf = d / "sentinel.conf"
            sconf.write_text("\n".join([
                "bind 0.0.0.0", "port 26379", "protected-mode no", "daemonize no", f"dir {d}", "loglevel notice",
                "logfile \"\"",
                f"sentinel monitor {MASTER_NAME} {self.net.peer_ip(self.ids[0])} 6379 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {setting.redis_down_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {setting.redis_failover_ms}",
                f"sentinel parallel-syncs {MASTER_NAME} 2"]) + "\n")
            self.sen[h] = env.Proc(["redis-sentinel", str(sconf)], d / "sentinel.log", self.net.exec_prefix(h))

    def start(self):
        for h in self.ids:
            self.srv[h].start()
        if self.with_sentinels:
            time.sleep(0.3)
            for h in self.ids:
                self.sen[h].start()

    def close(self):
        for p in list(self.srv.values()) + list(self.sen.values()):
            p.kill9()
        self.net.teardown()

    def running(self, h):
        return self.srv[h].running()

    def pid(self, h):
        return self.srv[h].pid

    def addr(self, h, port=6379):
        return f"{self.net.admin_ip(h)}:{port}"

    def host_of(self, ip):
        for h in self.ids:
            if self.net.peer_ip(h) == ip:
                return h
        return None

    def r(self, h, *args, port=6379, timeout=0.3):
        conns = self.conns()
        key = (h, port)
        c = conns.get(key)
        try:
            if c is None:
                c = conns[key] = Resp(self.addr(h, port), timeout)
            return c.cmd(*args, timeout=timeout)
        except RedisError:
            raise
        except Exception:
            if c is not None:
                c.close()
            conns.pop(key, None)
            raise

    def info(self, h):
        try:
            return info_fields(self.r(h, "INFO", "replication"))
        except Exception:
            return None

    def sentinel_master(self, h):
        try:
            ip_port = self.r(h, "SENTINEL", "get-master-addr-by-name", MASTER_NAME, port=26379)
            return self.host_of(ip_port[0]) if ip_port else None
        except Exception:
            return None

    def stable(self):
        if not all(self.up(h) for h in self.ids):
            return None
        ms = {self.sentinel_master(h) for h in self.ids}
        if len(ms) != 1 or None in ms:
            return None
        m = ms.pop()
        for h in self.ids:
            i = self.info(h)
            if not i:
                return None
            if h == m and (i.get("role") != "master" or i.get("connected_slaves") != "2"
                           or any("state=online" not in i.get(f"slave{k}", "") for k in range(2))):
                return None
            if h != m and (i.get("role") != "slave" or i.get("master_link_status") != "up"
                           or i.get("master_host") != self.net.peer_ip(m)):
                return None
            try:
                sm = self.r(h, "SENTINEL", "master", MASTER_NAME, port=26379)
                fields = dict(zip(sm[::2], sm[1::2]))
                if fields.get("num-other-sentinels") != "2" or fields.get("flags") != "master":
                    return None
                reps = self.r(h, "SENTINEL", "replicas", MASTER_NAME, port=26379)
                good = {self.host_of(dict(zip(x[::2], x[1::2])).get("ip")) for x in reps
                        if dict(zip(x[::2], x[1::2])).get("flags") == "slave"}
                if good != set(self.ids) - {m}:
                    return None
            except Exception:
                return None
        return m

    def new_master(self, old):
        """The sentinels of the other hosts name a new master, and a SET on
        it succeeds (a replica answers READONLY until it is promoted)."""
        names = {self.sentinel_master(h) for h in self.ids if h != old}
        if len(names) != 1 or None in names or old in names:
            return None
        m = names.pop()
        return m if self.write(m, f"probe-{time.monotonic_ns()}") else None

    def holders(self):
        out = set()
        for h in self.ids:
            if self.up(h):
                i = self.info(h)
                if i and i.get("role") == "master":
                    out.add(h)
        return out

    def demoted(self, h):
        i = self.info(h) if self.up(h) else None
        return bool(i) and i.get("role") == "slave"

    def kill9(self, h):
        self.srv[h].kill9()
        self.conns().pop((h, 6379), None)

    def restart(self, h, after_failover=False):
        # The killed master's own config names no master (sentinel rewrote it
        # when it promoted this host). Between failover trials the tool points
        # it at the current master, as an operator would, instead of waiting
        # the ~8 s before the sentinels convert it; restore trials measure that.
        extra = []
        if after_failover:
            m = self.sentinel_master(next(x for x in self.ids if x != h))
            extra = ["--replicaof", self.net.peer_ip(m), "6379"]
        self.srv[h].start(extra)

    def proc(self, h):
        return self.srv[h]

    def write(self, h, key):
        try:
            return self.r(h, "SET", f"stale/{key}", "v" * 100) == "OK"
        except Exception:
            return False

    def present(self, keys, via):
        keys = list(keys)
        out = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            vals = self.r(via, "MGET", *[f"stale/{k}" for k in chunk], timeout=5)
            out |= {k for k, v in zip(chunk, vals) if v is not None}
        return out


# ---------------------------------------------------------------------------------------------
def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd(System):
    """A 3-member etcd cluster, data directories on tmpfs (see env.mount_tmpfs)."""

    name = "etcd"

    def __init__(self, workdir, setting, n=3):
        super().__init__(workdir, setting, n)
        self.ids = [f"e{i}" for i in range(1, n + 1)]
        self.net = Network(self.ids)
        self.phase_s = setting.etcd_hb / 1000
        self.procs = {h: None for h in self.ids}
        self.member_of = {}  # member id -> host

    def peer_url(self, h):
        return f"http://{self.net.peer_ip(h)}:2380"

    def argv(self, h, state="new"):
        return ["etcd", "--name", h, "--data-dir", str(self.dir / h / "data"),
                "--listen-peer-urls", self.peer_url(h), "--initial-advertise-peer-urls", self.peer_url(h),
                "--listen-client-urls", "http://0.0.0.0:2379",
                "--advertise-client-urls", f"http://{self.net.peer_ip(h)}:2379",
                "--initial-cluster", ",".join(f"{x}={self.peer_url(x)}" for x in self.ids),
                "--initial-cluster-state", state, "--initial-cluster-token", "bench-vs-peers",
                "--heartbeat-interval", str(self.setting.etcd_hb), "--election-timeout", str(self.setting.etcd_election),
                "--quota-backend-bytes", str(8 << 30), "--logger", "zap", "--log-level", "warn"]

    def start_one(self, h, state="new"):
        (self.dir / h).mkdir(exist_ok=True)
        p = env.Proc(self.argv(h, state), self.dir / h / "etcd.log", self.net.exec_prefix(h))
        self.procs[h] = p.start()

    def start(self):
        for h in self.ids:
            self.start_one(h)

    def close(self):
        for p in self.procs.values():
            if p:
                p.kill9()
        self.net.teardown()

    def running(self, h):
        return self.procs[h] is not None and self.procs[h].running()

    def pid(self, h):
        return self.procs[h].pid

    def addr(self, h):
        return f"{self.net.admin_ip(h)}:2379"

    def post(self, h, path, body, timeout=0.3):
        conns = self.conns()
        c = conns.get(h)
        try:
            if c is None:
                c = conns[h] = http.client.HTTPConnection(self.net.admin_ip(h), 2379, timeout=timeout)
            c.timeout = timeout
            if c.sock is not None:
                c.sock.settimeout(timeout)
            c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = c.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"etcd {path}: {resp.status} {data[:200]!r}")
            return json.loads(data)
        except Exception:
            if c is not None:
                c.close()
            conns.pop(h, None)
            raise

    def status(self, h):
        try:
            s = self.post(h, "/v3/maintenance/status", {})
        except Exception:
            return None
        self.member_of[s["header"]["member_id"]] = h
        return s

    def leader_of(self, s):
        return self.member_of.get(s.get("leader")) if s else None

    def stable(self):
        if not all(self.up(h) for h in self.ids):
            return None
        ls = set()
        for h in self.ids:
            s = self.status(h)
            if not s or s.get("leader", "0") == "0":
                return None
            ls.add(s["leader"])
        if len(ls) != 1:
            return None
        return self.member_of.get(ls.pop())

    def new_master(self, old):
        """Every live member names the same new leader, and a put through it
        commits."""
        ls = {self.leader_of(self.status(h)) for h in self.ids if h != old and self.up(h)}
        if len(ls) != 1 or None in ls or old in ls:
            return None
        m = ls.pop()
        return m if self.write(m, f"probe-{time.monotonic_ns()}") else None

    def holders(self):
        out = set()
        for h in self.ids:
            if self.up(h):
                s = self.status(h)
                if s and s.get("leader") == s["header"]["member_id"]:
                    out.add(h)
        return out

    def demoted(self, h):
        s = self.status(h) if self.up(h) else None
        return bool(s) and s.get("leader", "0") not in ("0", s["header"]["member_id"])

    def kill9(self, h):
        self.procs[h].kill9()
        self.conns().pop(h, None)

    def restart(self, h, after_failover=False):
        self.procs[h].start()

    def proc(self, h):
        return self.procs[h]

    def write(self, h, key):
        try:
            self.post(h, "/v3/kv/put", {"key": b64(f"stale/{key}"), "value": b64("v" * 100)})
            return True
        except Exception:
            return False

    def present(self, keys, via):
        r = self.post(via, "/v3/kv/range", {"key": b64("stale/"), "range_end": b64("stale0"), "keys_only": True},
                      timeout=10)
        have = {base64.b64decode(kv["key"]).decode()[len("stale/"):] for kv in r.get("kvs", [])}
        return {k for k in keys if k in have}

    def count(self, h, prefix="k", serializable=True, timeout=5):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.post(h, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "count_only": True,
                                          "serializable": serializable}, timeout=timeout)
        return int(r.get("count", 0))


# ---------------------------------------------------------------------------------------------
class Keepalived(System):
    """3 hosts, one VRRPv3 instance, a VIP on the peer bridge. All start
    BACKUP with nopreempt, so a restarted host does not take the VIP back (as
    a restarted rolegrid master does not); priorities 150/100/50."""

    name = "keepalived"
    has_writes = False

    def __init__(self, workdir, setting, n=3):
        super().__init__(workdir, setting, n)
        self.ids = [f"k{i}" for i in range(1, n + 1)]
        self.net = Network(self.ids)
        self.phase_s = setting.vrrp_advert
        self.procs = {}
        for i, h in enumerate(self.ids):
            d = self.dir / h
            d.mkdir(exist_ok=True)
            conf = d / "keepalived.conf"
            conf.write_text(f"""global_defs {{
  router_id {h}
  vrrp_version 3
  enable_script_security
}}
vrrp_instance VI_1 {{
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 77
  priority {150 - 50 * i}
  advert_int {setting.vrrp_advert}
  virtual_ipaddress {{
    {VIP}/24 dev eth0
  }}
}}
""")
            self.procs[h] = env.Proc(["keepalived", "-n", "-l", "-P", "-G", "-f", str(conf), "-p", str(d / "k.pid"),
                                      "-r", str(d / "vrrp.pid"), "-c", str(d / "chk.pid")],
                                     d / "keepalived.log", self.net.exec_prefix(h))
        self._stable_since = None
        self._stable_holder = None

    def start_one(self, h):
        # PIDs are reused quickly in the tool's PID namespace: a stale pid
        # file naming a live process makes keepalived refuse to start.
        for f in ("k.pid", "vrrp.pid", "chk.pid"):
            (self.dir / h / f).unlink(missing_ok=True)
        self.procs[h].start()

    def start(self):
        for h in self.ids:
            self.start_one(h)

    def close(self):
        for p in self.procs.values():
            p.kill9()
        self.net.teardown()

    def running(self, h):
        return self.procs[h].running()

    def pid(self, h):
        return self.procs[h].pid

    def holds(self, h):
        return env.address_held(self.net.netns(h), VIP)

    def holders(self):
        # A paused keepalived keeps its VIP configured: the kernel still
        # answers for it, so a paused host counts as holding the role.
        return {h for h in self.ids if self.holds(h)}

    def stable(self):
        """One holder, every host running, for 4 adverts in a row (the state
        of the backups cannot be read, only the VIP)."""
        hs = self.holders()
        ok = len(hs) == 1 and all(self.up(h) for h in self.ids)
        now = time.monotonic()
        if not ok or hs != self._stable_holder:
            self._stable_since, self._stable_holder = (now if ok else None), (hs if ok else None)
            return None
        if now - self._stable_since < 4 * self.setting.vrrp_advert + 0.2:
            return None
        return next(iter(hs))

    def new_master(self, old):
        hs = {h for h in self.ids if h != old and self.holds(h)}
        return next(iter(hs)) if len(hs) == 1 else None

    def demoted(self, h):
        return self.up(h) and not self.holds(h)

    def kill9(self, h):
        # kill -9 of keepalived stands for the loss of the host: its
        # addresses go with it (the kernel would otherwise keep the VIP).
        self.procs[h].kill9()
        subprocess.run(["ip", "-n", self.net.netns(h), "addr", "del", f"{VIP}/24", "dev", "eth0"],
                       capture_output=True)

    def restart(self, h, after_failover=False):
        self.start_one(h)

    def proc(self, h):
        return self.procs[h]

    def write(self, h, key):
        return None

    def present(self, keys, via):
        return set()


CLASSES = {"rolegrid": Rolegrid, "redis": Redis, "etcd": Etcd, "keepalived": Keepalived}
