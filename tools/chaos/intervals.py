"""One sweep over intervals for every "never two at once" check (masters,
services, prepares): each interval has .node, .start and .end."""

from __future__ import annotations


def concurrent_pairs(intervals):
    """(a, b, lo, hi) for every two intervals of different nodes where b
    starts before a ends (a started first); lo..hi is their common part,
    empty when hi <= lo. Each check decides what counts."""
    active = []  # intervals that may still overlap later ones
    for iv in sorted(intervals, key=lambda x: x.start):
        active = [a for a in active if a.end > iv.start]
        for a in active:
            if a.node != iv.node:
                yield a, iv, max(a.start, iv.start), min(a.end, iv.end)
        active.append(iv)


def overlap_violations(intervals, Violation, kind, describe):
    """A Violation of `kind` for every two nodes' intervals (with .epoch)
    that have a common part; describe(a, b, ms) words it."""
    return [Violation(kind, describe(a, b, hi - lo), (a.node, b.node), (a.epoch, b.epoch), (lo, hi))
            for a, b, lo, hi in concurrent_pairs(intervals) if hi > lo]
