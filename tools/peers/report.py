"""The comparison table (text and markdown), the goals, and the SVG plots."""

from __future__ import annotations

import html
import statistics

SYSTEMS = ("rolegrid", "redis", "etcd", "keepalived")
LABEL = {"rolegrid": "rolegrid", "redis": "Redis Sentinel", "etcd": "etcd", "keepalived": "keepalived"}
PEERS = ("redis", "etcd", "keepalived")


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_num(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.0f}"
    else:
        s = f"{v:.1f}"
    return s + unit


def cell(xs, unit=""):
    """median (min-max, n)"""
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt_num(xs[0], unit)
    return f"{fmt_num(med(xs), unit)} ({fmt_num(min(xs))}-{fmt_num(max(xs))}, n={len(xs)})"


def ratio(a, b):
    if a is None or b is None:
        return "-"
    if b == 0:
        return "0/0" if a == 0 else "inf"
    return f"{a / b:.2f}"


class Row:
    def __init__(self, section, measure, values, unit="", note=""):
        self.section, self.measure, self.values, self.unit, self.note = section, measure, values, unit, note

    def medians(self):
        return {s: med(v) if isinstance(v, list) else v for s, v in self.values.items()}


def build_rows(res, systems, settings):
    rows = []
    fo = res.get("failover", {})
    for st in settings:
        vals = {s: fo.get(s, {}).get(st.name) for s in systems if fo.get(s, {}).get(st.name)}
        if vals:
            rows.append(Row("failover", f"kill -9 of the master -> new master accepting writes, {st.name}", vals, " ms"))
    rs = res.get("restore", {})
    for fault in ("restart", "pause", "partition"):
        per = {s: rs.get(s, {}).get(fault) for s in systems if rs.get(s, {}).get(fault)}
        if not per:
            continue
        what = {"restart": "restart", "pause": "resume (SIGCONT)", "partition": "heal"}[fault]
        rows.append(Row("restore", f"{fault}: {what} -> one master left", {s: [t["single_ms"] for t in v]
                                                                           for s, v in per.items()}, " ms"))
        rows.append(Row("restore", f"{fault}: two masters held the role", {s: [t["dual_ms"] for t in v]
                                                                            for s, v in per.items()}, " ms"))
        w = {s: [t["acked_after_fault"] for t in v] for s, v in per.items() if v and s != "keepalived"}
        if w:
            rows.append(Row("restore", f"{fault}: writes acked through the old master after the fault", w))
            rows.append(Row("restore", f"{fault}: acked writes lost", {s: [t["lost"] for t in per[s]] for s in w}))
    wr = res.get("writes", {})
    for c in ("1", "16"):
        per = {s: wr[s][c] for s in systems if s in wr}
        if not per:
            continue
        who = f"{c} client{'s' if c != '1' else ''}"
        rows.append(Row("writes", f"{who}: writes/s acked by all replicas",
                        {s: [x["per_second"] for x in v] for s, v in per.items()}, "/s"))
        rows.append(Row("writes", f"{who}: p50 latency", {s: [x["p50_us"] for x in v] for s, v in per.items()}, " us"))
        rows.append(Row("writes", f"{who}: p99 latency", {s: [x["p99_us"] for x in v] for s, v in per.items()}, " us"))
        cpu = {s: [x["server_cpu_us"] for x in v] for s, v in per.items() if all("server_cpu_us" in x for x in v)}
        if cpu:
            rows.append(Row("writes", f"{who}: server CPU per write, all members", cpu, " us"))
    nowait = {s: wr[s]["16-nowait"] for s in systems if "16-nowait" in wr.get(s, {})}
    if nowait:
        rows.append(Row("writes", "16 clients: writes/s waiting for no replica (Redis SET alone; a ceiling)",
                        {s: [x["per_second"] for x in v] for s, v in nowait.items()}, "/s"))
    cu = res.get("catchup", {})
    if cu:
        n = {s: v["entries"] for s, v in cu.items()}
        label = ", ".join(sorted({f"{x:,}" for x in n.values()}))
        rows.append(Row("catchup", f"new member catch-up, {label} entries x 100 B", {s: [v["catchup_ms"]] for s, v in cu.items()}, " ms"))
        rows.append(Row("catchup", "RSS per member with those entries",
                        {s: list(v["rss_mib"].values()) for s, v in cu.items()}, " MiB"))
        rows.append(Row("catchup", "bulk load rate (loader, for reference)", {s: [v["load_per_s"]] for s, v in cu.items()}, "/s"))
    return rows


def goals(res, rows, settings):
    """[(goal, verdict, detail)] for rolegrid's goals, from the measurements."""
    out = []
    fo = res.get("failover", {})
    base = settings[0].name

    def fmed(s, st):
        return med(fo.get(s, {}).get(st) or [])
    rg, rd, et = fmed("rolegrid", base), fmed("redis", base), fmed("etcd", base)
    if rg is not None and rd is not None:
        out.append((f"failover median <= 1/2 of Redis Sentinel's ({base})", rg <= rd / 2,
                    f"{rg:.0f} vs {rd:.0f} ms (ratio {rg / rd:.3f})"))
    if rg is not None and et is not None:
        out.append((f"failover median below etcd's ({base})", rg < et, f"{rg:.0f} vs {et:.0f} ms"))
    rs = res.get("restore", {})
    for fault in ("restart", "pause", "partition"):
        peer_window = [s for s in PEERS if any(t["dual_ms"] > 0 or t["lost"] > 0 for t in rs.get(s, {}).get(fault, []))]
        mine = rs.get("rolegrid", {}).get(fault)
        if mine is None:
            continue
        dual = max(t["dual_ms"] for t in mine)
        lost = sum(t["lost"] for t in mine)
        out.append((f"{fault}: zero dual-master time and zero lost acked writes"
                    + (f" (peers with a window: {', '.join(LABEL[s] for s in peer_window)})" if peer_window else
                       " (no peer showed a window)"),
                    dual == 0 and lost == 0, f"rolegrid: longest two-master window {dual:.0f} ms, {lost} acked writes lost"))
    wr = res.get("writes", {})
    if "rolegrid" in wr:
        r16 = med([x["per_second"] for x in wr["rolegrid"]["16"]])
        for peer, factor in (("redis", 2), ("etcd", 5)):
            if peer in wr:
                p16 = med([x["per_second"] for x in wr[peer]["16"]])
                ceiling = med([x["per_second"] for x in wr[peer].get("16-nowait", [])])
                out.append((f"16 clients: >= {factor}x {LABEL[peer]}", r16 >= factor * p16,
                            f"{r16:,.0f} vs {p16:,.0f} writes/s ({r16 / p16:.2f}x)"
                            + (f"; {LABEL[peer]} waiting for no replica: {ceiling:,.0f}/s "
                               f"({ceiling / p16:.2f}x its own)" if ceiling else "")))
    cu = res.get("catchup", {})
    if "rolegrid" in cu:
        for peer in ("redis", "etcd"):
            if peer in cu:
                a, b = cu["rolegrid"], cu[peer]
                same = a["entries"] == b["entries"]
                out.append((f"catch-up faster than {LABEL[peer]}", a["catchup_ms"] < b["catchup_ms"] and same,
                            f"{a['catchup_ms']:,.0f} ms for {a['entries']:,} vs {b['catchup_ms']:,.0f} ms for "
                            f"{b['entries']:,} entries" + ("" if same else " (different counts: not comparable)")))
        if "redis" in cu:
            a, b = med(list(cu["rolegrid"]["rss_mib"].values())), med(list(cu["redis"]["rss_mib"].values()))
            out.append(("memory per member <= Redis's", a <= b, f"{a:.0f} vs {b:.0f} MiB (median member)"))
    return out


def text_table(rows, systems):
    peers = [s for s in systems if s != "rolegrid"]
    head = ["measure"] + [LABEL[s] for s in systems] + [f"rg/{s}" for s in peers]
    lines = []
    for r in rows:
        m = r.medians()
        lines.append([r.measure] + [cell(r.values.get(s) if isinstance(r.values.get(s), list) else
                                         ([r.values[s]] if s in r.values else None), r.unit) for s in systems]
                     + [ratio(m.get("rolegrid"), m.get(p)) if "rolegrid" in m and p in m else "-" for p in peers])
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    sec = None
    for r, l in zip(rows, lines):
        if r.section != sec:
            sec = r.section
        out.append("  ".join(str(c).ljust(w) for c, w in zip(l, widths)))
    return "\n".join(out)


def md_table(rows, systems):
    peers = [s for s in systems if s != "rolegrid"]
    head = ["measure"] + [LABEL[s] for s in systems] + [f"rolegrid/{LABEL[s]}" for s in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.medians()
        cells = [r.measure] + [cell(r.values.get(s), r.unit) if s in r.values else "n/a" for s in systems]
        cells += [ratio(m.get("rolegrid"), m.get(p)) if "rolegrid" in m and p in m else "-" for p in peers]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- SVG --------------------------------------------------------------------------------------

COLORS = {"rolegrid": "#1f77b4", "redis": "#d62728", "etcd": "#2ca02c", "keepalived": "#9467bd"}


def _svg(w, h, body, title):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="sans-serif" font-size="12">\n<rect width="{w}" height="{h}" fill="white"/>\n'
            f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>\n'
            + "\n".join(body) + "\n</svg>\n")


def _axis(x0, y0, x1, vmax, unit, ticks=5):
    """Horizontal value axis from x0 to x1 at y0 with 0..vmax."""
    body = [f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>']
    for i in range(ticks + 1):
        v = vmax * i / ticks
        x = x0 + (x1 - x0) * i / ticks
        body.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="#333"/>')
        body.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{v:,.0f}</text>')
        body.append(f'<line x1="{x:.1f}" y1="40" x2="{x:.1f}" y2="{y0}" stroke="#eee"/>')
    body.append(f'<text x="{(x0 + x1) / 2}" y="{y0 + 32}" text-anchor="middle">{html.escape(unit)}</text>')
    return body


def _nice(v):
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^e) at or above v."""
    for e in range(0, 8):
        for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            if m * 10 ** e >= v:
                return m * 10 ** e
    return v


def failover_svg(res, systems, settings):
    """One strip per system and setting: every trial as a dot, the median as a bar."""
    fo = res.get("failover", {})
    strips = [(s, st.name, fo[s][st.name]) for st in settings for s in systems if fo.get(s, {}).get(st.name)]
    if not strips:
        return None
    x0, x1, row_h = 230, 880, 26
    h = 60 + row_h * len(strips) + 50
    vmax = _nice(max(max(v) for _, _, v in strips) * 1.05)
    y_axis = 45 + row_h * len(strips)
    body = []
    for i, (s, st, xs) in enumerate(strips):
        y = 50 + row_h * i + row_h / 2
        body.append(f'<text x="{x0 - 8}" y="{y + 4}" text-anchor="end">{html.escape(LABEL[s])}, {html.escape(st)}</text>')
        for j, v in enumerate(sorted(xs)):
            jitter = ((j * 7) % 9 - 4) * 1.2
            body.append(f'<circle cx="{x0 + (x1 - x0) * v / vmax:.1f}" cy="{y + jitter:.1f}" r="3" '
                        f'fill="{COLORS[s]}" fill-opacity="0.6"/>')
        m = statistics.median(xs)
        xm = x0 + (x1 - x0) * m / vmax
        body.append(f'<line x1="{xm:.1f}" y1="{y - 10}" x2="{xm:.1f}" y2="{y + 10}" stroke="black" stroke-width="2"/>')
        body.append(f'<text x="{xm + 5:.1f}" y="{y - 6}" font-size="10">{m:,.0f}</text>')
    # grid lines first, so the marks are drawn over them
    body = _axis(x0, y_axis, x1, vmax, "kill -9 of the master -> new master accepting writes, ms (bar: median)") + body
    return _svg(900, h, body, "Failover time per trial")


def dual_svg(res, systems):
    """Bars: median two-master time per system and fault, whisker to the max."""
    rs = res.get("restore", {})
    bars = [(s, f, [t["dual_ms"] for t in rs[s][f]]) for f in ("restart", "pause", "partition") for s in systems
            if rs.get(s, {}).get(f)]
    if not bars:
        return None
    x0, x1, row_h = 230, 880, 24
    h = 60 + row_h * len(bars) + 50
    vmax = _nice(max([max(v) for _, _, v in bars] + [100]) * 1.05)
    y_axis = 45 + row_h * len(bars)
    body = []
    for i, (s, f, xs) in enumerate(bars):
        y = 50 + row_h * i
        m = statistics.median(xs)
        body.append(f'<text x="{x0 - 8}" y="{y + 15}" text-anchor="end">{html.escape(LABEL[s])}, {f}</text>')
        w = (x1 - x0) * m / vmax
        body.append(f'<rect x="{x0}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{COLORS[s]}"/>')
        xmx = x0 + (x1 - x0) * max(xs) / vmax
        body.append(f'<line x1="{x0 + w:.1f}" y1="{y + row_h / 2}" x2="{xmx:.1f}" y2="{y + row_h / 2}" stroke="#333"/>')
        body.append(f'<line x1="{xmx:.1f}" y1="{y + 6}" x2="{xmx:.1f}" y2="{y + row_h - 6}" stroke="#333"/>')
        body.append(f'<text x="{max(x0 + w, xmx) + 5:.1f}" y="{y + 15}" font-size="10">{m:,.0f} ms'
                    f' (max {max(xs):,.0f})</text>')
    body = _axis(x0, y_axis, x1, vmax, "time two hosts held the master role, ms (bar: median, whisker: max)") + body
    return _svg(900, h, body, "Dual-master window after a restored old master")
