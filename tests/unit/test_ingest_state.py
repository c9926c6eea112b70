"""The ingest's per-topic state adapters, fed with the real fixtures (no event loop)."""

import json

import msgspec

from hotpath.ingest.book import Resync
from hotpath.ingest.state import new_state
from hotpath.protocol import bybit
from hotpath.protocol.streams import Stream
from tests.fixtures import BYBIT, raw


def _frame(name):
    return bybit.parse_frame(raw(name))


def test_ticker_snapshot_then_delta():
    state = new_state(Stream("ticker", "BTCUSDT"))
    snap = _frame("linear_tickers_snapshot.json")
    (is_snap, data), = state.apply(snap.type, snap.data)
    assert is_snap and data["price"] == "61874.00" and not state.fresh
    delta = _frame("linear_tickers_delta.json")
    (is_snap, data), = state.apply(delta.type, delta.data)
    assert not is_snap and data["markPrice"] == "61875.06"
    assert state.snapshot()["markPrice"] == "61875.06"
    state.reset()
    assert state.fresh and state.snapshot() is None
    assert isinstance(state.apply(delta.type, delta.data), Resync)  # delta with no snapshot


def test_book_replays_the_real_sequence_and_flags_a_gap():
    state = new_state(Stream("orderbook", "XRPUSDT", "500"))
    lines = (BYBIT / "orderbook_500_linear_XRPUSDT_2024-12-01_sequence.jsonl").read_bytes()
    frames = [bybit.parse_frame(line) for line in lines.splitlines()]
    first = state.apply(frames[0].type, frames[0].data)
    assert first[0][0] is True and len(first[0][1]["bids"]) == 500
    for frame in frames[1:10]:
        (is_snap, data), = state.apply(frame.type, frame.data)
        assert not is_snap and set(data) == {"bids", "asks"}
    assert isinstance(state.apply(frames[11].type, frames[11].data), Resync)  # 10 skipped


def test_trades_snapshot_is_recent_history_then_updates():
    state = new_state(Stream("trade", "BTCUSDT"))
    assert state.on_subscribed() == [(True, [])]  # no history yet: an empty snapshot
    assert state.on_subscribed() == []
    frame = _frame("public_trade_linear.json")
    (is_snap, trades), = state.apply(frame.type, frame.data)
    assert not is_snap and trades[0]["id"] == "20f43950-d8dd-5b31-9112-a178eb6023af"
    assert state.apply(frame.type, frame.data) is None  # the same trade again: dropped
    state.reset()
    assert state.on_subscribed() == [(True, state.snapshot())]
    assert len(state.snapshot()) == 1


def test_kline_first_message_after_reset_is_a_snapshot():
    state = new_state(Stream("kline", "BTCUSDT", "5m"))
    frame = _frame("kline_5.json")
    (is_snap, candle), = state.apply(frame.type, frame.data)
    assert is_snap and candle["interval"] == "5m" and candle["close"] == "16677"
    data = json.loads(raw("kline_5.json"))["data"]
    data[0]["close"] = "16680"
    (is_snap, candle), = state.apply("snapshot", msgspec.Raw(json.dumps(data).encode()))
    assert not is_snap and candle["close"] == "16680"


def test_liquidations_keep_the_position_side():
    state = new_state(Stream("liquidation", "ROSEUSDT"))
    frame = _frame("all_liquidation.json")
    (is_snap, items), = state.apply(frame.type, frame.data)
    assert is_snap  # first events of a fresh stream go out as the snapshot
    assert items == [{"time": 1739502302929, "symbol": "ROSEUSDT", "side": "Sell",
                      "size": "20000", "price": "0.04499"}]
