"""One symbol's order book as integers, and the depth-N view diffs Bybit publishes.

Prices are price units on the tick grid, sizes are lots (multiples of the qty step).
Bids are kept ascending with the best bid last, asks ascending with the best ask first,
so both top-N views are C-level slices. The book is never crossed: every mutation that
could cross it is refused here, whatever the caller asks.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable

BUY = "Buy"
SELL = "Sell"


class Watch:
    """Prices touched (set, resized, deleted or trimmed) since a publisher last looked,
    per side: with the window edges, all a :class:`SideView` needs to diff."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: set[int] = set()
        self.asks: set[int] = set()


class Book:
    """Price levels of one symbol; every mutation is reported to the watches."""

    __slots__ = ("bids", "asks", "bid_size", "ask_size", "watches")

    def __init__(self) -> None:
        self.bids: list[int] = []  # ascending; best bid is bids[-1]
        self.asks: list[int] = []  # ascending; best ask is asks[0]
        self.bid_size: dict[int, int] = {}
        self.ask_size: dict[int, int] = {}
        self.watches: list[Watch] = []

    def best_bid(self) -> int | None:
        return self.bids[-1] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks[0] if self.asks else None

    def set_bid(self, price: int, lots: int) -> bool:
        """Set (lots > 0) or delete (lots == 0) a bid level; False if it would cross."""
        if lots <= 0:
            return self._delete(self.bids, self.bid_size, price, is_bid=True)
        if self.asks and price >= self.asks[0]:
            return False
        sizes = self.bid_size
        if price not in sizes:
            insort(self.bids, price)
        sizes[price] = lots
        for watch in self.watches:
            watch.bids.add(price)
        return True

    def set_ask(self, price: int, lots: int) -> bool:
        """Set (lots > 0) or delete (lots == 0) an ask level; False if it would cross."""
        if lots <= 0:
            return self._delete(self.asks, self.ask_size, price, is_bid=False)
        if self.bids and price <= self.bids[-1]:
            return False
        sizes = self.ask_size
        if price not in sizes:
            insort(self.asks, price)
        sizes[price] = lots
        for watch in self.watches:
            watch.asks.add(price)
        return True

    def _delete(self, prices: list[int], sizes: dict[int, int], price: int, is_bid: bool) -> bool:
        if sizes.pop(price, None) is None:
            return False
        del prices[bisect_left(prices, price)]
        for watch in self.watches:
            (watch.bids if is_bid else watch.asks).add(price)
        return True

    def trim(self, cap: int) -> None:
        """Keep at most ``cap`` levels per side, dropping the far end."""
        if len(self.bids) > cap:
            dropped = self.bids[: len(self.bids) - cap]
            for price in dropped:
                del self.bid_size[price]
            del self.bids[: len(self.bids) - cap]
            for watch in self.watches:
                watch.bids.update(dropped)
        if len(self.asks) > cap:
            dropped = self.asks[cap:]
            for price in dropped:
                del self.ask_size[price]
            del self.asks[cap:]
            for watch in self.watches:
                watch.asks.update(dropped)

    def check(self) -> str | None:
        """Invariant check for tests: None when valid, else what is wrong."""
        if self.bids != sorted(set(self.bids)) or self.asks != sorted(set(self.asks)):
            return "levels not strictly sorted"
        if set(self.bids) != set(self.bid_size) or set(self.asks) != set(self.ask_size):
            return "level index and sizes disagree"
        if any(v <= 0 for v in self.bid_size.values()) or any(v <= 0 for v in self.ask_size.values()):
            return "non-positive size"
        if self.bids and self.asks and self.bids[-1] >= self.asks[0]:
            return f"crossed: bid {self.bids[-1]} >= ask {self.asks[0]}"
        return None


Level = tuple[int, int]  # (price units, lots); lots == 0 deletes the level


class SideView:
    """One side's top-``depth`` levels as last sent, brought up to date by :meth:`diff`.

    The window is a run of consecutive levels, so its *edge* (its worst price) says which
    levels are in it. A level nobody touched keeps its size and its place; it enters or
    leaves the window only if it lies between the old and the new edge. A diff therefore
    looks at the touched prices and at the levels between the two edges, never at the
    whole view: a few levels per push instead of ``depth``.
    """

    __slots__ = ("levels", "depth", "descending", "edge")

    def __init__(self, depth: int, descending: bool) -> None:
        self.levels: dict[int, int] = {}  # price -> lots, as the subscribers have it
        self.depth = depth
        self.descending = descending  # bids: best (highest) first
        # Worst price in the window; an empty window's edge lies beyond every price, so
        # that the first diff finds the whole window between the edges.
        self.edge: float = math.inf if descending else -math.inf

    def diff(self, prices: list[int], sizes: dict[int, int], touched: Iterable[int]) -> list[Level]:
        """Changes that turn the view into the top ``depth`` of ``prices`` (the side,
        ascending) and apply them to it. ``touched`` holds every price mutated since the
        last diff. Changes come in book order (best first); a level that was deleted or
        fell out of the window is sent with size 0, as Bybit does."""
        old, depth, descending = self.edge, self.depth, self.descending
        full = len(prices) >= depth
        if descending:
            edge: float = prices[-depth] if full else prices[0] if prices else math.inf
        else:
            edge = prices[depth - 1] if full else prices[-1] if prices else -math.inf
        candidates = touched
        if edge != old:
            self.edge = edge
            low, high = (old, edge) if old < edge else (edge, old)
            cut = bisect_left if descending else bisect_right
            candidates = [*touched, *prices[cut(prices, low):cut(prices, high)]]
        levels = self.levels
        changes: dict[int, int] = {}
        for price in candidates:
            lots = sizes.get(price, 0) if (price >= edge if descending else price <= edge) else 0
            if lots != levels.get(price, 0):
                changes[price] = lots
                if lots:
                    levels[price] = lots
                else:
                    del levels[price]
        return sorted(changes.items(), reverse=descending)

    def ordered(self) -> list[Level]:
        """The view in book order, best first."""
        return sorted(self.levels.items(), reverse=self.descending)
