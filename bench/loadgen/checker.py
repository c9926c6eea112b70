"""What the load generator checks and counts, without I/O: per-stream ``seq`` continuity,
snapshot-first, latency histograms per wall-clock second, and the statistics over them.

Per-message code here is small on purpose: every microsecond spent in the load
generator is taken from the gateway it measures (two cores).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import msgspec


class Message(msgspec.Struct):
    """The few fields the load generator reads; ``data`` and the rest are skipped."""

    stream: str = ""
    type: str = ""
    seq: int = -1
    timestamp: int = 0
    op: str = ""
    success: bool = True
    args: list[str] = []
    error: str = ""


decode = msgspec.json.Decoder(Message).decode

# Counters a worker process keeps and the parent sums. Errors fail a run; the rest inform.
ERRORS = ("gaps", "duplicates", "snapshot_not_first", "snapshot_missing", "silent_streams",
          "failed", "dropped",
          "rejected_subscriptions", "error_replies", "bad_messages", "stalled")
INFO = ("connected", "ready", "resnapshots", "missing_messages", "statuses", "quiet_streams",
        "closed_by_server",
        "churn_started", "churn_completed", "churn_failed", "churn_skipped",
        "slow_connected", "slow_lost", "slow_open", "slow_frames",
        "storm_dropped", "storm_connected", "storm_failed")


class Counters:
    """Plain integer counters (attribute access is the cheapest thing Python has)."""

    gaps: int
    duplicates: int
    snapshot_not_first: int
    snapshot_missing: int
    silent_streams: int
    failed: int
    dropped: int
    rejected_subscriptions: int
    error_replies: int
    bad_messages: int
    stalled: int
    connected: int
    ready: int
    resnapshots: int
    missing_messages: int
    statuses: int
    quiet_streams: int
    closed_by_server: int
    churn_started: int
    churn_completed: int
    churn_failed: int
    churn_skipped: int
    slow_connected: int  # never-reading clients connected
    slow_lost: int  # ... that ended without a close frame from the server
    slow_open: int  # ... still open when the run stopped (the server never closed them)
    slow_frames: int  # frames they read once told to drain
    storm_dropped: int  # held clients dropped at once by the reconnect storm
    storm_connected: int  # ... that connected again
    storm_failed: int  # ... that could not

    def __init__(self) -> None:
        for name in ERRORS + INFO:
            setattr(self, name, 0)
        self.failures: dict[str, int] = {}  # connect failure reason -> count
        self.close_codes: dict[str, int] = {}  # server close code -> count
        self.error_codes: dict[str, int] = {}  # op:error "error" -> count
        self.slow_closes: dict[str, int] = {}  # "code reason" a never-reading client got -> count

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in ERRORS + INFO}
        out.update(failures=dict(self.failures), close_codes=dict(self.close_codes),
                   error_codes=dict(self.error_codes), slow_closes=dict(self.slow_closes))
        return out


def merge_counters(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {name: 0 for name in ERRORS + INFO}
    total.update(failures={}, close_codes={}, error_codes={}, slow_closes={})
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                for k, v in value.items():
                    total[key][k] = total[key].get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


def count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


class SeqCheck:
    """Per-client stream bookkeeping: mixed into the picows listener.

    ``require_snapshot``: hotpath promises a snapshot first on every stream; a baseline
    without snapshot semantics is checked from the first message it sends.
    """

    def init_check(self, counters: Counters, require_snapshot: bool) -> None:
        self.counters = counters
        self.require_snapshot = require_snapshot
        self.last: dict[str, int] = {}  # stream -> last seq seen
        self.started = 0  # streams that got their first message

    def check(self, stream: str, kind: str, seq: int) -> None:
        last = self.last.get(stream)
        if kind == "update":
            if last is None:
                if self.require_snapshot:
                    self.counters.snapshot_not_first += 1
                self.started += 1
                self.last[stream] = seq
            elif seq == last + 1:
                self.last[stream] = seq
            elif seq <= last:
                self.counters.duplicates += 1
            else:
                c = self.counters
                c.gaps += 1
                c.missing_messages += seq - last - 1
                self.last[stream] = seq
        elif kind == "snapshot":
            if last is None:
                self.started += 1
            else:
                self.counters.resnapshots += 1  # a restart is allowed: the state is replaced
            self.last[stream] = seq
        else:  # "status" carries the stream's current seq and does not advance it
            self.counters.statuses += 1


# -- latency histograms ----------------------------------------------------------------

def bucket(ms: float) -> int:
    """Histogram key of a latency: 0.1 ms steps below 100 ms, 1 ms below 1 s, then 10 ms."""
    if ms < 100.0:
        return int(ms * 10.0) if ms > 0.0 else 0
    if ms < 1000.0:
        return int(ms) * 10
    return int(ms / 10.0) * 100


def bucket_ms(key: int) -> float:
    """Upper edge of a bucket, in ms: percentiles never flatter the server."""
    if key < 1000:
        return (key + 1) / 10.0
    if key < 10000:
        return key / 10.0 + 1.0
    return key / 10.0 + 10.0


def merge_hist(into: dict[int, int], other: dict[int, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


def percentiles(hist: dict[int, int], qs: Iterable[float] = (50, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles (bucket upper edges) of a histogram, ms."""
    total = sum(hist.values())
    out: dict[str, float] = {}
    if not total:
        return {_pname(q): math.nan for q in qs}
    keys = sorted(hist)
    for q in qs:
        rank = max(1, math.ceil(q / 100.0 * total))
        seen = 0
        for key in keys:
            seen += hist[key]
            if seen >= rank:
                out[_pname(q)] = bucket_ms(key)
                break
    return out


def _pname(q: float) -> str:
    return "p" + (f"{q:g}".replace(".", ""))


class Second:
    """What arrived during one wall-clock second."""

    __slots__ = ("sec", "deliveries", "bytes", "hist", "max_ms", "churn", "churn_hist")

    def __init__(self, sec: int) -> None:
        self.sec = sec
        self.deliveries = 0
        self.bytes = 0
        self.hist: dict[int, int] = {}
        self.max_ms = 0.0
        self.churn = 0  # churn cycles completed
        self.churn_hist: dict[int, int] = {}  # snapshot latency of churn cycles

    def to_tuple(self) -> tuple[Any, ...]:
        return (self.sec, self.deliveries, self.bytes, self.hist, self.max_ms, self.churn,
                self.churn_hist)


class Timeline:
    """Per-second totals merged from every worker process."""

    def __init__(self) -> None:
        self.seconds: dict[int, Second] = {}

    def add(self, row: tuple[Any, ...]) -> None:
        sec, deliveries, nbytes, hist, max_ms, churn, churn_hist = row
        s = self.seconds.get(sec)
        if s is None:
            s = self.seconds[sec] = Second(sec)
        s.deliveries += deliveries
        s.bytes += nbytes
        merge_hist(s.hist, hist)
        s.max_ms = max(s.max_ms, max_ms)
        s.churn += churn
        merge_hist(s.churn_hist, churn_hist)

    def window(self, start: int, end: int) -> Second:
        """Sum of the whole seconds ``start <= sec < end``."""
        total = Second(start)
        for sec in range(start, end):
            s = self.seconds.get(sec)
            if s is None:
                continue
            total.deliveries += s.deliveries
            total.bytes += s.bytes
            merge_hist(total.hist, s.hist)
            total.max_ms = max(total.max_ms, s.max_ms)
            total.churn += s.churn
            merge_hist(total.churn_hist, s.churn_hist)
        return total

    def rows(self, origin: int) -> list[dict[str, Any]]:
        """One row per second for plots: t relative to ``origin``."""
        out = []
        for sec in sorted(self.seconds):
            s = self.seconds[sec]
            row: dict[str, Any] = {"t": sec - origin, "deliveries": s.deliveries,
                                   "bytes": s.bytes, "max_ms": round(s.max_ms, 2)}
            row.update(percentiles(s.hist))
            if s.churn or s.churn_hist:
                row["churn"] = s.churn
                row["churn_p99"] = percentiles(s.churn_hist, (99,))["p99"]
            out.append(row)
        return out


def latency_summary(hist: dict[int, int], max_ms: float | None) -> dict[str, float]:
    """p50/p90/p99/p99.9, max (exact when given, else the top bucket's edge) and count."""
    out = {k: round(v, 2) for k, v in percentiles(hist, (50, 90, 99, 99.9)).items()}
    if max_ms is None:
        max_ms = bucket_ms(max(hist)) if hist else math.nan
    out["max"] = round(max_ms, 2)
    out["count"] = sum(hist.values())
    return out
