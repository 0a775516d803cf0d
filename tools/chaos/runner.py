"""Runs a parsed scenario (tools/chaos/scenario.py) on a fresh cluster of
real nodes: each step in order, the expectations checked live, then the
common ending (resume, heal, clear faults, wait for a master, stop the
writers, snapshot every live node) and the whole history checked
(tools/chaos/checker.py).

A failed `wait` or an action that cannot be done stops the scenario there;
an unmet `expect` is recorded and the scenario goes on.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

from .history import now_ms
from .netns import both_ways, ring_pairs
from .scenario import ACTIONS, parse, parse_duration


class StepFailed(Exception):
    """A wait or action could not be completed: the scenario stops there."""


def _fmt_s(x):
    return f"{x:.3f}".rstrip("0").rstrip(".") + " s"


class Runner:
    """Runs a parsed Scenario on a fresh cluster; see run_scenario()."""

    def __init__(self, sc, directory, out, seed=None):
        from .cluster import ChaosCluster
        from .workload import Workload
        self.sc = sc
        self.out = out
        self.rng = random.Random(seed if seed is not None else sc.settings.get("seed", 1))
        opts = dict(sc.node_options)
        ft = parse_duration(opts.pop("failure-timeout", "700ms"))
        hb = parse_duration(opts.pop("heartbeat-interval", "100ms"))
        self.ft_ms = ft * 1000
        node_options = []
        for k, v in opts.items():
            node_options += [f"--{k}", v]
        self.promise_s = sc.settings.get("promise", 2 * ft + 1.0)
        self.demote_promise_s = sc.settings.get("demote-promise", self.promise_s)
        self.cluster = ChaosCluster(directory, sc.nodes, failure_timeout_ms=ft * 1000, heartbeat_ms=hb * 1000,
                                    mode=sc.settings.get("mode", "multicast"), node_options=node_options,
                                    witnesses=sc.witnesses, in_memory=sc.settings.get("state") == "memory",
                                    members=sc.members or None,
                                    meta={"scenario": sc.path, "promise_ms": self.promise_s * 1000,
                                          "demote_promise_ms": self.demote_promise_s * 1000,
                                          "seed": seed if seed is not None else sc.settings.get("seed", 1)})
        w = {"clients": 3, "rate": 40.0, "window": 1, "start": "formed"}
        w.update(sc.settings.get("workload", {}))
        self.workload_start = w["start"]
        self.normal_load = (w["rate"], w["window"])
        self.workload = Workload(self.cluster, clients=w["clients"], rate=w["rate"], window=w["window"])
        self.names = {}
        self.last_master = None
        self.started = False
        self.expects = []  # (line, text, ok, detail)
        self.last_action_ms = now_ms()  # the last fault or operator action: `expect event` / `master-gap` count from it
        self.t_begin = time.monotonic()

    # -- output ---------------------------------------------------------------
    def say(self, text):
        t = time.monotonic() - self.t_begin
        self.out.write(f"  {t:7.3f} s  {text}\n")
        self.out.flush()

    # -- targets ----------------------------------------------------------------
    def resolve(self, targets, within=None):
        """Node ids for a list of target words, resolved now."""
        ids = []
        answers = None
        for t in targets:
            if t in self.names:
                ids.append(self.names[t])
                continue
            if re.fullmatch(r"n\d+", t):
                ids.append(t)
                continue
            if answers is None:
                answers = self._roles_waiting_for(within, "replica" in targets)
            if t == "master":
                cm = self.cluster.current_master(answers)
                if not cm:
                    raise StepFailed(f"no master to target (acting: {self.cluster.acting(answers) or 'none'})")
                ids.append(cm[0])
            elif t == "replica":
                r = self.cluster.current_replica(answers)
                if not r:
                    raise StepFailed("no replica to target (the role table names none)")
                ids.append(r)
            elif t == "any-data":
                # Not the node the table names replica or master, even if it
                # still reports data a moment after its appointment.
                cm = self.cluster.current_master(answers)
                taken = set(ids) | {self.cluster.current_replica(answers), cm[0] if cm else None}
                cands = [n for n in self.cluster.data_nodes(answers) if n not in taken]
                if not cands:
                    raise StepFailed("no data node to target")
                ids.append(self.rng.choice(cands))
            elif t == "any":
                cands = [n for n in self.cluster.up_ids() if n not in ids]
                if not cands:
                    raise StepFailed("no running node to target")
                ids.append(self.rng.choice(cands))
        return ids

    def _roles_waiting_for(self, within, replica):
        """Roles answers, once a master (and a replica if asked) is known or
        `within` (default: the promised time) passed."""
        deadline = time.monotonic() + (within if within is not None else self.promise_s)
        while True:
            answers = self.cluster.roles()
            good = self.cluster.current_master(answers) and (not replica or self.cluster.current_replica(answers))
            if good or time.monotonic() >= deadline:
                return answers
            time.sleep(0.05)

    def bind(self, names, ids):
        for n, i in zip(names, ids):
            self.names[n] = i

    def label(self, ids):
        rev = {}
        for n, i in self.names.items():
            rev.setdefault(i, []).append(n)
        return ", ".join(f"{i} ({'/'.join(rev[i])})" if i in rev else i for i in ids)

    # -- the run -------------------------------------------------------------------
    def ensure_started(self):
        if self.started:
            return
        self.started = True
        self.cluster.start_all()
        self.cluster.start_observer()
        self.say(f"started {', '.join(self.cluster.members)} ({self.cluster.mode}, failure-timeout {self.ft_ms:.0f} ms)")
        if self.workload_start == "formed":
            t0 = time.monotonic()
            formed = False
            while not formed and time.monotonic() - t0 < 15:
                try:
                    formed = self.cluster.formed()
                except Exception:  # noqa: BLE001 - nodes still starting
                    pass
                if not formed:
                    time.sleep(0.05)
            if not formed:
                self.say("!! the nodes did not form within 15 s (writers start anyway)")
        self.workload.start()
        if self.workload.clients:
            self.say(f"{self.workload.clients} writer(s) started")

    def run(self):
        failed_at = None
        for st in self.sc.steps:
            if st.cmd != "start-all":
                self.ensure_started()
            gone = self.cluster.new_exits()
            if gone:
                self.say(f"!! {', '.join(gone)} exited by itself")
            if st.cmd in ACTIONS:
                self.last_action_ms = now_ms()
            try:
                getattr(self, "s_" + st.cmd.replace("-", "_"))(st)
            except StepFailed as e:
                self.say(f"FAILED line {st.line}: {st.text}: {e}")
                failed_at = (st, str(e))
                break
            except Exception as e:  # noqa: BLE001 - reported with the line that caused it
                from .cluster import ChaosError
                if not isinstance(e, (ChaosError, OSError, TimeoutError)):
                    raise
                self.say(f"FAILED line {st.line}: {st.text}: {type(e).__name__}: {e}")
                failed_at = (st, f"{type(e).__name__}: {e}")
                break
        self.ensure_started()
        return failed_at

    def expect_result(self, st, ok, detail):
        self.expects.append((st.line, st.text, ok, detail))
        self.cluster.history.append("expects.jsonl", {"line": st.line, "text": st.text, "ok": ok, "detail": detail,
                                                     "t_ms": now_ms()})
        self.say(f"{'ok' if ok else 'NOT MET'}  line {st.line}: {st.text}" + (f": {detail}" if detail else ""))

    # -- steps -----------------------------------------------------------------------
    def s_start_all(self, st):
        self.ensure_started()

    def s_start(self, st):
        ids = self.resolve(st.args["targets"])
        self.cluster.start(ids)
        self.say(f"start {self.label(ids)}")

    def s_sleep(self, st):
        time.sleep(st.args["seconds"])

    def s_wait_master(self, st):
        t0 = time.monotonic()
        deadline = t0 + st.args["within"]
        while True:
            answers = self.cluster.roles()
            cm = self.cluster.current_master(answers)
            if cm:
                self.last_master = cm
                self.bind(st.args["names"], [cm[0]])
                self.say(f"master {self.label([cm[0]])} at epoch {cm[1]} after {_fmt_s(time.monotonic() - t0)}")
                return
            if time.monotonic() >= deadline:
                raise StepFailed(f"no master within {_fmt_s(st.args['within'])} (acting: "
                                 f"{self.cluster.acting(answers) or 'none'}; tables name "
                                 f"{sorted({(r.get('master') or {}).get('node') or '-' for r in answers.values()})})")
            time.sleep(0.05)

    def s_wait_replica(self, st):
        t0 = time.monotonic()
        deadline = t0 + st.args["within"]
        while True:
            answers = self.cluster.roles()
            rep = self.cluster.current_replica(answers) if self.cluster.current_master(answers) else None
            if rep:
                self.bind(st.args["names"], [rep])
                self.say(f"replica {self.label([rep])} after {_fmt_s(time.monotonic() - t0)}")
                return
            if time.monotonic() >= deadline:
                cm = self.cluster.current_master(answers)
                raise StepFailed(f"no replica within {_fmt_s(st.args['within'])} (master: "
                                 f"{cm[0] if cm else 'none'}; node roles: "
                                 f"{ {n: r['self']['role'] for n, r in answers.items()} })")
            time.sleep(0.05)

    def s_wait_designated(self, st):
        t0 = time.monotonic()
        deadline = t0 + st.args["within"]
        while True:
            answers = self.cluster.roles()
            des = sorted({(r.get("master") or {}).get("node") for r in answers.values()
                          if (r.get("master") or {}).get("phase") == "designated"} - {None})
            if des:
                self.bind(st.args["names"], [des[0]])
                self.say(f"{self.label([des[0]])} designated after {_fmt_s(time.monotonic() - t0)}")
                return
            if time.monotonic() >= deadline:
                raise StepFailed(f"no designated master within {_fmt_s(st.args['within'])}")
            time.sleep(0.02)

    def _wait_running(self, st, ready, done, failed):
        """Polls `ready()` (nodes may still be starting) until it holds or
        the step's time runs out."""
        t0 = time.monotonic()
        deadline = t0 + st.args["within"]
        last = None
        while time.monotonic() < deadline:
            try:
                if ready():
                    self.say(f"{done} ({', '.join(self.cluster.up_ids())}) after {_fmt_s(time.monotonic() - t0)}")
                    return
            except Exception as e:  # noqa: BLE001 - a node still starting
                last = e
            time.sleep(0.1)
        raise StepFailed(f"{failed} within {_fmt_s(st.args['within'])}" + (f" (last error: {last})" if last else ""))

    def s_wait_formed(self, st):
        self._wait_running(st, self.cluster.formed, "formed", "running nodes did not form")

    def s_wait_voting(self, st):
        self._wait_running(st, self.cluster.voting, "every running node votes", "running nodes did not all vote")

    def s_kill9(self, st):
        ids = self.resolve(st.args["targets"])
        self.bind(st.args["names"], ids)
        self.cluster.kill9(ids)
        self.say(f"kill -9 {self.label(ids)}")

    def s_wipe(self, st):
        ids = self.resolve(st.args["targets"])
        self.cluster.wipe(ids)
        self.say(f"wiped the data dir of {self.label(ids)}")

    def s_stop(self, st):
        ids = self.resolve(st.args["targets"])
        self.bind(st.args["names"], ids)
        slow = self.cluster.stop(ids)
        self.say(f"stopped {self.label(ids)}" + (f" ({', '.join(slow)} needed SIGKILL)" if slow else ""))

    def _restart(self, st, hard):
        ids = self.resolve(st.args["targets"])
        self.bind(st.args["names"], ids)
        running = [i for i in ids if self.cluster.nodes[i].running()]
        if running:
            if hard:
                self.cluster.kill9(running)
            else:
                self.cluster.stop(running)
        self.cluster.check_exits()
        self.cluster.start(ids)
        self.say(f"restart{' -9' if hard else ''} {self.label(ids)}")

    def s_restart(self, st):
        self._restart(st, False)

    def s_restart9(self, st):
        self._restart(st, True)

    def s_pause(self, st):
        ids = self.resolve(st.args["targets"])
        self.bind(st.args["names"], ids)
        self.cluster.pause(ids)
        if st.args["seconds"] is None:
            self.say(f"pause {self.label(ids)}")
            return
        self.say(f"pause {self.label(ids)} for {_fmt_s(st.args['seconds'])}")
        time.sleep(st.args["seconds"])
        self.cluster.resume(ids)
        self.say(f"resume {self.label(ids)}")

    def s_pick(self, st):
        ids = self.resolve(st.args["targets"])
        self.bind(st.args["names"], ids)
        self.say(f"picked {self.label(ids)}")

    def s_resume(self, st):
        ids = self.resolve(st.args["targets"])
        self.cluster.resume(ids)
        self.say(f"resume {self.label(ids)}")

    def s_partition(self, st):
        groups = []
        named = set()
        rest_at = None
        for g in st.args["groups"]:
            if g == "rest":
                rest_at = len(groups)
                groups.append([])
                continue
            ids = self.resolve(g)
            dup = named.intersection(ids)
            if dup:
                raise StepFailed(f"{', '.join(sorted(dup))} named on two sides")
            named.update(ids)
            groups.append(ids)
        if rest_at is not None:
            groups[rest_at] = [i for i in self.cluster.ids if i not in named]
        # the side holding the most nodes stays on bridge 0 (it keeps the name of the network)
        groups.sort(key=len, reverse=True)
        self.cluster.partition(groups)
        self.say("partition " + " | ".join(self.label(g) for g in groups))

    def s_heal(self, st):
        duplicated = self.cluster.net.dup_count()
        self.cluster.heal()
        self.say("heal" + (f" ({duplicated} packets were duplicated)" if duplicated else ""))

    def _add_cuts(self, pairs, pct):
        cuts = dict(self.cluster.net.cuts)
        for a, b in pairs:
            if a != b:
                cuts[(a, b)] = pct
        self.cluster.cut(cuts)
        return cuts

    def s_cut(self, st):
        a = st.args
        src = None if a["src"] == "others" else self.resolve(a["src"])
        dst = None if a["dst"] == "others" else self.resolve(a["dst"])
        src = src if src is not None else [i for i in self.cluster.ids if i not in dst]
        dst = dst if dst is not None else [i for i in self.cluster.ids if i not in src]
        pairs = [(x, y) for x in src for y in dst]
        if a["both"]:
            pairs = both_ways(pairs)
        cuts = self._add_cuts(pairs, a["percent"])
        arrow = "<->" if a["both"] else "->"
        self.say(f"cut {self.label(src)} {arrow} {self.label(dst)} {a['percent']:g}% ({len(cuts)} one-way cuts active)")

    def s_reach(self, st):
        a = st.args
        node = self.resolve(a["target"])[0]
        keep = set(self.resolve(a["only"])) | {node}
        others = [i for i in self.cluster.ids if i not in keep]
        self._add_cuts(both_ways((node, o) for o in others), 100.0)
        self.say(f"{self.label([node])} reaches only {self.label(sorted(keep - {node}))}")

    def s_ring(self, st):
        order = []
        for i in self.resolve(st.args["order"]) if st.args["order"] else []:
            if i not in order:
                order.append(i)
        order += [i for i in self.cluster.ids if i not in order]
        self._add_cuts(ring_pairs(order), 100.0)
        self.say("ring " + " - ".join(self.label([i]) for i in order) + " - (back to the first)")

    def s_dup(self, st):
        ids = self.resolve(st.args["targets"])
        dups = dict(self.cluster.net.dups)
        dups.update({i: st.args["percent"] for i in ids})
        self.cluster.dup(dups)
        self.say(f"{st.args['percent']:g}% of the packets to {self.label(ids)} duplicated")

    def s_fault(self, st):
        a = st.args
        ids = self.resolve(a["targets"])
        for i in ids:
            if a["kind"] == "clear":
                args = ["clear"]
                self.cluster.fault(i, args)
                continue
            if a["kind"] == "early-handover":
                self.cluster.fault(i, ["early-handover", a["value"]])
                continue
            if a["kind"] == "drop-app":
                self.cluster.fault(i, ["drop-app", a["channel"], a["direction"]])
                continue
            peers = [p for p in self.cluster.ids if p != i] if a["peers"] == "others" else self.resolve(a["peers"])
            for p in peers:
                if a["kind"] == "drop":
                    self.cluster.fault(i, ["drop", p, a["value"], a["direction"]])
                else:
                    self.cluster.fault(i, ["delay", p, a["value"]])
        self.say(f"fault on {self.label(ids)}: {' '.join(st.text.split()[2:])}")

    def s_hook(self, st):
        ids = self.resolve(st.args["on"]) if st.args["on"] else list(self.cluster.ids)
        self.cluster.install_hook(st.args["hook"], st.args["script"], ids)
        self.say(f"hook {st.args['hook']} {'removed' if st.args['script'] is None else 'installed'} on {self.label(ids)}")

    def s_switchover(self, st):
        to = self.resolve(st.args["targets"])[0]
        via = next((i for i in self.cluster.up_ids() if i != to), to)
        self.cluster.record("switchover", to=to, via=via)
        r = self.cluster.ctl(via, "switchover", "--to", to)
        if r.returncode != 0:
            raise StepFailed(f"rolegridctl switchover --to {to} exited {r.returncode}: "
                             f"{(r.stderr or r.stdout).strip()}")
        self.say(f"switchover to {self.label([to])} (asked {via}): {r.stdout.strip()}")

    def _via(self, st, target):
        """The member asked to make the change: `via`, or a running member
        other than the target."""
        if st.args["via"]:
            return self.resolve(st.args["via"])[0]
        via = self.cluster.member_to_ask(target)
        if via is None:
            raise StepFailed("no running member to ask")
        return via

    def s_member_add(self, st):
        nid = self.resolve(st.args["targets"])[0]
        via = self._via(st, nid)
        t0 = time.monotonic()
        answer = self.cluster.add_member(nid, via)
        self.say(f"member add {self.label([nid])} (asked {via}): settled in {_fmt_s(time.monotonic() - t0)}, "
                 f"members {','.join(answer['members'])} (version {answer.get('version')}); {nid} started with --join")

    def s_member_remove(self, st):
        nid = self.resolve(st.args["targets"])[0]
        via = self._via(st, nid)
        t0 = time.monotonic()
        was_running = self.cluster.nodes[nid].running()
        answer = self.cluster.remove_member(nid, via)
        self.say(f"member remove {self.label([nid])} (asked {via}): members {','.join(answer['members'])} "
                 f"(version {answer.get('version')}); " +
                 (f"{nid} stopped by itself after {_fmt_s(time.monotonic() - t0)}" if was_running else
                  f"{nid} was not running"))

    def s_workload(self, st):
        m = st.args["mode"]
        if m == "off":
            self.workload.stop()
        elif m == "on":
            self.workload.start()
        elif m == "heavy":
            self.workload.set_load(0, 16)
            self.workload.start()
            self.cluster.record("workload", state="heavy")
        else:
            self.workload.set_load(*self.normal_load)
            self.cluster.record("workload", state="normal")
        self.say(f"workload {m}")

    # -- expectations ---------------------------------------------------------------------
    def _poll(self, within, probe):
        """Calls probe() until it returns (True, detail) or `within` passed;
        returns (ok, detail, seconds)."""
        t0 = time.monotonic()
        deadline = t0 + (within if within is not None else self.promise_s)
        while True:
            ok, detail = probe()
            if ok or time.monotonic() >= deadline:
                return ok, detail, time.monotonic() - t0
            time.sleep(0.05)

    def s_expect_master(self, st):
        a = st.args
        want = self.names.get(a["name"], a["name"]) if a["name"] else None

        def probe():
            answers = self.cluster.roles()
            cm = self.cluster.current_master(answers)
            acting = self.cluster.acting(answers)
            if not cm:
                return False, f"no single acting master (acting: {', '.join(acting) or 'none'})"
            if a["op"] == "==" and cm[0] != want:
                return False, f"master is {cm[0]} (epoch {cm[1]})"
            if a["op"] == "!=" and (cm[0] == want or want in acting):
                return False, f"{want} still acts as master"
            return True, f"{cm[0]} at epoch {cm[1]}"

        ok, detail, took = self._poll(a["within"], probe)
        self.expect_result(st, ok, f"{detail} after {_fmt_s(took)}")

    def s_expect_replica(self, st):
        a = st.args
        want = self.names.get(a["name"], a["name"])

        def probe():
            answers = self.cluster.roles()
            if not self.cluster.current_master(answers):
                return False, "no master"
            rep = self.cluster.current_replica(answers)
            good = (rep == want) if a["op"] == "==" else (rep is not None and rep != want)
            return good, f"replica is {rep or 'none'}"

        ok, detail, took = self._poll(a["within"], probe)
        self.expect_result(st, ok, f"{detail} after {_fmt_s(took)}")

    def s_expect_event(self, st):
        import json
        a = st.args
        nid = self.resolve([a["target"]])[0]
        path = self.cluster.nodes[nid].event_log
        since = self.last_action_ms

        def probe():
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            for ln in lines:
                try:
                    ev = json.loads(ln)
                except ValueError:
                    continue
                if ev.get("event") == a["event"] and ev.get("t_ms", 0) >= since:
                    return True, f"{nid} logged {a['event']} at +{(ev['t_ms'] - since) / 1000:.3f} s: " \
                                 f"{ev.get('reason') or ev.get('outcome') or ev.get('text') or ''}".rstrip(": ")
            return False, f"{nid} logged no {a['event']} since the last fault"

        ok, detail, took = self._poll(a["within"], probe)
        self.expect_result(st, ok, detail if ok else f"{detail} (waited {_fmt_s(took)})")

    def s_expect_master_gap(self, st):
        from .checker import FaultState, _serving_intervals, acting_intervals
        from .history import History
        self.cluster.history.flush()
        h = History(self.cluster.dir)
        serving = _serving_intervals(acting_intervals(h), FaultState(h))
        since, until = self.last_action_ms, now_ms()
        cursor, worst = since, (0.0, since, since)
        for s0, e0, _n in serving:
            if e0 <= cursor or s0 >= until:
                continue
            if s0 > cursor and s0 - cursor > worst[0]:
                worst = (s0 - cursor, cursor, s0)
            cursor = max(cursor, e0)
        if cursor < until and until - cursor > worst[0]:
            worst = (until - cursor, cursor, until)
        ok = worst[0] <= st.args["limit"] * 1000
        self.expect_result(st, ok, f"longest stretch without an acting master since the last fault: "
                                   f"{worst[0]:.0f} ms (at +{(worst[1] - since) / 1000:.3f} s)")

    def s_expect_role(self, st):
        a = st.args
        nid = self.resolve([a["target"]])[0]

        def probe():
            node = self.cluster.nodes[nid]
            if not node.up:
                return False, f"{nid} is not running"
            r = self.cluster.roles([nid]).get(nid)
            if r is None:
                return False, f"{nid} does not answer"
            role = r["self"]["role"]
            if r["self"].get("state") == "starting":
                return False, f"{nid} is still starting"
            if role == "master" and not r["self"].get("acting_master"):
                role = "master (not acting)"
            good = (role == a["role"]) if a["op"] == "==" else (role != a["role"])
            return good, f"{nid} is {role} ({r['self'].get('state')}, epoch {r['self'].get('epoch_seen')})"

        ok, detail, took = self._poll(a["within"], probe)
        self.expect_result(st, ok, f"{detail} after {_fmt_s(took)}")

    def s_expect_no_failover(self, st):
        if not self.last_master:
            raise StepFailed("expect no-failover needs an earlier 'wait master'")
        end = time.monotonic() + st.args["seconds"]
        m0, e0 = self.last_master
        while True:
            # a failover is another node acting, or a newer epoch in any table; a
            # moment with no acting master (the old one renewing its lease after
            # a pause) is not one
            answers = self.cluster.roles()
            others = [n for n in self.cluster.acting(answers) if n != m0]
            epochs = sorted({(r.get("master") or {}).get("epoch") for r in answers.values()} - {None})
            newer = [e for e in epochs if e > e0]
            if others or newer:
                self.expect_result(st, False, f"master was {m0} at epoch {e0}; now acting: "
                                              f"{', '.join(self.cluster.acting(answers)) or 'none'}, table epochs {epochs}")
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.05)
        self.expect_result(st, True, f"still {self.last_master[0]} at epoch {self.last_master[1]}")

    def s_expect_no_overlap(self, st):
        from .checker import check
        from .history import History
        self.cluster.history.flush()
        rep = check(History(self.cluster.dir), kinds=("overlap", "epoch"))
        self.expect_result(st, rep.ok, "; ".join(str(v) for v in rep.violations) or
                           f"{rep.stats['intervals']} acting intervals, {rep.stats['epochs']} epochs, no overlap")

    def s_expect_writes(self, st):
        from .workload import snapshot
        if self.cluster.net.faulted():
            raise StepFailed("a partition, cut or duplicate rule is active: heal before expecting acked writes everywhere")
        missing, n = snapshot(self.cluster, self.workload, f"line {st.line}", wait_s=st.args["within"],
                              after=self.cluster.last_outage_ms)
        if missing:
            desc = "; ".join(f"{k}: {len(v) if isinstance(v, set) else v}"
                             + (f" missing, e.g. {sorted(v)[:3]}" if isinstance(v, set) else "")
                             for k, v in sorted(missing.items()))
            self.expect_result(st, False, f"{n} acknowledged writes; {desc}")
        else:
            self.expect_result(st, True, f"{n} acknowledged writes on {len(self.cluster.up_ids())} live nodes")

    # -- the end ---------------------------------------------------------------------------
    def finish(self):
        """Stops every fault, waits for a master, snapshots, records the end."""
        from .workload import snapshot
        c = self.cluster
        paused = [i for i in c.ids if c.nodes[i].paused and c.nodes[i].running()]
        if paused:
            c.resume(paused)
            self.say(f"end: resume {', '.join(paused)}")
        if c.net.faulted():
            c.heal()
            self.say("end: heal")
        if c.active_fault_nodes:
            self.say(f"end: clear faults on {', '.join(sorted(c.active_fault_nodes))}")
            c.clear_faults()
        gone = c.new_exits()
        if gone:
            self.say(f"!! {', '.join(gone)} exited by itself")
        majority = len(c.members) // 2 + 1
        if len(c.up_ids()) >= majority:
            t0 = time.monotonic()
            cm = None
            while time.monotonic() - t0 < self.promise_s + 3:
                cm = c.current_master()
                if cm:
                    break
                time.sleep(0.05)
            self.say(f"end: master {cm[0]} at epoch {cm[1]}" if cm else
                     f"end: no master within {_fmt_s(self.promise_s + 3)}")
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:
                try:
                    if c.formed():
                        break
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.1)
        self.workload.stop()
        missing, n = snapshot(c, self.workload, "final", wait_s=10.0, after=c.last_outage_ms)
        self.say(f"end: {n} acknowledged writes, {sum(1 for v in missing.values() if v)} node(s) missing some"
                 if missing else f"end: {n} acknowledged writes on every live node ({', '.join(c.up_ids())})")
        self.keep_counters()
        c.record("end")
        c.history.write_meta(end_ms=now_ms())
        c.check_exits()

    def keep_counters(self):
        """Every live node's `status` at the end (counters for a later look),
        one JSON line per node in counters.jsonl of the history."""
        from .cluster import ChaosError
        c = self.cluster
        with open(Path(c.dir) / "counters.jsonl", "w") as f:
            for nid in c.up_ids():
                try:
                    r = c.ctl(nid, "--json", "status", timeout_s=5)
                except ChaosError:
                    continue
                if r.returncode == 0:
                    f.write(json.dumps({"node": nid, "status": json.loads(r.stdout)}) + "\n")


def run_scenario(path, directory, out, seed=None, svg=None):
    """Parses and runs a scenario; returns (passed, report, runner). Raises
    ParseError for a bad file (nothing started)."""
    from .checker import check
    from .history import History
    from .report import print_report
    sc = parse(path)
    out.write(f"rolegrid-chaos run {path}: {sc.nodes} nodes, history in {directory}\n")
    runner = Runner(sc, directory, out, seed)
    failed_at = None
    try:
        failed_at = runner.run()
        runner.finish()
    finally:
        errors = runner.cluster.close()
        for e in errors:
            out.write(f"  (cleanup: {e})\n")
    h = History(directory)
    rep = check(h)
    bad_expects = [(ln, text, d) for ln, text, ok, d in runner.expects if not ok]
    passed = rep.ok and not bad_expects and failed_at is None
    print_report(out, h, rep, sc.name, passed, failed_at=failed_at, bad_expects=bad_expects, svg=svg,
                 elapsed=time.monotonic() - runner.t_begin)
    return passed, rep, runner
