"""Timelines of a history: roles per node over time, faults and failovers,
as text (for the terminal and CI logs) and as SVG (`--timeline FILE.svg`)."""

from __future__ import annotations

import bisect
import html

from .checker import acting_intervals

PROMOTING = ("preparing", "designating", "broadcasting", "establishing")

# state -> (text char, SVG colour, legend)
STYLE = {
    "master": ("M", "#d62728", "master (acting)"),
    "master-idle": ("m", "#f4a6a6", "master, lease run out"),
    "promoting": ("p", "#9467bd", "promoting (prepare/designate/broadcast)"),
    "replica": ("R", "#ff7f0e", "replica"),
    "data": (".", "#1f77b4", "data"),
    "witness": ("w", "#7f7f7f", "witness"),
    "starting": ("s", "#c7c7c7", "starting"),
    "down": (" ", "#ffffff", "down"),
}
SIDE_COLOURS = ("#ffffff", "#17becf", "#bcbd22")
FAULT_KINDS = ("kill9", "stop", "exited", "start", "pause", "resume", "partition", "heal", "fault", "fault-clear",
               "switchover", "hook", "cuts", "dups", "members")


def describe_fault(rec):
    k = rec["kind"]
    nodes = ", ".join(rec.get("nodes", [rec["node"]] if "node" in rec else []))
    if k == "kill9":
        return f"kill -9 {nodes}"
    if k == "stop":
        return f"stop {nodes} (" + ("removed from the members" if rec.get("reason") == "removed" else "SIGTERM") + ")"
    if k == "members":
        return f"members now {','.join(rec.get('members', []))} (version {rec.get('version')})"
    if k == "exited":
        return f"{nodes} exited by itself (code {rec.get('code')})"
    if k == "start":
        return f"start {nodes}"
    if k == "pause":
        return f"pause {nodes}"
    if k == "resume":
        return f"resume {nodes}"
    if k == "partition":
        return "partition " + " | ".join(",".join(g) for g in rec.get("groups", []))
    if k == "heal":
        return "heal"
    if k == "fault":
        return f"fault {nodes}: {' '.join(rec.get('args', []))}"
    if k == "fault-clear":
        return f"fault {nodes}: clear"
    if k == "switchover":
        return f"switchover to {rec.get('to')}"
    if k == "cuts":
        cuts = rec.get("cuts") or []
        shown = ", ".join(f"{a}->{b}" + ("" if p >= 100 else f" {p:g}%") for a, b, p in cuts[:6])
        return f"cuts: {shown}" + (f" (+{len(cuts) - 6} more)" if len(cuts) > 6 else "") if cuts else "cuts: none"
    if k == "dups":
        return "duplicates: " + (", ".join(f"{n} {p:g}%" for n, p in sorted((rec.get("dups") or {}).items())) or "none")
    if k == "hook":
        return f"hook {rec.get('hook')} {'removed' if rec.get('script') is None else 'installed'} on {nodes}"
    return k


class Timeline:
    def __init__(self, h, intervals=None):
        self.h = h
        self.nodes = h.nodes
        self.t0 = h.t0
        self.end = max(h.end, self.t0 + 1)
        self.intervals = intervals if intervals is not None else acting_intervals(h)
        self._acting = {}
        for iv in self.intervals:
            self._acting.setdefault(iv.node, []).append((iv.start, iv.end))
        self._roles = {}
        for nid, evs in h.events.items():
            ts, vals = [], []
            for ev in evs:
                if "t_ms" not in ev or (not ev.get("role") and not ev.get("state")):
                    continue
                ts.append(ev["t_ms"])
                vals.append((ev.get("role"), ev.get("state"), ev.get("incarnation")))
            self._roles[nid] = (ts, vals)
        self._life = {n: ([], []) for n in self.nodes}   # start/down changes
        self._paused = {n: ([], []) for n in self.nodes}
        self._side = {n: ([0.0], [0]) for n in self.nodes}
        for rec in h.faults:
            k, t = rec["kind"], rec["t_ms"]
            ns = rec.get("nodes", [rec["node"]] if "node" in rec else [])
            for n in ns:
                if n not in self._life:
                    continue
                if k == "start":
                    self._append(self._life[n], t, "up")
                    self._append(self._paused[n], t, False)
                elif k in ("kill9", "stop", "exited"):
                    self._append(self._life[n], t, "down")
                    self._append(self._paused[n], t, False)
                elif k == "pause":
                    self._append(self._paused[n], t, True)
                elif k == "resume":
                    self._append(self._paused[n], t, False)
            if k == "partition":
                for side, g in enumerate(rec.get("groups", [])):
                    for n in g:
                        if n in self._side:
                            self._append(self._side[n], t, side)
            elif k == "heal":
                for n in self.nodes:
                    self._append(self._side[n], t, 0)

    @staticmethod
    def _append(series, t, v):
        series[0].append(t)
        series[1].append(v)

    @staticmethod
    def _at(series, t, default):
        ts, vs = series
        i = bisect.bisect_right(ts, t) - 1
        return vs[i] if i >= 0 else default

    def state_at(self, nid, t):
        life_ts = self._life[nid][0]
        if self._at(self._life[nid], t, "down") == "down":
            return "down"
        started = life_ts[bisect.bisect_right(life_ts, t) - 1]
        for a, b in self._acting.get(nid, []):
            if a <= t < b:
                return "master"
        ts, vals = self._roles.get(nid, ([], []))
        i = bisect.bisect_right(ts, t) - 1
        if i < 0 or ts[i] < started - 50:
            return "starting"
        role, state, _inc = vals[i]
        if state == "starting":
            return "starting"
        if state in PROMOTING:
            return "promoting"
        if role == "master":
            return "master-idle"
        return role if role in STYLE else "data"

    def paused_at(self, nid, t):
        return self._at(self._paused[nid], t, False)

    def side_at(self, nid, t):
        return self._at(self._side[nid], t, 0)

    def faults(self):
        return [r for r in self.h.faults if r["kind"] in FAULT_KINDS]

    def failovers(self):
        """[(t, node, epoch, previous, seconds since the fault that took the
        previous master away or None)]."""
        out = []
        prev = None
        for iv in self.intervals:
            if prev is not None and iv.node != prev.node:
                cause = None
                for rec in self.h.faults:
                    if rec["t_ms"] > iv.start:
                        break
                    ns = rec.get("nodes", [rec["node"]] if "node" in rec else [])
                    hit = prev.node in ns and rec["kind"] in ("kill9", "stop", "exited", "pause")
                    if rec["kind"] == "partition":
                        hit = any(prev.node in g for g in rec.get("groups", [])[1:]) or \
                            (rec.get("groups") and prev.node in rec["groups"][0] and
                             len(rec["groups"][0]) <= len(self.nodes) // 2)
                    if rec["kind"] == "switchover":
                        hit = True
                    if rec["kind"] == "fault" and prev.node in ns:
                        hit = True
                    if rec["kind"] == "cuts":  # a cut to or from the master
                        hit = any(prev.node in (a, b) for a, b, _p in rec.get("cuts") or [])
                    if hit and rec["t_ms"] >= prev.start:
                        cause = rec
                took = (iv.start - cause["t_ms"]) / 1000.0 if cause else None
                out.append((iv.start, iv.node, iv.epoch, prev.node, took, cause))
            prev = iv
        return out

    # -- text ----------------------------------------------------------------------
    def text(self, width=100):
        span = self.end - self.t0
        step = span / width
        lines = [f"timeline: {(span / 1000):.1f} s, one column = {step / 1000:.3f} s"]
        ruler = [" "] * width
        marks = max(1, int(span / 1000 / 10) or 1)
        sec = 0
        while sec * 1000 < span:
            col = int(sec * 1000 / step)
            label = f"{sec}s"
            if col + len(label) <= width:
                ruler[col:col + len(label)] = list(label)
            sec += marks * (1 if span < 20000 else 2)
        name_w = max(len(n) for n in self.nodes) + 2
        lines.append(" " * name_w + "".join(ruler))
        for nid in self.nodes:
            row = []
            for c in range(width):
                t = self.t0 + (c + 0.5) * step
                if self.paused_at(nid, t) and self.state_at(nid, t) != "down":
                    row.append("z")
                else:
                    ch = STYLE[self.state_at(nid, t)][0]
                    if self.side_at(nid, t) and ch != " ":
                        ch = "/" if ch == "." else ch.lower() if ch != "M" else "M"
                    row.append(ch)
            lines.append(f"{nid:<{name_w}}" + "".join(row))
        marker = [" "] * width
        listing = []
        for i, rec in enumerate(self.faults(), 1):
            col = min(width - 1, max(0, int((rec["t_ms"] - self.t0) / step)))
            tag = str(i % 10) if i < 10 else chr(ord("a") + (i - 10) % 26)
            marker[col] = tag
            listing.append(f"  {tag} {self.h.rel(rec['t_ms']):8.3f} s  {describe_fault(rec)}")
        lines.append(f"{'faults':<{name_w}}" + "".join(marker))
        lines += listing
        lines.append("  legend: M master  m master whose lease ran out  p promoting  R replica  . data  w witness  "
                     "s starting  z paused  blank: down; lowercase or / : cut off from side 0 by a partition")
        for t, node, epoch, prev, took, cause in self.failovers():
            why = f", {took:.3f} s after {describe_fault(cause)}" if cause else ""
            lines.append(f"  failover at {self.h.rel(t):.3f} s: {prev} -> {node} (epoch {epoch}){why}")
        return "\n".join(lines)

    # -- SVG -----------------------------------------------------------------------
    def svg(self, title=""):
        span = self.end - self.t0
        # long runs get wider (about 25 px a second), to be scrolled
        left, top, row_h, gap, width = 70, 60, 26, 10, int(min(20000, max(1300, span / 1000 * 25)))
        n_faults = len(self.faults())
        height = top + len(self.nodes) * (row_h + gap) + 60 + 16 * n_faults + 40

        def x(t):
            return left + (t - self.t0) / span * width

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 30}" height="{height}" '
               f'font-family="monospace" font-size="12">',
               '<defs><pattern id="paused" width="6" height="6" patternUnits="userSpaceOnUse" '
               'patternTransform="rotate(45)"><rect width="3" height="6" fill="#000" fill-opacity="0.35"/>'
               '</pattern></defs>',
               f'<rect width="100%" height="100%" fill="#fff"/>',
               f'<text x="{left}" y="18" font-size="14">{html.escape(title)}</text>']
        # time axis
        sec_step = 1 if span <= 30000 else 5 if span <= 150000 else 30
        s = 0
        while s * 1000 <= span:
            xx = x(self.t0 + s * 1000)
            out.append(f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" '
                       f'y2="{top + len(self.nodes) * (row_h + gap)}" stroke="#eee"/>')
            out.append(f'<text x="{xx:.1f}" y="{top - 10}" text-anchor="middle" fill="#666">{s}s</text>')
            s += sec_step
        samples = 1500
        for r, nid in enumerate(self.nodes):
            y = top + r * (row_h + gap)
            out.append(f'<text x="{left - 8}" y="{y + row_h * 0.7:.1f}" text-anchor="end">{html.escape(nid)}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{width}" height="{row_h}" fill="none" stroke="#ccc"/>')
            for kind, fn in (("state", self.state_at), ("paused", self.paused_at), ("side", self.side_at)):
                segs = []
                for i in range(samples):
                    t = self.t0 + (i + 0.5) * span / samples
                    v = fn(nid, t)
                    if kind == "paused" and self.state_at(nid, t) == "down":
                        v = False
                    if segs and segs[-1][2] == v:
                        segs[-1][1] = i + 1
                    else:
                        segs.append([i, i + 1, v])
                for a, b, v in segs:
                    x0 = left + a * width / samples
                    w = (b - a) * width / samples
                    ta, tb = self.h.rel(self.t0 + a * span / samples), self.h.rel(self.t0 + b * span / samples)
                    if kind == "state" and v != "down":
                        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{row_h}" fill="{STYLE[v][1]}">'
                                   f'<title>{nid}: {STYLE[v][2]} {ta:.2f}-{tb:.2f} s</title></rect>')
                    elif kind == "paused" and v:
                        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{row_h}" fill="url(#paused)">'
                                   f'<title>{nid} paused {ta:.2f}-{tb:.2f} s</title></rect>')
                    elif kind == "side" and v:
                        out.append(f'<rect x="{x0:.1f}" y="{y + row_h}" width="{w:.1f}" height="4" '
                                   f'fill="{SIDE_COLOURS[v % 3]}"><title>{nid} on side {v} of a partition</title></rect>')
        bottom = top + len(self.nodes) * (row_h + gap)
        # faults
        for i, rec in enumerate(self.faults(), 1):
            xx = x(rec["t_ms"])
            out.append(f'<line x1="{xx:.1f}" y1="{top - 4}" x2="{xx:.1f}" y2="{bottom}" stroke="#000" '
                       f'stroke-dasharray="3,3"/>')
            out.append(f'<text x="{xx + 2:.1f}" y="{bottom + 12}" font-size="10">{i}</text>')
            out.append(f'<text x="{left}" y="{bottom + 40 + 16 * i}" font-size="11">{i}: '
                       f'{self.h.rel(rec["t_ms"]):.3f} s {html.escape(describe_fault(rec))}</text>')
        # failovers
        fos = self.failovers()
        for t, node, epoch, prev, took, cause in fos:
            r = self.nodes.index(node) if node in self.nodes else 0
            xx = x(t)
            y = top + r * (row_h + gap)
            label = f"failover {prev}->{node} epoch {epoch}" + (f" ({took:.2f} s)" if took is not None else "")
            out.append(f'<path d="M{xx:.1f},{y - 1} l-5,-7 l10,0 z" fill="#000"><title>{html.escape(label)}</title></path>')
            if len(fos) > 8:
                continue  # too many to label: the marks keep their tooltips
            if xx > left + width * 0.7:
                out.append(f'<text x="{xx - 6:.1f}" y="{y - 2}" font-size="10" text-anchor="end">'
                           f'{html.escape(label)}</text>')
            else:
                out.append(f'<text x="{xx + 6:.1f}" y="{y - 2}" font-size="10">{html.escape(label)}</text>')
        # legend
        lx = left
        ly = bottom + 26
        for key in ("master", "master-idle", "promoting", "replica", "data", "witness", "starting"):
            ch, colour, text = STYLE[key]
            out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}" stroke="#999"/>')
            out.append(f'<text x="{lx + 16}" y="{ly}">{html.escape(text)}</text>')
            lx += 24 + 7 * len(text)
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="url(#paused)" stroke="#999"/>'
                   f'<text x="{lx + 16}" y="{ly}">paused</text>')
        lx += 24 + 7 * 6
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="#fff" stroke="#999"/>'
                   f'<text x="{lx + 16}" y="{ly}">down</text>')
        lx += 24 + 7 * 4
        out.append(f'<rect x="{lx}" y="{ly - 4}" width="12" height="4" fill="{SIDE_COLOURS[1]}"/>'
                   f'<rect x="{lx + 14}" y="{ly - 4}" width="12" height="4" fill="{SIDE_COLOURS[2]}"/>'
                   f'<text x="{lx + 30}" y="{ly}">cut off by a partition (side 1, 2)</text>')
        out.append("</svg>")
        return "\n".join(out) + "\n"
