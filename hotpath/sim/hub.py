"""The master clock, the topic registry and the fan-out of the synthetic market.

One loop timer fires every ``step_ms``: it advances the market one step (every step it
missed, if the loop was late) and runs the push clocks whose interval came round. Each
feed encodes its frame once; the same bytes go to every subscriber. Nothing here awaits
a client: a connection's ``send`` never blocks (the server drops slow consumers).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Any, Protocol

from hotpath.lag import LagHistogram
from hotpath.sim.faults import Faults
from hotpath.sim.feeds import BookFeed, Feed, KlineFeed, LiquidationFeed, TickerFeed, TradeFeed
from hotpath.sim.instruments import Instrument
from hotpath.sim.market import Market, MarketParams
from hotpath.sim.messages import Formats
from hotpath.sim.settings import SimConfig
from hotpath.sim.ticker import ticker_fields
from hotpath.sim.topics import KLINE, LIQUIDATION, ORDERBOOK, TICKERS, TRADES, Topic, parse
from hotpath.protocol.wsframe import text_frame as ws_frame

log = logging.getLogger("hotpath.sim.hub")

_MAX_CATCH_UP = 200  # steps; a loop stalled longer than this skips ahead instead
_TRADE_PUSH_MS = 20  # "real-time" trades: printed and pushed in 20 ms batches
_SLICE = 32  # frames built between writes within one tick (about a millisecond in S4)


class Conn(Protocol):
    """What the hub needs from a client connection."""

    conn_id: str

    def send(self, payload: bytes) -> None: ...
    def queue(self, frame: bytes, stamp_at: int = -1) -> bool: ...
    def flush(self, stamp: bytes = b"") -> None: ...


class SimClock:
    """Simulated epoch milliseconds: wall time at start, then ``speed`` times faster."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._wall0_ms = time.time() * 1000
        self._mono0 = time.monotonic()

    def sim_ms(self) -> int:
        return int(self._wall0_ms + (time.monotonic() - self._mono0) * 1000 * self.speed)


class Hub:
    """Synthetic-market publisher: topics, clocks, fan-out and the control operations."""

    def __init__(self, config: SimConfig, universe: list[Instrument]) -> None:
        self.config = config
        self.clock = SimClock(config.clock_speed)
        params = MarketParams(step_ms=config.step_ms, moves_per_second=config.moves_per_second,
                              trade_rate=config.trade_rate, book_churn=config.book_churn)
        self.market = Market(universe, config.seed, params)
        self.market.now_ms = self.clock.sim_ms()
        self.formats = {inst.symbol: Formats(inst) for inst in universe}
        self.faults = Faults()
        self.feeds: dict[str, Feed] = {}
        # Feeds grouped by push clock: (clock name, bucket) -> {topic: feed}.
        self._clocks: dict[tuple[str, int], dict[str, Feed]] = {}
        self._klines: dict[str, KlineFeed] = {}
        self._by_symbol: dict[str, dict[str, Topic]] = {}  # symbol -> its live topics
        self._index = {inst.symbol: i for i, inst in enumerate(universe)}
        self.paused = False
        self.messages_sent = 0
        self.skipped_steps = 0
        # Pushes due (a topic's clock came round) and those of them merged into a later
        # push of the same topic because the loop ran several steps at once (it was busy):
        # while merged ones occur, topics push less often than their interval.
        self.pushes_due = 0
        self.pushes_merged = 0
        self._u_rng = random.Random(config.seed ^ 0x5EED)
        self._tick = 0
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._periods = self._push_periods()
        self._pending: list[Conn] = []  # connections with frames queued this tick
        # Clock pushes: a slice's building started -> its write handed to the kernel
        # (wall ms), so that a lag measured downstream can be split into ours and the
        # receiver's. With ``stamp_at_write`` the frames' ts leave this out.
        self.send_delay = LagHistogram()
        self.stamp_at_write = config.stamp_at_write
        self._slice_started = 0.0  # time.monotonic()
        self._slice_frames = 0

    def _push_periods(self) -> dict[str, int]:
        c = self.config
        periods = {TICKERS: c.ticks(c.ticker_interval_ms), TRADES: c.ticks(_TRADE_PUSH_MS),
                   KLINE: c.ticks(c.kline_push_ms), LIQUIDATION: c.ticks(c.liquidation_interval_ms)}
        for depth, ms in c.orderbook_intervals_ms.items():
            periods[f"{ORDERBOOK}.{depth}"] = c.ticks(ms)
        return periods

    # -- registry -------------------------------------------------------------------

    def is_known(self, name: str) -> bool:
        return parse(name, self.market.symbols) is not None

    def subscribe(self, conn: Conn, names: list[str]) -> None:
        """Attach ``conn`` to each topic and send it the topic's snapshot, if any."""
        now = self.clock.sim_ms()
        for name in names:
            feed = self.feeds.get(name) or self._create(name)
            feed.subscribers[id(conn)] = conn
            frame = feed.snapshot(now)
            if frame is not None:
                conn.send(frame)
                self.messages_sent += 1

    def unsubscribe(self, conn: Conn, names: list[str]) -> None:
        for name in names:
            feed = self.feeds.get(name)
            if feed is None or feed.subscribers.pop(id(conn), None) is None:
                continue
            if not feed.subscribers:
                feed.close()
                del self.feeds[name]
                self._clocks[self._clock_of(feed)].pop(name, None)
                self._klines.pop(name, None)
                self._by_symbol[feed.topic.symbol].pop(name, None)
                self._refresh_interest(feed.topic.symbol)

    def _create(self, name: str) -> Feed:
        topic = parse(name, self.market.symbols)
        if topic is None:
            raise KeyError(name)  # the session validated it; this is a programming error
        self._by_symbol.setdefault(topic.symbol, {})[name] = topic
        self._refresh_interest(topic.symbol)
        feed = self._build(topic)
        if (self.config.ticker_spread and topic.kind == TICKERS
                or self.config.book_spread and topic.kind == ORDERBOOK):
            feed.bucket = self._index[topic.symbol] % self._periods[self._clock_name(topic)]
        self.feeds[name] = feed
        self._clocks.setdefault(self._clock_of(feed), {})[name] = feed
        if isinstance(feed, KlineFeed):
            self._klines[name] = feed
        return feed

    @staticmethod
    def _clock_name(topic: Topic) -> str:
        return f"{ORDERBOOK}.{topic.param}" if topic.kind == ORDERBOOK else topic.kind

    def _clock_of(self, feed: Feed) -> tuple[str, int]:
        return self._clock_name(feed.topic), feed.bucket

    def _build(self, topic: Topic) -> Feed:
        fmt = self.formats[topic.symbol]
        if topic.kind == TICKERS:
            return TickerFeed(topic, self.market, fmt)
        if topic.kind == TRADES:
            return TradeFeed(topic, self.market, fmt)
        if topic.kind == KLINE:
            return KlineFeed(topic, self.market, fmt)
        if topic.kind == ORDERBOOK:
            return BookFeed(topic, self.market, fmt, self.faults, self._u_rng.randint(10**6, 10**8))
        return LiquidationFeed(topic, self.market, fmt, self.config.liquidation_rate,
                               self.config.liquidation_interval_ms, self.config.seed)

    def _refresh_interest(self, symbol: str) -> None:
        """Size the symbol's book for its deepest live topic and step it as often as its
        most frequent push looks at it (no live topic left: stop simulating detail)."""
        topics = list(self._by_symbol.get(symbol, {}).values())
        if not topics:
            self.market.set_interest(symbol, 0)
            return
        deepest = max(t.depth or 1 for t in topics)
        every = min(self._periods[self._clock_name(t)] for t in topics)
        self.market.set_interest(symbol, deepest + deepest // 10 + 5, every)

    # -- clock ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._t0 = loop.time()
        self._timer = loop.call_at(self._t0 + self.config.step_ms / 1000, self._on_timer)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        loop = self._loop
        assert loop is not None
        step_s = self.config.step_ms / 1000
        due = int((loop.time() - self._t0) / step_s)
        missed = due - self._tick
        if missed > _MAX_CATCH_UP:
            self.skipped_steps += missed - 1
            log.warning("market clock %d steps behind: skipping ahead", missed)
            self._tick, missed = due - 1, 1
        try:
            if missed > 0:
                self._run_ticks(missed)
        except Exception:  # one bad tick must not stop the market
            log.exception("market tick failed")
        finally:
            self._flush()
        self._timer = loop.call_at(self._t0 + (self._tick + 1) * step_s, self._on_timer)

    def _run_ticks(self, count: int) -> None:
        first = self._tick + 1
        sim_now = self.clock.sim_ms()
        step_sim_ms = self.config.step_ms * self.config.clock_speed
        for back in range(count - 1, -1, -1):
            self._tick += 1
            if not self.paused:
                stamp = sim_now - int(back * step_sim_ms)
                self._close_candles(stamp)
                self.market.step(stamp)
        # Pushes carry the time they are made, as Bybit's do: after the market moved.
        self._publish_due(first, self._tick, self.clock.sim_ms())

    def _close_candles(self, sim_ms: int) -> None:
        for feed in self._klines.values():
            if feed.candle.end < sim_ms:
                for frame in feed.close_due(sim_ms):
                    self._fan_out(feed, frame)

    def _publish_due(self, first: int, last: int, sim_now: int) -> None:
        """Push every feed whose clock came round. A tick of the whole universe takes
        milliseconds to build, so it goes out in slices: each slice's frames carry the
        time the slice was made and are written as soon as it is complete, so that a
        frame's ``ts`` is within a slice of its write, as an exchange's would be. With
        ``stamp_at_write`` each write puts its own time into its frames' ``ts``."""
        wall_ms = last * self.config.step_ms
        self._slice_started = time.monotonic()
        for (clock, bucket), feeds in list(self._clocks.items()):
            due = _times_due(first, last, self._periods[clock], bucket)
            if not feeds or not due:
                continue
            self.pushes_due += due * len(feeds)
            self.pushes_merged += (due - 1) * len(feeds)
            for feed in list(feeds.values()):
                frame = feed.publish(sim_now, wall_ms)
                if frame is not None:
                    self._fan_out(feed, frame)
                    self._slice_frames += 1
                    if self._slice_frames == _SLICE:
                        self._flush()
                        sim_now = self.clock.sim_ms()
                        self._slice_started = time.monotonic()

    def _fan_out(self, feed: Feed, payload: bytes) -> None:
        """Frame once; every subscriber gets the same bytes in its next flush."""
        frame = ws_frame(payload)
        stamp_at = _ts_offset(frame, payload) if self.stamp_at_write else -1
        pending = self._pending
        for conn in feed.subscribers.values():
            if conn.queue(frame, stamp_at):
                pending.append(conn)
        self.messages_sent += len(feed.subscribers)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        clock = self.clock
        for conn in pending:
            conn.flush(b"%d" % clock.sim_ms() if self.stamp_at_write else b"")
        if self._slice_frames:
            self.send_delay.add((time.monotonic() - self._slice_started) * 1000.0,
                                self._slice_frames)
            self._slice_frames = 0

    # -- control ----------------------------------------------------------------------

    def sim_ms(self) -> int:
        return self.clock.sim_ms()

    def current_ticker(self, symbol: str) -> dict[str, str]:
        """Ticker fields of ``symbol`` right now (REST /v5/market/tickers)."""
        return ticker_fields(self.market.symbols[symbol], self.formats[symbol], self.market.now_ms)

    def pause(self) -> None:
        """Freeze the market, and push what changed since each topic's last push right
        now, so that once this returns nothing changes on any topic until resume."""
        self.paused = True
        now, wall_ms = self.clock.sim_ms(), self._tick * self.config.step_ms
        for feed in list(self.feeds.values()):
            frame = feed.publish(now, wall_ms)
            if frame is not None:
                self._fan_out(feed, frame)
        self._flush()

    def resume(self) -> None:
        self.paused = False

    def ticker_state(self, symbol: str) -> dict[str, Any] | None:
        """The ticker of ``symbol`` as last sent (or as it would be sent now)."""
        state = self.market.symbols.get(symbol)
        if state is None:
            return None
        feed = self.feeds.get(f"{TICKERS}.{symbol}")
        if isinstance(feed, TickerFeed) and feed.sent:
            return {"symbol": symbol, "sent": True, "ts": feed.sent_ts, "cs": feed.sent_cs,
                    "data": dict(feed.sent)}
        fields = ticker_fields(state, self.formats[symbol], self.market.now_ms)
        return {"symbol": symbol, "sent": False, "ts": self.market.now_ms, "cs": state.seq,
                "data": fields}

    def book_state(self, symbol: str, depth: int) -> dict[str, Any] | None:
        feed = self.feeds.get(f"{ORDERBOOK}.{depth}.{symbol}")
        return feed.view() if isinstance(feed, BookFeed) and feed.started else None

    def flood(self, conn: Conn, topics: set[str], count: int) -> int:
        """Send ``conn`` up to ``count`` state-neutral snapshots of its topics."""
        feeds = [self.feeds[t] for t in sorted(topics) if t in self.feeds]
        now, sent = self.clock.sim_ms(), 0
        frames = [f for f in (feed.resend(now) for feed in feeds) if f is not None]
        while frames and sent < count:
            conn.send(frames[sent % len(frames)])
            sent += 1
        self.messages_sent += sent
        return sent

    def reset_stats(self) -> None:
        """Start the send delay and the push counts afresh (a benchmark's window)."""
        self.send_delay.clear()
        self.pushes_due = self.pushes_merged = 0

    def stats(self) -> dict[str, Any]:
        per_kind: Counter[str] = Counter()
        subs: Counter[str] = Counter()
        for feed in self.feeds.values():
            per_kind[feed.topic.kind] += 1
            subs[feed.topic.kind] += len(feed.subscribers)
        p50, p99 = self.send_delay.percentiles((50, 99))
        return {"mode": "synthetic", "topics": dict(per_kind), "subscriptions": dict(subs),
                "paused": self.paused, "market_step": self.market.step_no,
                "active_symbols": len(self.market.active), "skipped_steps": self.skipped_steps,
                "pushes_due": self.pushes_due, "pushes_merged": self.pushes_merged,
                "send_delay_ms": {"p50": p50, "p99": p99, "frames": self.send_delay.total}}


def _ts_offset(frame: bytes, payload: bytes) -> int:
    """Where the envelope's ``ts`` digits start in ``frame`` (``payload`` framed), or -1.
    No topic's ``data`` has a key "ts" of its own, so the first one is the envelope's."""
    at = payload.find(b'"ts":')
    return -1 if at < 0 else len(frame) - len(payload) + at + 5


def _times_due(first: int, last: int, period: int, bucket: int) -> int:
    """How many ticks in [first, last] are ``bucket`` modulo ``period``."""
    return (last - bucket) // period - (first - 1 - bucket) // period
