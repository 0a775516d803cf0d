"""The printed verdict of a run or a re-check: PASS/FAIL with the reasons,
the text timeline, and the SVG if asked for."""

from __future__ import annotations

from .timeline import Timeline


def verdict_lines(rep, failed_at=None, bad_expects=()):
    reasons = []
    if failed_at is not None:
        st, why = failed_at
        reasons.append(f"line {st.line} ({st.text}): {why}")
    for line, text, detail in bad_expects:
        reasons.append(f"line {line} ({text}) not met: {detail}")
    reasons += [str(v) for v in rep.violations]
    return reasons


def print_report(out, h, rep, name, passed, failed_at=None, bad_expects=(), svg=None, elapsed=None, timeline=True):
    tl = Timeline(h, rep.intervals)
    fos = tl.failovers()
    s = rep.stats
    took = f" ({elapsed:.1f} s)" if elapsed is not None else ""
    summary = (f"{len(rep.violations)} violation(s), {len(fos)} master change(s), {s['acked']} writes acknowledged "
               f"({s['unknown']} unknown, {s['refused']} refused), {s.get('writes_checked', 0)} checked on every "
               f"live node in {s['snapshots']} snapshot(s)")
    if s.get("writes_exempt"):
        summary += f", {s['writes_exempt']} exempt (acknowledged before every node was down)"
    dem = s.get("demotions", [])
    if 0 < len(dem) <= 3:
        for n, how, ms, why in dem:
            summary += f"; old master {n} {how}: " + (f"demoted after {ms:.0f} ms" if ms else why)
    elif dem:
        summary += (f"; {len(dem)} restored old masters demoted (longest {max(d[2] for d in dem):.0f} ms after "
                    f"the restore; {sum(1 for d in dem if not d[2])} had stepped down while cut off)")
    reasons = verdict_lines(rep, failed_at, bad_expects)
    out.write(f"{'PASS' if passed else 'FAIL'} {name}{took}: {summary}\n")
    for r in reasons:
        out.write(f"  - {r}\n")
    if timeline:
        out.write(tl.text() + "\n")
    if svg:
        with open(svg, "w") as f:
            f.write(tl.svg(f"{name}: {'PASS' if passed else 'FAIL'}"))
        out.write(f"  timeline SVG: {svg}\n")
    out.flush()
    (h.dir / "result.txt").write_text(
        f"{'PASS' if passed else 'FAIL'} {name}{took}: {summary}\n" + "".join(f"  - {r}\n" for r in reasons)
        + tl.text() + "\n")
