"""Bybit V5 public frames as msgspec Structs, and the builders that encode them (pure).

Field order is Bybit's wire order, taken from captured frames (tests/fixtures/bybit):
msgspec encodes Struct fields in declaration order, so order is fixed here, once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hotpath.sim.candles import Candle
from hotpath.sim.instruments import Instrument
from hotpath.sim.numfmt import formatter, rescale, stripped

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
    """Decimal strings for one instrument: prices, quantities and book lots."""

    __slots__ = ("inst", "price", "qty", "lots")

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.price = formatter(inst.price_scale)
        self.qty = formatter(inst.qty_scale, zero="0")  # qty units -> text
        self.lots = formatter(inst.qty_scale, inst.qty_step, zero="0")  # lots -> text


class BookFrames:
    """The encoder of one book topic, its busiest stream: everything but the levels and
    the numbers is encoded once, here, so a frame costs a format of its few changed
    levels and one join. Wire order is Bybit's
    (tests/fixtures/bybit/orderbook_50_delta.json)."""

    __slots__ = ("_heads", "_data", "_price", "_lots")

    def __init__(self, topic: str, fmt: Formats) -> None:
        name = encode(topic).decode()
        self._heads = {kind: f'{{"topic":{name},"type":"{kind}","ts":'
                       for kind in ("snapshot", "delta")}
        self._data = f',"data":{{"s":{encode(fmt.inst.symbol).decode()},"b":['
        self._price, self._lots = fmt.price, fmt.lots

    def frame(self, kind: str, bids: list[tuple[int, int]], asks: list[tuple[int, int]],
              u: int, seq: int, ts: int, cts: int) -> bytes:
        """One frame; levels are (price units, lots), best first, lots 0 deleting."""
        price, lots = self._price, self._lots
        # Plain loops: a delta has a level or two per side, where a comprehension's
        # own call would cost more than the formatting.
        b = a = ""
        for p, q in bids:
            b += f',["{price(p)}","{lots(q)}"]'
        for p, q in asks:
            a += f',["{price(p)}","{lots(q)}"]'
        return (f'{self._heads[kind]}{ts}{self._data}{b[1:]}],"a":[{a[1:]}],"u":{u},'
                f'"seq":{seq}}},"cts":{cts}}}').encode()


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
