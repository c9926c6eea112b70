"""Lag (exchange timestamp to our receive, time held before a write) as a cheap
fixed-bucket histogram. Pure.

0.1 ms buckets up to 100 ms, 1 ms buckets up to 10 s, then one overflow bucket: one
comparison and one increment per message.
"""

from __future__ import annotations

from itertools import repeat
from typing import Iterable

_FINE = 1000  # 0.1 ms buckets: 0 .. 100 ms
_COARSE = 10_000  # 1 ms buckets: 100 ms .. 10.1 s


class LagHistogram:
    """Counts since the last ``clear()`` (a reporting period), and with ``keep_all``
    also since the start, as ``{bucket: count}`` of the buckets used (``since_start``):
    a reader that samples it twice gets the exact percentiles in between
    (``percentiles_between``)."""

    __slots__ = ("counts", "total", "since_start")

    def __init__(self, keep_all: bool = False) -> None:
        self.counts = [0] * (_FINE + _COARSE + 1)
        self.total = 0
        self.since_start: dict[int, int] | None = {} if keep_all else None

    def add(self, ms: float, count: int = 1) -> None:
        index = _bucket(ms)
        self.counts[index] += count
        self.total += count
        kept = self.since_start
        if kept is not None:
            kept[index] = kept.get(index, 0) + count

    def add_since(self, now: float, stamps: list[float]) -> None:
        """Add ``now - t`` for every ``t`` in ``stamps`` (ms): one write's messages."""
        self.add_between(repeat(now), stamps)

    def add_between(self, later: Iterable[float], earlier: list[float]) -> None:
        """Add ``later[i] - earlier[i]`` for every ``earlier`` time (ms)."""
        counts = self.counts
        kept = self.since_start
        for end, start in zip(later, earlier):
            index = _bucket(end - start)
            counts[index] += 1
            if kept is not None:
                kept[index] = kept.get(index, 0) + 1
        self.total += len(earlier)

    def percentiles(self, ps: Iterable[float]) -> tuple[float, ...]:
        """Upper bounds (ms) of the buckets holding each percentile; 0.0 when empty."""
        wanted = sorted((p, i) for i, p in enumerate(ps))
        out = [0.0] * len(wanted)
        if not self.total:
            return tuple(out)
        seen, w = 0, 0
        for index, count in enumerate(self.counts):
            seen += count
            while w < len(wanted) and seen >= wanted[w][0] / 100.0 * self.total:
                out[wanted[w][1]] = _upper(index)
                w += 1
            if w == len(wanted):
                break
        return tuple(out)

    def clear(self) -> None:
        """Start a new period (``since_start`` goes on)."""
        self.counts = [0] * len(self.counts)
        self.total = 0


def _bucket(ms: float) -> int:
    """The bucket of a lag: negative ones count as 0, beyond 10.1 s as the overflow."""
    if ms < 100.0:
        return int(ms * 10.0) if ms > 0 else 0
    return min(_FINE + int(ms - 100.0), _FINE + _COARSE)


def _upper(index: int) -> float:
    """The upper bound (ms) of a bucket."""
    if index < _FINE:
        return round((index + 1) / 10.0, 1)
    return float(100 + index - _FINE + 1)


def percentiles_between(later: dict[int, int], earlier: dict[int, int] | None,
                        ps: Iterable[float]) -> tuple[float, ...]:
    """Percentiles (bucket upper bounds, ms) of what was added between two samples of
    ``since_start``; 0.0 each when nothing was."""
    earlier = earlier or {}
    added = sorted((index, count - earlier.get(index, 0)) for index, count in later.items())
    total = sum(count for _, count in added)
    wanted = list(ps)
    if total <= 0:
        return tuple(0.0 for _ in wanted)
    out = []
    for p in wanted:
        seen = 0
        for index, count in added:
            seen += count
            if seen >= p / 100.0 * total:
                out.append(_upper(index))
                break
    return tuple(out)
