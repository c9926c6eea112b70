"""One Bybit public WebSocket connection owning a changing set of topics: subscribe
and unsubscribe while connected, ping, replace a stale feed, reconnect with backoff
and full jitter (reset after a successful subscribe), resubscribe everything it owns.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import time
from typing import Protocol

import picows

from hotpath.protocol import bybit

log = logging.getLogger("hotpath.ingest.conn")

SUBSCRIBE_BATCH = 10  # args per request: every Bybit market accepts ten
ACK_TIMEOUT = 10.0
REJECTED_RETRY = 30.0  # seconds before topics Bybit rejected are asked for again


class ConnectLimiter:
    """Bybit allows 500 new connections per 5 minutes per IP: count every attempt,
    wait when the window is full, and keep attempts at least ``spacing`` apart."""

    def __init__(self, budget: int, window: float, spacing: float) -> None:
        self.budget = budget
        self.window = window
        self.spacing = spacing
        self.attempts: collections.deque[float] = collections.deque()
        self.waits = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                while self.attempts and now - self.attempts[0] >= self.window:
                    self.attempts.popleft()
                delay = 0.0
                if len(self.attempts) >= self.budget:
                    delay = self.window - (now - self.attempts[0])
                elif self.attempts:
                    delay = self.spacing - (now - self.attempts[-1])
                if delay <= 0:
                    self.attempts.append(now)
                    return
                self.waits += 1
                await asyncio.sleep(delay)


class Owner(Protocol):
    """What a connection reports to the ingest."""

    def on_frame(self, frame: bybit.Frame | bybit.BookFrame, payload: memoryview) -> None: ...

    def on_subscribed(self, topic: str) -> None: ...

    def on_lost(self, topics: set[str]) -> None: ...


class _Listener(picows.WSListener):  # type: ignore[misc]
    def __init__(self, conn: BybitConnection) -> None:
        self.conn = conn

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            self.conn.on_text(frame.get_payload_as_memoryview())
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class BybitConnection:
    def __init__(self, index: int, url: str, owner: Owner, limiter: ConnectLimiter,
                 ping_interval: float, stale_after: float, max_delay: float) -> None:
        self.index = index
        self.url = url
        self.owner = owner
        self.limiter = limiter
        self.ping_interval = ping_interval
        self.stale_after = stale_after
        self.max_delay = max_delay
        self.topics: set[str] = set()  # what this connection should be subscribed to
        self.chars = 0  # total length of self.topics (Bybit caps it per connection)
        self.subscribed: set[str] = set()
        self.rejected: dict[str, str] = {}
        self.connected = False
        self.messages = 0
        self.reconnects = 0
        self.resubscribes = 0
        self.gaps = 0  # topics of this connection whose sequence broke
        self.last_message = 0.0
        self._rate_mark = (time.monotonic(), 0)  # (when, messages) of the last rate sample
        self._rate = 0.0
        self.transport: picows.WSTransport | None = None
        self._acks: dict[str, asyncio.Future[bybit.Frame]] = {}
        self._req_ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def name(self) -> str:
        return f"upstream-{self.index}"

    def add(self, topics: list[str]) -> None:
        for topic in topics:
            if topic not in self.topics:
                self.topics.add(topic)
                self.chars += len(topic)
        self._wake.set()

    def remove(self, topics: list[str]) -> None:
        for topic in topics:
            if topic in self.topics:
                self.topics.discard(topic)
                self.chars -= len(topic)
            self.rejected.pop(topic, None)
        self._wake.set()

    def resubscribe(self, topic: str) -> None:
        """Unsubscribe and subscribe ``topic`` again (a book that can't be trusted)."""
        self.resubscribes += 1
        if topic in self.subscribed:
            self.subscribed.discard(topic)
            if self.transport is not None:
                self._send("unsubscribe", [topic])
        self._wake.set()

    def rate(self, now: float) -> float:
        """Messages per second over the last second or more (status calls sample it)."""
        when, count = self._rate_mark
        if now - when >= 1.0:
            self._rate = round((self.messages - count) / (now - when), 1)
            self._rate_mark = (now, self.messages)
        return self._rate

    def on_text(self, payload: memoryview) -> None:
        self.last_message = time.monotonic()
        self.messages += 1
        frame = bybit.parse_frame(payload)
        if frame is None:
            self.owner.on_frame(bybit.Frame(topic="?"), payload)  # counted as bad there
            return
        if frame.topic:
            self.owner.on_frame(frame, payload)
        elif isinstance(frame, bybit.Frame) and frame.op in ("subscribe", "unsubscribe"):
            future = self._acks.pop(frame.req_id, None)
            if future is not None and not future.done():
                future.set_result(frame)

    async def run(self) -> None:
        """Connect, sync topics and read until stopped; never raises for upstream faults."""
        attempt = 0
        while not self._stopping:
            await self.limiter.acquire()
            started = await self._session()
            if self._stopping:
                break
            attempt = 0 if started else attempt + 1
            delay = random.uniform(0, min(self.max_delay, 0.5 * 2 ** attempt))
            self.reconnects += 1
            log.warning("%s: disconnected; reconnecting in %.2fs (%d topics)", self.name, delay,
                        len(self.topics))
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One connection's life. True when a subscribe succeeded on it."""
        try:
            transport, _ = await picows.ws_connect(lambda: _Listener(self), self.url,
                                                   enable_auto_pong=True,
                                                   websocket_handshake_timeout=10)
        except (OSError, asyncio.TimeoutError, picows.WSError) as exc:
            log.warning("%s: cannot connect to %s: %s", self.name, self.url, exc)
            return False
        self.transport = transport
        self.connected = True
        self.last_message = time.monotonic()
        self.rejected.clear()  # a new connection asks for everything again
        log.info("%s: connected to %s", self.name, self.url)
        keepalive = asyncio.create_task(self._keepalive(transport))
        syncer = asyncio.create_task(self._sync_forever(transport))
        ok = False
        try:
            await transport.wait_disconnected()
            ok = syncer.done() and not syncer.cancelled() and syncer.result()
        finally:
            ok = ok or bool(self.subscribed)
            keepalive.cancel()
            syncer.cancel()
            lost, self.subscribed = self.subscribed, set()
            self.connected = False
            self.transport = None
            for future in self._acks.values():
                future.cancel()
            self._acks.clear()
            self.owner.on_lost(lost)
        return ok

    async def _sync_forever(self, transport: picows.WSTransport) -> bool:
        while not transport.is_disconnected:
            self._wake.clear()
            await self._sync(transport)
            await self._wake.wait()
        return True

    async def _sync(self, transport: picows.WSTransport) -> None:
        gone = sorted(self.subscribed - self.topics)
        for i in range(0, len(gone), SUBSCRIBE_BATCH):
            batch = gone[i:i + SUBSCRIBE_BATCH]
            self.subscribed.difference_update(batch)
            await self._request(transport, "unsubscribe", batch)
        new = sorted(self.topics - self.subscribed - set(self.rejected))
        for i in range(0, len(new), SUBSCRIBE_BATCH):
            await self._subscribe(transport, new[i:i + SUBSCRIBE_BATCH])
            if transport.is_disconnected:
                return
        if new:
            log.info("%s: subscribed %d topics, %d in all (%d rejected)", self.name, len(new),
                     len(self.subscribed), len(self.rejected))

    async def _subscribe(self, transport: picows.WSTransport, args: list[str]) -> None:
        reply = await self._request(transport, "subscribe", args)
        if reply is None:
            return
        if reply.success or (len(args) == 1 and "already subscribed" in reply.ret_msg):
            for topic in args:
                if topic in self.topics:
                    self.subscribed.add(topic)
                    self.owner.on_subscribed(topic)
        elif len(args) > 1:
            # Bybit rejects a whole request for one bad topic: retry them one by one.
            for arg in args:
                await self._subscribe(transport, [arg])
        else:
            self.rejected[args[0]] = reply.ret_msg
            log.warning("%s: Bybit rejected %s: %s", self.name, args[0], reply.ret_msg)

    def _send(self, op: str, args: list[str]) -> str:
        req_id = f"{self.index}.{next(self._req_ids)}"
        assert self.transport is not None
        self.transport.send(picows.WSMsgType.TEXT, bybit.op_request(op, args, req_id))
        return req_id

    async def _request(self, transport: picows.WSTransport, op: str,
                       args: list[str]) -> bybit.Frame | None:
        future: asyncio.Future[bybit.Frame] = asyncio.get_running_loop().create_future()
        self._acks[self._send(op, args)] = future
        try:
            return await asyncio.wait_for(future, ACK_TIMEOUT)
        except asyncio.TimeoutError:
            if not transport.is_disconnected:
                log.warning("%s: no reply to %s %s within %.0fs; reconnecting", self.name, op,
                            args[:3], ACK_TIMEOUT)
                transport.disconnect(graceful=False)
            return None

    async def _keepalive(self, transport: picows.WSTransport) -> None:
        ping = bybit.op_request("ping")
        tick = min(self.ping_interval, max(self.stale_after / 3, 0.1))
        next_ping = time.monotonic() + self.ping_interval
        next_retry = time.monotonic() + REJECTED_RETRY
        while not transport.is_disconnected:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now >= next_retry:
                next_retry = now + REJECTED_RETRY
                if self.rejected:
                    self.rejected.clear()
                    self._wake.set()
            if now - self.last_message > self.stale_after:
                log.warning("%s: nothing received for %.1fs; replacing the connection",
                            self.name, now - self.last_message)
                transport.disconnect(graceful=False)
                return
            if now >= next_ping:
                transport.send(picows.WSMsgType.TEXT, ping)
                next_ping = now + self.ping_interval

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.transport is not None:
            self.transport.send_close(picows.WSCloseCode.OK)
            self.transport.disconnect()
