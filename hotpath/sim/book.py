"""One symbol's order book as integers, and the depth-N view diffs Bybit publishes.

Prices are price units on the tick grid, sizes are lots (multiples of the qty step).
Bids are kept ascending with the best bid last, asks ascending with the best ask first,
so both top-N views are C-level slices. The book is never crossed: every mutation that
could cross it is refused here, whatever the caller asks.
"""

from __future__ import annotations

from bisect import bisect_left, insort

BUY = "Buy"
SELL = "Sell"


class Watch:
    """Prices touched since a publisher last looked, per side, and whether levels were
    added or removed (only then can the top-N window have shifted)."""

    __slots__ = ("bids", "asks", "bids_moved", "asks_moved")

    def __init__(self) -> None:
        self.bids: set[int] = set()
        self.asks: set[int] = set()
        self.bids_moved = True
        self.asks_moved = True


class Book:
    """Price levels of one symbol; every mutation is reported to the watches."""

    __slots__ = ("bids", "asks", "bid_size", "ask_size", "bid_version", "ask_version", "watches")

    def __init__(self) -> None:
        self.bids: list[int] = []  # ascending; best bid is bids[-1]
        self.asks: list[int] = []  # ascending; best ask is asks[0]
        self.bid_size: dict[int, int] = {}
        self.ask_size: dict[int, int] = {}
        self.bid_version = 0
        self.ask_version = 0
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
        added = price not in self.bid_size
        if added:
            insort(self.bids, price)
        self.bid_size[price] = lots
        self.bid_version += 1
        for watch in self.watches:
            watch.bids.add(price)
            watch.bids_moved |= added
        return True

    def set_ask(self, price: int, lots: int) -> bool:
        """Set (lots > 0) or delete (lots == 0) an ask level; False if it would cross."""
        if lots <= 0:
            return self._delete(self.asks, self.ask_size, price, is_bid=False)
        if self.bids and price <= self.bids[-1]:
            return False
        added = price not in self.ask_size
        if added:
            insort(self.asks, price)
        self.ask_size[price] = lots
        self.ask_version += 1
        for watch in self.watches:
            watch.asks.add(price)
            watch.asks_moved |= added
        return True

    def _delete(self, prices: list[int], sizes: dict[int, int], price: int, is_bid: bool) -> bool:
        if sizes.pop(price, None) is None:
            return False
        del prices[bisect_left(prices, price)]
        if is_bid:
            self.bid_version += 1
            for watch in self.watches:
                watch.bids.add(price)
                watch.bids_moved = True
        else:
            self.ask_version += 1
            for watch in self.watches:
                watch.asks.add(price)
                watch.asks_moved = True
        return True

    def top_bids(self, n: int) -> list[int]:
        """Best ``n`` bid prices, best first."""
        return self.bids[-n:][::-1] if n else []

    def top_asks(self, n: int) -> list[int]:
        """Best ``n`` ask prices, best first."""
        return self.asks[:n]

    def trim(self, cap: int) -> None:
        """Keep at most ``cap`` levels per side, dropping the far end."""
        if len(self.bids) > cap:
            for price in self.bids[: len(self.bids) - cap]:
                del self.bid_size[price]
            del self.bids[: len(self.bids) - cap]
            self.bid_version += 1
            for watch in self.watches:
                watch.bids_moved = True
        if len(self.asks) > cap:
            for price in self.asks[cap:]:
                del self.ask_size[price]
            del self.asks[cap:]
            self.ask_version += 1
            for watch in self.watches:
                watch.asks_moved = True

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


def diff_side(top: list[int], sizes: dict[int, int], last: dict[int, int],
              touched: set[int], moved: bool, descending: bool) -> list[Level]:
    """Changes that turn ``last`` (the view last sent, updated in place) into ``top``.

    ``touched`` holds the prices mutated since ``last`` was sent; ``moved`` says whether
    levels were added or removed, the only way levels can enter or leave the window
    untouched. Returns the changes in book order (best first); a level that was deleted
    or fell out of the window is sent with size 0, as Bybit does.
    """
    changes: dict[int, int] = {}
    entered: set[int] = set()
    if moved:
        current = set(top)
        keys = last.keys()
        entered = current - keys
        for price in keys - current:
            del last[price]
            changes[price] = 0
        for price in entered:
            last[price] = changes[price] = sizes[price]
    for price in touched:
        if price in last and price not in entered:
            lots = sizes.get(price, 0)
            if lots and last[price] != lots:
                last[price] = changes[price] = lots
    return sorted(changes.items(), reverse=descending)


def ordered(view: dict[int, int], descending: bool) -> list[Level]:
    """A sent view in book order, best first."""
    return sorted(view.items(), reverse=descending)
