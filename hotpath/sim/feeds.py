"""One publisher per live topic: market state in, encoded Bybit frames out (no I/O).

A feed keeps what it last *sent*, so a new subscriber's snapshot and everybody's next
delta always agree: the snapshot is the last sent state, the delta goes from there.
The hub calls :meth:`Feed.publish` on the topic's clock and writes the returned bytes,
encoded once, to every subscriber.
"""

from __future__ import annotations

import random
from typing import Any

from hotpath.sim.book import Book, Level, SideView, Watch
from hotpath.sim.candles import Candle
from hotpath.sim.faults import Faults
from hotpath.sim.market import Market, SymbolState
from hotpath.sim.messages import (
    BookFrames, Formats, KlineFrame, LiquidationFrame, LiquidationItem, TickerFrame,
    TradeFrame, TradeItem, encode, kline_item,
)
from hotpath.sim.ticker import TickerFormat, ticker_raw
from hotpath.sim.topics import Topic

_TRADES_PER_FRAME = 1024  # Bybit: "a single message may have up to 1024 trades"
_DEPTH1_RESEND_MS = 3000  # Bybit: level 1 re-sends its snapshot after 3 s unchanged
_MAX_SKIPPED_CANDLES = 10  # after a long pause, confirm at most this many empty candles


class Feed:
    """Base publisher: a topic, its symbol's state and its subscribers."""

    def __init__(self, topic: Topic, market: Market, fmt: Formats) -> None:
        self.topic = topic
        self.market = market
        self.state: SymbolState = market.symbols[topic.symbol]
        self.fmt = fmt
        self.subscribers: dict[int, Any] = {}  # id(conn) -> conn
        self.bucket = 0  # ticker spread bucket

    def snapshot(self, now_ms: int) -> bytes | None:
        """The first message a new subscriber gets (None: nothing until the next push)."""
        return None

    def publish(self, now_ms: int, wall_ms: int) -> bytes | None:
        """The message of this clock tick, or None when nothing changed.

        ``now_ms`` stamps the frame (simulated time); ``wall_ms`` is the master clock."""
        return None

    def resend(self, now_ms: int) -> bytes | None:
        """A state-neutral copy of the current state (flood fault), if the topic has one."""
        return None

    def close(self) -> None:
        """The last subscriber left."""


class TickerFeed(Feed):
    """``tickers.{S}``: a full snapshot, then deltas of the changed fields."""

    def __init__(self, topic: Topic, market: Market, fmt: Formats) -> None:
        super().__init__(topic, market, fmt)
        self.format = TickerFormat(fmt)
        self.raw: tuple[Any, ...] = ()
        self.sent: dict[str, str] = {}
        self.sent_ts = 0
        self.sent_cs = 0

    def snapshot(self, now_ms: int) -> bytes:
        if not self.sent:
            self.raw = ticker_raw(self.state, self.market.now_ms)
            self.sent = self.format.full(self.raw)
            self.sent_ts, self.sent_cs = now_ms, self.state.seq
        return encode(TickerFrame(self.topic.name, "snapshot", self.sent, self.sent_cs, now_ms))

    def resend(self, now_ms: int) -> bytes:
        return self.snapshot(now_ms)

    def publish(self, now_ms: int, wall_ms: int = 0) -> bytes | None:
        raw = ticker_raw(self.state, self.market.now_ms)
        if raw == self.raw:
            return None
        changed = self.format.changed(self.raw, raw)
        self.raw = raw
        self.sent.update(changed)
        self.sent_ts, self.sent_cs = now_ms, self.state.seq
        return encode(TickerFrame(self.topic.name, "delta", changed, self.sent_cs, now_ms))


class BookFeed(Feed):
    """``orderbook.{depth}.{S}``: snapshot, then deltas of the top-``depth`` view.

    Depth 1 is snapshot-only, as Bybit documents for linear: every change is a new
    snapshot with the next ``u``, and an unchanged book is re-sent after 3 s with the
    same ``u``.
    """

    def __init__(self, topic: Topic, market: Market, fmt: Formats, faults: Faults, u0: int) -> None:
        super().__init__(topic, market, fmt)
        self.depth = topic.depth
        self.faults = faults
        self.u = u0
        self.bids = SideView(self.depth, descending=True)  # the view last sent
        self.asks = SideView(self.depth, descending=False)
        self.frames = BookFrames(topic.name, fmt)
        self.watch = Watch()
        self.book = self._book()
        self.book.watches.append(self.watch)
        # Nothing sent yet: every level is news, so the first diff takes the whole window.
        self.watch.bids.update(self.book.bids)
        self.watch.asks.update(self.book.asks)
        self.started = False
        self.sent_ms = 0  # master-clock ms of the last message, for the depth-1 re-send
        self.sent_ts = 0

    def _book(self) -> Book:
        detail = self.state.detail
        assert detail is not None, "a book topic needs an active symbol"
        return detail.book

    def _diff(self) -> tuple[list[Level], list[Level]]:
        """Bring the sent view up to date: a side nobody touched has not changed."""
        book, watch = self.book, self.watch
        bids: list[Level] = []
        asks: list[Level] = []
        if watch.bids:
            bids = self.bids.diff(book.bids, book.bid_size, watch.bids)
            watch.bids.clear()
        if watch.asks:
            asks = self.asks.diff(book.asks, book.ask_size, watch.asks)
            watch.asks.clear()
        return bids, asks

    def _frame(self, kind: str, bids: list[Level], asks: list[Level], now_ms: int) -> bytes:
        self.sent_ts = now_ms
        return self.frames.frame(kind, bids, asks, self.u, self.state.seq, now_ms,
                                 self.market.now_ms)

    def _snapshot_frame(self, now_ms: int) -> bytes:
        return self._frame("snapshot", self.bids.ordered(), self.asks.ordered(), now_ms)

    def snapshot(self, now_ms: int) -> bytes:
        if not self.started:
            self._diff()
            self.started = True
        return self._snapshot_frame(now_ms)

    def resend(self, now_ms: int) -> bytes:
        return self.snapshot(now_ms)

    def publish(self, now_ms: int, wall_ms: int = 0) -> bytes | None:
        watch = self.watch
        if not (watch.bids or watch.asks):
            if self.depth == 1 and wall_ms - self.sent_ms >= _DEPTH1_RESEND_MS:
                self.sent_ms = wall_ms
                return self._snapshot_frame(now_ms)
            return None
        bids, asks = self._diff()
        if not bids and not asks:
            return None
        gap = self.faults.gaps and self.faults.take_gap(self.topic.name)
        self.u += 2 if gap else 1
        self.sent_ms = wall_ms
        if self.depth == 1:
            return self._snapshot_frame(now_ms)
        return self._frame("delta", bids, asks, now_ms)

    def view(self) -> dict[str, Any]:
        """The book as last sent, for ``/sim/book``."""
        price, lots = self.fmt.price, self.fmt.lots
        return {
            "s": self.topic.symbol,
            "b": [[price(p), lots(q)] for p, q in self.bids.ordered()],
            "a": [[price(p), lots(q)] for p, q in self.asks.ordered()],
            "u": self.u,
            "seq": self.state.seq,
            "ts": self.sent_ts,
        }

    def close(self) -> None:
        if self.watch in self.book.watches:
            self.book.watches.remove(self.watch)


class TradeFeed(Feed):
    """``publicTrade.{S}``: the trades printed since the last push, oldest first."""

    def __init__(self, topic: Topic, market: Market, fmt: Formats) -> None:
        super().__init__(topic, market, fmt)
        self._set_keep(True)

    def _set_keep(self, keep: bool) -> None:
        if self.state.detail is not None:
            self.state.detail.keep_trades = keep
            self.state.detail.trades.clear()

    def publish(self, now_ms: int, wall_ms: int = 0) -> bytes | None:
        detail = self.state.detail
        if detail is None or not detail.trades:
            return None
        # A burst bigger than one Bybit frame leaves the rest for the next push.
        trades = detail.trades[:_TRADES_PER_FRAME]
        del detail.trades[:_TRADES_PER_FRAME]
        fmt, symbol = self.fmt, self.topic.symbol
        items = [TradeItem(t.time_ms, symbol, t.side, fmt.qty(t.qty), fmt.price(t.price),
                           t.direction, t.trade_id, seq=t.seq) for t in trades]
        return encode(TradeFrame(self.topic.name, "snapshot", now_ms, items))

    def close(self) -> None:
        self._set_keep(False)


class KlineFeed(Feed):
    """``kline.{interval}.{S}``: the open candle on its push clock, ``confirm`` on close."""

    def __init__(self, topic: Topic, market: Market, fmt: Formats) -> None:
        super().__init__(topic, market, fmt)
        self.interval = topic.param
        self.candle = Candle(self.interval, market.now_ms, self.state.last)
        self._attach()
        self.pushed: tuple[int, ...] = ()

    def _attach(self) -> None:
        if self.state.detail is not None:
            self.state.detail.candles[self.interval] = self.candle

    def _item_frame(self, candle: Candle, confirm: bool, now_ms: int) -> bytes:
        item = kline_item(candle, self.state.inst, confirm)
        return encode(KlineFrame(self.topic.name, [item], now_ms))

    def snapshot(self, now_ms: int) -> bytes:
        return self._item_frame(self.candle, False, now_ms)

    def resend(self, now_ms: int) -> bytes:
        return self.snapshot(now_ms)

    def close_due(self, sim_ms: int) -> list[bytes]:
        """Confirm every candle that ended before ``sim_ms``; each exactly once."""
        frames: list[bytes] = []
        while self.candle.end < sim_ms:
            frames.append(self._item_frame(self.candle, True, sim_ms))
            self.candle = self.candle.successor()
            if len(frames) >= _MAX_SKIPPED_CANDLES and self.candle.end < sim_ms:
                # Skip the rest of a long gap: the next candle opens where time is now.
                self.candle = Candle(self.interval, sim_ms, self.candle.close)
        if frames:
            self._attach()
        return frames

    def publish(self, now_ms: int, wall_ms: int = 0) -> bytes | None:
        c = self.candle
        key = (c.start, c.close, c.high, c.low, c.volume)
        if key == self.pushed:
            return None
        self.pushed = key
        return self._item_frame(c, False, now_ms)

    def close(self) -> None:
        if self.state.detail is not None:
            self.state.detail.candles.pop(self.interval, None)


class LiquidationFeed(Feed):
    """``allLiquidation.{S}``: occasional liquidations, batched on a 500 ms clock."""

    def __init__(self, topic: Topic, market: Market, fmt: Formats, rate: float, window_ms: int,
                 seed: int) -> None:
        super().__init__(topic, market, fmt)
        self.p = min(1.0, rate * window_ms / 1000)
        self.window_ms = window_ms
        self.rng = random.Random(seed ^ self.state.inst.salt ^ 0x11CD)
        self.frozen_at = -1

    def publish(self, now_ms: int, wall_ms: int = 0) -> bytes | None:
        if self.market.now_ms == self.frozen_at or self.rng.random() >= self.p:
            self.frozen_at = self.market.now_ms  # paused market: no new liquidations
            return None
        self.frozen_at = self.market.now_ms
        inst, rng = self.state.inst, self.rng
        items = []
        for _ in range(1 + int(rng.random() * rng.random() * 3)):
            side = "Buy" if rng.random() < 0.5 else "Sell"
            # A long (Buy) is liquidated below the market at its bankruptcy price.
            offset = 1 + int(rng.random() * 30)
            price = self.state.last * (1000 - offset if side == "Buy" else 1000 + offset) // 1000
            price = max(inst.tick, price - price % inst.tick)
            lots = 1 + int(inst.level_lots * rng.random())
            when = now_ms - int(rng.random() * self.window_ms)
            items.append(LiquidationItem(when, inst.symbol, side, self.fmt.qty(lots * inst.qty_step),
                                         self.fmt.price(price)))
        items.sort(key=lambda item: item.time_ms)
        return encode(LiquidationFrame(self.topic.name, "snapshot", now_ms, items))
