"""The ingest process: instruments over REST, topics sharded over Bybit connections,
state merged, client messages published to Redis, snapshot requests answered."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
import msgspec
import uvloop

from hotpath import logs
from hotpath.bus.channels import REPLY, SNAPSHOT, UPDATE, Channels, pack
from hotpath.bus.publisher import Publisher
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import encoder as status_encoder
from hotpath.bus.subscriber import Subscriber
from hotpath.config import Config
from hotpath.ingest.conn import BybitConnection
from hotpath.ingest.instruments import BybitRest, select
from hotpath.ingest.sharding import shard
from hotpath.ingest.ticker import BadTicker, TickerBook
from hotpath.protocol import bybit, messages, streams
from hotpath.protocol.streams import Stream

log = logging.getLogger("hotpath.ingest")

STATUS_INTERVAL = 1.0
ACTIVITY_LOG_EVERY = 10  # status intervals between "what I am doing" log lines
CONNECT_STAGGER = 0.2  # seconds between opening upstream connections


class ControlRequest(msgspec.Struct):
    op: str
    streams: list[str] = []


_control_decoder = msgspec.json.Decoder(ControlRequest)


class _Route:
    """Everything the hot path needs for one upstream topic, computed once."""

    __slots__ = ("stream", "channel", "public", "seq", "ts")

    def __init__(self, stream: Stream, channels: Channels, prefix: str) -> None:
        self.stream = stream
        self.channel = channels.stream(stream)
        self.public = streams.public_name(stream, prefix)
        self.seq = 0
        self.ts = 0  # exchange timestamp of the last message applied


class Ingest:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.channels = Channels(config.redis.namespace)
        self.source = config.source
        self.prefix = config.stream_prefix
        self.tickers = TickerBook()
        self.routes: dict[str, _Route] = {}
        self.symbols: list[str] = []
        self.symbol_set: frozenset[str] = frozenset()
        self.connections: list[BybitConnection] = []
        self.bad_messages: Counter[str] = Counter()
        self.started = time.time()
        url = config.redis.url
        self.publisher = Publisher(url, "ingest-publisher", on_connected=self._publish_status)
        self.control = Subscriber(url, "ingest-control", on_message=self._on_control)
        self.rest = BybitRest(config.rest_url)
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, stop: asyncio.Event) -> None:
        log.info("starting: upstream %s (REST %s), Redis %s", self.config.ws_url,
                 self.config.rest_url, self.publisher.address)
        await self.publisher.start()
        self.control.subscribe([self.channels.control])
        await self.control.start()
        self._tasks.append(asyncio.create_task(self._status_loop()))
        self._tasks.append(asyncio.create_task(self._start_upstream()))
        await stop.wait()
        log.info("stopping")
        for conn in self.connections:
            conn.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.control.close()
        await self.publisher.close()

    async def _start_upstream(self) -> None:
        available = await self.rest.trading_symbols_retrying(self.config.upstream.reconnect_max_delay)
        chosen, missing = select(available, self.config.upstream.symbols)
        if missing:
            log.warning("ignoring %d unknown symbol(s): %s", len(missing), ", ".join(missing))
        self.symbols = chosen
        self.symbol_set = frozenset(chosen)
        log.info("instrument list: %d trading USDT perpetuals, serving %d", len(available),
                 len(chosen))
        self._publish_status()
        topics = [f"tickers.{s}" for s in chosen]
        groups = shard(topics, self.config.upstream.topics_per_connection)
        log.info("spreading %d topics over %d upstream connection(s)", len(topics), len(groups))
        up = self.config.upstream
        for index, group in enumerate(groups):
            conn = BybitConnection(index, self.config.ws_url, group, self._on_frame,
                                   up.ping_interval, up.stale_after, up.reconnect_max_delay)
            self.connections.append(conn)
            self._tasks.append(asyncio.create_task(conn.run(), name=conn.name))
            await asyncio.sleep(CONNECT_STAGGER)

    # -- the hot path ---------------------------------------------------------------

    def _route(self, topic: str) -> _Route | None:
        route = self.routes.get(topic)
        if route is None:
            stream = streams.from_bybit_topic(topic)
            if stream is None or stream.symbol not in self.symbol_set:
                return None
            route = self.routes[topic] = _Route(stream, self.channels, self.prefix)
        return route

    def _on_frame(self, frame: bybit.Frame, conn: BybitConnection) -> None:
        route = self._route(frame.topic)
        if route is None:
            self._bad("unknown-topic", frame.topic)
            return
        try:
            data = bybit.ticker_decoder.decode(frame.data)
            changed = self.tickers.apply(frame.type, data)
        except (msgspec.MsgspecError, BadTicker) as exc:
            self._bad("ticker", f"{frame.topic}: {exc}")
            return
        if changed is None:
            return
        route.seq += 1
        route.ts = frame.ts
        is_snapshot = frame.type == "snapshot"
        body = messages.encode(route.public, "snapshot" if is_snapshot else "update", changed,
                               frame.ts, self.source, route.seq)
        self.publisher.publish(route.channel, pack(SNAPSHOT if is_snapshot else UPDATE,
                                                   route.seq, body))

    def _bad(self, kind: str, detail: str) -> None:
        self.bad_messages[kind] += 1
        if self.bad_messages[kind] == 1:
            log.warning("bad upstream message (%s), counting further ones: %s", kind, detail)

    # -- control and status -----------------------------------------------------------

    def _on_control(self, channel: bytes, payload: bytes) -> None:
        try:
            request = _control_decoder.decode(payload)
        except msgspec.MsgspecError:
            self._bad("control", repr(payload[:100]))
            return
        if request.op == "status":
            self._publish_status()
        elif request.op == "snapshot":
            for name in request.streams[:1000]:
                self._reply_snapshot(name)

    def _reply_snapshot(self, name: str) -> None:
        try:
            stream = streams.parse(name, self.symbol_set)
        except streams.StreamError:
            return
        route = self._route(stream.bybit_topic)
        state = self.tickers.get(stream.symbol) if stream.kind == "ticker" else None
        if route is None or state is None or route.seq == 0:
            return  # no state yet: its first snapshot goes out when Bybit sends it
        body = messages.encode(route.public, "snapshot", state, route.ts, self.source,
                               route.seq)
        self.publisher.publish(route.channel, pack(REPLY, route.seq, body))

    def upstream_ok(self) -> bool:
        if not self.symbols or not self.connections:
            return False
        now = time.monotonic()
        limit = self.config.upstream.stale_after
        return all(c.connected and c.subscribed and now - c.last_message < limit
                   for c in self.connections)

    def status(self) -> IngestStatus:
        now = time.monotonic()
        conns = [{"index": c.index, "connected": c.connected, "topics": len(c.topics),
                  "subscribed": len(c.subscribed), "rejected": len(c.rejected),
                  "messages": c.messages, "reconnects": c.reconnects,
                  "last_message_age": round(now - c.last_message, 3) if c.last_message else None}
                 for c in self.connections]
        return IngestStatus(int(time.time() * 1000), os.getpid(), self.started,
                             self.upstream_ok(), self.config.ws_url, conns, self.symbols,
                             dict(self.bad_messages), self.publisher.published,
                             self.publisher.dropped)

    def _publish_status(self) -> None:
        if self.publisher.connected:
            self.publisher.publish(self.channels.status, status_encoder.encode(self.status()))

    async def _status_loop(self) -> None:
        was_ok = None
        ticks = 0
        last_upstream = last_published = 0
        while True:
            self._publish_status()
            ok = self.upstream_ok()
            if ok != was_ok:
                log.info("upstream %s", "up" if ok else "down")
                was_ok = ok
            ticks += 1
            if ticks % ACTIVITY_LOG_EVERY == 0:
                upstream = sum(c.messages for c in self.connections)
                period = ACTIVITY_LOG_EVERY * STATUS_INTERVAL
                log.info("last %.0fs: %.0f upstream msg/s, %.0f published msg/s; %d/%d upstream "
                         "connections up; %d Redis messages dropped",
                         period, (upstream - last_upstream) / period,
                         (self.publisher.published - last_published) / period,
                         sum(c.connected for c in self.connections), len(self.connections),
                         self.publisher.dropped)
                last_upstream, last_published = upstream, self.publisher.published
            await asyncio.sleep(STATUS_INTERVAL)


def main(config: Config) -> int:
    """Run the ingest until SIGTERM or SIGINT."""
    logs.setup("ingest", config.log.level, config.log.format)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Ingest(config).run(stop)

    uvloop.run(_main())
    log.info("stopped")
    return 0
