"""One Bybit public WebSocket connection: subscribe its topics, ping, detect a stale
feed, reconnect with backoff and full jitter. Frames go to the owner's callback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from typing import Callable

import picows

from hotpath.protocol import bybit

log = logging.getLogger("hotpath.ingest.conn")

SUBSCRIBE_BATCH = 10  # args per request: every Bybit market accepts ten
ACK_TIMEOUT = 10.0


class _Listener(picows.WSListener):
    def __init__(self, conn: BybitConnection) -> None:
        self.conn = conn

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            self.conn.on_text(frame.get_payload_as_memoryview())
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class BybitConnection:
    """Owns a list of topics on one upstream connection, for as long as it runs."""

    def __init__(self, index: int, url: str, topics: list[str],
                 on_frame: Callable[[bybit.Frame, BybitConnection], None],
                 ping_interval: float, stale_after: float, max_delay: float) -> None:
        self.index = index
        self.url = url
        self.topics = list(topics)
        self.on_frame = on_frame
        self.ping_interval = ping_interval
        self.stale_after = stale_after
        self.max_delay = max_delay
        self.transport: picows.WSTransport | None = None
        self.subscribed: set[str] = set()
        self.rejected: dict[str, str] = {}
        self.connected = False
        self.messages = 0
        self.reconnects = 0
        self.last_message = 0.0
        self._acks: dict[str, tuple[list[str], asyncio.Future[bybit.Frame]]] = {}
        self._req_ids = itertools.count(1)
        self._stopping = False

    @property
    def name(self) -> str:
        return f"upstream-{self.index}"

    def on_text(self, payload: memoryview) -> None:
        self.last_message = time.monotonic()
        self.messages += 1
        frame = bybit.parse_frame(payload)
        if frame is None:
            log.warning("%s: undecodable frame: %.200r", self.name, bytes(payload))
            return
        if frame.topic:
            self.on_frame(frame, self)
        elif frame.op in ("subscribe", "unsubscribe"):
            pending = self._acks.pop(frame.req_id, None)
            if pending is not None and not pending[1].done():
                pending[1].set_result(frame)
        elif frame.op != "ping" and frame.op != "pong":
            log.debug("%s: ignoring %r", self.name, bytes(payload)[:200])

    async def run(self) -> None:
        """Connect, subscribe and read until stopped; never raises for upstream faults."""
        attempt = 0
        while not self._stopping:
            started = await self._session()
            if self._stopping:
                break
            attempt = 0 if started else attempt + 1
            delay = random.uniform(0, min(self.max_delay, 0.5 * 2 ** attempt))
            self.reconnects += 1
            log.warning("%s: disconnected; reconnecting in %.2fs", self.name, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One connection's life. True when it got as far as a successful subscribe."""
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
        log.info("%s: connected to %s", self.name, self.url)
        keepalive = asyncio.create_task(self._keepalive(transport))
        try:
            ok = await self._subscribe_all(transport)
            await transport.wait_disconnected()
            return ok
        finally:
            keepalive.cancel()
            self.connected = False
            self.transport = None
            self.subscribed.clear()
            for _, future in self._acks.values():
                future.cancel()
            self._acks.clear()

    async def _subscribe_all(self, transport: picows.WSTransport) -> bool:
        topics = list(self.topics)
        for i in range(0, len(topics), SUBSCRIBE_BATCH):
            await self._subscribe(transport, topics[i:i + SUBSCRIBE_BATCH])
            if transport.is_disconnected:
                return False
        log.info("%s: subscribed %d topics (%d rejected)", self.name, len(self.subscribed),
                 len(self.rejected))
        return bool(self.subscribed)

    async def _subscribe(self, transport: picows.WSTransport, args: list[str]) -> None:
        reply = await self._request(transport, "subscribe", args)
        if reply is None:
            return
        if reply.success:
            self.subscribed.update(args)
        elif len(args) > 1:
            # Bybit rejects a whole request for one bad topic: retry them one by one.
            for arg in args:
                await self._subscribe(transport, [arg])
        elif "already subscribed" in reply.ret_msg:
            self.subscribed.update(args)
        else:
            self.rejected[args[0]] = reply.ret_msg
            log.warning("%s: Bybit rejected %s: %s", self.name, args[0], reply.ret_msg)

    async def _request(self, transport: picows.WSTransport, op: str,
                       args: list[str]) -> bybit.Frame | None:
        req_id = f"{self.index}.{next(self._req_ids)}"
        future: asyncio.Future[bybit.Frame] = asyncio.get_running_loop().create_future()
        self._acks[req_id] = (args, future)
        transport.send(picows.WSMsgType.TEXT, bybit.op_request(op, args, req_id))
        try:
            return await asyncio.wait_for(future, ACK_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._acks.pop(req_id, None)
            if not transport.is_disconnected:
                log.warning("%s: no reply to %s %s within %.0fs; reconnecting", self.name, op,
                            args, ACK_TIMEOUT)
                transport.disconnect(graceful=False)
            return None

    async def _keepalive(self, transport: picows.WSTransport) -> None:
        ping = bybit.op_request("ping")
        tick = min(self.ping_interval, max(self.stale_after / 3, 0.1))
        next_ping = time.monotonic() + self.ping_interval
        while not transport.is_disconnected:
            await asyncio.sleep(tick)
            now = time.monotonic()
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
        if self.transport is not None:
            self.transport.send_close(picows.WSCloseCode.OK)
            self.transport.disconnect()
