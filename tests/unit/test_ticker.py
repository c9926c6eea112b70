from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpath.ingest.ticker import BadTicker, TickerBook, percent
from hotpath.protocol import bybit
from tests.fixtures import raw


def _ticker(name):
    frame = bybit.parse_frame(raw(name))
    return frame, bybit.ticker_decoder.decode(frame.data)


def test_snapshot_normalises_every_client_field():
    frame, data = _ticker("linear_tickers_snapshot.json")
    book = TickerBook()
    state = book.apply(frame.type, data)
    assert state == {
        "symbol": "BTCUSDT", "price": "61874.00", "markPrice": "61875.25",
        "indexPrice": "61903.73", "high24h": "62752.90", "low24h": "61000.10",
        "volume24h": "98430.1050", "change24hPercent": "-0.9772",
        "bid": {"price": "61873.90", "size": "3.783"},
        "ask": {"price": "61874.00", "size": "16.278"},
        "fundingRate": "0.00008055", "openInterest": "58117.022",
        "nextFundingTime": "1715760000000",
    }
    assert list(state) == ["symbol", "price", "markPrice", "indexPrice", "high24h", "low24h",
                           "volume24h", "change24hPercent", "bid", "ask", "fundingRate",
                           "openInterest", "nextFundingTime"]


def test_delta_yields_only_changed_fields_and_merges():
    book = TickerBook()
    book.apply("snapshot", _ticker("linear_tickers_snapshot.json")[1])
    frame, data = _ticker("linear_tickers_delta.json")
    changed = book.apply(frame.type, data)
    # openInterestValue changed too, but it is not a client field.
    assert changed == {"markPrice": "61875.06", "indexPrice": "61903.59",
                       "bid": {"price": "61873.90", "size": "3.543"}}
    state = book.get("BTCUSDT")
    assert state["markPrice"] == "61875.06"
    assert state["ask"] == {"price": "61874.00", "size": "16.278"}
    assert state["price"] == "61874.00"


def test_inverse_fixture_pair_merges_the_same_way():
    book = TickerBook()
    book.apply("snapshot", _ticker("inverse_tickers_snapshot.json")[1])
    frame, data = _ticker("inverse_tickers_delta.json")
    assert book.apply(frame.type, data) == {"bid": {"price": "61891.50", "size": "27634"}}


def test_unchanged_delta_yields_nothing():
    book = TickerBook()
    _, snap = _ticker("linear_tickers_snapshot.json")
    book.apply("snapshot", snap)
    same = bybit.TickerData(symbol="BTCUSDT", lastPrice=snap.lastPrice, bid1Size=snap.bid1Size)
    assert book.apply("delta", same) is None


def test_delta_before_snapshot_is_refused():
    with pytest.raises(BadTicker):
        TickerBook().apply("delta", bybit.TickerData(symbol="BTCUSDT", lastPrice="1"))


@pytest.mark.parametrize("fraction, expected", [
    ("-0.0669", "-6.69"), ("-0.009772", "-0.9772"), ("0.142425", "14.2425"),
    ("0", "0"), ("0.000000", "0.0000"), ("1", "100"), ("-0.000096", "-0.0096"),
    ("0.01", "1"), ("12.5", "1250"),
])
def test_percent_is_exact(fraction, expected):
    assert percent(fraction) == expected


@pytest.mark.parametrize("bad", ["", "abc", "NaN", "Infinity", "1e"])
def test_percent_rejects_non_decimals(bad):
    with pytest.raises(BadTicker):
        percent(bad)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8,
                   min_value=-100, max_value=100))
def test_percent_equals_decimal_times_100(value):
    text = format(value, "f")
    assert Decimal(percent(text)) == Decimal(text) * 100


def test_a_repeated_snapshot_changes_nothing_and_a_different_one_replaces():
    frame, data = _ticker("linear_tickers_snapshot.json")
    book = TickerBook()
    first = book.apply(frame.type, data)
    assert book.apply(frame.type, data) is None  # Bybit re-pushing what it sent
    moved = bybit.ticker_decoder.decode(bytes(frame.data).replace(b'"61874.00"', b'"61880.00"'))
    again = book.apply(frame.type, moved)
    assert again is not None and again["price"] == "61880.00" and again != first
    assert book.get("BTCUSDT") == again
