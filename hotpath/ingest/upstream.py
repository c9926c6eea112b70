"""The pool of Bybit connections: places each topic on a connection with room, opens
new connections on demand (through one shared connection-rate limiter)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hotpath.config import UpstreamConfig
from hotpath.ingest.conn import BybitConnection, ConnectLimiter, Owner
from hotpath.ingest.sharding import has_room


class Upstream:
    def __init__(self, url: str, owner: Owner, cfg: UpstreamConfig) -> None:
        self.url = url
        self.owner = owner
        self.cfg = cfg
        self.limiter = ConnectLimiter(cfg.connect_budget, cfg.connect_window, cfg.connect_spacing)
        self.conns: list[BybitConnection] = []
        self.where: dict[str, BybitConnection] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, topics: list[str]) -> None:
        placed: dict[BybitConnection, list[str]] = {}
        for topic in topics:
            if topic in self.where:
                continue
            conn = self._with_room(topic, placed)
            placed.setdefault(conn, []).append(topic)
            self.where[topic] = conn
        for conn, batch in placed.items():
            conn.add(batch)

    def _with_room(self, topic: str, placed: dict[BybitConnection, list[str]]) -> BybitConnection:
        per = self.cfg.topics_per_connection
        for conn in self.conns:
            extra = placed.get(conn, [])
            if has_room(len(conn.topics) + len(extra), conn.chars + sum(map(len, extra)),
                        topic, per):
                return conn
        conn = BybitConnection(len(self.conns), self.url, self.owner, self.limiter,
                               self.cfg.ping_interval, self.cfg.stale_after,
                               self.cfg.reconnect_max_delay)
        self.conns.append(conn)
        self.tasks.append(asyncio.create_task(conn.run(), name=conn.name))
        return conn

    def remove(self, topics: list[str]) -> None:
        by_conn: dict[BybitConnection, list[str]] = {}
        for topic in topics:
            conn = self.where.pop(topic, None)
            if conn is not None:
                by_conn.setdefault(conn, []).append(topic)
        for conn, batch in by_conn.items():
            conn.remove(batch)

    def resubscribe(self, topic: str, gap: bool = False) -> None:
        """Subscribe ``topic`` afresh; ``gap``: because its sequence broke."""
        conn = self.where.get(topic)
        if conn is not None:
            conn.gaps += gap
            conn.resubscribe(topic)

    def ok(self) -> bool:
        """Every connection that owns topics is up, subscribed and not stale."""
        now = time.monotonic()
        busy = [c for c in self.conns if c.topics]
        return bool(busy) and all(
            c.connected and c.subscribed and now - c.last_message < self.cfg.stale_after
            for c in busy)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"index": c.index, "connected": c.connected, "topics": len(c.topics),
                 "subscribed": len(c.subscribed), "rejected": len(c.rejected),
                 "messages": c.messages, "messages_per_second": c.rate(now),
                 "reconnects": c.reconnects, "gaps": c.gaps, "resyncs": c.resubscribes,
                 "last_message_age": round(now - c.last_message, 3) if c.last_message else None}
                for c in self.conns]

    async def stop(self) -> None:
        for conn in self.conns:
            conn.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
