import msgspec
import pytest

from hotpath.ingest.events import (RECENT_LIQUIDATIONS, RECENT_TRADES, KlineSeries,
                                   KlineUpdate, LiquidationTape, TradeTape)
from hotpath.protocol import bybit, streams
from hotpath.protocol.bybit_topics import (DECODERS, BookData, KlineData, LiquidationData,
                                           TradeData, book_decoder, klines_decoder,
                                           liquidations_decoder, trades_decoder)
from tests.fixtures import raw


def _decode(name, decoder):
    frame = bybit.parse_frame(raw(name))
    return frame, decoder.decode(frame.data)


def _trade(trade_id, price="100", time=1):
    return TradeData(time=time, symbol="BTCUSDT", side="Buy", size="1", price=price,
                     trade_id=trade_id, tick_direction="ZeroPlusTick")


def _candle(start, close="1", confirm=False, minutes=5):
    return KlineData(start=start, end=start + minutes * 60_000 - 1, interval=str(minutes),
                     open="1", close=close, high="2", low="0.5", volume="3",
                     turnover="4", confirm=confirm, timestamp=start + 1)


M5 = 300_000


# -- decoders --------------------------------------------------------------------------


def test_decoders_by_stream_kind():
    assert DECODERS == {"orderbook": book_decoder, "trade": trades_decoder,
                        "kline": klines_decoder, "liquidation": liquidations_decoder}
    assert set(DECODERS) == set(streams.KINDS) - {"ticker"}


def test_orderbook_delta_decodes_with_cts_left_on_the_envelope():
    frame, data = _decode("orderbook_50_delta.json", book_decoder)
    assert isinstance(data, BookData)
    assert data.bids[0] == ("30247.20", "30.028") and data.asks[-1] == ("30252.50", "4.591")
    assert (data.update_id, data.seq) == (177400507, 66544703342)


def test_trade_accepts_rpi_and_option_fields():
    body = (b'[{"T":1,"s":"BTC-27DEC24-100000-C","S":"Sell","v":"0.1","p":"2500",'
            b'"i":"x","BT":false,"RPI":true,"mP":"2501","iP":"98000","mIv":"0.5",'
            b'"iv":"0.49"}]')
    (trade,) = trades_decoder.decode(body)
    assert trade.tick_direction == "" and trade.seq == 0 and trade.price == "2500"


@pytest.mark.parametrize("decoder, body", [
    (book_decoder, b'{"s":"X","b":[["1","2","3"]],"a":[],"u":1}'),
    (book_decoder, b'{"s":"X","b":[[1,2]],"a":[],"u":1}'),
    (trades_decoder, b'{"T":1}'),
    (klines_decoder, b'[{"start":1}]'),
    (liquidations_decoder, b'[{"T":1,"s":"X","S":"Buy","v":1,"p":"1"}]'),
])
def test_malformed_data_is_refused(decoder, body):
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(body)


# -- trades ----------------------------------------------------------------------------


def test_public_trade_fixture_normalizes():
    frame, trades = _decode("public_trade_linear.json", trades_decoder)
    tape = TradeTape("BTCUSDT")
    expected = [{"id": "20f43950-d8dd-5b31-9112-a178eb6023af", "time": 1672304486865,
                 "symbol": "BTCUSDT", "side": "Buy", "price": "16578.50", "size": "0.001",
                 "tickDirection": "PlusTick", "blockTrade": False}]
    assert tape.apply(trades) == expected
    assert tape.snapshot() == expected
    assert trades[0].seq == 1783284617


def test_trades_are_deduplicated_across_and_within_messages():
    tape = TradeTape("BTCUSDT")
    assert [t["id"] for t in tape.apply([_trade("a"), _trade("b")])] == ["a", "b"]
    assert [t["id"] for t in tape.apply([_trade("b"), _trade("c"), _trade("c")])] == ["c"]
    assert tape.apply([_trade("a"), _trade("c")]) is None
    assert tape.apply([]) is None
    assert tape.duplicates == 4
    assert [t["id"] for t in tape.snapshot()] == ["a", "b", "c"]


def test_trade_ids_remembered_are_bounded():
    tape = TradeTape("BTCUSDT", remember=3)
    tape.apply([_trade(str(i)) for i in range(5)])  # "0" and "1" are forgotten
    assert tape.apply([_trade("4"), _trade("2")]) is None
    assert [t["id"] for t in tape.apply([_trade("0")])] == ["0"]  # the oldest of "2","3","4"
    assert len(tape._ids) == len(tape._id_order) == 3


def test_recent_trades_ring_is_bounded_and_ordered():
    tape = TradeTape("BTCUSDT")
    for batch in range(20):
        tape.apply([_trade(f"{batch}-{i}", time=batch) for i in range(4)])
    recent = tape.snapshot()
    assert len(recent) == RECENT_TRADES
    assert recent[0]["id"] == "7-2" and recent[-1]["id"] == "19-3"
    assert len(tape._ids) == 80


# -- klines ----------------------------------------------------------------------------


def test_kline_fixture_normalizes():
    frame, candles = _decode("kline_5.json", klines_decoder)
    stream = streams.from_bybit_topic(frame.topic)
    series = KlineSeries(stream.symbol, stream.param)
    expected = {"symbol": "BTCUSDT", "interval": "5m", "start": 1672324800000,
                "end": 1672325099999, "open": "16649.5", "high": "16677", "low": "16608",
                "close": "16677", "volume": "2.081", "turnover": "34666.4005",
                "confirm": False}
    assert series.apply(candles) == KlineUpdate([expected], [])
    assert series.snapshot() == expected


def test_each_candle_of_a_message_is_one_update():
    series = KlineSeries("BTCUSDT", "5m")
    result = series.apply([_candle(0, "1", confirm=True), _candle(M5, "2")])
    assert [(u["start"], u["confirm"]) for u in result.updates] == [(0, True), (M5, False)]
    assert result.missed == []
    assert series.snapshot()["start"] == M5


def test_a_close_is_published_exactly_once():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0, "1")])
    closed = series.apply([_candle(0, "2", confirm=True)])
    assert closed.updates[0]["confirm"] is True and closed.updates[0]["close"] == "2"
    assert series.apply([_candle(0, "2", confirm=True)]) is None  # resent close
    assert series.apply([_candle(0, "3")]) is None  # an update of a closed candle
    assert series.dropped == 2


def test_unchanged_in_progress_update_is_dropped_changed_one_is_sent():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0, "1")])
    assert series.apply([_candle(0, "1")]) is None
    assert series.apply([_candle(0, "1.5")]).updates[0]["close"] == "1.5"


def test_a_new_candle_without_the_previous_close_reports_it_missed():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0, "1")])
    result = series.apply([_candle(M5, "2")])  # e.g. a reconnect across the boundary
    assert result.missed == [(0, M5)]
    assert [u["start"] for u in result.updates] == [M5]


def test_whole_candles_skipped_are_reported_as_one_range():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0, confirm=True)])
    assert series.apply([_candle(3 * M5)]).missed == [(M5, 3 * M5)]
    series2 = KlineSeries("BTCUSDT", "5m")
    series2.apply([_candle(0)])
    assert series2.apply([_candle(3 * M5)]).missed == [(0, 3 * M5)]


def test_no_loss_when_the_close_came_first():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0)])
    series.apply([_candle(0, confirm=True)])
    assert series.apply([_candle(M5)]).missed == []


def test_a_late_close_is_still_published_once():
    series = KlineSeries("BTCUSDT", "5m")
    series.apply([_candle(0)])
    assert series.apply([_candle(M5)]).missed == [(0, M5)]
    late = series.apply([_candle(0, "9", confirm=True)])
    assert late == KlineUpdate([series._client(_candle(0, "9", confirm=True))], [])
    assert series.apply([_candle(0, "9", confirm=True)]) is None
    assert series.apply([_candle(0, "8")]) is None  # stale in-progress update
    assert series.snapshot()["start"] == M5  # the current candle is unchanged


def test_first_candle_reports_nothing_missed():
    series = KlineSeries("BTCUSDT", "1h")
    assert series.snapshot() is None
    assert series.apply([_candle(10 * M5)]).missed == []
    assert series.apply([]) is None


# -- liquidations ----------------------------------------------------------------------


def test_all_liquidation_fixture_normalizes():
    frame, items = _decode("all_liquidation.json", liquidations_decoder)
    tape = LiquidationTape("ROSEUSDT")
    expected = [{"time": 1739502302929, "symbol": "ROSEUSDT", "side": "Sell",
                 "size": "20000", "price": "0.04499"}]
    assert tape.apply(items) == expected
    assert tape.snapshot() == expected
    assert tape.apply([]) is None


def test_recent_liquidations_ring_is_bounded():
    tape = LiquidationTape("BTCUSDT")
    for i in range(RECENT_LIQUIDATIONS + 7):
        tape.apply([LiquidationData(time=i, symbol="BTCUSDT", side="Buy", size="1",
                                    price="100")])
    recent = tape.snapshot()
    assert len(recent) == RECENT_LIQUIDATIONS
    assert (recent[0]["time"], recent[-1]["time"]) == (7, RECENT_LIQUIDATIONS + 6)
