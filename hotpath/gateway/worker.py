"""One gateway worker process: a picows server on the shared port (SO_REUSEPORT),
its clients, and the housekeeping around them. The Redis side is ``feed``, client
operations are ``ops``, the per-message fan-out is ``fanout``."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import picows

from hotpath import __version__, logs
from hotpath.runtime import run_until_signalled
from hotpath.config import Config
from hotpath.gateway import auth, http, stats
from hotpath.gateway.static import static_response
from hotpath.gateway.fanout import Fanout
from hotpath.gateway.feed import INGEST_FRESH, Feed
from hotpath.gateway.listener import Client
from hotpath.gateway.ops import ClientOps
from hotpath.gateway.registry import Registry
from hotpath.gateway.shared import NodeStats
from hotpath.protocol import client_ops, streams
from hotpath.protocol.client_ops import Subscribe

log = logging.getLogger("hotpath.gateway")

HOUSEKEEPING = 0.5
IDLE_SCAN = 5.0  # seconds between idle-timeout scans of all clients
DRAIN_WAIT = 2.0  # seconds to let the last closes be answered before the listener goes


class Worker:
    def __init__(self, config: Config, index: int, node: NodeStats, node_id: str) -> None:
        self.config = config
        self.index = index
        self.node = node
        self.node_id = node_id
        self.loop = asyncio.get_running_loop()
        self.registry: Registry[Client] = Registry()
        self.fanout = Fanout(config.gateway.send_buffer_hard,
                             config.gateway.flush_window_ms / 1000.0)
        self.feed = Feed(config, self.registry, self.fanout, f"{node_id}/{index}",
                         f"gateway-{index}")
        self.ops = ClientOps(config.gateway, self.registry, self.feed)
        self.trusted = frozenset(config.gateway.trusted_proxies)
        self.origins = frozenset(config.gateway.allowed_origins)
        self.behind: set[Client] = set()  # clients past the soft bound
        self.slow_paused = 0
        self.rejected = 0
        self.errors = 0
        # Upgrades answered whose on_ws_connected has not run yet (picows calls it right
        # after writing the 101): counted in the node's clients from the answer on, so that
        # another worker taking the next upgrade in between sees them.
        self.upgrading = 0
        self.connections_total = 0
        self.previous: tuple[float, dict[str, int]] | None = None
        self.rates: dict[str, float] = {}
        self.draining = False
        self.server: asyncio.Server | None = None
        self.port = config.gateway.port

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if not await self.feed.start(5.0):
            log.warning("Redis not reachable yet; accepting clients anyway (/health says 503)")
        g = self.config.gateway
        self.server = await picows.ws_create_server(
            self.route, g.host, g.port, reuse_port=True, max_frame_size=g.max_frame_size,
            read_buffer_init_size=g.read_buffer_size, enable_auto_pong=False,
            websocket_handshake_timeout=10, logger_name=f"gateway-{self.index}",
            backlog=g.listen_backlog)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("worker %d listening on %s:%d", self.index, g.host, self.port)
        self.node.set(self.index, "pid", os.getpid())
        housekeeping = asyncio.create_task(self._housekeeping())
        await stop.wait()
        await self._drain()
        housekeeping.cancel()
        self.server.close()
        await self.feed.close()

    async def _drain(self) -> None:
        """503 on /health, serve for the grace period, then close clients spread out.

        The listener stays open throughout (upgrades get 503): closing an SO_REUSEPORT
        listener drops the connections queued on it.
        """
        g = self.config.gateway
        self.draining = True
        log.info("draining: %d clients, grace %.1fs, closes spread over %.1fs",
                 len(self.registry.clients), g.shutdown_grace, g.shutdown_window)
        if g.shutdown_grace > 0:
            await asyncio.sleep(g.shutdown_grace)
        clients = list(self.registry.clients)
        start = self.loop.time()
        for i, client in enumerate(clients):
            delay = start + g.shutdown_window * i / len(clients) - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if client in self.registry.clients:
                client.close(1001, "going away")
        deadline = self.loop.time() + DRAIN_WAIT
        while self.registry.clients and self.loop.time() < deadline:
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
        if path == "/symbols":
            return http.json_response(200, {"symbols": sorted(self.feed.symbols)})
        static = static_response(path)
        if static is not None:
            return static
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
        params = parse_qs(query, keep_blank_values=True)
        grant = self._query_token(params)
        if isinstance(grant, auth.Refused):
            self.rejected += 1
            self.ops.auth_failures += 1
            return http.json_response(401, {"error": client_ops.UNAUTHORIZED,
                                            "message": f"Unauthorized: {grant.reason}"})
        wanted = [s for v in params.get("streams", []) for s in v.split(",") if s]
        client = Client(self, request.headers.get("X-Forwarded-For", ""), wanted)
        client.authed = grant is not None
        client.auth_expires = grant.expires if grant is not None else math.inf
        self.upgrading += 1
        self._count_clients()
        return client

    def _count_clients(self) -> None:
        self.node.set(self.index, "clients", len(self.registry.clients) + self.upgrading)

    def _query_token(self, params: dict[str, list[str]]) -> auth.Granted | auth.Refused | None:
        """The verdict on ``?token=``; None: the client must send an auth op first."""
        verifier = self.ops.verifier
        if verifier is None:
            return auth.Granted(math.inf)
        tokens = params.get("token")
        return verifier.verify(tokens[0], time.time()) if tokens else None

    def client_connected(self, client: Client) -> None:
        client.ip = self._client_ip(client)
        limit = self.config.gateway.max_connections_per_ip
        from_ip = self.node.ip_add(self.index, client.ip, 1)
        self.connections_total += 1
        if not client.authed:
            client.auth_expires = time.time() + self.config.gateway.auth_timeout
        self.registry.add_client(client)
        self.upgrading = max(0, self.upgrading - 1)
        self._count_clients()
        if limit and from_ip > limit:
            self.rejected += 1
            client.close(1008, f"too many connections from {client.ip} (limit {limit})")
            return
        if client.initial and client.authed:  # else once it has authenticated
            self.ops.subscribe(client, Subscribe(args=list(client.initial)))

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
        self._count_clients()
        self.behind.discard(client)
        client.out = []

    def client_behind(self, client: Client) -> None:
        """Past the soft bound: hold back latest-value streams until it drains."""
        self.slow_paused += 1
        client.behind_since = time.monotonic()
        self.behind.add(client)
        self.registry.pause(client)

    def client_drained(self, client: Client) -> None:
        client.behind_since = 0.0
        self.behind.discard(client)
        self.feed.resume(client)

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_idle_scan = time.monotonic()
        g = self.config.gateway
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            now = time.monotonic()
            # route() and on_ws_connected run in one picows callback, never around this
            # task: an upgrade still counted here was refused by picows after route().
            self.upgrading = 0
            self.feed.retry_snapshots(now)
            self.feed.drop_idle(now)
            self.feed.refresh_demand(now)
            self.feed.check_ingest(now)
            self._close_slow(now)
            if self.ops.verifier is not None:
                self._close_unauthenticated(time.time())
            if now - last_idle_scan >= min(IDLE_SCAN, g.idle_timeout / 2):
                last_idle_scan = now
                self._close_idle(now)
            self._publish_row(now)

    def _close_slow(self, now: float) -> None:
        timeout = self.config.gateway.slow_consumer_timeout
        for client in [c for c in self.behind if now - c.behind_since > timeout]:
            self.behind.discard(client)
            self.fanout.close_slow(client)

    def _close_idle(self, now: float) -> None:
        timeout = self.config.gateway.idle_timeout
        for client in [c for c in self.registry.clients if now - c.last_seen > timeout]:
            client.close(1001, "idle timeout")

    def _close_unauthenticated(self, wall: float) -> None:
        """Close clients whose token expired or that did not authenticate in time."""
        for client in [c for c in self.registry.clients
                       if c.auth_expires < wall and not c.closing]:
            self.ops.auth_failures += 1
            client.close(client_ops.CLOSE_UNAUTHORIZED,
                         "token expired" if client.authed else "auth timeout")

    def _publish_row(self, now: float) -> None:
        feed = self.feed
        row = {"heartbeat_ms": int(time.time() * 1000), "clients": len(self.registry.clients),
               "connections_total": self.connections_total, "rejected_connections": self.rejected,
               "msgs_in": self.ops.msgs_in, "frames_out": self.fanout.frames_out,
               "bytes_out": self.fanout.bytes_out, "writes": self.fanout.writes,
               "redis_messages": feed.subscriber.messages, "slow_paused": self.slow_paused,
               "slow_closed": self.fanout.slow_closed, "rate_limited": self.ops.rate_limited,
               "gaps": feed.gaps, "snapshots_requested": feed.snapshot_requests,
               "client_errors": self.errors, "auth_failures": self.ops.auth_failures,
               "redis_unexpected": feed.unexpected}
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
        if not self.feed.connected:
            down.append("redis")
        age = self.feed.ingest_age(time.monotonic())
        ingest = self.feed.ingest
        if age is None or age > INGEST_FRESH:
            down.append("ingest")
        elif ingest is not None and not ingest.upstream_ok:
            down.append("upstream")
        if self.draining:
            down.append("draining")
        body = {"status": "unavailable" if down else "ok", "down": down,
                "worker": self.index, "pid": os.getpid(),
                "clients": len(self.registry.clients),
                "ingest_age": round(age, 3) if age is not None else None,
                "upstream": ingest.connections if ingest is not None else []}
        return not down, body

    def _ingest_view(self) -> dict[str, Any] | None:
        ingest = self.feed.ingest
        if ingest is None:
            return None
        age = time.monotonic() - self.feed.ingest_seen
        return {"fresh": age <= INGEST_FRESH, "age": round(age, 3),
                "upstream_ok": ingest.upstream_ok, "upstream_url": ingest.upstream_url,
                "connections": ingest.connections, "symbols": len(ingest.symbols),
                "bad_messages": ingest.bad_messages, "published": ingest.published,
                "redis_dropped": ingest.redis_dropped,
                "redis_unexpected": ingest.redis_unexpected}

    def stats(self) -> dict[str, Any]:
        node = {"id": self.node_id, "workers": self.node.workers, "answered_by": self.index,
                "draining": self.draining}
        return stats.stats_body(self.node.rows(), self.rates, self._ingest_view(), node)

    def info(self) -> dict[str, Any]:
        g = self.config.gateway
        return {
            "name": "hotpath", "version": __version__,
            "endpoints": {"websocket": "/ws", "health": "/health", "stats": "/stats",
                          "metrics": "/metrics", "info": "/", "symbols": "/symbols",
                          "dashboard": "/dashboard", "client": "/client.js"},
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
            "auth": g.auth,
            "symbols": len(self.feed.symbols),
        }


def main(config: Config, index: int, node: NodeStats | None = None, node_id: str = "") -> int:
    """Run one gateway worker until SIGTERM or SIGINT."""
    logs.setup(f"gateway-{index}", config.log.level, config.log.format)
    if node is None:  # run alone: a node of one worker
        node, index = NodeStats(1), 0
    node_id = node_id or f"{socket.gethostname()}:{config.gateway.port}"

    async def _main(stop: asyncio.Event) -> None:
        await Worker(config, index, node, node_id).run(stop)

    run_until_signalled(_main)
    log.info("worker %d stopped", index)
    return 0
