"""Scenario files (tests/chaos/*.chaos): the language and its parser.

One command per line, `#` starts a comment. Durations: 500ms, 1.5s, 2s.

  nodes 5 [members 3] [witness n5]  how many nodes (n1..nN); first. `members M`: the cluster is
                                    n1..nM, the others wait for `member add`
  set failure-timeout 700ms         node options: failure-timeout, heartbeat-interval, probe-timeout,
                                    broadcast-timeout, failover-timeout, failover-backoff,
                                    eviction-delay, hook-timeout, anti-entropy-interval
  set mode unicast                  multicast (default) or unicast (--seeds)
  set state memory                  acceptor state in each node's data dir (durable, the default)
                                    or in memory only (--in-memory)
  set promise 3s                    promised failover / demotion time (default 2 x failure-timeout + 1 s)
  set workload clients 3 rate 40    writers (puts/s each); they start once the cluster first formed
                                    (`start immediate`: with the nodes); `set workload off`
  set seed 7                        for any-data / any choices
  start                             start every node (implied by the first command that needs them)
  wait master within 5s [as M]      until one node acts as established master
  wait replica within 5s [as R]     until the master's role table names a replica
  wait designated within 5s [as D]  until some node's role table shows a designated (not yet established) master
  wait formed within 10s            until every running node is synced and sees the others alive
  wait voting within 5s             until every running node's acceptor votes (state loaded or recovered)
  sleep 500ms
  kill -9 TARGETS [as NAMES]        SIGKILL
  stop TARGETS [as NAMES]           SIGTERM, waits for the exit
  start TARGETS                     start stopped nodes again (new incarnation)
  restart [-9] TARGETS [as NAMES]   stop (graceful, or kill -9) then start
  wipe TARGETS                      delete stopped nodes' data dirs (lost state: recovered from the peers)
  pause TARGETS [DURATION] [as N]   SIGSTOP the node's process group and its hooks; resumes after DURATION
  resume TARGETS
  pick TARGETS as NAMES             bind names to the nodes the targets name now
  partition GROUP | GROUP [| GROUP] GROUP: TARGETS or `rest`; each side on its own bridge
  heal                              ends partitions, cuts and duplicates
  cut FROM -> TO [PERCENT%]         drop that share (default 100%) of IPv4 packets from FROM to TO, one way
  cut FROM <-> TO [PERCENT%]        both ways. FROM, TO: TARGETS or `others` (every node not on the
                                    other side). Cuts add up until `heal`; nodes stay on one bridge
  reach TARGET only TARGETS         TARGET and every node not in TARGETS are cut both ways
  ring [TARGETS]                    each node reaches only its two neighbours, in the order given
                                    (unnamed nodes follow by id; default n1..nN)
  dup TARGETS PERCENT%              that share of the IPv4 packets to the nodes arrives twice (nftables)
  fault TARGETS drop PEERS PERCENT [in|out|both]   message loss (PEERS: TARGETS or `others`)
  fault TARGETS delay PEERS MS
  fault TARGETS drop-app CHANNEL [in|out]          e.g. agent.ack (broadcast acknowledgements)
  fault TARGETS clear
  fault TARGETS early-handover on                  planted hole: a switchover skips the step-down wait
  hook NAME sleep DURATION [on TARGETS]   install a hook script (prepare, master, replica, data, abort)
  hook NAME exit CODE [on TARGETS]
  hook NAME remove [on TARGETS]
  switchover to TARGET              `rolegridctl switchover --to`
  member add TARGET [via TARGET]    `rolegridctl member add` (asked of a running member), then the
                                    node starts with --join and an empty data dir
  member remove TARGET [via TARGET] `rolegridctl member remove`; waits for the node to stop by itself
  workload heavy|normal|off|on
  expect master [within D]                  some node acts as master
  expect master == NAME|!= NAME [within D]
  expect role TARGET == ROLE [within D]     ROLE: master replica data witness (!= too)
  expect replica == NAME|!= NAME [within D] the replica the master's table names
  expect event TARGET EVENT [within D]      TARGET's event log has EVENT (like +vacated) since the last fault
  expect master-gap below D                 no stretch without an acting master longer than D since the last fault
  expect no-failover [for D]                same master and epoch as at the last `wait master`
  expect no-master-overlap                  the checker's overlap and epoch checks, now
  expect acked-writes-present [within D]    every acknowledged write on every live node

TARGETS: comma-separated `master`, `replica`, `any-data`, `any`, a node id
(n1..nN) or a NAME bound by an earlier `as NAME`. `within` counts from the
start of the line; default: the promised time.

Every run ends the same way: resume, heal, clear faults, wait for a master,
stop the workload, snapshot every live node's keys, then check the whole
history (tools/chaos/checker.py). The runner is tools/chaos/runner.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


ROLE_WORDS = ("master", "replica", "any-data", "any")
ROLES = ("master", "replica", "data", "witness")
NODE_OPTIONS = ("failure-timeout", "heartbeat-interval", "probe-timeout", "broadcast-timeout", "failover-timeout",
                "failover-backoff", "eviction-delay", "hook-timeout", "anti-entropy-interval")
HOOKS = ("prepare", "master", "replica", "data", "abort")
ACTIONS = ("start", "kill9", "stop", "restart", "restart9", "pause", "resume", "partition", "heal", "fault", "switchover",
           "wipe", "cut", "reach", "ring", "dup", "member-add", "member-remove")
NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
RESERVED = set(ROLE_WORDS) | {"rest", "others", "all", "as", "on", "within", "for", "to", "via"}


class ParseError(Exception):
    def __init__(self, path, line, reason):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}")


def parse_duration(s):
    """Seconds from '500ms', '1.5s', '2s'; None if malformed."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", s or "")
    if not m:
        return None
    v = float(m.group(1))
    return v / 1000.0 if m.group(2) == "ms" else v


@dataclass
class Step:
    line: int
    text: str
    cmd: str
    args: dict = field(default_factory=dict)


@dataclass
class Scenario:
    path: str
    nodes: int = 0
    members: int = 0  # the first configuration: n1..n<members> (0: every node)
    witnesses: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    node_options: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)

    @property
    def name(self):
        import os
        return os.path.splitext(os.path.basename(self.path))[0]


class _Parser:
    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.sc = Scenario(path)
        self.bound = set()
        self.lineno = 0

    def err(self, reason):
        raise ParseError(self.path, self.lineno, reason)

    def dur(self, tok, what):
        d = parse_duration(tok)
        if d is None:
            self.err(f"{what}: '{tok}' is not a duration (like 500ms or 1.5s)")
        return d

    def node_id_ok(self, tok):
        m = re.fullmatch(r"n(\d+)", tok)
        return m is not None and 1 <= int(m.group(1)) <= self.sc.nodes

    def targets(self, tok, allow=("roles", "ids", "names"), what="target"):
        if not tok:
            self.err(f"missing {what}")
        out = []
        for t in tok.split(","):
            if not t:
                self.err(f"empty {what} in '{tok}'")
            if t in ROLE_WORDS and "roles" in allow:
                out.append(t)
            elif re.fullmatch(r"n\d+", t) and "ids" in allow:
                if not self.node_id_ok(t):
                    self.err(f"{t} is not a node of this scenario (nodes n1..n{self.sc.nodes})")
                out.append(t)
            elif NAME_RE.match(t) and "names" in allow:
                if t not in self.bound:
                    self.err(f"{t} is not bound (bind it first with '... as {t}')")
                out.append(t)
            else:
                self.err(f"'{t}' is not a {what} (master, replica, any-data, any, a node id n1..n{self.sc.nodes} "
                         f"or a NAME bound with 'as')")
        return out

    def bind(self, toks, count_hint, what):
        """Parses an optional trailing `as A,B`; returns (rest, names)."""
        if "as" in toks:
            i = toks.index("as")
            if i != len(toks) - 2:
                self.err("'as' must be followed by exactly one comma-separated list of NAMEs, at the end")
            names = toks[-1].split(",")
            for n in names:
                if not NAME_RE.match(n) or n in RESERVED:
                    self.err(f"'{n}' cannot be a name: use capitals, digits and _ (like OLD or M2)")
                if self.node_id_ok(n.lower()) and n.lower() == n:
                    self.err(f"'{n}' is a node id")
            if count_hint is not None and len(names) != count_hint:
                self.err(f"{len(names)} names for {count_hint} {what}")
            return toks[:i], names
        return toks, []

    def within(self, toks, default=None, word="within"):
        if word in toks:
            i = toks.index(word)
            if i != len(toks) - 2:
                self.err(f"'{word} DURATION' must end the line")
            return toks[:i], self.dur(toks[-1], word)
        return toks, default

    def need_nodes(self):
        if not self.sc.nodes:
            self.err("'nodes N' must come first")

    def parse(self):
        for self.lineno, raw in enumerate(self.text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            toks = line.split()
            cmd = toks[0]
            handler = getattr(self, "p_" + cmd.replace("-", "_"), None)
            if handler is None:
                self.err(f"unknown command '{cmd}' (see: rolegrid-chaos help-scenario)")
            if cmd not in ("nodes", "set") and cmd != "#":
                self.need_nodes()
            handler(toks[1:], line)
        if not self.sc.nodes:
            self.lineno = max(1, self.lineno)
            raise ParseError(self.path, self.lineno, "no 'nodes N' line")
        return self.sc

    def add(self, line, cmd, **args):
        self.sc.steps.append(Step(self.lineno, line, cmd, args))

    # -- commands -------------------------------------------------------------
    def p_nodes(self, a, line):
        usage = "usage: nodes N [members M] [witness ID,...] (N from 1 to 9, M at most N)"
        if self.sc.nodes:
            self.err("'nodes' given twice")
        if not a or not a[0].isdigit() or not 1 <= int(a[0]) <= 9:
            self.err(usage)
        self.sc.nodes = int(a[0])
        rest = a[1:]
        if rest[:1] == ["members"]:
            if len(rest) < 2 or not rest[1].isdigit() or not 1 <= int(rest[1]) <= self.sc.nodes:
                self.err(usage)
            self.sc.members = int(rest[1])
            rest = rest[2:]
        if rest:
            if len(rest) != 2 or rest[0] != "witness":
                self.err(usage)
            self.sc.witnesses = self.targets(rest[1], allow=("ids",), what="node id")

    def p_set(self, a, line):
        if not a:
            self.err("usage: set OPTION VALUE")
        key = a[0]
        if key in NODE_OPTIONS:
            if len(a) != 2:
                self.err(f"usage: set {key} DURATION")
            self.dur(a[1], key)
            if self.sc.steps:
                self.err(f"'set {key}' must come before the nodes start")
            self.sc.node_options[key] = a[1]
        elif key == "mode":
            if len(a) != 2 or a[1] not in ("multicast", "unicast"):
                self.err("usage: set mode multicast|unicast")
            self.sc.settings["mode"] = a[1]
        elif key == "state":
            if len(a) != 2 or a[1] not in ("durable", "memory"):
                self.err("usage: set state durable|memory")
            if self.sc.steps:
                self.err("'set state' must come before the nodes start")
            self.sc.settings["state"] = a[1]
        elif key in ("promise", "demote-promise"):
            if len(a) != 2:
                self.err(f"usage: set {key} DURATION")
            self.sc.settings[key] = self.dur(a[1], key)
        elif key == "seed":
            if len(a) != 2 or not a[1].isdigit():
                self.err("usage: set seed NUMBER")
            self.sc.settings["seed"] = int(a[1])
        elif key == "workload":
            if a[1:] == ["off"]:
                self.sc.settings["workload"] = {"clients": 0}
                return
            w = {}
            rest = a[1:]
            if len(rest) % 2 or not rest:
                self.err("usage: set workload clients N rate R [window W] [start formed|immediate] | set workload off")
            for k, v in zip(rest[::2], rest[1::2]):
                if k == "start":
                    if v not in ("formed", "immediate"):
                        self.err("set workload: start formed|immediate")
                    w[k] = v
                    continue
                if k not in ("clients", "rate", "window"):
                    self.err(f"set workload: unknown '{k}' (clients, rate, window, start)")
                try:
                    w[k] = float(v) if k == "rate" else int(v)
                except ValueError:
                    self.err(f"set workload: '{v}' is not a number")
            self.sc.settings["workload"] = w
        else:
            self.err(f"unknown setting '{key}'")

    def p_start(self, a, line):
        if a:
            self.add(line, "start", targets=self.targets(a[0]) if len(a) == 1 else self.err("usage: start [TARGETS]"))
        else:
            self.add(line, "start-all")

    def p_wait(self, a, line):
        a, names = self.bind(a, 1, "master")
        a, d = self.within(a)
        if d is None:
            self.err("usage: wait master|replica|designated|formed|voting within DURATION [as NAME]")
        if a == ["master"]:
            self.add(line, "wait-master", within=d, names=names)
        elif a == ["replica"]:
            self.add(line, "wait-replica", within=d, names=names)
        elif a == ["designated"]:
            self.add(line, "wait-designated", within=d, names=names)
        elif a == ["formed"] and not names:
            self.add(line, "wait-formed", within=d)
        elif a == ["voting"] and not names:
            self.add(line, "wait-voting", within=d)
        else:
            self.err("usage: wait master|replica|designated within DURATION [as NAME] | "
                     "wait formed|voting within DURATION")
        self.bound.update(names)

    def p_sleep(self, a, line):
        if len(a) != 1:
            self.err("usage: sleep DURATION")
        self.add(line, "sleep", seconds=self.dur(a[0], "sleep"))

    def _fault_cmd(self, cmd, a, line, usage):
        a, names = self.bind(a, None, "targets")
        if len(a) != 1:
            self.err(usage)
        t = self.targets(a[0])
        if names and len(names) != len(t):
            self.err(f"{len(names)} names for {len(t)} targets")
        self.add(line, cmd, targets=t, names=names)
        self.bound.update(names)

    def p_kill(self, a, line):
        if not a or a[0] != "-9":
            self.err("usage: kill -9 TARGETS [as NAMES] (only SIGKILL; use 'stop' for SIGTERM)")
        self._fault_cmd("kill9", a[1:], line, "usage: kill -9 TARGETS [as NAMES]")

    def p_member(self, a, line):
        usage = "usage: member add|remove TARGET [via TARGET]"
        if len(a) not in (2, 4) or a[0] not in ("add", "remove") or (len(a) == 4 and a[2] != "via"):
            self.err(usage)
        allow = ("ids", "names") if a[0] == "add" else ("roles", "ids", "names")
        target = self.targets(a[1], allow=allow)
        via = self.targets(a[3]) if len(a) == 4 else []
        if len(target) != 1 or len(via) > 1:
            self.err(usage + " (one node each)")
        self.add(line, "member-" + a[0], targets=target, via=via)

    def p_wipe(self, a, line):
        self._fault_cmd("wipe", a, line, "usage: wipe TARGETS (stopped nodes: their data dir is deleted)")

    def p_stop(self, a, line):
        self._fault_cmd("stop", a, line, "usage: stop TARGETS [as NAMES]")

    def p_restart(self, a, line):
        hard = bool(a) and a[0] == "-9"
        self._fault_cmd("restart9" if hard else "restart", a[1:] if hard else a, line,
                        "usage: restart [-9] TARGETS [as NAMES]")

    def p_pause(self, a, line):
        a, names = self.bind(a, None, "targets")
        if len(a) not in (1, 2):
            self.err("usage: pause TARGETS [DURATION] [as NAMES]")
        t = self.targets(a[0])
        d = self.dur(a[1], "pause") if len(a) == 2 else None
        if names and len(names) != len(t):
            self.err(f"{len(names)} names for {len(t)} targets")
        self.add(line, "pause", targets=t, seconds=d, names=names)
        self.bound.update(names)

    def p_pick(self, a, line):
        a, names = self.bind(a, None, "targets")
        if len(a) != 1 or not names:
            self.err("usage: pick TARGETS as NAMES")
        t = self.targets(a[0])
        if len(names) != len(t):
            self.err(f"{len(names)} names for {len(t)} targets")
        self.add(line, "pick", targets=t, names=names)
        self.bound.update(names)

    def p_resume(self, a, line):
        if len(a) != 1:
            self.err("usage: resume TARGETS")
        self.add(line, "resume", targets=self.targets(a[0]))

    def p_partition(self, a, line):
        groups = [g.strip() for g in " ".join(a).split("|")]
        if len(groups) < 2 or len(groups) > 3 or any(not g for g in groups):
            self.err("usage: partition GROUP | GROUP [| GROUP] (2 or 3 sides)")
        parsed, rest = [], 0
        for g in groups:
            if g == "rest":
                rest += 1
                parsed.append("rest")
            else:
                if " " in g:
                    self.err(f"a group is one comma-separated list, got '{g}'")
                parsed.append(self.targets(g))
        if rest > 1:
            self.err("'rest' may be used once")
        self.add(line, "partition", groups=parsed)

    def p_heal(self, a, line):
        if a:
            self.err("usage: heal")
        self.add(line, "heal")

    def percent(self, tok, default=None):
        """'30%' or '30' -> 30.0 (0 < p <= 100)."""
        if tok is None:
            return default
        try:
            p = float(tok.rstrip("%"))
        except ValueError:
            p = -1
        if not 0 < p <= 100:
            self.err(f"'{tok}' is not a percentage above 0, at most 100")
        return p

    def side(self, tok):
        return "others" if tok == "others" else self.targets(tok)

    def p_cut(self, a, line):
        usage = "usage: cut FROM -> TO [PERCENT%] | cut FROM <-> TO [PERCENT%]"
        if len(a) not in (3, 4) or a[1] not in ("->", "<->"):
            self.err(usage)
        src, dst = self.side(a[0]), self.side(a[2])
        if src == "others" and dst == "others":
            self.err("'others' on one side only")
        self.add(line, "cut", src=src, dst=dst, both=a[1] == "<->",
                 percent=self.percent(a[3] if len(a) == 4 else None, 100.0))

    def one_target(self, tok, why):
        t = self.targets(tok)
        if len(t) != 1:
            self.err(why)
        return t

    def p_reach(self, a, line):
        if len(a) != 3 or a[1] != "only":
            self.err("usage: reach TARGET only TARGETS")
        t = self.one_target(a[0], "reach: one node reaches only the others named")
        self.add(line, "reach", target=t, only=self.targets(a[2]))

    def p_ring(self, a, line):
        if len(a) > 1:
            self.err("usage: ring [TARGETS]")
        if self.sc.nodes < 4:
            self.err("a ring needs at least 4 nodes (on 3, every node is a neighbour)")
        self.add(line, "ring", order=self.targets(a[0]) if a else [])

    def p_dup(self, a, line):
        if len(a) != 2:
            self.err("usage: dup TARGETS PERCENT%")
        self.add(line, "dup", targets=self.targets(a[0]), percent=self.percent(a[1]))

    def p_fault(self, a, line):
        usage = ("usage: fault TARGETS drop PEERS PERCENT [in|out|both] | delay PEERS MS | "
                 "drop-app CHANNEL [in|out] | early-handover on|off | clear")
        if len(a) < 2:
            self.err(usage)
        t = self.targets(a[0])
        kind, rest = a[1], a[2:]
        if kind == "drop":
            if len(rest) not in (2, 3):
                self.err(usage)
            peers = "others" if rest[0] == "others" else self.targets(rest[0], what="peer")
            try:
                pct = float(rest[1])
            except ValueError:
                pct = -1
            if not 0 <= pct <= 100:
                self.err(f"'{rest[1]}' is not a percentage 0-100")
            if len(rest) == 3 and rest[2] not in ("in", "out", "both"):
                self.err("direction: in, out or both")
            self.add(line, "fault", targets=t, kind="drop", peers=peers, value=rest[1],
                     direction=rest[2] if len(rest) == 3 else "both")
        elif kind == "delay":
            if len(rest) != 2 or not rest[1].isdigit():
                self.err(usage)
            peers = "others" if rest[0] == "others" else self.targets(rest[0], what="peer")
            self.add(line, "fault", targets=t, kind="delay", peers=peers, value=rest[1])
        elif kind == "drop-app":
            if len(rest) not in (1, 2) or (len(rest) == 2 and rest[1] not in ("in", "out")):
                self.err(usage)
            self.add(line, "fault", targets=t, kind="drop-app", channel=rest[0],
                     direction=rest[1] if len(rest) == 2 else "in")
        elif kind == "clear" and not rest:
            self.add(line, "fault", targets=t, kind="clear")
        elif kind == "early-handover" and rest in (["on"], ["off"]):
            self.add(line, "fault", targets=t, kind="early-handover", value=rest[0])

        else:
            self.err(usage)

    def p_hook(self, a, line):
        usage = "usage: hook NAME sleep DURATION | exit CODE | remove [on TARGETS]"
        on = None
        if "on" in a:
            i = a.index("on")
            if i != len(a) - 2:
                self.err(usage)
            on = self.targets(a[-1])
            a = a[:i]
        if not a or a[0] not in HOOKS:
            self.err(f"hook name: one of {', '.join(HOOKS)}")
        if len(a) == 3 and a[1] == "sleep":
            script = f"#!/bin/sh\n# installed by rolegrid-chaos: {line}\nsleep {self.dur(a[2], 'hook sleep')}\nexit 0\n"
        elif len(a) == 3 and a[1] == "exit" and a[2].isdigit():
            script = f"#!/bin/sh\n# installed by rolegrid-chaos: {line}\nexit {int(a[2])}\n"
        elif len(a) == 2 and a[1] == "remove":
            script = None
        else:
            self.err(usage)
        self.add(line, "hook", hook=a[0], script=script, on=on)

    def p_switchover(self, a, line):
        if len(a) != 2 or a[0] != "to":
            self.err("usage: switchover to TARGET")
        t = self.one_target(a[1], "switchover to one node")
        self.add(line, "switchover", targets=t)

    def p_workload(self, a, line):
        if len(a) != 1 or a[0] not in ("heavy", "normal", "off", "on"):
            self.err("usage: workload heavy|normal|off|on")
        self.add(line, "workload", mode=a[0])

    def p_expect(self, a, line):
        if not a:
            self.err("usage: expect CONDITION (see --help)")
        what = a[0]
        if what == "master":
            a, d = self.within(a[1:])
            if not a:
                self.add(line, "expect-master", op=None, name=None, within=d)
            elif len(a) == 2 and a[0] in ("==", "!="):
                self.add(line, "expect-master", op=a[0], name=self.targets(a[1], allow=("ids", "names"), what="node")[0],
                         within=d)
            else:
                self.err("usage: expect master [== NODE | != NODE] [within DURATION]")
        elif what == "replica":
            a, d = self.within(a[1:])
            if len(a) != 2 or a[0] not in ("==", "!="):
                self.err("usage: expect replica ==|!= NODE [within DURATION]")
            self.add(line, "expect-replica", op=a[0], name=self.targets(a[1], allow=("ids", "names"), what="node")[0],
                     within=d)
        elif what == "event":
            a, d = self.within(a[1:])
            if len(a) != 2 or not re.fullmatch(r"[+a-z][a-z0-9-]*", a[1]):
                self.err("usage: expect event TARGET EVENT [within DURATION] (EVENT like +vacated)")
            t = self.targets(a[0])
            if len(t) != 1:
                self.err("expect event: one target")
            self.add(line, "expect-event", target=t[0], event=a[1], within=d)
        elif what == "master-gap":
            if len(a) != 3 or a[1] != "below":
                self.err("usage: expect master-gap below DURATION")
            self.add(line, "expect-master-gap", limit=self.dur(a[2], "master-gap"))
        elif what == "role":
            a, d = self.within(a[1:])
            if len(a) != 3 or a[1] not in ("==", "!=") or a[2] not in ROLES:
                self.err(f"usage: expect role TARGET ==|!= ROLE [within DURATION] (ROLE: {', '.join(ROLES)})")
            t = self.targets(a[0])
            if len(t) != 1:
                self.err("expect role: one target")
            self.add(line, "expect-role", target=t[0], op=a[1], role=a[2], within=d)
        elif what == "no-failover":
            a, d = self.within(a[1:], 0.0, word="for")
            if a:
                self.err("usage: expect no-failover [for DURATION]")
            self.add(line, "expect-no-failover", seconds=d)
        elif what == "no-master-overlap":
            if len(a) != 1:
                self.err("usage: expect no-master-overlap")
            self.add(line, "expect-no-overlap")
        elif what == "acked-writes-present":
            a, d = self.within(a[1:], 10.0)
            if a:
                self.err("usage: expect acked-writes-present [within DURATION]")
            self.add(line, "expect-writes", within=d)
        else:
            self.err(f"unknown expectation '{what}' (master, replica, role, event, master-gap, no-failover, "
                     f"no-master-overlap, acked-writes-present)")


def parse(path, text=None):
    if text is None:
        with open(path) as f:
            text = f.read()
    return _Parser(path, text).parse()
