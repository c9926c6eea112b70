"""OrderBook against a plain reference on random snapshot/delta sequences.

The sequences include gaps, restarts (u = 1), deletes of absent levels, zeros spelled
"0.000", prices with more decimals than before, one price spelled two ways, malformed
prices, crossing levels, re-sent identical snapshots and more levels than the depth.
"""

import re
from decimal import Decimal

import msgspec
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hotpath.ingest.book import BookChange, OrderBook, Resync
from hotpath.protocol.bybit_topics import BookData


class Bad(Exception):
    pass


class Reference:
    """Bybit's rules applied one level at a time to plain dicts, sorted when read."""

    def __init__(self, depth):
        self.depth = depth
        self.sides = {"bids": {}, "asks": {}}
        self.u = 0
        self.synced = False
        self.pending = False

    def best_first(self, name):
        return sorted(self.sides[name].items(), key=lambda level: Decimal(level[0]),
                      reverse=name == "bids")

    def apply(self, kind, u, bids, asks):
        if kind == "snapshot":
            return self._snapshot(u, bids, asks)
        if not self.synced:
            return None if self.pending else self._resync("delta-before-snapshot")
        if u != self.u + 1:
            return self._resync("gap")
        self.u = u
        try:
            changed = self._levels("bids", bids) | self._levels("asks", asks)
        except Bad:
            return self._resync("bad-level")
        if self._crossed():
            return self._resync("crossed")
        return ("delta",) if changed else None

    def _snapshot(self, u, bids, asks):
        if (self.synced and u == self.u and self.best_first("bids") == bids
                and self.best_first("asks") == asks):
            return None
        self.sides = {"bids": {}, "asks": {}}
        self.synced = False
        try:
            for name, levels in (("bids", bids), ("asks", asks)):
                self._check_snapshot_prices(levels)
                self._levels(name, levels)
        except Bad:
            return self._resync("bad-level")
        if self._crossed():
            return self._resync("crossed")
        self.u, self.synced, self.pending = u, True, False
        return ("snapshot", u == 1)

    def _check_snapshot_prices(self, levels):
        # A snapshot may not name one number two ways, even with size 0.
        spellings = {price for price, _ in levels}
        for price in spellings:
            self._check_format(price)
        if len({Decimal(price) for price in spellings}) < len(spellings):
            raise Bad

    @staticmethod
    def _check_format(price):
        if not re.fullmatch(r"[0-9]*\.?[0-9]*", price) or not re.search("[0-9]", price):
            raise Bad

    def _levels(self, name, levels):
        side = self.sides[name]
        changed = False
        for price, size in levels:
            if price not in side:
                self._check_format(price)
                if any(Decimal(held) == Decimal(price) for held in side):
                    raise Bad
            if Decimal(size) == 0:
                changed |= side.pop(price, None) is not None
            else:
                side[price] = size
                changed = True
        kept = dict(self.best_first(name)[:self.depth])
        changed |= len(kept) < len(side)
        self.sides[name] = kept
        return changed

    def _crossed(self):
        bids, asks = self.sides["bids"], self.sides["asks"]
        return bool(bids and asks) and (max(map(Decimal, bids)) >= min(map(Decimal, asks)))

    def _resync(self, reason):
        self.sides = {"bids": {}, "asks": {}}
        self.synced, self.pending = False, True
        return ("resync", reason)


def outcome(result):
    if result is None:
        return None
    if isinstance(result, Resync):
        return ("resync", result.reason)
    assert isinstance(result, BookChange)
    return ("snapshot", result.reset) if result.snapshot else ("delta",)


def spell(number, odd):
    text = format(number.normalize(), "f")
    if odd == 1:  # the same number with a trailing zero: "1.5" -> "1.50", "2" -> "2.0"
        return text + ("0" if "." in text else ".0")
    if odd == 2:
        return text.replace(".", "e") if "." in text else text + "e0"
    return text


def prices(low, high, odd):
    # Quarter ticks on [low, high]; one in ``odd`` spelled a second way or malformed.
    return st.builds(spell, st.integers(low * 4, high * 4).map(lambda n: Decimal(n) / 4),
                     st.sampled_from([0] * (odd - 2) + [1, 2]))


SIZES = st.sampled_from(["0", "0", "0", "1", "2.5", "0.25", "7", "13", "0.000"])


def levels(low, high, most, odd):
    return st.lists(st.tuples(prices(low, high, odd), SIZES), max_size=most)


DELTA = st.tuples(st.just("delta"), st.sampled_from(["next"] * 15 + ["skip", "same", "one"]),
                  levels(1, 21, 6, 60), levels(19, 40, 6, 60))
SNAPSHOT = st.tuples(st.just("snapshot"), st.sampled_from(["next", "next", "one", "same"]),
                     levels(1, 20, 12, 300), levels(20, 40, 12, 300))
AGAIN = st.tuples(st.just("again"), st.just("same"), st.just([]), st.just([]))
MESSAGE = st.one_of(DELTA, DELTA, DELTA, DELTA, DELTA, SNAPSHOT, AGAIN)
SEQUENCES = st.one_of(
    st.lists(MESSAGE, min_size=1, max_size=40),
    st.builds(lambda first, rest: [first, *rest], SNAPSHOT, st.lists(MESSAGE, max_size=40)),
)


class Client:
    def __init__(self, data):
        self.sides = {name: dict(data[name]) for name in ("bids", "asks")}

    def apply(self, data):
        for name in ("bids", "asks"):
            for price, size in data[name]:
                if size == "0":
                    self.sides[name].pop(price, None)
                else:
                    self.sides[name][price] = size

    def best_first(self, name):
        return sorted(self.sides[name].items(), key=lambda level: Decimal(level[0]),
                      reverse=name == "bids")


def check_invariants(book):
    for side in (book.bids, book.asks):
        assert list(side.keys) == sorted(set(side.keys))
        assert len(side.prices) == len(side.keys) == len(side.sizes)
        assert set(side.prices) == set(side.sizes)
        assert all(book._key(side, price) == key for key, price in zip(side.keys, side.prices))
        assert len(side.keys) <= book.depth


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 3, 5, 50]), SEQUENCES)
def test_book_matches_reference_and_clients_follow_it(depth, messages):
    book, reference = OrderBook("T", depth), Reference(depth)
    client = None
    u = 0
    for kind, mode, bids, asks in messages:
        u = {"next": u + 1, "skip": u + 2, "same": u, "one": 1}[mode]
        if kind == "again":  # Bybit re-pushing the book it holds (level-1 heartbeat)
            kind, u = "snapshot", reference.u
            bids, asks = reference.best_first("bids"), reference.best_first("asks")
        result = book.apply(kind, BookData("T", bids, asks, u))
        expected = reference.apply(kind, u, bids, asks)
        assert outcome(result) == expected
        event(f"{kind}: {expected}")
        check_invariants(book)
        if reference.synced:
            assert book.snapshot() == {"symbol": "T", "bids": reference.best_first("bids"),
                                       "asks": reference.best_first("asks"), "u": reference.u}
        else:
            assert book.snapshot() is None
        # What a client sees: JSON of the emitted data, applied in order.
        if isinstance(result, Resync):
            client = None
        elif isinstance(result, BookChange):
            data = msgspec.json.decode(msgspec.json.encode(result.data))
            if result.snapshot:
                client = Client(data)
            else:
                assert client is not None
                client.apply(data)
        if client is not None:
            for name in ("bids", "asks"):
                assert [tuple(level) for level in client.best_first(name)] == \
                    book.levels(name)
