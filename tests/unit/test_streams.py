import pytest

from hotpath.protocol import streams
from hotpath.protocol.streams import Stream, StreamError

SYMBOLS = {"BTCUSDT", "ETHUSDT", "1000PEPEUSDT"}


@pytest.mark.parametrize("raw, name", [
    ("ticker:BTCUSDT", "ticker:BTCUSDT"),
    ("tickers.ETHUSDT", "ticker:ETHUSDT"),
    ("ticker:btcusdt", "ticker:BTCUSDT"),
    ("TICKER:BtcUsdt", "ticker:BTCUSDT"),
    ("kline:1h:ETHUSDT", "kline:1h:ETHUSDT"),
    ("kline:1H:ETHUSDT", "kline:1h:ETHUSDT"),
    ("kline:1M:ETHUSDT", "kline:1M:ETHUSDT"),
    ("kline:1m:ETHUSDT", "kline:1m:ETHUSDT"),
    ("trade:1000pepeusdt", "trade:1000PEPEUSDT"),
    ("orderbook:50:BTCUSDT", "orderbook:50:BTCUSDT"),
    ("orderbook:1000:BTCUSDT", "orderbook:1000:BTCUSDT"),
    ("liquidation:BTCUSDT", "liquidation:BTCUSDT"),
])
def test_valid_names_are_canonicalised(raw, name):
    assert streams.parse(raw, SYMBOLS).name == name


def test_wildcard_reason_is_the_published_text():
    for raw in ("tickers.*", "*", "ticker:*"):
        with pytest.raises(StreamError) as exc:
            streams.parse(raw, SYMBOLS)
        assert str(exc.value) == (
            "Wildcards (e.g. tickers.*) are not supported. Use specific symbols like "
            "tickers.BTCUSDT or ticker:ETHUSDT.")


@pytest.mark.parametrize("raw, fragment", [
    ("candles:BTCUSDT", "Unknown stream type"),
    ("kline:2m:BTCUSDT", "Invalid kline interval"),
    ("kline:BTCUSDT", "Invalid stream format"),
    ("orderbook:25:BTCUSDT", "Invalid orderbook depth"),
    ("orderbook:BTCUSDT", "Invalid stream format"),
    ("ticker:DOGEUSDT", "Unknown symbol 'DOGEUSDT'"),
    ("ticker:", "Invalid stream format"),
    ("ticker:BTC-USDT", "Invalid symbol"),
    ("ticker:BTC\u00e9USDT", "Invalid stream format"),
    ("ticker:" + "A" * 100, "Invalid stream format"),
    (42, "stream names are strings"),
    (None, "stream names are strings"),
])
def test_each_bad_name_has_its_own_reason(raw, fragment):
    with pytest.raises(StreamError) as exc:
        streams.parse(raw, SYMBOLS)
    assert fragment in str(exc.value)


def test_symbol_set_is_optional():
    assert streams.parse("ticker:ANYUSDT").symbol == "ANYUSDT"


@pytest.mark.parametrize("stream", [
    Stream("ticker", "BTCUSDT"), Stream("trade", "BTCUSDT"), Stream("liquidation", "BTCUSDT"),
    Stream("orderbook", "BTCUSDT", "50"),
    *[Stream("kline", "BTCUSDT", i) for i in streams.KLINE_INTERVALS],
])
def test_bybit_topic_round_trip(stream):
    assert streams.from_bybit_topic(stream.bybit_topic) == stream


def test_bybit_topics():
    assert Stream("kline", "X", "1h").bybit_topic == "kline.60.X"
    assert Stream("kline", "X", "1d").bybit_topic == "kline.D.X"
    assert Stream("trade", "X").bybit_topic == "publicTrade.X"
    assert Stream("liquidation", "X").bybit_topic == "allLiquidation.X"
    assert streams.from_bybit_topic("bogus.X") is None
    assert streams.from_bybit_topic("kline.7.X") is None


def test_public_name():
    assert streams.public_name(Stream("ticker", "BTCUSDT"), "hotpath.futures") == \
        "hotpath.futures.ticker.BTCUSDT"
    assert streams.public_name(Stream("kline", "BTCUSDT", "1h"), "mudrex.futures") == \
        "mudrex.futures.kline.1h.BTCUSDT"
