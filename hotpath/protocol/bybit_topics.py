"""The ``data`` of Bybit V5 public topics other than tickers, as msgspec Structs. Pure.

``bybit.Frame`` keeps ``data`` as Raw; the ingest picks the decoder of the topic's kind
(``DECODERS[stream.kind]``) and decodes it once. A book frame as Bybit writes it is
decoded in one pass instead (``bybit.BookFrame``). Prices and sizes stay the exchange's
decimal strings. Unknown fields are ignored (msgspec's default), so fields Bybit adds
or sends only for some categories (trades: ``RPI``; options: ``mP``, ``iP``, ``mIv``,
``iv``) decode without being declared. The envelope's ``cts`` (matching-engine time)
is not part of ``data``.
"""

from __future__ import annotations

from typing import Any

import msgspec

# gc=False: these Structs hold only strings, ints and lists of them, so they can never
# be part of a reference cycle; skipping GC tracking saves work per decoded message.


class BookData(msgspec.Struct, frozen=True, gc=False):
    """``orderbook.{depth}.{symbol}``: a snapshot (whole book) or a delta (changed levels).

    Levels are ``(price, size)``; in a delta size "0" deletes the level.
    """

    symbol: str = msgspec.field(name="s")
    bids: list[tuple[str, str]] = msgspec.field(name="b")
    asks: list[tuple[str, str]] = msgspec.field(name="a")
    update_id: int = msgspec.field(name="u")
    seq: int = 0  # cross sequence; options do not send it


class TradeData(msgspec.Struct, frozen=True, gc=False):
    """One trade of ``publicTrade.{symbol}`` (``data`` is a list of these)."""

    time: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    side: str = msgspec.field(name="S")  # taker side, "Buy" | "Sell"
    size: str = msgspec.field(name="v")
    price: str = msgspec.field(name="p")
    trade_id: str = msgspec.field(name="i")
    tick_direction: str = msgspec.field(name="L", default="")  # options omit it
    block_trade: bool = msgspec.field(name="BT", default=False)
    seq: int = 0


class KlineData(msgspec.Struct, frozen=True, gc=False):
    """One candle of ``kline.{interval}.{symbol}`` (``data`` is a list of these)."""

    start: int
    end: int
    interval: str  # Bybit's form: "1", "60", "D"
    open: str
    close: str
    high: str
    low: str
    volume: str
    turnover: str
    confirm: bool
    timestamp: int


class LiquidationData(msgspec.Struct, frozen=True, gc=False):
    """One liquidation of ``allLiquidation.{symbol}`` (``data`` is a list of these).

    ``side`` is the side of the liquidated *position*; see ``hotpath.ingest.events``.
    """

    time: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    side: str = msgspec.field(name="S")
    size: str = msgspec.field(name="v")
    price: str = msgspec.field(name="p")  # bankruptcy price


book_decoder = msgspec.json.Decoder(BookData)
trades_decoder = msgspec.json.Decoder(list[TradeData])
klines_decoder = msgspec.json.Decoder(list[KlineData])
liquidations_decoder = msgspec.json.Decoder(list[LiquidationData])

# client stream kind (``streams.Stream.kind``) -> decoder of its Bybit ``data``
DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "orderbook": book_decoder,
    "trade": trades_decoder,
    "kline": klines_decoder,
    "liquidation": liquidations_decoder,
}
