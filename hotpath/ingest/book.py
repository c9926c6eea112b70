"""Order book state of one Bybit ``orderbook.{depth}.{symbol}`` topic. Pure; no I/O.

Rules (Bybit V5 docs, "Orderbook", "Process snapshot/delta"):

* A ``snapshot`` replaces the local book. Bybit sends one after subscribing, re-sends
  one "if there is a problem on Bybit's end", and after a restart of its service sends
  a snapshot with ``u`` = 1 ("please overwrite your local orderbook"). Level-1 books are
  snapshots only, re-pushed every 3 s unchanged with the same ``u``.
* A ``delta``: size 0 deletes the level, an unknown price is inserted, a known one is
  updated. Deleting a level we do not hold is ignored: Bybit does send such deletes
  (reported for spot depth 50 in bybit-exchange/pybit#369; none in the XRPUSDT capture).
* ``u`` of a delta must be the previous ``u`` + 1; anything else is a gap and the book
  can no longer be trusted. A *delta* with ``u`` = 1 is a gap too: the restart rule
  is about snapshots, and a delta cannot rebuild a book.

After a gap, a crossed book (best bid >= best ask) or a malformed level the book is
cleared and ``apply`` returns ``Resync`` once: the owner resubscribes, and deltas are
ignored until the next snapshot. Detecting a silent (stale) topic is the owner's job.

Prices are ordered as exact scaled integers, never floats: "1.9531" at scale 4 is
19531. Bid keys are negated so both sides' keys, kept sorted with bisect (never
re-sorted), start with the best level. Sizes live in a dict keyed by the exchange's
price string, so the common level of a delta (a new size for a held price: 2,930 of
the 2,966 levels of the real XRPUSDT sequence) costs two dict operations and no
parsing, and Bybit's own level list goes to the client unchanged. Only inserts and
deletes touch the order: an array of 64-bit keys (a price whose key does not fit is a
malformed level) and, index for index, a list of the prices spelled as held. Both
parse the price rather than look its key up: with 550 books a delta's book is rarely
in the CPU cache, and each dict it touches costs cache misses that take longer than
the parse. For the same reason the keys are not int objects: a bisect over them reads
a few adjacent cache lines, not one object per probe. One number spelled two ways
("1.5" and "1.50") cannot be told apart by string keys; Bybit formats each symbol's
prices one way, so meeting that is treated as a malformed level.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

import msgspec

from hotpath.protocol.bybit_topics import BookData

GAP = "gap"
CROSSED = "crossed"
NO_SNAPSHOT = "delta-before-snapshot"
BAD_LEVEL = "bad-level"

Level = tuple[str, str]  # (price, size), the exchange's strings


class BookChange(msgspec.Struct, frozen=True):
    """What one Bybit message changed, as client ``data``.

    ``snapshot`` True: ``data`` is the whole book, ``{"symbol", "bids", "asks", "u"}``
    with bids descending and asks ascending; the client replaces its book.
    ``snapshot`` False: ``data`` is ``{"bids": [...], "asks": [...]}``: the delta's
    levels in Bybit's order, size "0" meaning removed, without deletes of levels that
    were not held, plus removals of levels trimmed off the depth. Applied in order to
    the previous state they give the new state. Bybit sends only levels that changed
    (no unchanged re-send among the 2,966 levels of the real XRPUSDT sequence); one it
    did re-send would be passed on. The lists may be the decoded message's own lists.
    ``reset``: the snapshot has ``u`` = 1, i.e. Bybit restarted its service.
    """

    snapshot: bool
    data: dict[str, Any]
    reset: bool = False


class Resync(msgspec.Struct, frozen=True):
    """The book was dropped; the owner must resubscribe the topic to get a snapshot.

    ``reason`` is GAP, CROSSED, NO_SNAPSHOT or BAD_LEVEL; ``update_id`` is the ``u`` of
    the message that caused it and ``expected`` the ``u`` a delta should have had
    (0 when it was not about sequence).
    """

    reason: str
    update_id: int
    expected: int = 0


class BadLevel(ValueError):
    """A price that is not a plain non-negative decimal, or one number spelled twice."""


def parse_price(price: str) -> tuple[int, int]:
    """An exact decimal string as (mantissa, decimals): "1.9531" -> (19531, 4)."""
    digits = price.replace(".", "", 1)
    # Checked first because int() alone would also take " 1", "+1", "1_0" and "-1".
    if not (digits.isdigit() and digits.isascii()):
        raise BadLevel(f"not a price: {price!r}")
    decimals = len(price) - 1 - price.find(".") if len(digits) < len(price) else 0
    return int(digits), decimals


def is_zero(size: str) -> bool:
    """Whether a size string means "delete": "0", also "0.000"."""
    return size == "0" or (size < "1" and not size.strip("0."))


def _zeros(sizes: dict[str, str]) -> list[str]:
    """The prices whose size is zero."""
    if min(sizes.values(), default="1") >= "1":  # every zero spelling sorts below "1"
        return []
    return [price for price, size in sizes.items() if is_zero(size)]


def _keys(values: list[int] | None = None) -> array[int]:
    """A side's keys: 64-bit integers side by side, so that a bisect reads a few
    adjacent cache lines instead of one int object per probe. A price whose key does
    not fit (about 19 digits at the book's decimals) is a bad level."""
    try:
        return array("q", values or ())
    except OverflowError:
        raise BadLevel("a price out of range at this book's decimals") from None


def _position(levels: list[Any], level: object) -> int:
    """Index of this very object: equal levels may occur earlier in the list. (Any, not
    Level: compiled, a tuple-typed item would be an unboxed copy.)"""
    return next(i for i, item in enumerate(levels) if item is level)


class _Side:
    """One side of the book; ``keys`` ascending, so the best level is ``keys[0]``."""

    __slots__ = ("sign", "sizes", "keys", "prices")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 for bids: the highest bid gets the lowest key
        self.sizes: dict[str, str] = {}  # price -> size: the side's content
        self.keys = _keys()
        self.prices: list[str] = []  # prices[i] is the held spelling of keys[i]

    def slot(self, price: str, key: int) -> int:
        """Where ``key`` goes in ``keys``. Raises BadLevel when the side holds ``price``'s
        number under another spelling (string-keyed sizes cannot represent that, and
        Bybit does not do it)."""
        keys = self.keys
        at = bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            raise BadLevel(f"{price!r} is held as {self.prices[at]!r}")
        return at

    def add(self, price: str, key: int) -> None:
        """Order a new price level (its size is set by the caller)."""
        at = self.slot(price, key)
        try:
            self.keys.insert(at, key)
        except OverflowError:
            raise BadLevel(f"{price!r}: out of range at this book's decimals") from None
        self.prices.insert(at, price)

    def remove(self, price: str, key: int) -> None:
        """Drop a held level; ``key`` is its price's key."""
        at = bisect_left(self.keys, key)
        del self.keys[at]
        del self.prices[at]
        del self.sizes[price]

    def clear(self) -> None:
        self.sizes.clear()
        del self.keys[:]
        self.prices.clear()

    def best_first(self, n: int | None = None) -> list[Level]:
        sizes = self.sizes
        prices = self.prices if n is None else self.prices[:n]
        return [(price, sizes[price]) for price in prices]


class OrderBook:
    """The book of one ``orderbook.{depth}.{symbol}`` topic, in the exchange's strings."""

    __slots__ = ("symbol", "depth", "bids", "asks", "update_id", "synced",
                 "resync_pending", "ignored", "_scale")

    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.update_id = 0  # ``u`` of the last message applied
        self.synced = False  # holds a valid book (a snapshot and only contiguous deltas)
        self.resync_pending = False  # a Resync went out; deltas wait for a snapshot
        self.ignored = 0  # deltas dropped while resync_pending
        self._scale = 0  # decimals of every key; grows when a longer price shows up

    # -- applying Bybit messages -------------------------------------------------

    def apply(self, msg_type: str, data: BookData) -> BookChange | Resync | None:
        """Apply one Bybit orderbook message; None when the client sees no change.

        ``msg_type`` is the frame's ``type``: "snapshot", anything else is a delta.
        """
        if msg_type == "snapshot":
            return self._snapshot(data)
        if not self.synced:
            if self.resync_pending:
                self.ignored += 1
                return None
            return self._resync(NO_SNAPSHOT, data.update_id, 0)
        expected = self.update_id + 1
        if data.update_id != expected:
            return self._resync(GAP, data.update_id, expected)
        self.update_id = expected
        try:
            bids = self._apply_side(self.bids, data.bids) if data.bids else data.bids
            asks = self._apply_side(self.asks, data.asks) if data.asks else data.asks
        except BadLevel:
            return self._resync(BAD_LEVEL, data.update_id, 0)
        if self._crossed():
            return self._resync(CROSSED, data.update_id, 0)
        if not bids and not asks:
            return None
        return BookChange(False, {"bids": bids, "asks": asks})

    def _snapshot(self, data: BookData) -> BookChange | Resync | None:
        if self.synced and data.update_id == self.update_id and self._same_as(data):
            return None  # level-1 heartbeat: the same book re-pushed after 3 s
        self._clear()
        try:
            self._load(self.bids, data.bids)
            self._load(self.asks, data.asks)
        except BadLevel:
            return self._resync(BAD_LEVEL, data.update_id, 0)
        if self._crossed():
            return self._resync(CROSSED, data.update_id, 0)
        self.update_id = data.update_id
        self.synced = True
        self.resync_pending = False
        self.ignored = 0
        return BookChange(True, self._full(), data.update_id == 1)

    def _load(self, side: _Side, levels: list[Level]) -> None:
        """Fill an empty side from a snapshot: parse every price once, sort once.

        Every price listed is checked, zero-size ones too, and one number spelled two
        ways anywhere in the snapshot is a bad level.
        """
        sizes = side.sizes
        sizes.update(levels)  # a price listed twice keeps its last size
        parsed = [parse_price(price) for price in sizes]
        widest = max((decimals for _, decimals in parsed), default=0)
        if widest > self._scale:
            self._rescale(widest)
        scale, sign = self._scale, side.sign
        keys = [sign * mantissa * 10 ** (scale - decimals) for mantissa, decimals in parsed]
        if len(set(keys)) < len(keys):
            raise BadLevel("one price spelled two ways")
        ordered = sorted(zip(keys, sizes))  # Bybit sends them sorted: timsort is then linear
        zeros = _zeros(sizes)
        if zeros:
            for price in zeros:
                del sizes[price]
            ordered = [level for level in ordered if level[1] in sizes]
        side.keys[:] = _keys([key for key, _ in ordered])
        side.prices[:] = [price for _, price in ordered]
        if len(side.keys) > self.depth:
            self._trim(side, [])

    def _apply_side(self, side: _Side, updates: list[Any]) -> list[Level]:
        """Apply one side of a delta; return its client levels (see BookChange).

        ``updates`` holds Levels, typed Any so that a compiled build (hotpath/compiled.py)
        iterates the list's own objects rather than unboxed copies: _position compares
        identity."""
        sizes = side.sizes
        out = updates
        # While every level changes the book as sent (a new size, an insert, the delete
        # of a held level) Bybit's list is the client's list. At the first level that
        # does not (a delete of a level we never had, a zero spelled "0.000") the rest
        # goes through the general loop, which builds the client list.
        for level in updates:
            price, size = level
            if size < "1" and is_zero(size):  # "<" first: it rules out most sizes
                if size != "0" or price not in sizes:
                    out = self._apply_from(side, updates, _position(updates, level))
                    break
                side.remove(price, self._key(side, price))
            elif price in sizes:
                sizes[price] = size
            else:
                side.add(price, self._key(side, price))
                sizes[price] = size
        if len(side.keys) > self.depth:
            out = self._trim(side, out)
        return out

    def _apply_from(self, side: _Side, updates: list[Level], start: int) -> list[Level]:
        """Apply ``updates[start:]`` level by level; return the client levels of all."""
        sizes = side.sizes
        out = updates[:start]
        for index in range(start, len(updates)):
            level = updates[index]
            price, size = level
            if is_zero(size):
                if price in sizes:
                    side.remove(price, self._key(side, price))
                    out.append(level if size == "0" else (price, "0"))
                else:  # deleting a level we never had: nothing for the client (but
                    side.slot(price, self._key(side, price))  # a malformed one is bad)
            elif price in sizes:
                sizes[price] = size
                out.append(level)
            else:
                side.add(price, self._key(side, price))
                sizes[price] = size
                out.append(level)
        return out

    def _trim(self, side: _Side, out: list[Level]) -> list[Level]:
        """Keep the best ``depth`` levels; return ``out`` plus the others as removed.

        Bybit itself deletes levels that leave the window (the real XRPUSDT sequence
        stays at exactly 500 per side), so this guard should not fire; without it one
        missed delete would grow the book for ever.
        """
        depth = self.depth
        gone = side.prices[depth:]
        del side.prices[depth:]
        del side.keys[depth:]
        sizes = side.sizes
        for price in gone:
            del sizes[price]
        dropped = set(gone)
        # A level inserted and trimmed by one message must not reach the client as an
        # insert; removing a level the client never had is harmless, as in Bybit's deltas.
        return [level for level in out if level[0] not in dropped] + [(p, "0") for p in gone]

    def _key(self, side: _Side, price: str) -> int:
        """The key of ``price`` on ``side``; both sides are re-keyed first when it has
        more decimals than any price seen. Raises BadLevel for a malformed price."""
        mantissa, decimals = parse_price(price)
        if decimals > self._scale:
            self._rescale(decimals)
        factor: int = 10 ** (self._scale - decimals)
        return side.sign * mantissa * factor

    def _rescale(self, scale: int) -> None:
        """Re-key both sides for a price with more decimals (in place: callers hold refs)."""
        factor: int = 10 ** (scale - self._scale)
        self._scale = scale
        for side in (self.bids, self.asks):
            side.keys[:] = _keys([key * factor for key in side.keys])

    def _crossed(self) -> bool:
        bids, asks = self.bids.keys, self.asks.keys
        return bool(bids) and bool(asks) and -bids[0] >= asks[0]

    def _same_as(self, data: BookData) -> bool:
        return self.bids.best_first() == data.bids and self.asks.best_first() == data.asks

    def _resync(self, reason: str, update_id: int, expected: int) -> Resync:
        self._clear()
        self.resync_pending = True
        return Resync(reason, update_id, expected)

    def _clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.synced = False
        self._scale = 0

    # -- reading -------------------------------------------------------------------

    def levels(self, side: str, n: int | None = None) -> list[Level]:
        """The best ``n`` levels (all when None) of "bids" or "asks", best first."""
        if side == "bids":
            return self.bids.best_first(n)
        if side == "asks":
            return self.asks.best_first(n)
        raise ValueError(f"side must be 'bids' or 'asks', not {side!r}")

    def snapshot(self) -> dict[str, Any] | None:
        """The whole book as client snapshot ``data``; None while no valid book is held."""
        return self._full() if self.synced else None

    def _full(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "bids": self.bids.best_first(),
                "asks": self.asks.best_first(), "u": self.update_id}

    def reset(self) -> None:
        """Forget the book (e.g. the owner resubscribed); the next delta asks for a Resync."""
        self._clear()
        self.resync_pending = False
        self.ignored = 0
