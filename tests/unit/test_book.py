import json
from decimal import Decimal

import msgspec
import pytest

from hotpath.ingest.book import (BAD_LEVEL, CROSSED, GAP, NO_SNAPSHOT, BookChange, OrderBook,
                                 Resync, is_zero, parse_price)
from hotpath.protocol import bybit
from hotpath.protocol.bybit_topics import BookData, book_decoder
from tests.fixtures import BYBIT, raw

SEQUENCE = "orderbook_500_linear_XRPUSDT_2024-12-01_sequence.jsonl"


def _frames(name):
    for line in (BYBIT / name).read_bytes().splitlines():
        frame = bybit.parse_frame(line)
        yield frame, _data(frame)


def _fixture(name):
    frame = bybit.parse_frame(raw(name))
    return frame, _data(frame)


def _data(frame):
    """A compact book frame is decoded in one pass (bybit.parse_frame); others are not."""
    return frame.data if isinstance(frame, bybit.BookFrame) else book_decoder.decode(frame.data)


def _book(bids, asks, u=1, depth=50, symbol="BTCUSDT"):
    book = OrderBook(symbol, depth)
    result = book.apply("snapshot", BookData(symbol, bids, asks, u))
    assert isinstance(result, BookChange)
    return book


def _plain(data):
    """Client data as it reaches a client: JSON arrays, not tuples."""
    return json.loads(msgspec.json.encode(data))


class PlainBook:
    """The obvious reference: one dict per side, sorted only when read."""

    def __init__(self, data):
        self.sides = {"bids": dict(data["b"]), "asks": dict(data["a"])}

    def apply_delta(self, data):
        for name, levels in (("bids", data["b"]), ("asks", data["a"])):
            side = self.sides[name]
            for price, size in levels:
                if size == "0":
                    side.pop(price, None)
                else:
                    side[price] = size

    def levels(self, name):
        return sorted(self.sides[name].items(), key=lambda level: Decimal(level[0]),
                      reverse=name == "bids")


class Client:
    """A client applying what the book emitted, keyed by the price string."""

    def __init__(self):
        self.sides = {"bids": {}, "asks": {}}

    def apply(self, change):
        data = _plain(change.data)
        if change.snapshot:
            self.sides = {name: dict(data[name]) for name in ("bids", "asks")}
            return
        for name in ("bids", "asks"):
            for price, size in data[name]:
                if size == "0":
                    self.sides[name].pop(price, None)
                else:
                    self.sides[name][price] = size

    def levels(self, name):
        return sorted(self.sides[name].items(), key=lambda level: Decimal(level[0]),
                      reverse=name == "bids")


# -- the real XRPUSDT sequence --------------------------------------------------------


def test_real_sequence_replays_exactly():
    lines = [json.loads(line) for line in (BYBIT / SEQUENCE).read_bytes().splitlines()]
    reference = PlainBook(lines[0]["data"])
    book, client = OrderBook("XRPUSDT", 500), Client()
    previous_u = None
    for line, (frame, data) in zip(lines, _frames(SEQUENCE)):
        if previous_u is not None:
            assert data.update_id == previous_u + 1
            reference.apply_delta(line["data"])
        previous_u = data.update_id
        change = book.apply(frame.type, data)
        assert isinstance(change, BookChange)
        assert change.snapshot == (frame.type == "snapshot")
        client.apply(change)
        for name in ("bids", "asks"):
            expected = reference.levels(name)
            assert book.levels(name) == expected
            assert client.levels(name) == expected
            assert len(expected) == 500  # Bybit keeps the window full: trimming never fires
        assert Decimal(book.levels("bids", 1)[0][0]) < Decimal(book.levels("asks", 1)[0][0])
        assert book.update_id == data.update_id
    assert previous_u == 20254918


def test_real_snapshot_is_sorted_client_data():
    frame, data = next(_frames(SEQUENCE))
    change = OrderBook("XRPUSDT", 500).apply(frame.type, data)
    assert isinstance(change, BookChange) and change.snapshot and not change.reset
    snapshot = _plain(change.data)
    assert set(snapshot) == {"symbol", "bids", "asks", "u"}
    assert snapshot["symbol"] == "XRPUSDT" and snapshot["u"] == 20254869
    assert snapshot["bids"][:2] == [["1.9531", "6203"], ["1.9530", "2409"]]
    assert snapshot["bids"] == _plain(data.bids)  # Bybit's order is already best first
    assert snapshot["asks"] == _plain(data.asks)


def test_real_delta_goes_to_the_client_as_sent():
    frames = _frames(SEQUENCE)
    book = OrderBook("XRPUSDT", 500)
    frame, data = next(frames)
    book.apply(frame.type, data)
    frame, data = next(frames)
    change = book.apply(frame.type, data)
    assert _plain(change.data) == _plain({"bids": data.bids, "asks": data.asks})
    assert _plain(change.data)["bids"][0] == ["1.9531", "6198"]


# -- the docs fixtures -----------------------------------------------------------------


def test_orderbook_50_snapshot_fixture():
    frame, data = _fixture("orderbook_50_snapshot.json")
    assert (data.symbol, data.update_id, data.seq) == ("BTCUSDT", 18521288, 7961638724)
    book = OrderBook("BTCUSDT", 50)
    change = book.apply(frame.type, data)
    assert change == BookChange(True, {
        "symbol": "BTCUSDT",
        "bids": [("16493.50", "0.006"), ("16493.00", "0.100")],
        "asks": [("16611.00", "0.029"), ("16612.00", "0.213")],
        "u": 18521288}, False)
    assert book.levels("bids", 1) == [("16493.50", "0.006")]
    assert book.levels("asks") == [("16611.00", "0.029"), ("16612.00", "0.213")]


def test_orderbook_50_delta_fixture():
    frame, data = _fixture("orderbook_50_delta.json")
    assert frame.type == "delta" and data.update_id == 177400507
    # The docs delta follows no published snapshot; this one holds the levels it touches.
    book = _book(bids=[("30247.20", "1"), ("30245.40", "1"), ("30240.00", "2"),
                       ("30230.00", "3")],
                 asks=[("30248.70", "1"), ("30249.30", "1"), ("30249.60", "2"),
                       ("30260.00", "4")], u=177400506)
    change = book.apply(frame.type, data)
    assert change == BookChange(False, {
        "bids": [("30247.20", "30.028"), ("30245.40", "0.224"), ("30242.10", "1.593"),
                 ("30240.30", "1.305"), ("30240.00", "0")],
        "asks": [("30248.70", "0"), ("30249.30", "0.892"), ("30249.50", "1.778"),
                 ("30249.60", "0"), ("30251.90", "2.947"), ("30252.20", "0.659"),
                 ("30252.50", "4.591")]})
    assert book.levels("bids") == [("30247.20", "30.028"), ("30245.40", "0.224"),
                                   ("30242.10", "1.593"), ("30240.30", "1.305"),
                                   ("30230.00", "3")]
    assert book.levels("asks", 3) == [("30249.30", "0.892"), ("30249.50", "1.778"),
                                      ("30251.90", "2.947")]
    assert book.update_id == 177400507


# -- sequence rules --------------------------------------------------------------------


def test_delta_before_snapshot_asks_for_resync_once():
    book = OrderBook("BTCUSDT", 50)
    assert book.apply("delta", BookData("BTCUSDT", [("1", "1")], [], 5)) == \
        Resync(NO_SNAPSHOT, 5, 0)
    assert book.apply("delta", BookData("BTCUSDT", [("1", "1")], [], 6)) is None
    assert book.ignored == 1 and book.snapshot() is None


def test_gap_drops_the_book_until_the_next_snapshot():
    book = _book([("10", "1")], [("11", "1")], u=100)
    assert book.apply("delta", BookData("BTCUSDT", [("10", "2")], [], 102)) == \
        Resync(GAP, 102, 101)
    assert book.snapshot() is None and book.levels("bids") == []
    assert book.apply("delta", BookData("BTCUSDT", [("10", "3")], [], 103)) is None
    change = book.apply("snapshot", BookData("BTCUSDT", [("9", "1")], [("12", "1")], 200))
    assert isinstance(change, BookChange) and change.snapshot
    assert book.apply("delta", BookData("BTCUSDT", [("9", "5")], [], 201)) == \
        BookChange(False, {"bids": [("9", "5")], "asks": []})


@pytest.mark.parametrize("u", [100, 99, 1])
def test_repeated_old_or_restart_delta_ids_are_gaps(u):
    book = _book([("10", "1")], [("11", "1")], u=100)
    assert book.apply("delta", BookData("BTCUSDT", [], [], u)) == Resync(GAP, u, 101)


def test_snapshot_with_u_1_is_a_reset():
    book = _book([("10", "1")], [("11", "1")], u=5000)
    change = book.apply("snapshot", BookData("BTCUSDT", [("20", "1")], [("21", "1")], 1))
    assert isinstance(change, BookChange) and change.snapshot and change.reset
    assert book.update_id == 1 and book.levels("bids") == [("20", "1")]
    assert isinstance(book.apply("delta", BookData("BTCUSDT", [], [("22", "1")], 2)),
                      BookChange)


def test_unchanged_level_1_snapshot_is_not_repeated():
    book = _book([("10", "1")], [("11", "1")], u=7, depth=1)
    same = BookData("BTCUSDT", [("10", "1")], [("11", "1")], 7)
    assert book.apply("snapshot", same) is None
    moved = BookData("BTCUSDT", [("10", "2")], [("11", "1")], 8)
    assert book.apply("snapshot", moved).data["bids"] == [("10", "2")]


def test_crossing_delta_asks_for_resync():
    book = _book([("10", "1")], [("11", "1")], u=1)
    assert book.apply("delta", BookData("BTCUSDT", [("11", "1")], [], 2)) == \
        Resync(CROSSED, 2, 0)
    assert book.snapshot() is None


def test_crossed_snapshot_asks_for_resync():
    book = OrderBook("BTCUSDT", 50)
    assert book.apply("snapshot", BookData("BTCUSDT", [("11", "1")], [("10", "1")], 3)) == \
        Resync(CROSSED, 3, 0)
    assert book.apply("delta", BookData("BTCUSDT", [], [], 4)) is None


def test_a_delta_may_move_levels_across_the_spread():
    book = _book([("10", "1"), ("9", "1")], [("11", "1"), ("12", "1")], u=1)
    change = book.apply("delta", BookData("BTCUSDT", [("11", "4")], [("11", "0")], 2))
    assert change == BookChange(False, {"bids": [("11", "4")], "asks": [("11", "0")]})
    assert book.levels("bids", 1) == [("11", "4")] and book.levels("asks", 1) == [("12", "1")]


def test_reset_forgets_the_book():
    book = _book([("10", "1")], [("11", "1")], u=1)
    book.reset()
    assert book.snapshot() is None
    assert book.apply("delta", BookData("BTCUSDT", [], [], 2)) == Resync(NO_SNAPSHOT, 2, 0)


# -- levels ----------------------------------------------------------------------------


def test_delete_of_an_absent_level_is_ignored():
    book = _book([("10", "1")], [("11", "1")])
    assert book.apply("delta", BookData("BTCUSDT", [("9", "0")], [], 2)) is None
    change = book.apply("delta", BookData("BTCUSDT", [("10", "2"), ("8", "0"), ("9", "1")],
                                          [], 3))
    assert change.data == {"bids": [("10", "2"), ("9", "1")], "asks": []}


def test_zero_spelled_with_decimals_deletes_and_reads_0():
    book = _book([("10", "1"), ("9", "1")], [("11", "1")])
    change = book.apply("delta", BookData("BTCUSDT", [("9", "0.000")], [], 2))
    assert change.data == {"bids": [("9", "0")], "asks": []}
    assert book.levels("bids") == [("10", "1")]


def test_prices_compare_as_numbers_not_strings():
    book = _book([("9.5", "1"), ("10.0", "1"), ("100.0", "1")],
                 [("101.5", "1"), ("1000.0", "1")])
    assert [p for p, _ in book.levels("bids")] == ["100.0", "10.0", "9.5"]
    assert [p for p, _ in book.levels("asks")] == ["101.5", "1000.0"]


def test_more_decimals_rescale_the_book():
    book = _book([("1.5", "1"), ("1.4", "1")], [("1.7", "1")])
    book.apply("delta", BookData("BTCUSDT", [("1.55", "2"), ("1.451", "3")], [("1.65", "1")],
                                 2))
    assert book.levels("bids") == [("1.55", "2"), ("1.5", "1"), ("1.451", "3"), ("1.4", "1")]
    assert book.levels("asks") == [("1.65", "1"), ("1.7", "1")]
    book.apply("delta", BookData("BTCUSDT", [("1.5", "0")], [("1.7", "0")], 3))
    assert book.levels("bids", 2) == [("1.55", "2"), ("1.451", "3")]
    assert book.levels("asks") == [("1.65", "1")]


@pytest.mark.parametrize("bids", [[("1.50", "1")], [("1.50", "0")]])
def test_one_price_spelled_two_ways_is_a_bad_level(bids):
    book = _book([("1.5", "1")], [("1.7", "1")])
    assert book.apply("delta", BookData("BTCUSDT", bids, [], 2)) == Resync(BAD_LEVEL, 2, 0)


@pytest.mark.parametrize("price", ["", ".", "1.2.3", "-1", "+1", " 1", "1e5", "1_0", "NaN",
                                   "١"])
def test_malformed_prices_are_bad_levels(price):
    book = _book([("1", "1")], [("3", "1")])
    assert book.apply("delta", BookData("BTCUSDT", [(price, "1")], [], 2)) == \
        Resync(BAD_LEVEL, 2, 0)
    assert OrderBook("X", 5).apply("snapshot", BookData("X", [(price, "1")], [], 1)) == \
        Resync(BAD_LEVEL, 1, 0)


# 20 digits: beyond the 64-bit keys a side keeps its order in
HUGE = "99999999999999999999"


def test_a_price_whose_key_does_not_fit_is_a_bad_level():
    book = _book([("1.5", "1")], [("1.7", "1")])
    assert book.apply("delta", BookData("BTCUSDT", [], [(HUGE, "1")], 2)) == \
        Resync(BAD_LEVEL, 2, 0)
    assert OrderBook("X", 5).apply("snapshot", BookData("X", [("1", "1")], [(HUGE, "1")], 1)) \
        == Resync(BAD_LEVEL, 1, 0)


def test_more_decimals_that_push_held_keys_out_of_range_are_a_bad_level():
    book = _book([("1", "1")], [("99999999999", "1")])
    assert book.apply("delta", BookData("BTCUSDT", [("1.000000001", "1")], [], 2)) == \
        Resync(BAD_LEVEL, 2, 0)
    assert book.apply("snapshot", BookData("BTCUSDT", [("1", "2")], [("2", "1")], 3)).snapshot
    assert book.levels("bids") == [("1", "2")]


@pytest.mark.parametrize("bids", [[("1.5", "1"), ("1.50", "2")], [("1.5", "1"), ("1.50", "0")]])
def test_snapshot_naming_one_price_two_ways_is_a_bad_level(bids):
    book = OrderBook("BTCUSDT", 50)
    assert book.apply("snapshot", BookData("BTCUSDT", bids, [], 9)) == Resync(BAD_LEVEL, 9, 0)


def test_snapshot_price_listed_twice_keeps_its_last_size_and_zeros_are_left_out():
    book = _book([("10", "1"), ("9", "0"), ("10", "2"), ("8", "0.000")], [("11", "1")])
    assert book.levels("bids") == [("10", "2")]


def test_depth_is_kept_and_trimmed_levels_are_sent_as_removed():
    book = _book([("10", "1"), ("9", "1"), ("8", "1")], [("11", "1")], depth=3)
    change = book.apply("delta", BookData("BTCUSDT", [("9.5", "2")], [], 2))
    assert change.data == {"bids": [("9.5", "2"), ("8", "0")], "asks": []}
    assert book.levels("bids") == [("10", "1"), ("9.5", "2"), ("9", "1")]


def test_a_level_inserted_and_trimmed_at_once_is_not_sent_as_an_insert():
    book = _book([("10", "1"), ("9", "1"), ("8", "1")], [("11", "1")], depth=3)
    change = book.apply("delta", BookData("BTCUSDT", [("7", "2")], [], 2))
    assert change.data == {"bids": [("7", "0")], "asks": []}
    assert book.levels("bids") == [("10", "1"), ("9", "1"), ("8", "1")]


def test_snapshot_deeper_than_the_depth_is_trimmed():
    book = _book([("10", "1"), ("9", "1"), ("8", "1")], [("11", "1"), ("12", "1")], depth=2)
    assert book.snapshot() == {"symbol": "BTCUSDT", "bids": [("10", "1"), ("9", "1")],
                               "asks": [("11", "1"), ("12", "1")], "u": 1}


def test_snapshot_levels_are_sorted_whatever_the_order_received():
    book = _book([("9", "1"), ("10", "2")], [("12", "1"), ("11", "3")])
    assert book.snapshot()["bids"] == [("10", "2"), ("9", "1")]
    assert book.snapshot()["asks"] == [("11", "3"), ("12", "1")]


def test_levels_rejects_unknown_sides():
    with pytest.raises(ValueError):
        OrderBook("BTCUSDT", 1).levels("buy")


@pytest.mark.parametrize("text, expected", [
    ("1.9531", (19531, 4)), ("16493.50", (1649350, 2)), ("10", (10, 0)), ("0.5", (5, 1)),
    (".5", (5, 1)), ("1.", (1, 0)),
])
def test_parse_price(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("size, zero", [("0", True), ("0.000", True), ("00", True),
                                        ("0.001", False), ("10", False), ("1", False),
                                        ("0.5", False)])
def test_is_zero(size, zero):
    assert is_zero(size) is zero
