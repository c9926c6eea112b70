"""Public linear topic names: parse and validate (pure).

``tickers.{S}``, ``publicTrade.{S}``, ``allLiquidation.{S}``, ``kline.{interval}.{S}``
and ``orderbook.{depth}.{S}`` with the depths Bybit serves on linear today (1, 50, 200,
1000) and their documented push intervals.
"""

from __future__ import annotations

from collections.abc import Container

import msgspec

from hotpath.sim.candles import INTERVALS

TICKERS = "tickers"
TRADES = "publicTrade"
KLINE = "kline"
ORDERBOOK = "orderbook"
LIQUIDATION = "allLiquidation"
KINDS: tuple[str, ...] = (TICKERS, TRADES, KLINE, ORDERBOOK, LIQUIDATION)

# Linear push intervals per depth, ms (Bybit V5 docs, websocket/public/orderbook).
ORDERBOOK_INTERVALS_MS: dict[int, int] = {1: 10, 50: 20, 200: 100, 1000: 200}


class Topic(msgspec.Struct, frozen=True):
    """A parsed topic: ``param`` is the kline interval or the book depth, else ""."""

    name: str
    kind: str
    symbol: str
    param: str = ""

    @property
    def depth(self) -> int:
        return int(self.param) if self.kind == ORDERBOOK else 0


def parse(name: str, symbols: Container[str]) -> Topic | None:
    """The topic named ``name`` if the simulator can serve it, else None."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0] in (TICKERS, TRADES, LIQUIDATION):
        return Topic(name, parts[0], parts[1]) if parts[1] in symbols else None
    if len(parts) != 3 or parts[2] not in symbols:
        return None
    kind, param, symbol = parts
    if kind == KLINE and param in INTERVALS:
        return Topic(name, kind, symbol, param)
    if kind == ORDERBOOK and param.isdigit() and int(param) in ORDERBOOK_INTERVALS_MS:
        return Topic(name, kind, symbol, param)
    return None


def format_topic(kind: str, symbol: str, param: str = "") -> str:
    return f"{kind}.{param}.{symbol}" if param else f"{kind}.{symbol}"
