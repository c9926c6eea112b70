"""One state object per upstream topic, behind one small interface. Pure.

``apply(frame_type, data)`` returns the client messages to publish, each as
``(is_snapshot, data)``, or a Resync (the topic must be resubscribed), or None.
After ``reset()`` (the upstream connection dropped) the next message published is a
snapshot, so clients restart the stream from a known state.

Event streams (trades, liquidations) have no upstream snapshot: their client snapshot
is the recent history, published when the subscription is confirmed (``on_subscribed``)
or with the first events, whichever comes first.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from hotpath.ingest.book import OrderBook, Resync
from hotpath.ingest.events import KlineSeries, LiquidationTape, TradeTape
from hotpath.ingest.ticker import BadTicker, TickerBook
from hotpath.protocol import bybit, bybit_topics
from hotpath.protocol.bybit_topics import BookData
from hotpath.protocol.streams import Stream

Publish = list[tuple[bool, Any]]
Outcome = Union[Publish, Resync, None]


class TopicState:
    """Base: the interface the ingest drives."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.fresh = True  # the next message published must be a snapshot
        self.missed = 0  # upstream data known to be lost (e.g. kline closes never seen)

    def apply(self, frame_type: str, data: Any) -> Outcome:
        """``data``: the frame's ``data`` as Raw, or the BookData of a book frame that
        bybit.parse_frame decoded in one pass."""
        raise NotImplementedError

    def snapshot(self) -> Any | None:
        raise NotImplementedError

    def reset(self) -> None:
        self.fresh = True

    def on_subscribed(self) -> Publish:
        return []


class TickerState(TopicState):
    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.book = TickerBook()

    def apply(self, frame_type: str, data: Any) -> Outcome:
        try:
            changed = self.book.apply(frame_type, bybit.ticker_decoder.decode(data))
        except BadTicker:
            return Resync("delta-before-snapshot", 0)
        if changed is None:
            return None
        self.fresh = False
        return [(frame_type == "snapshot", changed)]

    def snapshot(self) -> Any | None:
        return self.book.get(self.stream.symbol)

    def reset(self) -> None:
        super().reset()
        self.book.drop(self.stream.symbol)


class BookState(TopicState):
    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.book = OrderBook(stream.symbol, int(stream.param))

    def apply(self, frame_type: str, data: Any) -> Outcome:
        book = data if isinstance(data, BookData) else bybit_topics.book_decoder.decode(data)
        change = self.book.apply(frame_type, book)
        if change is None or isinstance(change, Resync):
            return change
        self.fresh = False
        return [(change.snapshot, change.data)]

    def snapshot(self) -> Any | None:
        return self.book.snapshot()

    def reset(self) -> None:
        super().reset()
        self.book.reset()


class _TapeState(TopicState):
    """Trades and liquidations: events, with recent history as the snapshot."""

    tape: TradeTape | LiquidationTape
    decoder: msgspec.json.Decoder[Any]

    def apply(self, frame_type: str, data: Any) -> Outcome:
        events = self.tape.apply(self.decoder.decode(data))
        if events is None:
            return None
        if self.fresh:
            self.fresh = False
            return [(True, self.tape.snapshot())]
        return [(False, events)]

    def snapshot(self) -> Any | None:
        return self.tape.snapshot()

    def on_subscribed(self) -> Publish:
        if not self.fresh:
            return []
        self.fresh = False
        return [(True, self.tape.snapshot())]


class TradeState(_TapeState):
    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.decoder = bybit_topics.trades_decoder
        self.tape = TradeTape(stream.symbol)


class LiquidationState(_TapeState):
    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.decoder = bybit_topics.liquidations_decoder
        self.tape = LiquidationTape(stream.symbol)


class KlineState(TopicState):
    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.series = KlineSeries(stream.symbol, stream.param)

    def apply(self, frame_type: str, data: Any) -> Outcome:
        result = self.series.apply(bybit_topics.klines_decoder.decode(data))
        if result is None:
            return None
        self.missed += len(result.missed)
        if self.fresh:
            current = self.series.snapshot()
            if current is None:
                return None
            self.fresh = False
            return [(True, current)]
        return [(False, update) for update in result.updates]

    def snapshot(self) -> Any | None:
        return self.series.snapshot()


STATES: dict[str, type[TopicState]] = {
    "ticker": TickerState, "orderbook": BookState, "trade": TradeState,
    "liquidation": LiquidationState, "kline": KlineState,
}


def new_state(stream: Stream) -> TopicState:
    return STATES[stream.kind](stream)
