"""Pipelined PUBLISH: every message published in one event-loop iteration goes to
Redis in a single write. Reconnects by itself; the owner is told when messages were
lost so that it can restart its streams with fresh snapshots.

Redis is asked not to answer (``CLIENT REPLY OFF``): a reply per PUBLISH would cost
Redis a write and the publisher a read and a parse per message, for a subscriber count
nobody uses. A server that refuses the command (a proxy in front of Redis, a renamed
command) keeps answering, and then error replies are counted and logged."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable

import hiredis

from hotpath.bus.resp import (Address, RedisUnavailable, RespProtocol, command, connect,
                              publish_command)
from hotpath.lag import LagHistogram

log = logging.getLogger("hotpath.bus.publisher")

# Unsent bytes beyond which Redis is considered stuck: drop the connection and resync.
MAX_BUFFERED = 64 * 1024 * 1024
# Messages queued in one loop iteration before they are written without waiting for its
# end: a burst of upstream frames then reaches Redis in slices (each message waits for at
# most this many others to be handled), at one write per slice. The ingest's is
# configurable (--redis-publish-batch).
MAX_BATCH = 64
# One write in this many has its messages' times added to the lag histograms: every
# message of every write would cost the ingest about a tenth of its CPU, and a uniform
# sample of writes (about two thousand messages a second at full rate) gives the same
# percentiles.
TIMED_WRITE_EVERY = 16


class Publisher:
    """Fire-and-forget publisher with one pipelined connection."""

    def __init__(self, url: str, name: str,
                 on_connected: Callable[[], None] | None = None,
                 max_batch: int = MAX_BATCH) -> None:
        self.address = Address(url)
        self.max_batch = max_batch
        self.name = name
        self.on_connected = on_connected
        self.protocol: RespProtocol | None = None
        self.pending: list[bytes] = []
        self.flush_scheduled = False
        self.published = 0
        self.writes = 0  # socket writes: published / writes is the pipeline's batch size
        self.dropped = 0
        self.errors = 0
        self.replies = 0  # parsed: 0 while Redis is not answering
        self.quiet = False  # whether Redis agreed to stop answering on this connection
        self.reconnects = 0
        # Per stream message from upstream, at the write that carries it: the time since
        # its frame arrived (the ingest's own share) and since its exchange timestamp, and
        # how late its frame arrived (exchange timestamp to arrival: upstream's share).
        self.hold = LagHistogram(keep_all=True)
        self.lag = LagHistogram(keep_all=True)
        self.arrival = LagHistogram(keep_all=True)
        self._arrived: list[float] = []  # epoch ms, one per stamped message pending
        self._exchange_ts: list[float] = []
        self._timed = True  # the next write is one of the timed ones
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"publisher-{self.name}")

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
            return True
        except TimeoutError:
            return False

    def publish(self, channel: bytes, payload: bytes) -> bool:
        """Queue one PUBLISH; False (and counted) when Redis is not connected."""
        if self.protocol is None:
            self.dropped += 1
            return False
        return self.send(publish_command(channel, payload))

    def send(self, command: bytes, arrived_ms: float = 0.0, exchange_ts: float = 0.0) -> bool:
        """Queue one pre-built RESP command (see channels.StreamCommands). A message made
        from an upstream frame passes the frame's arrival time and exchange timestamp
        (epoch ms); in a timed write it is counted in ``hold``, ``lag`` and ``arrival``."""
        if self.protocol is None:
            self.dropped += 1
            return False
        pending = self.pending
        pending.append(command)
        if arrived_ms and self._timed:
            self._arrived.append(arrived_ms)
            self._exchange_ts.append(exchange_ts)
        if len(pending) >= self.max_batch:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        self.flush_scheduled = False
        protocol = self.protocol
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        arrived, exchange_ts = self._arrived, self._exchange_ts
        if arrived:
            self._arrived, self._exchange_ts = [], []
        if protocol is None or protocol.transport is None:
            self.dropped += len(batch)
            return
        protocol.transport.write(b"".join(batch))
        self.published += len(batch)
        self.writes += 1
        self._timed = self.writes % TIMED_WRITE_EVERY == 0
        if arrived:
            now = time.time() * 1000.0
            self.hold.add_since(now, arrived)
            self.lag.add_since(now, exchange_ts)
            self.arrival.add_between(arrived, exchange_ts)
        if protocol.transport.get_write_buffer_size() > MAX_BUFFERED:
            log.error("%s: Redis is not reading (%d bytes unsent); reconnecting",
                      self.name, protocol.transport.get_write_buffer_size())
            protocol.transport.abort()

    def _on_reply(self, reply: Any) -> None:
        self.replies += 1
        if isinstance(reply, hiredis.ReplyError):
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.error("%s: Redis error reply: %s (%d so far)", self.name, reply, self.errors)

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping:
            protocol = RespProtocol(on_reply=self._on_reply)
            try:
                await connect(self.address, protocol)
            except RedisUnavailable as exc:
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.quiet = await self._stop_replies(protocol)
            if protocol.closed.done():
                continue  # lost while being set up: connect again
            self.protocol = protocol
            self._ready.set()
            log.info("%s: connected to Redis at %s%s", self.name, self.address,
                     "" if self.quiet else " (it answers every PUBLISH)")
            if self.on_connected is not None:
                self.on_connected()
            await protocol.closed
            self.protocol = None
            self._ready.clear()
            if not self._stopping:
                self.reconnects += 1
                log.warning("%s: lost Redis connection; reconnecting", self.name)

    async def _stop_replies(self, protocol: RespProtocol) -> bool:
        """``CLIENT REPLY OFF`` when the server takes ``CLIENT REPLY`` (asked with ON first,
        which is answered); False when it does not and replies keep coming."""
        try:
            await protocol.request(command(b"CLIENT", b"REPLY", b"ON"))
        except RedisUnavailable as exc:
            if protocol.transport is not None and not protocol.transport.is_closing():
                log.info("%s: Redis keeps answering every PUBLISH (%s)", self.name, exc)
            return False
        protocol.transport.write(command(b"CLIENT", b"REPLY", b"OFF"))
        return True

    async def close(self) -> None:
        self._stopping = True
        self.flush()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RedisUnavailable):
                pass
