"""The ingest process: the instrument list over REST, topics placed on Bybit
connections as they are wanted, exact state per topic, client messages published to
Redis once, snapshot requests answered, stream status told to clients."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter

import msgspec

from hotpath import compiled, logs
from hotpath.runtime import run_until_signalled
from hotpath.bus import control
from hotpath.bus.channels import REPLY, SNAPSHOT, STATUS, UPDATE, Channels, StreamCommands, pack
from hotpath.bus.publisher import Publisher
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import decoder as status_decoder
from hotpath.bus.status import encoder as status_encoder
from hotpath.bus.subscriber import Subscriber
from hotpath.config import Config
from hotpath.ingest.book import GAP, Resync
from hotpath.ingest.demand import DemandTable
from hotpath.ingest.instruments import BybitRest, RestError, select
from hotpath.ingest.state import TopicState, new_state
from hotpath.ingest.upstream import Upstream
from hotpath.protocol import bybit, messages, streams
from hotpath.protocol.streams import Stream

log = logging.getLogger("hotpath.ingest")

STATUS_INTERVAL = 1.0
ACTIVITY_LOG_EVERY = 10  # status intervals between "what I am doing" log lines
REQUEST_TTL = 15.0  # a snapshot request for a cold stream counts as demand this long
# One ingest per namespace publishes. Another one (a second node on the same Redis) stands
# by: it hears the leader's status every second and takes over when it goes quiet.
LEAD_LISTEN = 0.5  # seconds a starting ingest listens for a leader (who answers at once)
LEAD_TAKEOVER = 2.0  # seconds without the leader's status (gateways call it down after 3)
LEAD_RECONNECT_GRACE = 5.0  # after a Redis outage: the leader's own reconnect backoff cap
LEAD_CHECK = 0.1
_encode = msgspec.json.Encoder().encode  # a message's ``data``; the envelope is prebuilt
RAW_SUFFIX = {"ticker": "ticker", "orderbook": "orderbook", "trade": "trades",
              "liquidation": "liquidations", "kline": "kline"}


class Route:
    """Everything the hot path needs for one upstream topic, computed once."""

    __slots__ = ("stream", "name", "topic", "channel", "commands", "raw_channel", "public", "seq",
                 "ts", "state", "last_message")

    def __init__(self, stream: Stream, ingest: Ingest) -> None:
        self.stream = stream
        self.name = stream.name  # a property that builds the string: kept, for _reconcile
        self.topic = stream.bybit_topic
        self.channel = ingest.channels.stream(stream)
        self.raw_channel = (ingest.config.upstream.raw_prefix + RAW_SUFFIX[stream.kind]).encode()
        self.public = streams.public_name(stream, ingest.prefix)
        self.commands = StreamCommands(self.channel, self.public, ingest.source)
        self.seq = 0
        self.ts = 0  # exchange timestamp of the last message applied
        self.state: TopicState = new_state(stream)
        self.last_message = time.monotonic()


class Ingest:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.channels = Channels(config.redis.namespace)
        self.source = config.source
        self.prefix = config.stream_prefix
        self.raw = config.upstream.raw
        self.routes: dict[str, Route] = {}  # Bybit topic -> route
        self.symbols: list[str] = []
        self.symbol_set: frozenset[str] = frozenset()
        self.always: set[str] = set()  # stream names kept subscribed whatever the demand
        self.demand = DemandTable(config.upstream.linger)
        self.bad_messages: Counter[str] = Counter()
        self.resyncs = 0
        self.started = time.time()
        self.identity = (self.started, os.getpid())  # of two leaders, the older stays
        self.leading = False
        self.leader: tuple[float, int] | None = None  # the other ingest we stand by for
        self.leader_seen = 0.0
        self.listening_since = 0.0
        self.unexpected: Counter[str] = Counter()  # on the control and status channels
        url = config.redis.url
        self.publisher = Publisher(url, "ingest-publisher", on_connected=self._hello,
                                   max_batch=config.redis.publish_batch)
        self.control = Subscriber(url, "ingest-control", on_message=self._on_control,
                                  on_connected=self._hello)
        self.rest = BybitRest(config.rest_url)
        self.upstream = Upstream(config.ws_url, self, config.upstream)
        self._tasks: list[asyncio.Task[None]] = []
        self._reconcile_scheduled = False

    async def run(self, stop: asyncio.Event) -> None:
        build = compiled.status()
        log.info("starting: upstream %s (REST %s), Redis %s; per-message code %s",
                 self.config.ws_url, self.config.rest_url, self.publisher.address,
                 compiled.summary(build))
        if "stale" in build.values():
            log.warning("a compiled module is older than its source: rebuild it "
                        "(HOTPATH_COMPILE=1 pip install .) or delete its .so: %s", build)
        await self.publisher.start()
        self.control.subscribe([self.channels.control, self.channels.status])
        await self.control.start()
        self._tasks.append(asyncio.create_task(self._status_loop()))
        self._tasks.append(asyncio.create_task(self._lead_loop()))
        self._tasks.append(asyncio.create_task(self._instruments_loop()))
        await stop.wait()
        log.info("stopping")
        await self.upstream.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.control.close()
        await self.publisher.close()

    # -- the universe ---------------------------------------------------------------------

    async def _instruments_loop(self) -> None:
        up = self.config.upstream
        available = await self.rest.trading_symbols_retrying(up.reconnect_max_delay)
        self._set_universe(available)
        while True:
            await asyncio.sleep(up.instruments_refresh)
            try:
                self._set_universe(await self.rest.trading_symbols())
            except RestError as exc:
                log.warning("instrument refresh failed (keeping the current list): %s", exc)

    def _set_universe(self, available: list[str]) -> None:
        chosen, missing = select(available, self.config.upstream.symbols)
        if missing and not self.symbols:
            log.warning("ignoring %d unknown symbol(s): %s", len(missing), ", ".join(missing))
        listed = sorted(set(chosen) - self.symbol_set)
        delisted = sorted(self.symbol_set - set(chosen))
        if self.symbols and (listed or delisted):
            log.info("instrument list changed: %d listed %s, %d delisted %s", len(listed),
                     listed[:10], len(delisted), delisted[:10])
        elif not self.symbols:
            log.info("instrument list: %d trading USDT perpetuals, serving %d", len(available),
                     len(chosen))
        self.symbols = chosen
        self.symbol_set = frozenset(chosen)
        for symbol in delisted:
            self._delist(symbol)
        templates = ["ticker", *self.config.upstream.eager]
        self.always = {streams.parse(f"{t}:{s}").name for t in templates for s in chosen}
        self._reconcile()
        self._publish_status()

    def _delist(self, symbol: str) -> None:
        gone = [r for r in self.routes.values() if r.stream.symbol == symbol]
        for route in gone:
            self._publish_status_message(route, "delisted", f"{symbol} is no longer trading")
            del self.routes[route.topic]
        self.upstream.remove([r.topic for r in gone])

    def _reconcile(self) -> None:
        """Subscribe what is wanted and not active; drop what lingered unwanted."""
        if not self.leading:
            return  # a standby holds no topics
        active = {r.name for r in self.routes.values()}
        add, drop = self.demand.plan(active, self.always, time.monotonic())
        new = []
        for name in sorted(add):
            try:
                stream = streams.parse(name, self.symbol_set)
            except streams.StreamError:
                continue
            route = Route(stream, self)
            self.routes[route.topic] = route
            new.append(route.topic)
        gone = [streams.parse(name).bybit_topic for name in drop]
        for topic in gone:
            self.routes.pop(topic, None)
        if new:
            self.upstream.add(new)
        if gone:
            self.upstream.remove(gone)
            log.info("dropped %d upstream topics nobody wants", len(gone))

    def _schedule_reconcile(self) -> None:
        if not self._reconcile_scheduled:
            self._reconcile_scheduled = True
            asyncio.get_running_loop().call_soon(self._reconcile_now)

    def _reconcile_now(self) -> None:
        self._reconcile_scheduled = False
        self._reconcile()

    # -- upstream events: the hot path ----------------------------------------------------

    def on_frame(self, frame: bybit.Frame | bybit.BookFrame, payload: memoryview) -> None:
        route = self.routes.get(frame.topic)
        if route is None:
            self._bad("unknown-topic", f"{frame.topic}: {bytes(payload[:200])!r}")
            return
        if self.raw:
            self.publisher.publish(route.raw_channel, bytes(payload))
        route.last_message = time.monotonic()
        arrived = time.time() * 1000.0
        try:
            outcome = route.state.apply(frame.type, frame.data)
        except (msgspec.MsgspecError, ValueError, TypeError) as exc:
            self._bad(route.stream.kind, f"{frame.topic}: {exc}")
            if route.stream.kind == "orderbook":
                self._resync(route, "bad message")
            return
        if outcome is None:
            return
        if isinstance(outcome, Resync):
            self._resync(route, outcome.reason)
            return
        route.ts = frame.ts
        for is_snapshot, data in outcome:
            self._publish(route, is_snapshot, data, arrived)

    def _publish(self, route: Route, is_snapshot: bool, data: object,
                 arrived: float = 0.0) -> None:
        """``arrived``: when the upstream frame this comes from arrived (epoch ms)."""
        seq = route.seq = route.seq + 1
        command = route.commands.build(SNAPSHOT if is_snapshot else UPDATE, _encode(data),
                                       route.ts, seq)
        self.publisher.send(command, arrived, route.ts)

    def _publish_status_message(self, route: Route, status: str, reason: str) -> None:
        body = messages.encode(route.public, "status", {"status": status, "reason": reason},
                               int(time.time() * 1000), self.source, route.seq)
        self.publisher.publish(route.channel, pack(STATUS, route.seq, body))

    def _resync(self, route: Route, reason: str) -> None:
        self.resyncs += 1
        log.warning("%s: %s; resubscribing for a fresh snapshot", route.topic, reason)
        route.state.reset()
        if route.seq:
            self._publish_status_message(route, "resync", reason)
        self.upstream.resubscribe(route.topic, gap=reason == GAP)

    def on_subscribed(self, topic: str) -> None:
        route = self.routes.get(topic)
        if route is None:
            return
        route.last_message = time.monotonic()
        for is_snapshot, data in route.state.on_subscribed():
            route.ts = int(time.time() * 1000)
            self._publish(route, is_snapshot, data)

    def on_lost(self, topics: set[str]) -> None:
        for topic in topics:
            route = self.routes.get(topic)
            if route is None:
                continue
            route.state.reset()
            if route.seq:
                self._publish_status_message(route, "stale", "upstream connection lost; "
                                             "a fresh snapshot follows on reconnect")

    def _bad(self, kind: str, detail: str) -> None:
        self.bad_messages[kind] += 1
        if self.bad_messages[kind] == 1:
            log.warning("bad upstream message (%s), counting further ones: %s", kind, detail)

    # -- control and status -----------------------------------------------------------

    def _on_control(self, channel: bytes, payload: bytes) -> None:
        if channel == self.channels.status:
            self._on_peer_status(payload)
            return
        try:
            request = control.decoder.decode(payload)
        except msgspec.MsgspecError:
            self._unexpected("a control message that is not a request", payload)
            return
        if request.op == "status":
            self._publish_status()
        elif request.op == "snapshot":
            for name in request.streams[:1000]:
                self._reply_snapshot(name)
        elif request.op == "demand":
            valid = [n for n in request.streams if self._valid(n)]
            self.demand.update(request.worker, valid, min(request.ttl, 300.0), time.monotonic())
            self._schedule_reconcile()
        else:
            self._unexpected("a control request with an unknown op", payload)

    def _unexpected(self, what: str, payload: bytes) -> None:
        """Not ours (a foreign publisher, a corrupted payload): counted, logged once per kind."""
        self.unexpected[what] += 1
        if self.unexpected[what] == 1:
            log.warning("ignoring %s (%d bytes: %.60r); counting further ones", what,
                        len(payload), payload[:60])

    # -- one leader per namespace --------------------------------------------------------

    def _hello(self) -> None:
        """Redis (re)connected: requests may have been missed and another ingest may lead
        by now. Ask for statuses (a leader answers at once) and publish ours."""
        now = time.monotonic()
        self.listening_since = now
        if self.leader is not None and not self.leading:
            self.leader_seen = max(self.leader_seen,
                                   now + LEAD_RECONNECT_GRACE - LEAD_TAKEOVER)
        if self.publisher.connected:
            self.publisher.publish(self.channels.control, b'{"op":"status"}')
        self._publish_status()

    def _on_peer_status(self, payload: bytes) -> None:
        """Only a leading ingest publishes its status: one not ours is another leader."""
        try:
            status = status_decoder.decode(payload)
        except msgspec.MsgspecError:
            self._unexpected("a status message that is not an ingest status", payload)
            return
        peer = (status.started, status.pid)
        if peer == self.identity:
            return
        self.leader_seen = time.monotonic()
        if self.leading and peer > self.identity:
            # Two leaders for a moment: the younger stands by once it hears us. Clients may
            # have had its messages, so every stream restarts from our state.
            self._restart_streams()
            return
        if self.leader != peer:
            self.leader = peer
            log.info("ingest pid %d leads namespace %r; standing by", status.pid,
                     self.config.redis.namespace)
        if self.leading:
            self.leading = False
            topics = list(self.routes)
            self.routes.clear()
            self.upstream.remove(topics)

    async def _lead_loop(self) -> None:
        while True:
            await asyncio.sleep(LEAD_CHECK)
            now = time.monotonic()
            if (not self.leading and self.control.connected and self.publisher.connected
                    and now - self.listening_since >= LEAD_LISTEN
                    and now - self.leader_seen >= LEAD_TAKEOVER):
                self.leading, self.leader = True, None
                log.info("leading namespace %r", self.config.redis.namespace)
                self._reconcile()
                self._publish_status()

    def _restart_streams(self) -> None:
        for route in self.routes.values():
            state = route.state.snapshot()
            if state is not None and route.seq and not route.state.fresh:
                self._publish(route, True, state)

    def _valid(self, name: str) -> bool:
        try:
            return streams.parse(name, self.symbol_set).name == name
        except streams.StreamError:
            return False

    def _reply_snapshot(self, name: str) -> None:
        try:
            stream = streams.parse(name, self.symbol_set)
        except streams.StreamError:
            return
        route = self.routes.get(stream.bybit_topic)
        if route is None:  # cold stream: wanted now, its snapshot comes from Bybit
            self.demand.update(f"request:{stream.name}", [stream.name], REQUEST_TTL,
                               time.monotonic())
            self._schedule_reconcile()
            return
        state = route.state.snapshot()
        if state is None or route.seq == 0 or route.state.fresh:
            return  # its next message is a snapshot anyway
        self.publisher.send(route.commands.build(REPLY, _encode(state), route.ts, route.seq))

    def status(self) -> IngestStatus:
        p50, p99 = self.publisher.arrival.percentiles((50, 99))
        hold50, hold99 = self.publisher.hold.percentiles((50, 99))
        pub50, pub99 = self.publisher.lag.percentiles((50, 99))
        missed = sum(r.state.missed for r in self.routes.values())
        return IngestStatus(int(time.time() * 1000), os.getpid(), self.started,
                            bool(self.symbols) and self.upstream.ok(), self.config.ws_url,
                            self.upstream.status(), self.symbols, dict(self.bad_messages),
                            self.publisher.published, self.publisher.dropped,
                            len(self.routes), self.resyncs, p50, p99, missed, hold50, hold99,
                            redis_unexpected=sum(self.unexpected.values()),
                            publish_lag_p50_ms=pub50, publish_lag_p99_ms=pub99,
                            lag_buckets={"arrival": dict(self.publisher.arrival.since_start or {}),
                                         "hold": dict(self.publisher.hold.since_start or {}),
                                         "publish": dict(self.publisher.lag.since_start or {})})

    def _publish_status(self) -> None:
        if self.leading and self.publisher.connected:
            self.publisher.publish(self.channels.status, status_encoder.encode(self.status()))

    async def _status_loop(self) -> None:
        was_ok = None
        ticks = 0
        last_upstream = last_published = last_writes = 0
        while True:
            # In pieces, each a fraction of a millisecond: frames that arrive meanwhile are
            # handled in between rather than after all of them.
            self._publish_status()
            await asyncio.sleep(0)
            self._reconcile()
            await asyncio.sleep(0)
            self._check_stale_books()
            ok = bool(self.symbols) and self.upstream.ok()
            if ok != was_ok and self.leading:
                log.info("upstream %s", "up" if ok else "down")
                was_ok = ok
            ticks += 1
            if ticks % ACTIVITY_LOG_EVERY == 0:
                upstream = sum(c.messages for c in self.upstream.conns)
                period = ACTIVITY_LOG_EVERY * STATUS_INTERVAL
                log.info("last %.0fs: %.0f upstream msg/s, %.0f published msg/s (%.1f per "
                         "Redis write); %d topics on %d/%d connections up; lag p50 %.1f ms "
                         "p99 %.1f ms (upstream to us), held p50 %.1f ms p99 %.1f ms (us to "
                         "Redis), exchange to Redis p50 %.1f ms p99 %.1f ms; %d Redis messages "
                         "dropped",
                         period, (upstream - last_upstream) / period,
                         (self.publisher.published - last_published) / period,
                         (self.publisher.published - last_published)
                         / max(1, self.publisher.writes - last_writes), len(self.routes),
                         sum(c.connected for c in self.upstream.conns), len(self.upstream.conns),
                         *self.publisher.arrival.percentiles((50, 99)),
                         *self.publisher.hold.percentiles((50, 99)),
                         *self.publisher.lag.percentiles((50, 99)), self.publisher.dropped)
                last_upstream, last_published = upstream, self.publisher.published
                last_writes = self.publisher.writes
                self.publisher.arrival.clear()
                self.publisher.hold.clear()
                self.publisher.lag.clear()
            await asyncio.sleep(STATUS_INTERVAL)

    def _check_stale_books(self) -> None:
        limit = self.config.upstream.book_stale_after
        if limit <= 0:
            return
        now = time.monotonic()
        for route in list(self.routes.values()):
            if route.stream.kind == "orderbook" and now - route.last_message > limit:
                conn = self.upstream.where.get(route.topic)
                if conn is not None and conn.connected:
                    route.last_message = now
                    self._resync(route, f"no message for {limit:.0f}s")


def main(config: Config) -> int:
    """Run the ingest until SIGTERM or SIGINT."""
    logs.setup("ingest", config.log.level, config.log.format)

    async def _main(stop: asyncio.Event) -> None:
        await Ingest(config).run(stop)

    run_until_signalled(_main)
    log.info("stopped")
    return 0
