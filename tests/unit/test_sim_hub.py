"""The hub's clocks, fan-out and control operations, driven tick by tick (no loop, no sockets)."""

from __future__ import annotations

import json
from typing import Any

from hotpath.sim.hub import Hub, _times_due, ws_frame
from hotpath.sim.instruments import default_universe
from hotpath.sim.server import ClientListener
from hotpath.sim.session import LINEAR
from hotpath.sim.settings import SimConfig
from tests.helpers import server_frames


class FakeConn:
    """Records what the hub sends: immediate messages and per-tick flushed frames."""

    def __init__(self, name: str = "c") -> None:
        self.conn_id = name
        self.sent: list[dict[str, Any]] = []
        self.ticks: list[int] = []  # how many frames each flush carried
        self.stamp_places: list[tuple[bytes, int]] = []  # (frame, stamp_at) when given
        self._queued: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def queue(self, frame: bytes, stamp_at: int = -1) -> bool:
        self._queued.append(frame)
        if stamp_at >= 0:
            self.stamp_places.append((frame, stamp_at))
        return len(self._queued) == 1

    def flush(self, stamp: bytes = b"") -> None:
        for frame in self._queued:
            header = 2 if frame[1] < 126 else 4
            self.sent.append(json.loads(frame[header:]))
        self.ticks.append(len(self._queued))
        self._queued = []


def make_hub(**overrides: Any) -> Hub:
    config = SimConfig(symbols=20, **overrides)
    return Hub(config, default_universe(20))


def tick(hub: Hub, count: int = 1) -> None:
    for _ in range(count):
        hub._run_ticks(1)
        hub._flush()


def test_ws_frame_lengths() -> None:
    assert ws_frame(b"x" * 5)[:2] == b"\x81\x05"
    assert ws_frame(b"x" * 300)[:4] == b"\x81\x7e\x01\x2c"
    assert ws_frame(b"x" * 70_000)[:2] == b"\x81\x7f" and len(ws_frame(b"x" * 70_000)) == 70_010


def test_times_due_counts_the_ticks_of_a_bucket() -> None:
    assert [_times_due(1, last, 10, 0) for last in (9, 10, 19, 20, 30)] == [0, 1, 1, 2, 3]
    assert _times_due(4, 6, 2, 0) == 2 and _times_due(3, 3, 2, 1) == 1


def test_due_covers_every_tick_of_a_period() -> None:
    assert [t for t in range(1, 31) if _times_due(t, t, 10, 0)] == [10, 20, 30]
    assert [t for t in range(1, 31) if _times_due(t, t, 10, 3)] == [3, 13, 23]
    assert _times_due(11, 25, 10, 0) and not _times_due(11, 12, 10, 5)
    assert _times_due(1, 40, 10, 7)


def test_one_encoding_reaches_every_subscriber_in_one_flush() -> None:
    hub = make_hub()
    a, b = FakeConn("a"), FakeConn("b")
    hub.subscribe(a, ["orderbook.50.BTCUSDT"])
    hub.subscribe(b, ["orderbook.50.BTCUSDT"])
    tick(hub, 30)
    deltas_a = [m for m in a.sent if m["type"] == "delta"]
    deltas_b = [m for m in b.sent if m["type"] == "delta"]
    assert deltas_a and deltas_a[-5:] == deltas_b[-5:]
    assert hub.messages_sent >= len(deltas_a) + len(deltas_b)


def test_tickers_on_one_clock_or_spread_over_the_interval() -> None:
    for spread, expected_ticks in ((False, {10, 20}), (True, set(range(1, 21)))):
        hub = make_hub(ticker_spread=spread, moves_per_second=400)
        conn = FakeConn()
        hub.subscribe(conn, [f"tickers.{inst.symbol}" for inst in default_universe(20)])
        conn.sent.clear()
        pushed: set[int] = set()
        for t in range(1, 21):
            before = len(conn.sent)
            tick(hub)
            if len(conn.sent) > before:
                pushed.add(t)
        assert pushed <= expected_ticks and len(pushed) >= (2 if not spread else 8), pushed


def test_books_on_one_clock_or_spread_over_the_interval() -> None:
    """orderbook.200 every 100 ms is every 10th tick of 10 ms: on one clock, ticks 10 and
    20 only; spread, each symbol at its own tick of the ten."""
    symbols = [inst.symbol for inst in default_universe(20)]
    for spread in (False, True):
        hub = make_hub(book_spread=spread, moves_per_second=400, book_churn=400)
        conn = FakeConn()
        hub.subscribe(conn, [f"orderbook.200.{symbol}" for symbol in symbols])
        conn.sent.clear()
        ticks_of: dict[str, set[int]] = {symbol: set() for symbol in symbols}
        for t in range(1, 21):
            before = len(conn.sent)
            tick(hub)
            for message in conn.sent[before:]:
                ticks_of[message["topic"].rsplit(".", 1)[1]].add(t)
        pushed = set().union(*ticks_of.values())
        if spread:
            assert len(pushed) >= 8, pushed
            assert all(len({t % 10 for t in ticks}) <= 1 for ticks in ticks_of.values())
        else:
            assert pushed <= {10, 20} and pushed, pushed


class _Loop:
    """A loop whose clock the test sets; the hub only reads it and schedules its timer."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Any:
        return None


def test_a_late_timer_merges_pushes_and_counts_them_until_reset() -> None:
    hub = make_hub(moves_per_second=400, book_churn=400)  # 10 ms steps: books every 2nd
    loop = _Loop()
    hub.start(loop)  # type: ignore[arg-type]
    conn = FakeConn()
    hub.subscribe(conn, ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"])
    loop.now = 0.0201
    hub._on_timer()  # steps 1 and 2: the books are due once (step 2)
    assert (hub.stats()["pushes_due"], hub.stats()["pushes_merged"]) == (2, 0)
    loop.now = 0.0601
    hub._on_timer()  # steps 3 to 6: due at 4 and 6, pushed once
    assert (hub.stats()["pushes_due"], hub.stats()["pushes_merged"]) == (6, 2)
    hub.reset_stats()
    loop.now = 0.0801
    hub._on_timer()
    assert (hub.stats()["pushes_due"], hub.stats()["pushes_merged"]) == (2, 0)


def test_pause_pushes_pending_changes_then_nothing() -> None:
    hub = make_hub(moves_per_second=200, trade_rate=50)
    conn = FakeConn()
    hub.subscribe(conn, ["tickers.ETHUSDT", "orderbook.200.ETHUSDT", "publicTrade.ETHUSDT"])
    tick(hub, 15)
    hub.pause()
    merged = {}
    for message in conn.sent:
        if message["topic"] == "tickers.ETHUSDT":
            merged.update(message["data"])
    assert merged == hub.ticker_state("ETHUSDT")["data"]  # type: ignore[index]
    conn.sent.clear()
    tick(hub, 120)
    assert not [m for m in conn.sent if m["topic"] != "orderbook.1.ETHUSDT"]
    hub.resume()
    tick(hub, 30)
    assert conn.sent


def test_flood_resends_current_snapshots() -> None:
    hub = make_hub()
    conn = FakeConn()
    hub.subscribe(conn, ["tickers.BTCUSDT", "orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"])
    conn.sent.clear()
    assert hub.flood(conn, {"tickers.BTCUSDT", "orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"}, 9) == 9
    assert len(conn.sent) == 9 and {m["type"] for m in conn.sent} == {"snapshot"}
    assert {m["topic"] for m in conn.sent} == {"tickers.BTCUSDT", "orderbook.50.BTCUSDT"}


def test_last_unsubscribe_stops_the_symbol_detail() -> None:
    hub = make_hub()
    conn = FakeConn()
    hub.subscribe(conn, ["orderbook.1000.SOLUSDT", "kline.5.SOLUSDT"])
    state = hub.market.symbols["SOLUSDT"]
    assert state.detail is not None and state.detail.cap >= 1000 and state.every == 20
    hub.unsubscribe(conn, ["orderbook.1000.SOLUSDT"])
    assert state.detail is not None and state.every == 100
    hub.unsubscribe(conn, ["kline.5.SOLUSDT"])
    assert state.detail is None and not hub.feeds and "SOLUSDT" not in hub.market.active


def test_a_big_tick_goes_out_in_slices_and_every_frame_is_timed() -> None:
    hub = make_hub(moves_per_second=400)
    conn = FakeConn()
    hub.subscribe(conn, [f"tickers.{inst.symbol}" for inst in default_universe(20)]
                  + [f"orderbook.50.{inst.symbol}" for inst in default_universe(20)])
    conn.sent.clear()
    tick(hub, 10)  # the tickers' clock comes round: 20 tickers + 20 books in one tick
    pushed = len(conn.sent)
    assert pushed > 32 and max(conn.ticks) == 32  # written in slices, not one write
    delay = hub.stats()["send_delay_ms"]
    assert delay["frames"] == pushed and 0 < delay["p50"] <= delay["p99"]


def _stamped_frames() -> list[tuple[bytes, int]]:
    """Pushed frames of every kind with the place of their ts, from a hub that stamps."""
    topics = ["tickers.BTCUSDT", "orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "kline.1.BTCUSDT",
              "allLiquidation.BTCUSDT"]
    conn = FakeConn("stamped")
    hub = make_hub(stamp_at_write=True, moves_per_second=400, trade_rate=200,
                   liquidation_rate=50, clock_speed=60)
    hub.subscribe(conn, topics)
    tick(hub, 200)
    return conn.stamp_places


def test_stamp_at_write_marks_the_envelope_ts_of_every_kind_of_frame() -> None:
    plain = make_hub(moves_per_second=400)
    conn = FakeConn("plain")
    plain.subscribe(conn, ["tickers.BTCUSDT", "orderbook.50.BTCUSDT"])
    tick(plain, 20)
    assert conn.sent and not conn.stamp_places  # only when asked for
    seen = set()
    for frame, at in _stamped_frames():
        header = 2 if frame[1] < 126 else 4
        message = json.loads(frame[header:])
        assert frame[at:at + 13] == str(message["ts"]).encode(), message["topic"]
        assert frame[at - 5:at] == b'"ts":'
        seen.add(message["topic"].split(".")[0])
    assert seen == {"tickers", "orderbook", "publicTrade", "kline", "allLiquidation"}


def test_a_stamped_write_carries_its_own_time_in_every_ts_and_nothing_else_changes() -> None:
    server: Any = type("Server", (), {})()
    server.publisher = type("Publisher", (), {"is_known": staticmethod(lambda name: True)})()
    listener = ClientListener(server, LINEAR)
    writes: list[bytes] = []
    listener._write, listener._closing = writes.append, lambda: False
    stamped = _stamped_frames()[:40]
    unstamped = ws_frame(b'{"topic":"tickers.ETHUSDT","type":"delta","data":{},"cs":1,"ts":1700000000001}')
    for frame, at in stamped[:20]:
        listener.queue(frame, at)
    listener.queue(unstamped)  # queued without a place: left as built
    for frame, at in stamped[20:]:
        listener.queue(frame, at)
    listener.flush(b"1800000000123")
    assert len(writes) == 1
    got = server_frames(writes[0])
    originals = [server_frames(f)[0] for f, _ in stamped[:20]] + [server_frames(unstamped)[0]] + \
                [server_frames(f)[0] for f, _ in stamped[20:]]
    assert len(got) == len(originals) == 41
    for message, original in zip(got, originals):
        expected_ts = 1700000000001 if original["topic"] == "tickers.ETHUSDT" else 1800000000123
        assert message == {**original, "ts": expected_ts}
    listener.queue(stamped[0][0], stamped[0][1])
    listener.flush()  # no stamp given: the frame goes out as built
    assert server_frames(writes[1]) == [server_frames(stamped[0][0])[0]]
