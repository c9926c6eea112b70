"""Trades, klines and liquidations of one Bybit topic, as client data. Pure; no I/O.

Each class keeps the state of one upstream topic (the owner holds one per topic) and
turns the decoded Bybit ``data`` list into client ``data``, plus a bounded memory of
recent values to answer snapshot requests. Prices and sizes stay exchange strings.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from hotpath.protocol.bybit_topics import KlineData, LiquidationData, TradeData

RECENT_TRADE_IDS = 1000  # trade ids remembered for de-duplication, per symbol
RECENT_TRADES = 50  # trades kept to answer a snapshot request
RECENT_LIQUIDATIONS = 50


def client_trade(trade: TradeData) -> dict[str, Any]:
    """One Bybit trade in the client schema."""
    return {"id": trade.trade_id, "time": trade.time, "symbol": trade.symbol,
            "side": trade.side, "price": trade.price, "size": trade.size,
            "tickDirection": trade.tick_direction, "blockTrade": trade.block_trade}


class TradeTape:
    """Trades of one ``publicTrade.{symbol}`` topic: de-duplicated, recent ones kept.

    Bybit may deliver a trade twice (several messages share one ``seq``, and a
    resubscription may resend), so trades are de-duplicated by trade id over the last
    ``remember`` ids. ``side`` is the taker's side.
    """

    __slots__ = ("symbol", "duplicates", "_ids", "_id_order", "_recent")

    def __init__(self, symbol: str, remember: int = RECENT_TRADE_IDS,
                 keep: int = RECENT_TRADES) -> None:
        self.symbol = symbol
        self.duplicates = 0  # trades dropped as already seen
        self._ids: set[str] = set()
        self._id_order: deque[str] = deque(maxlen=remember)
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def apply(self, trades: list[TradeData]) -> list[dict[str, Any]] | None:
        """Client ``data`` for the new trades, in exchange order; None if none is new."""
        ids, order = self._ids, self._id_order
        out = []
        for trade in trades:
            trade_id = trade.trade_id
            if trade_id in ids:
                self.duplicates += 1
                continue
            if len(order) == order.maxlen:
                ids.discard(order[0])  # the append below pushes it out of the deque
            order.append(trade_id)
            ids.add(trade_id)
            out.append(client_trade(trade))
        if not out:
            return None
        self._recent.extend(out)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The most recent trades, oldest first (client snapshot ``data``)."""
        return list(self._recent)


class KlineUpdate(msgspec.Struct, frozen=True):
    """What one Bybit kline message gave: client messages and closes never seen.

    ``updates``: client ``data`` of each candle update, in order, one client message
    each. ``missed``: ranges ``(first_start, next_start)``: the closes of the candles
    starting at or after ``first_start`` and before ``next_start`` were not received
    (they may have been lost in a reconnect; we cannot invent them). The owner logs or
    counts these. A close that still arrives later is published then.
    """

    updates: list[dict[str, Any]]
    missed: list[tuple[int, int]]


class KlineSeries:
    """Candles of one ``kline.{interval}.{symbol}`` topic, in the client schema.

    A closed candle (``confirm`` true) reaches clients exactly once: a second close of
    the same candle, and any update of a closed or superseded candle, is dropped. An
    in-progress update equal to the last one sent is dropped too.
    """

    __slots__ = ("symbol", "interval", "current", "dropped", "_start", "_end",
                 "_confirmed")

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval  # client form, e.g. "1h"
        self.current: dict[str, Any] | None = None  # the newest candle, client schema
        self.dropped = 0  # updates dropped as duplicate or stale
        self._start = -1  # start of the newest candle (-1: none yet)
        self._end = -1
        self._confirmed = -1  # start of the newest candle whose close was published

    def apply(self, candles: list[KlineData]) -> KlineUpdate | None:
        """Apply one Bybit kline message; None when it brings nothing new."""
        updates: list[dict[str, Any]] = []
        missed: list[tuple[int, int]] = []
        for candle in candles:
            update = self._one(candle, missed)
            if update is None:
                self.dropped += 1
            else:
                updates.append(update)
        if not updates and not missed:
            return None
        return KlineUpdate(updates, missed)

    def _one(self, candle: KlineData, missed: list[tuple[int, int]]) -> dict[str, Any] | None:
        start = candle.start
        if start <= self._confirmed:
            return None  # already closed and published
        if start < self._start:
            if not candle.confirm:
                return None  # in-progress update of a candle already superseded
            self._confirmed = start  # a late close: still never published, so publish
            return self._client(candle)
        if start > self._start >= 0:
            first = self._start if self._start > self._confirmed else self._end + 1
            if first < start:
                missed.append((first, start))
        update = self._client(candle)
        if start == self._start and update == self.current:
            return None
        self.current, self._start, self._end = update, start, candle.end
        if candle.confirm:
            self._confirmed = start
        return update

    def _client(self, candle: KlineData) -> dict[str, Any]:
        return {"symbol": self.symbol, "interval": self.interval, "start": candle.start,
                "end": candle.end, "open": candle.open, "high": candle.high,
                "low": candle.low, "close": candle.close, "volume": candle.volume,
                "turnover": candle.turnover, "confirm": candle.confirm}

    def snapshot(self) -> dict[str, Any] | None:
        """The current candle (client snapshot ``data``), None before the first one."""
        return self.current


def client_liquidation(item: LiquidationData) -> dict[str, Any]:
    """One Bybit liquidation in the client schema (``side`` as Bybit sends it)."""
    return {"time": item.time, "symbol": item.symbol, "side": item.side,
            "size": item.size, "price": item.price}


class LiquidationTape:
    """Liquidations of one ``allLiquidation.{symbol}`` topic, recent ones kept.

    Side convention, from Bybit's V5 docs (WebSocket Stream > Public > All Liquidation),
    field ``S``: "Position side. ``Buy``,``Sell``. When you receive a ``Buy`` update,
    this means that a long position has been liquidated". So ``side`` is the side of
    the liquidated position ("Buy" = a long was liquidated, "Sell" = a short), not the
    side of the liquidation order, which is the opposite. It is passed on unchanged.
    ``price`` is the bankruptcy price and ``size`` the executed size. Bybit pushes
    every 500 ms; entries carry no id, so nothing is de-duplicated.
    """

    __slots__ = ("symbol", "_recent")

    def __init__(self, symbol: str, keep: int = RECENT_LIQUIDATIONS) -> None:
        self.symbol = symbol
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def apply(self, items: list[LiquidationData]) -> list[dict[str, Any]] | None:
        """Client ``data`` for one Bybit message; None when it is empty."""
        if not items:
            return None
        out = [client_liquidation(item) for item in items]
        self._recent.extend(out)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The most recent liquidations, oldest first (client snapshot ``data``)."""
        return list(self._recent)
