"""The load generator's checks and statistics, without I/O."""

from __future__ import annotations

import math

import pytest

from bench.loadgen.checker import (
    Counters, SeqCheck, Timeline, bucket, bucket_ms, decode, latency_summary, merge_counters,
    percentiles,
)


def checker(require_snapshot: bool = True) -> SeqCheck:
    c = SeqCheck()
    c.init_check(Counters(), require_snapshot)
    return c


def test_snapshot_then_continuous_updates_is_clean() -> None:
    c = checker()
    c.check("s", "snapshot", 10)
    for seq in range(11, 20):
        c.check("s", "update", seq)
    assert c.started == 1
    errors = c.counters.to_dict()
    assert errors["gaps"] == errors["duplicates"] == errors["snapshot_not_first"] == 0


def test_gap_counts_once_with_the_missing_messages() -> None:
    c = checker()
    c.check("s", "snapshot", 1)
    c.check("s", "update", 2)
    c.check("s", "update", 5)  # 3 and 4 missing
    c.check("s", "update", 6)  # continuous again from the new position
    assert c.counters.gaps == 1
    assert c.counters.missing_messages == 2


def test_duplicate_and_old_messages_are_duplicates() -> None:
    c = checker()
    c.check("s", "snapshot", 5)
    c.check("s", "update", 6)
    c.check("s", "update", 6)
    c.check("s", "update", 4)
    c.check("s", "update", 7)
    assert c.counters.duplicates == 2
    assert c.counters.gaps == 0


def test_update_before_snapshot_is_an_error_only_when_snapshots_are_promised() -> None:
    strict, lax = checker(True), checker(False)
    for c in (strict, lax):
        c.check("s", "update", 100)
        c.check("s", "update", 101)
    assert strict.counters.snapshot_not_first == 1
    assert lax.counters.snapshot_not_first == 0
    assert strict.counters.gaps == lax.counters.gaps == 0


def test_later_snapshot_restarts_the_stream() -> None:
    c = checker()
    c.check("s", "snapshot", 1)
    c.check("s", "update", 2)
    c.check("s", "snapshot", 50)  # recovery: state replaced
    c.check("s", "update", 51)
    assert c.counters.resnapshots == 1
    assert c.counters.gaps == 0


def test_status_does_not_advance_seq() -> None:
    c = checker()
    c.check("s", "snapshot", 3)
    c.check("s", "status", 3)
    c.check("s", "update", 4)
    assert c.counters.statuses == 1
    assert c.counters.gaps == c.counters.duplicates == 0


def test_streams_are_checked_independently() -> None:
    c = checker()
    c.check("a", "snapshot", 1)
    c.check("b", "snapshot", 100)
    c.check("a", "update", 2)
    c.check("b", "update", 101)
    assert c.started == 2
    assert c.counters.gaps == 0


def test_decode_reads_only_the_envelope() -> None:
    m = decode(b'{"stream":"hotpath.futures.ticker.BTCUSDT","type":"update","data":'
               b'{"bid":{"price":"1","size":"2"}},"timestamp":1700000000123,'
               b'"source":"hotpath","seq":18}')
    assert (m.stream, m.type, m.seq, m.timestamp) == (
        "hotpath.futures.ticker.BTCUSDT", "update", 18, 1700000000123)
    reply = decode(b'{"op":"subscribe","success":true,"args":["ticker:BTCUSDT"],"rejected":null}')
    assert reply.seq == -1 and reply.op == "subscribe" and reply.args == ["ticker:BTCUSDT"]


@pytest.mark.parametrize("ms", [0.0, 0.05, 3.27, 99.95, 100.0, 450.4, 999.9, 1000.0, 12345.6])
def test_bucket_upper_edge_bounds_the_value(ms: float) -> None:
    upper = bucket_ms(bucket(ms))
    assert upper >= ms
    assert upper - ms <= (0.1 if ms < 100 else 1.0 if ms < 1000 else 10.0) + 1e-9


def test_negative_latency_lands_in_the_first_bucket() -> None:
    assert bucket(-3.0) == 0


def test_percentiles_nearest_rank() -> None:
    hist: dict[int, int] = {}
    for ms in range(1, 101):  # 1..100 ms, one each
        key = bucket(float(ms) - 0.05)
        hist[key] = hist.get(key, 0) + 1
    p = percentiles(hist, (50, 99, 99.9))
    assert p["p50"] == pytest.approx(50.0, abs=0.11)
    assert p["p99"] == pytest.approx(99.0, abs=1.01)
    assert p["p999"] == pytest.approx(100.0, abs=1.01)
    assert all(math.isnan(v) for v in percentiles({}).values())


def test_latency_summary_max_from_histogram_when_not_tracked() -> None:
    s = latency_summary({bucket(1.0): 3, bucket(7.0): 1}, None)
    assert s["count"] == 4
    assert s["max"] == pytest.approx(7.1)


def test_timeline_window_sums_whole_seconds() -> None:
    t = Timeline()
    t.add((100, 10, 1000, {bucket(1.0): 10}, 1.0, 0, {}))
    t.add((101, 20, 2000, {bucket(2.0): 20}, 2.0, 1, {bucket(5.0): 1}))
    t.add((101, 5, 500, {bucket(9.0): 5}, 9.0, 0, {}))  # another process, same second
    t.add((102, 7, 700, {}, 0.0, 0, {}))
    w = t.window(101, 102)
    assert (w.deliveries, w.bytes, w.churn) == (25, 2500, 1)
    assert sum(w.hist.values()) == 25
    assert w.max_ms == 9.0
    rows = t.rows(100)
    assert [r["t"] for r in rows] == [0, 1, 2]
    assert rows[1]["deliveries"] == 25


def test_merge_counters_adds_numbers_and_tables() -> None:
    a, b = Counters(), Counters()
    a.gaps, b.gaps = 1, 2
    a.failures["timeout"] = 1
    b.failures["timeout"] = 2
    b.failures["http 503"] = 1
    total = merge_counters([a.to_dict(), b.to_dict()])
    assert total["gaps"] == 3
    assert total["failures"] == {"timeout": 3, "http 503": 1}
