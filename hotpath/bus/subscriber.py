"""A pub/sub subscriber connection that follows its owner's wanted channel set.

Messages reach ``on_message(channel, payload)`` as parsed by hiredis, and every
batch read from the socket ends with ``on_batch_end()``: the gateway coalesces its
client writes on that boundary. After a reconnect every wanted channel is subscribed
again; ``on_subscribed(channel)`` fires as Redis confirms each one, so the owner knows
from when on no message of that channel can be missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable, Iterable

from hotpath.bus.resp import Address, RedisUnavailable, RespProtocol, command, connect

log = logging.getLogger("hotpath.bus.subscriber")

KEEPALIVE = 5.0  # seconds between PINGs; a connection silent for 3 of them is dead


class Subscriber:
    def __init__(self, url: str, name: str,
                 on_message: Callable[[bytes, bytes], None],
                 on_batch_end: Callable[[], None] | None = None,
                 on_connected: Callable[[], None] | None = None,
                 on_disconnected: Callable[[], None] | None = None,
                 on_subscribed: Callable[[bytes], None] | None = None) -> None:
        self.address = Address(url)
        self.name = name
        self.on_message = on_message
        self.on_batch_end = on_batch_end
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_subscribed = on_subscribed
        self.wanted: set[bytes] = set()
        self.protocol: RespProtocol | None = None
        self.messages = 0
        self.unexpected = 0
        self.errors = 0
        self.reconnects = 0
        self.last_read = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"subscriber-{self.name}")

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
            return True
        except TimeoutError:
            return False

    def subscribe(self, channels: Iterable[bytes]) -> None:
        new = [c for c in channels if c not in self.wanted]
        self.wanted.update(new)
        self._send(b"SUBSCRIBE", new)

    def unsubscribe(self, channels: Iterable[bytes]) -> None:
        gone = [c for c in channels if c in self.wanted]
        self.wanted.difference_update(gone)
        self._send(b"UNSUBSCRIBE", gone)

    def _send(self, verb: bytes, channels: list[bytes]) -> None:
        protocol = self.protocol
        if channels and protocol is not None and protocol.transport is not None:
            protocol.transport.write(command(verb, *channels))

    def _on_reply(self, reply: Any) -> None:
        self.last_read = time.monotonic()
        if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
            self.messages += 1
            try:
                self.on_message(reply[1], reply[2])
            except Exception:  # a bug with one message must not drop the connection
                self.errors += 1
                if self.errors <= 10:
                    log.exception("%s: error handling a message on %r (ignored)", self.name,
                                  reply[1])
        elif type(reply) is list and len(reply) == 3 and reply[0] == b"subscribe":
            if self.on_subscribed is not None:
                self.on_subscribed(reply[1])
        elif not (type(reply) is list and reply and reply[0] in
                  (b"subscribe", b"unsubscribe", b"pong")):
            self.unexpected += 1
            log.warning("%s: unexpected reply from Redis: %.200r", self.name, reply)

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
            protocol.on_batch_end = self.on_batch_end
            self.protocol = protocol
            self.last_read = time.monotonic()
            self._send(b"SUBSCRIBE", sorted(self.wanted))
            self._ready.set()
            log.info("%s: connected to Redis at %s, %d channels", self.name, self.address,
                     len(self.wanted))
            if self.on_connected is not None:
                self.on_connected()
            await self._keepalive(protocol)
            self.protocol = None
            self._ready.clear()
            if self._stopping:
                break
            self.reconnects += 1
            log.warning("%s: lost Redis connection; reconnecting", self.name)
            if self.on_disconnected is not None:
                self.on_disconnected()

    async def _keepalive(self, protocol: RespProtocol) -> None:
        ping = command(b"PING")
        while not protocol.closed.done():
            done, _ = await asyncio.wait([protocol.closed], timeout=KEEPALIVE)
            if done or protocol.transport is None:
                return
            if time.monotonic() - self.last_read > 3 * KEEPALIVE:
                log.error("%s: Redis silent for %.0fs; reconnecting", self.name, 3 * KEEPALIVE)
                protocol.transport.abort()
                return
            protocol.transport.write(ping)

    async def close(self) -> None:
        self._stopping = True
        if self.protocol is not None:
            self.protocol.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RedisUnavailable):
                pass
