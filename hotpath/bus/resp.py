"""A lean Redis connection for the hot paths: RESP encoding by hand, hiredis parsing.

redis-py costs tens of microseconds per command in Python; publishing thousands of
messages a second and reading them back in the gateways wants batches written with
one ``transport.write`` and replies parsed in C. This module does only that:
connect (TCP, TLS or unix socket), authenticate, select a database, then hand every
parsed reply to a callback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

log = logging.getLogger("hotpath.bus")


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached or refused the connection set-up."""


def command(*parts: bytes | str | int) -> bytes:
    """Encode one command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif isinstance(part, int):
            part = b"%d" % part
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def publish_command(channel: bytes, payload: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel), channel, len(payload), payload)


class Address:
    """Where and how to connect, parsed from a redis://, rediss:// or unix:// URL."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r} in {url!r}")
        query = parse_qs(parsed.query)
        self.tls = parsed.scheme == "rediss"
        self.path = parsed.path if parsed.scheme == "unix" else ""
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.username = unquote(parsed.username) if parsed.username else ""
        self.password = unquote(parsed.password) if parsed.password else ""
        db = query.get("db", [""])[0]
        if parsed.scheme != "unix" and parsed.path.strip("/"):
            db = parsed.path.strip("/")
        self.db = int(db) if db else 0

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class RespProtocol(asyncio.Protocol):
    """Parses every reply with hiredis and hands it to ``on_reply`` (or a waiter)."""

    def __init__(self, on_reply: Callable[[Any], None] | None = None,
                 on_lost: Callable[[BaseException | None], None] | None = None) -> None:
        self.reader = hiredis.Reader()
        self.on_reply = on_reply
        self.on_lost = on_lost
        self.on_batch_end: Callable[[], None] | None = None
        self.transport: Any = None  # uvloop's unix transport is no asyncio.Transport subclass
        self.waiters: list[asyncio.Future[Any]] = []
        self.closed = asyncio.get_running_loop().create_future()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets = self.reader.gets
        while (reply := gets()) is not False:
            if self.waiters:
                waiter = self.waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(reply)
            elif self.on_reply is not None:
                self.on_reply(reply)
        if self.on_batch_end is not None:
            self.on_batch_end()

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(RedisUnavailable("connection lost"))
        self.waiters.clear()
        if not self.closed.done():
            self.closed.set_result(exc)
        if self.on_lost is not None:
            self.on_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    async def request(self, data: bytes) -> Any:
        """Send one command and wait for its reply (set-up only; not for the hot path)."""
        if self.transport is None or self.transport.is_closing():
            raise RedisUnavailable("not connected")
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(data)
        reply = await waiter
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"Redis said: {reply}")
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(address: Address, protocol: RespProtocol, timeout: float = 5.0) -> RespProtocol:
    """Open the connection, authenticate and select the database. Raises RedisUnavailable."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if address.path:
                await loop.create_unix_connection(lambda: protocol, address.path)
            else:
                context = ssl.create_default_context() if address.tls else None
                await loop.create_connection(lambda: protocol, address.host, address.port,
                                             ssl=context)
            if address.password:
                auth = ((address.username, address.password) if address.username
                        else (address.password,))
                await protocol.request(command(b"AUTH", *auth))
            if address.db:
                await protocol.request(command(b"SELECT", address.db))
            await protocol.request(command(b"PING"))
    except (OSError, asyncio.TimeoutError, RedisUnavailable) as exc:
        protocol.close()
        raise RedisUnavailable(f"cannot connect to Redis at {address}: {exc or 'timeout'}") from None
    return protocol
