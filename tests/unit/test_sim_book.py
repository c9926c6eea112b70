"""Integer formatting and the order book with its depth-N diffs (pure, no event loop)."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hotpath.sim.book import Book, SideView, Watch
from hotpath.sim.numfmt import fixed, formatter, parse, ratio, rescale, stripped


def test_fixed_formats_like_bybit() -> None:
    assert fixed(3024720, 2) == "30247.20"
    assert fixed(224, 3) == "0.224"
    assert fixed(-9772, 6) == "-0.009772"
    assert fixed(6198, 0) == "6198"
    assert fixed(5, 4) == "0.0005"


def test_stripped_drops_trailing_zeros() -> None:
    assert stripped(1667700, 2) == "16677"
    assert stripped(1664950, 2) == "16649.5"
    assert stripped(0, 4) == "0"
    assert stripped(10000, 8) == "0.0001"


def test_rescale_and_ratio_round_half_away_from_zero() -> None:
    assert rescale(12345, 4, 2) == 123
    assert rescale(12350, 4, 2) == 124
    assert rescale(-12350, 4, 2) == -124
    assert rescale(7, 1, 3) == 700
    assert ratio(-1, 3, 6) == -333333
    assert ratio(2, 3, 2) == 67
    assert ratio(5, 0, 2) == 0


@given(st.integers(-10**15, 10**15), st.integers(0, 8))
def test_fixed_is_exact_and_parse_inverts_it(units: int, scale: int) -> None:
    text = fixed(units, scale)
    assert Decimal(text) == Decimal(units).scaleb(-scale)
    assert parse(text) == (units, scale)
    assert Decimal(stripped(units, scale)) == Decimal(text)


def test_formatter_multiplies_and_maps_zero() -> None:
    lots = formatter(3, multiplier=5, zero="0")
    assert lots(0) == "0"
    assert [lots(n) for n in (1, 2, 3, 4, 200_000)] == ["0.005", "0.010", "0.015", "0.020", "1000.000"]
    assert formatter(2)(0) == "0.00" and formatter(0, 100)(7) == "700"


@given(st.integers(0, 10**15), st.integers(0, 8), st.integers(1, 100))
def test_formatter_agrees_with_fixed(value: int, scale: int, multiplier: int) -> None:
    assert formatter(scale, multiplier)(value) == fixed(value * multiplier, scale)


def test_book_refuses_to_cross_and_deletes_levels() -> None:
    book = Book()
    assert book.set_bid(100, 5) and book.set_ask(101, 7)
    assert not book.set_bid(101, 1) and not book.set_ask(100, 1)
    assert book.set_bid(99, 2) and book.set_ask(103, 4)
    assert book.bids == [99, 100] and book.asks == [101, 103]
    assert book.set_bid(100, 0) and not book.set_bid(100, 0)
    assert book.best_bid() == 99 and book.check() is None


def test_trim_drops_the_far_end() -> None:
    book = Book()
    for price in range(90, 100):
        book.set_bid(price, 1)
    for price in range(100, 110):
        book.set_ask(price, 1)
    book.trim(3)
    assert book.bids == [97, 98, 99] and book.asks == [100, 101, 102]
    assert set(book.bid_size) == {97, 98, 99} and book.check() is None


def _full_view(book: Book, depth: int) -> tuple[dict[int, int], dict[int, int]]:
    """The top ``depth`` levels per side, worked out from the whole book."""
    return ({p: book.bid_size[p] for p in book.bids[-depth:]} if depth else {},
            {p: book.ask_size[p] for p in book.asks[:depth]})


def _apply(view: dict[int, int], changes: list[tuple[int, int]]) -> dict[int, int]:
    out = dict(view)
    for price, lots in changes:
        if lots == 0:
            assert price in out, "delete of a level the client does not have"
            del out[price]
        else:
            out[price] = lots
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([1, 3, 10]), st.integers(1, 40))
def test_diffs_rebuild_the_top_n_view_exactly(seed: int, depth: int, rounds: int) -> None:
    """Random mutations, then a diff: applying it to the client's view gives the book."""
    rng = random.Random(seed)
    book, watch = Book(), Watch()
    book.watches.append(watch)
    for price in range(1000, 1012):
        book.set_bid(price, rng.randint(1, 9))
        book.set_ask(price + 13, rng.randint(1, 9))
    watch.bids.clear(), watch.asks.clear()  # a new view needs no touched prices
    sent_bids, sent_asks = SideView(depth, descending=True), SideView(depth, descending=False)
    client_bids: dict[int, int] = {}
    client_asks: dict[int, int] = {}
    for _ in range(rounds):
        for _ in range(rng.randint(0, 6)):
            side = book.set_bid if rng.random() < 0.5 else book.set_ask
            side(rng.randint(990, 1035), rng.choice([0, 0, rng.randint(1, 9)]))
        if rng.random() < 0.2:
            book.trim(rng.randint(2, 12))
        bids = sent_bids.diff(book.bids, book.bid_size, watch.bids)
        asks = sent_asks.diff(book.asks, book.ask_size, watch.asks)
        watch.bids.clear(), watch.asks.clear()
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        client_bids, client_asks = _apply(client_bids, bids), _apply(client_asks, asks)
        assert (client_bids, client_asks) == _full_view(book, depth)
        assert (sent_bids.levels, sent_asks.levels) == (client_bids, client_asks)
        assert book.check() is None


def test_unchanged_book_gives_an_empty_diff() -> None:
    book = Book()
    book.set_bid(10, 1)
    view = SideView(5, descending=True)
    assert view.diff(book.bids, book.bid_size, ()) == [(10, 1)]  # first diff: whole window
    assert view.diff(book.bids, book.bid_size, ()) == []
    book.set_bid(10, 1)  # same size again: touched, but nothing to send
    assert view.diff(book.bids, book.bid_size, {10}) == []
    view.levels.update({3: 3, 2: 2})
    assert view.ordered() == [(10, 1), (3, 3), (2, 2)]


def test_untouched_levels_enter_and_leave_across_the_window_edge() -> None:
    """A deletion inside the window pulls the next level in, an insertion pushes the last
    one out: neither of those levels was touched, only the window's edge moved."""
    book = Book()
    for price in range(100, 110):
        book.set_ask(price, price)
    view = SideView(3, descending=False)
    assert view.diff(book.asks, book.ask_size, ()) == [(100, 100), (101, 101), (102, 102)]
    book.set_ask(101, 0)
    assert view.diff(book.asks, book.ask_size, {101}) == [(101, 0), (103, 103)]
    book.set_bid(99, 5)  # the other side: nothing here changes
    assert view.diff(book.asks, book.ask_size, ()) == []
    book.trim(2)  # drops 103..109 untouched by anyone's set: trimmed prices count as touched
    assert view.diff(book.asks, book.ask_size, set(range(103, 110))) == [(103, 0)]
