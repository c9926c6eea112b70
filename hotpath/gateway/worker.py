"""One gateway worker process: a picows server on the shared port (SO_REUSEPORT),
its clients, its Redis subscriptions, and the fan-out between them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import msgspec
import picows
import uvloop

from hotpath import __version__, logs
from hotpath.bus.channels import HEADER_SIZE, REPLY, SNAPSHOT, UPDATE, Channels
from hotpath.bus.publisher import Publisher
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import decoder as status_decoder
from hotpath.bus.subscriber import Subscriber
from hotpath.config import Config
from hotpath.gateway import http, stats
from hotpath.gateway.fanout import SLOW_CONSUMER, Fanout, frame
from hotpath.gateway.listener import Client
from hotpath.gateway.registry import Registry, Slot
from hotpath.gateway.shared import NodeStats
from hotpath.protocol import client_ops, streams
from hotpath.protocol.client_ops import Ping, Rejected, Subscribe, SubscriptionReply, Unsubscribe

log = logging.getLogger("hotpath.gateway")

INGEST_FRESH = 3.0  # seconds: an ingest status older than this means the ingest is down
HOUSEKEEPING = 0.5
IDLE_SCAN = 5.0  # seconds between idle-timeout scans of all clients
MAX_VIOLATIONS = 100  # rate-limited messages in a row before the client is closed
_encoder = msgspec.json.Encoder()


class Worker:
    def __init__(self, config: Config, index: int, node: NodeStats, node_id: str) -> None:
        self.config = config
        self.index = index
        self.node = node
        self.node_id = node_id
        self.loop = asyncio.get_running_loop()
        self.channels = Channels(config.redis.namespace)
        self.registry: Registry[Client] = Registry()
        self.fanout = Fanout(config.gateway.send_buffer_hard)
        self.trusted = frozenset(config.gateway.trusted_proxies)
        self.origins = frozenset(config.gateway.allowed_origins)
        self.msgs_in = 0
        self.rate_limited = 0
        self.slow_paused = 0
        self.rejected = 0
        self.snapshot_requests = 0
        self.previous: tuple[float, dict[str, int]] | None = None
        self.rates: dict[str, float] = {}
        self.symbols: frozenset[str] = frozenset()
        self.ingest: IngestStatus | None = None
        self.ingest_seen = 0.0
        self.draining = False
        self.to_request: set[str] = set()
        self.request_scheduled = False
        self.gaps = 0
        self.unexpected = 0
        self.connections_total = 0
        url = config.redis.url
        self.publisher = Publisher(url, f"gateway-{index}-publisher")
        self.subscriber = Subscriber(url, f"gateway-{index}-subscriber",
                                     on_message=self.on_message, on_batch_end=self.fanout.flush,
                                     on_connected=self._ask_status,
                                     on_disconnected=self._redis_lost,
                                     on_subscribed=self.on_subscribed)
        self.server: asyncio.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.publisher.start()
        self.subscriber.subscribe([self.channels.status])
        await self.subscriber.start()
        if not await self.subscriber.wait_connected(5.0):
            log.warning("Redis not reachable yet; accepting clients anyway (/health says 503)")
        g = self.config.gateway
        self.server = await picows.ws_create_server(
            self.route, g.host, g.port, reuse_port=True, max_frame_size=g.max_frame_size,
            read_buffer_init_size=g.read_buffer_size, enable_auto_pong=True,
            websocket_handshake_timeout=10, logger_name=f"gateway-{self.index}")
        log.info("worker %d listening on %s:%d", self.index, g.host, g.port)
        self.node.set(self.index, "pid", os.getpid())
        housekeeping = asyncio.create_task(self._housekeeping())
        await stop.wait()
        await self._drain()
        housekeeping.cancel()
        self.server.close()
        await self.subscriber.close()
        await self.publisher.close()

    async def _drain(self) -> None:
        """503 on /health, serve for the grace period, then close clients spread out."""
        g = self.config.gateway
        self.draining = True
        clients = list(self.registry.clients)
        log.info("draining: %d clients, grace %.1fs, closes spread over %.1fs", len(clients),
                 g.shutdown_grace, g.shutdown_window)
        if g.shutdown_grace > 0:
            await asyncio.sleep(g.shutdown_grace)
        clients = list(self.registry.clients)
        step = g.shutdown_window / len(clients) if clients else 0.0
        for client in clients:
            client.close(1001, "going away")
            if step:
                await asyncio.sleep(step)
        deadline = time.monotonic() + 2.0
        while self.registry.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- HTTP and connections ------------------------------------------------------------

    def route(self, request: picows.WSUpgradeRequest) -> Any:
        path, query = http.split_target(request.path)
        if path == "/ws":
            return self._upgrade(request, query)
        if path == "/health":
            ok, body = self.health()
            return http.json_response(200 if ok else 503, body)
        if path == "/stats":
            return http.json_response(200, self.stats())
        if path == "/metrics":
            return http.text_response(200, stats.prometheus(self.node.rows(), self._ingest_view()),
                                      "text/plain; version=0.0.4; charset=utf-8")
        if path == "/":
            return http.json_response(200, self.info())
        return http.json_response(404, {"error": "NOT_FOUND", "message": f"no route {path}"})

    def _upgrade(self, request: picows.WSUpgradeRequest, query: str) -> Any:
        origin = request.headers.get("Origin")
        if self.origins and origin is not None and origin not in self.origins:
            self.rejected += 1
            return http.json_response(403, {"error": "FORBIDDEN", "message": "origin not allowed"})
        if self.draining:
            self.rejected += 1
            return http.json_response(503, {"error": client_ops.SERVICE_UNAVAILABLE,
                                            "message": "node is draining"})
        if self.node.total("clients") >= self.config.gateway.max_clients:
            self.rejected += 1
            return http.json_response(503, {"error": client_ops.SERVICE_UNAVAILABLE,
                                            "message": "node is full; try another node"})
        wanted = [s for v in parse_qs(query).get("streams", []) for s in v.split(",") if s]
        return Client(self, request.headers.get("X-Forwarded-For", ""), wanted)

    def client_connected(self, client: Client) -> None:
        client.ip = self._client_ip(client)
        limit = self.config.gateway.max_connections_per_ip
        from_ip = self.node.ip_add(self.index, client.ip, 1)
        self.connections_total += 1
        self.registry.add_client(client)
        self.node.set(self.index, "clients", len(self.registry.clients))
        if limit and from_ip > limit:
            self.rejected += 1
            client.close(1008, f"too many connections from {client.ip} (limit {limit})")
            return
        if client.initial:
            self.subscribe(client, Subscribe(args=list(client.initial)))

    def _client_ip(self, client: Client) -> str:
        peer = client.raw.get_extra_info("peername") if client.raw is not None else None
        ip = peer[0] if peer else ""
        if ip in self.trusted and client.forwarded_for:
            # The right-most address is the one our trusted proxy saw.
            return client.forwarded_for.split(",")[-1].strip()
        return ip

    def client_disconnected(self, client: Client) -> None:
        self.registry.remove_client(client, time.monotonic())
        self.node.ip_add(self.index, client.ip, -1)
        self.node.set(self.index, "clients", len(self.registry.clients))
        client.out = []

    def client_behind(self, client: Client) -> None:
        """Past the soft bound: hold back latest-value streams until it drains."""
        self.slow_paused += 1
        client.behind_since = time.monotonic()
        self.registry.pause(client)

    def client_drained(self, client: Client) -> None:
        client.behind_since = 0.0
        for slot in self.registry.resume(client):
            if slot.subscribed and not slot.requested_at:
                self._request(slot)

    # -- client ops ---------------------------------------------------------------------

    def handle_text(self, client: Client, payload: memoryview) -> None:
        self.msgs_in += 1
        now = client.last_seen
        if not client.messages.take(now):
            self._rate_limited(client, "messages", self.config.gateway.max_messages_per_second)
            return
        op = client_ops.decode_op(payload)
        if isinstance(op, (Subscribe, Unsubscribe)) and not client.ops.take(now):
            self._rate_limited(client, "subscribe/unsubscribe ops",
                               self.config.gateway.max_ops_per_second, op.req_id)
            return
        client.violations = 0
        if isinstance(op, client_ops.ErrorReply):
            client.send(client_ops.encode(op))
        elif isinstance(op, Ping):
            client.send(client_ops.encode(client_ops.Pong(int(time.time() * 1000), op.req_id)))
        elif isinstance(op, Subscribe):
            self.subscribe(client, op)
        elif isinstance(op, Unsubscribe):
            self.unsubscribe(client, op)

    def _rate_limited(self, client: Client, what: str, limit: float,
                      req_id: client_ops.ReqId = None) -> None:
        self.rate_limited += 1
        client.violations += 1
        if client.violations > MAX_VIOLATIONS:
            client.close(1008, "rate limit exceeded")
            return
        client.send(client_ops.error(f"Rate limit: at most {limit:g} {what} per second",
                                     client_ops.TOO_MANY, client_ops.RATE_LIMITED, req_id))

    def handle_unsupported(self, client: Client) -> None:
        client.send(client_ops.error("Only unfragmented text frames carrying JSON are accepted",
                                     client_ops.BAD_REQUEST, client_ops.INVALID_OPERATION))

    def subscribe(self, client: Client, op: Subscribe) -> None:
        if not self.symbols:
            client.send(client_ops.error("Instrument list not available yet; try again shortly",
                                         client_ops.UNAVAILABLE, client_ops.SERVICE_UNAVAILABLE,
                                         op.req_id))
            return
        limit = self.config.gateway.max_subscriptions
        current = self.registry.streams_of(client)
        accepted: list[str] = []
        rejected: list[Rejected] = []
        for arg in op.args:
            try:
                stream = streams.parse(arg, self.symbols)
            except streams.StreamError as exc:
                rejected.append(Rejected(arg, str(exc)))
                continue
            if stream.name not in current and len(current) >= limit:
                rejected.append(Rejected(arg, f"{client_ops.TOO_MANY_SUBSCRIPTIONS}: at most "
                                              f"{limit} streams per connection"))
                continue
            if stream.name not in accepted:
                accepted.append(stream.name)
            if stream.name not in current:
                self._join(client, stream)
        reply = SubscriptionReply("subscribe", bool(accepted), accepted, rejected or None,
                                  op.req_id)
        client.send(client_ops.encode(reply))
        if any(r.reason.startswith(client_ops.TOO_MANY_SUBSCRIPTIONS) for r in rejected):
            client.send(client_ops.error(f"Too many subscriptions: the limit is {limit}",
                                         client_ops.TOO_MANY, client_ops.TOO_MANY_SUBSCRIPTIONS,
                                         op.req_id))

    def _join(self, client: Client, stream: streams.Stream) -> None:
        slot, created = self.registry.subscribe(client, stream, self.channels.stream(stream))
        if created:
            self.subscriber.subscribe([slot.channel])  # snapshot asked once Redis confirms
        elif slot.subscribed and not slot.requested_at:
            self._request(slot)

    def unsubscribe(self, client: Client, op: Unsubscribe) -> None:
        current = self.registry.streams_of(client)
        removed: list[str] = []
        rejected: list[Rejected] = []
        now = time.monotonic()
        for arg in op.args:
            try:
                name = streams.parse(arg).name
            except streams.StreamError as exc:
                rejected.append(Rejected(arg, str(exc)))
                continue
            if name in current:
                self.registry.unsubscribe(client, name, now)
                removed.append(name)
            elif name not in removed:
                rejected.append(Rejected(arg, "Not subscribed"))
        reply = SubscriptionReply("unsubscribe", bool(removed), removed, rejected or None,
                                  op.req_id)
        client.send(client_ops.encode(reply))

    # -- Redis side: the hot path ---------------------------------------------------------

    def on_message(self, channel: bytes, payload: bytes) -> None:
        slot = self.registry.slots.get(channel)
        if slot is None:
            if channel == self.channels.status:
                self._on_status(payload)
            else:
                self.unexpected += 1  # e.g. a stream unsubscribed a moment ago
            return
        if len(payload) <= HEADER_SIZE:
            self.unexpected += 1
            return
        kind = payload[0]
        seq = int.from_bytes(payload[1:HEADER_SIZE], "big")
        slot.messages += 1
        if kind == UPDATE:
            last, slot.seq = slot.seq, seq
            if not slot.live:
                return
            if seq != last + 1:
                self._gap(slot, last, seq)
                return
            targets = slot.live
        elif kind == SNAPSHOT:
            slot.seq = seq
            slot.promote()
            targets = slot.live
        elif kind == REPLY:
            if not slot.pending:
                return
            if slot.live and slot.seq != seq:
                slot.demote()  # this worker missed messages: everyone restarts from here
            slot.seq = seq
            targets = slot.promote()
        else:
            self.unexpected += 1
            return
        if targets:
            self.fanout.queue(targets, frame(memoryview(payload)[HEADER_SIZE:]))

    def _gap(self, slot: Slot[Client], last: int, seq: int) -> None:
        self.gaps += 1
        log.warning("%s: seq %d after %d on Redis; fresh snapshot for %d clients",
                    slot.stream.name, seq, last, len(slot.live))
        slot.demote()
        self._request(slot)

    def on_subscribed(self, channel: bytes) -> None:
        slot = self.registry.slots.get(channel)
        if slot is None:
            return
        slot.subscribed = True
        if slot.live:
            slot.demote()  # after a Redis reconnect: updates may have been missed
        if slot.pending:
            self._request(slot)

    def _request(self, slot: Slot[Client]) -> None:
        self.snapshot_requests += 1
        slot.requested_at = time.monotonic()
        self.to_request.add(slot.stream.name)
        if not self.request_scheduled:
            self.request_scheduled = True
            self.loop.call_soon(self._send_requests)

    def _send_requests(self) -> None:
        self.request_scheduled = False
        names, self.to_request = sorted(self.to_request), set()
        if names:
            self.publisher.publish(self.channels.control,
                                   _encoder.encode({"op": "snapshot", "streams": names}))

    def _redis_lost(self) -> None:
        for slot in self.registry.slots.values():
            slot.subscribed = False
            slot.requested_at = 0.0

    def _ask_status(self) -> None:
        self.publisher.publish(self.channels.control, b'{"op":"status"}')

    def _on_status(self, payload: bytes) -> None:
        try:
            status = status_decoder.decode(payload)
        except msgspec.MsgspecError:
            self.unexpected += 1
            return
        if self.ingest is None or status.symbols != self.ingest.symbols:
            self.symbols = frozenset(status.symbols)
            log.info("instrument list: %d symbols", len(self.symbols))
        self.ingest = status
        self.ingest_seen = time.monotonic()

    async def _housekeeping(self) -> None:
        last_idle_scan = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            now = time.monotonic()
            self._retry_snapshots(now)
            idle = self.registry.idle_slots(now, self.config.gateway.stream_linger)
            if idle:
                self.subscriber.unsubscribe([s.channel for s in idle])
                for slot in idle:
                    self.registry.drop_slot(slot)
            if now - last_idle_scan >= min(IDLE_SCAN, self.config.gateway.idle_timeout / 2):
                last_idle_scan = now
                self._close_idle_and_slow(now)
            self._publish_row(now)

    def _retry_snapshots(self, now: float) -> None:
        if not self.subscriber.connected:
            return
        timeout = self.config.gateway.snapshot_timeout
        for slot in self.registry.slots.values():
            if slot.pending and slot.requested_at and now - slot.requested_at > timeout:
                self._request(slot)

    def _close_idle_and_slow(self, now: float) -> None:
        g = self.config.gateway
        for client in list(self.registry.clients):
            if now - client.last_seen > g.idle_timeout:
                client.close(1001, "idle timeout")
            elif client.behind_since and now - client.behind_since > g.slow_consumer_timeout:
                self.fanout.slow_closed += 1
                client.close(SLOW_CONSUMER, "slow consumer")

    def _publish_row(self, now: float) -> None:
        row = {"heartbeat_ms": int(time.time() * 1000), "clients": len(self.registry.clients),
               "connections_total": self.connections_total, "rejected_connections": self.rejected,
               "msgs_in": self.msgs_in, "frames_out": self.fanout.frames_out,
               "bytes_out": self.fanout.bytes_out, "writes": self.fanout.writes,
               "redis_messages": self.subscriber.messages, "slow_paused": self.slow_paused,
               "slow_closed": self.fanout.slow_closed, "rate_limited": self.rate_limited,
               "gaps": self.gaps, "snapshots_requested": self.snapshot_requests}
        by_kind = Counter({k: 0 for k in streams.KINDS})
        for slot in self.registry.slots.values():
            by_kind[slot.stream.kind] += len(slot)
        row["subscriptions"] = sum(by_kind.values())
        row.update({f"subs_{k}": v for k, v in by_kind.items()})
        for field, value in row.items():
            self.node.set(self.index, field, value)
        totals = stats.node_totals(self.node.rows())
        if self.previous is not None and now - self.previous[0] >= 1.0:
            self.rates = stats.rates(totals, self.previous[1], now - self.previous[0])
            self.previous = (now, totals)
        elif self.previous is None:
            self.previous = (now, totals)

    # -- reporting ----------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        down = []
        if not (self.subscriber.connected and self.publisher.connected):
            down.append("redis")
        age = time.monotonic() - self.ingest_seen if self.ingest_seen else None
        if age is None or age > INGEST_FRESH:
            down.append("ingest")
        elif self.ingest is not None and not self.ingest.upstream_ok:
            down.append("upstream")
        if self.draining:
            down.append("draining")
        body = {"status": "unavailable" if down else "ok", "down": down,
                "worker": self.index, "pid": os.getpid(),
                "clients": len(self.registry.clients),
                "ingest_age": round(age, 3) if age is not None else None,
                "upstream": self.ingest.connections if self.ingest is not None else []}
        return not down, body

    def _ingest_view(self) -> dict[str, Any] | None:
        if self.ingest is None:
            return None
        age = time.monotonic() - self.ingest_seen
        return {"fresh": age <= INGEST_FRESH, "age": round(age, 3),
                "upstream_ok": self.ingest.upstream_ok, "upstream_url": self.ingest.upstream_url,
                "connections": self.ingest.connections, "symbols": len(self.ingest.symbols),
                "bad_messages": self.ingest.bad_messages, "published": self.ingest.published,
                "redis_dropped": self.ingest.redis_dropped}

    def stats(self) -> dict[str, Any]:
        node = {"id": self.node_id, "workers": self.node.workers, "answered_by": self.index,
                "draining": self.draining}
        return stats.stats_body(self.node.rows(), self.rates, self._ingest_view(), node)

    def info(self) -> dict[str, Any]:
        g = self.config.gateway
        return {
            "name": "hotpath", "version": __version__,
            "endpoints": {"websocket": "/ws", "health": "/health", "stats": "/stats",
                          "metrics": "/metrics", "info": "/"},
            "streams": {"ticker": "ticker:{SYMBOL} (alias tickers.{SYMBOL})",
                        "kline": "kline:{INTERVAL}:{SYMBOL}", "trade": "trade:{SYMBOL}",
                        "orderbook": "orderbook:{DEPTH}:{SYMBOL}",
                        "liquidation": "liquidation:{SYMBOL}"},
            "intervals": list(streams.KLINE_INTERVALS),
            "depths": list(streams.ORDERBOOK_DEPTHS),
            "limits": {"max_clients": g.max_clients, "max_subscriptions": g.max_subscriptions,
                       "max_ops_per_second": g.max_ops_per_second,
                       "max_messages_per_second": g.max_messages_per_second,
                       "idle_timeout": g.idle_timeout, "max_frame_size": g.max_frame_size,
                       "send_buffer_soft": g.send_buffer_soft,
                       "send_buffer_hard": g.send_buffer_hard,
                       "max_connections_per_ip": g.max_connections_per_ip},
            "symbols": len(self.symbols),
        }


def main(config: Config, index: int, node: NodeStats | None = None, node_id: str = "") -> int:
    """Run one gateway worker until SIGTERM or SIGINT."""
    logs.setup(f"gateway-{index}", config.log.level, config.log.format)
    if node is None:  # run alone: a node of one worker
        node, index = NodeStats(1), 0
    node_id = node_id or f"{socket.gethostname()}:{config.gateway.port}"

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Worker(config, index, node, node_id).run(stop)

    uvloop.run(_main())
    log.info("worker %d stopped", index)
    return 0
