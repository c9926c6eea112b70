"""Bybit V5 public frames as msgspec Structs, and the builders that encode them (pure).

Field order is Bybit's wire order, taken from captured frames (tests/fixtures/bybit):
msgspec encodes Struct fields in declaration order, so order is fixed here, once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hotpath.sim.candles import Candle
from hotpath.sim.instruments import Instrument
from hotpath.sim.numfmt import FormatCache, rescale, stripped

_encoder = msgspec.json.Encoder()
encode = _encoder.encode

UNSET = msgspec.UNSET


# -- control replies ---------------------------------------------------------------


class Ack(msgspec.Struct):
    """Reply to subscribe/unsubscribe/ping on the public linear stream."""

    success: bool
    ret_msg: str
    conn_id: str
    req_id: str | msgspec.UnsetType = UNSET  # spot omits it when the request had none
    op: str = ""


def ack(conn_id: str, op: str, success: bool, ret_msg: str, req_id: str | msgspec.UnsetType) -> bytes:
    return encode(Ack(success, ret_msg, conn_id, req_id, op))


# -- topic frames --------------------------------------------------------------------


class TickerFrame(msgspec.Struct):
    topic: str
    type: str
    data: dict[str, str]
    cs: int
    ts: int


class BookData(msgspec.Struct):
    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int
    seq: int


class BookFrame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: BookData
    cts: int


class TradeItem(msgspec.Struct):
    time_ms: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    side: str = msgspec.field(name="S")
    size: str = msgspec.field(name="v")
    price: str = msgspec.field(name="p")
    direction: str = msgspec.field(name="L")
    trade_id: str = msgspec.field(name="i")
    block_trade: bool = msgspec.field(name="BT", default=False)
    rpi: bool = msgspec.field(name="RPI", default=False)
    seq: int = 0


class TradeFrame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: list[TradeItem]


class KlineItem(msgspec.Struct):
    start: int
    end: int
    interval: str
    open: str
    close: str
    high: str
    low: str
    volume: str
    turnover: str
    confirm: bool
    timestamp: int


class KlineFrame(msgspec.Struct):
    topic: str
    data: list[KlineItem]
    ts: int
    type: str = "snapshot"


class LiquidationItem(msgspec.Struct):
    time_ms: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    side: str = msgspec.field(name="S")
    size: str = msgspec.field(name="v")
    price: str = msgspec.field(name="p")


class LiquidationFrame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: list[LiquidationItem]


class RestReply(msgspec.Struct):
    """The envelope of every Bybit V5 REST answer."""

    retCode: int
    retMsg: str
    result: Any
    retExtInfo: dict[str, Any]
    time: int


# -- formatting per instrument -------------------------------------------------------


class Formats:
    """Cached decimal strings for one instrument: prices, quantities and book lots."""

    __slots__ = ("inst", "price", "qty", "lots")

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.price = FormatCache(inst.price_scale)
        self.qty = FormatCache(inst.qty_scale, zero="0")  # qty units -> text
        self.lots = FormatCache(inst.qty_scale, inst.qty_step, zero="0")  # lots -> text


def book_frame(topic: str, kind: str, fmt: Formats, bids: list[tuple[int, int]],
               asks: list[tuple[int, int]], u: int, seq: int, ts: int, cts: int) -> bytes:
    price, lots = fmt.price, fmt.lots
    data = BookData(fmt.inst.symbol, [(price(p), lots(q)) for p, q in bids],
                    [(price(p), lots(q)) for p, q in asks], u, seq)
    return encode(BookFrame(topic, kind, ts, data, cts))


def kline_item(candle: Candle, inst: Instrument, confirm: bool) -> KlineItem:
    ps, qs = inst.price_scale, inst.qty_scale
    return KlineItem(
        start=candle.start,
        end=candle.end,
        interval=candle.interval,
        open=stripped(candle.open, ps),
        close=stripped(candle.close, ps),
        high=stripped(candle.high, ps),
        low=stripped(candle.low, ps),
        volume=stripped(candle.volume, qs),
        turnover=stripped(rescale(candle.turnover, ps + qs, 4), 4),
        confirm=confirm,
        timestamp=candle.last_ms,
    )
