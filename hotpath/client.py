"""A Python client for hotpath: reconnects, resubscribes, keeps local state, heals gaps.

    async with HotpathClient("ws://localhost:8080/ws") as client:
        await client.subscribe(["ticker:BTCUSDT", "orderbook:50:BTCUSDT"])
        async for msg in client:
            print(msg.key, msg.type, msg.seq, client.state(msg.key))

Messages are typed (``StreamMessage``, msgspec Structs). For every stream the client
keeps the merged state: ticker fields, the order book (``{"bids": {price: size},
"asks": {...}}``), candles by start time, recent trades and liquidations. An update
whose ``seq`` is not the previous one + 1 makes the client ask for a fresh snapshot
(and the gap is not passed on). After a lost connection it reconnects with
exponential backoff and full jitter and subscribes everything again.

For a node with authentication on, pass ``token``: a string, or a function returning
one (called on every connect, so a fresh JWT can be fetched each time). It is sent as
the first message of each connection. A refused token comes back as a 401 ``error``
reply (``error="UNAUTHORIZED"``) and the client retries with backoff; a connection
closed because its token expired reconnects at once, with a new token from the function.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import Any, AsyncIterator, Callable

import msgspec
import picows

from hotpath.protocol.streams import KINDS

log = logging.getLogger("hotpath.client")

RECENT = 200  # trades and liquidations kept per stream
_OWN = "hotpath-client"  # req_id of the client's own (re)subscribes
CANDLES = 500  # candles kept per kline stream


class StreamMessage(msgspec.Struct):
    """A data or status message of one stream."""

    stream: str
    type: str
    data: Any
    timestamp: int
    source: str
    seq: int

    @property
    def key(self) -> str:
        """The canonical stream name, e.g. ``orderbook:50:BTCUSDT``."""
        parts = self.stream.split(".")
        for i, part in enumerate(parts):
            if part in KINDS:
                return ":".join(parts[i:])
        return self.stream


class Reply(msgspec.Struct):
    """Any op reply or error (``op`` says which)."""

    op: str
    success: bool | None = None
    args: list[str] | None = None
    rejected: list[dict[str, Any]] | None = None
    message: str | None = None
    code: int | None = None
    error: str | None = None
    timestamp: int | None = None
    req_id: Any = None


class _Envelope(msgspec.Struct):
    op: str | None = None
    stream: str | None = None


_peek = msgspec.json.Decoder(_Envelope)
_message = msgspec.json.Decoder(StreamMessage)
_reply = msgspec.json.Decoder(Reply)
_encode = msgspec.json.Encoder().encode


class StreamState:
    """Merged state of one stream, built from its snapshot and updates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seq: int | None = None
        self.value: Any = None
        self.status = "waiting"  # waiting (for a snapshot), live, stale, resync, delisted

    def apply(self, msg: StreamMessage) -> str:
        """Apply ``msg``: "ok"; "ignored" while waiting for a snapshot; "gap" when an
        update does not follow the last one (the caller asks for a fresh snapshot)."""
        if msg.type == "status":
            self.status = msg.data.get("status", "stale")
            return "ok"
        if msg.type == "snapshot":
            self.seq, self.status = msg.seq, "live"
            self.value = _fresh(self.kind, msg.data)
            return "ok"
        if self.seq is None:
            return "ignored"
        if msg.seq != self.seq + 1:
            self.seq, self.status = None, "waiting"
            return "gap"
        self.seq = msg.seq
        _merge(self.kind, self.value, msg.data)
        return "ok"


def _fresh(kind: str, data: Any) -> Any:
    if kind == "orderbook":
        return {"bids": dict(data["bids"]), "asks": dict(data["asks"])}
    if kind == "kline":
        return {data["start"]: data}
    if kind in ("trade", "liquidation"):
        return collections.deque(data, maxlen=RECENT)
    return dict(data)


def _merge(kind: str, value: Any, data: Any) -> None:
    if kind == "orderbook":
        for side in ("bids", "asks"):
            book = value[side]
            for price, size in data[side]:
                if size.strip("0.") == "":
                    book.pop(price, None)
                else:
                    book[price] = size
    elif kind == "kline":
        value[data["start"]] = data
        while len(value) > CANDLES:
            del value[min(value)]
    elif kind in ("trade", "liquidation"):
        value.extend(data)
    else:
        value.update(data)


class _Listener(picows.WSListener):  # type: ignore[misc]
    def __init__(self, client: HotpathClient) -> None:
        self.client = client

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT:
            self.client._on_text(frame.get_payload_as_bytes())
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.client._on_disconnected()


class HotpathClient:
    """See the module docstring. Not thread-safe; use it from one event loop."""

    def __init__(self, url: str, *, reconnect: bool = True, max_delay: float = 30.0,
                 ping_interval: float = 20.0, queue_size: int = 100_000,
                 token: str | Callable[[], str] | None = None) -> None:
        self.url = url
        self.token = token
        self.reconnect = reconnect
        self.max_delay = max_delay
        self.ping_interval = ping_interval
        self.streams: dict[str, StreamState] = {}
        self.replies: asyncio.Queue[Reply] = asyncio.Queue()
        self.reconnects = 0
        self.gaps = 0
        self.dropped = 0  # messages not queued for iteration because the reader lagged
        self._queue: asyncio.Queue[StreamMessage | None] = asyncio.Queue(queue_size)
        self._transport: picows.WSTransport | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._retry_scheduled = False
        self._unauthorized = False  # this connection's token was refused
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HotpathClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def subscribe(self, streams: list[str]) -> Reply:
        """Subscribe; returns the server's reply (accepted args and rejected ones)."""
        reply = await self._request({"op": "subscribe", "args": streams})
        for name in reply.args or []:
            kind = name.split(":", 1)[0]
            self.streams.setdefault(name, StreamState(kind))
        return reply

    async def unsubscribe(self, streams: list[str]) -> Reply:
        reply = await self._request({"op": "unsubscribe", "args": streams})
        for name in reply.args or []:
            self.streams.pop(name, None)
        return reply

    def state(self, stream: str) -> Any:
        """The merged state of ``stream`` (None before its first snapshot)."""
        entry = self.streams.get(stream)
        return entry.value if entry is not None else None

    async def _request(self, body: dict[str, Any]) -> Reply:
        await self._connected.wait()
        assert self._transport is not None
        self._transport.send(picows.WSMsgType.TEXT, _encode(body))
        while True:
            reply = await asyncio.wait_for(self.replies.get(), 10)
            if reply.op in (body["op"], "error"):
                return reply

    def __aiter__(self) -> AsyncIterator[StreamMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamMessage]:
        while True:
            msg = await self._queue.get()
            if msg is None:
                return
            yield msg

    # -- connection -----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                transport, _ = await picows.ws_connect(lambda: _Listener(self), self.url)
            except (OSError, asyncio.TimeoutError, picows.WSError) as exc:
                if not self.reconnect:
                    raise
                attempt = await self._backoff(attempt, f"cannot connect to {self.url} ({exc})")
                continue
            self._transport = transport
            self._unauthorized = False
            self._authenticate(transport)  # before anything else goes out
            self._connected.set()
            if self.streams:
                self._resubscribe(list(self.streams), fresh_connection=True)
            pinger = asyncio.create_task(self._ping(transport))
            await transport.wait_disconnected()
            pinger.cancel()
            if self._closing or not self.reconnect:
                break
            self.reconnects += 1
            if self._unauthorized:  # the same token would be refused again at once
                attempt = await self._backoff(attempt, f"{self.url} refused our token")
            else:
                attempt = 0
                log.info("disconnected from %s; reconnecting", self.url)
        self._queue.put_nowait(None)

    async def _backoff(self, attempt: int, why: str) -> int:
        delay = random.uniform(0, min(self.max_delay, 0.5 * 2 ** attempt))
        log.info("%s; retrying in %.1fs", why, delay)
        await asyncio.sleep(delay)
        return attempt + 1

    def _authenticate(self, transport: picows.WSTransport) -> None:
        if self.token is None:
            return
        token = self.token() if callable(self.token) else self.token
        transport.send(picows.WSMsgType.TEXT, _encode(
            {"op": "auth", "token": token, "req_id": _OWN}))

    async def _ping(self, transport: picows.WSTransport) -> None:
        while not transport.is_disconnected:
            await asyncio.sleep(self.ping_interval)
            transport.send(picows.WSMsgType.TEXT, b'{"op":"ping"}')

    def _resubscribe(self, names: list[str], fresh_connection: bool = False) -> None:
        """Ask again for ``names``; their replies are ours, not the caller's."""
        if self._transport is None:
            return
        for name in names:
            if name in self.streams:
                self.streams[name] = StreamState(self.streams[name].kind)
        if not fresh_connection:
            self._transport.send(picows.WSMsgType.TEXT, _encode(
                {"op": "unsubscribe", "args": names, "req_id": _OWN}))
        self._transport.send(picows.WSMsgType.TEXT, _encode(
            {"op": "subscribe", "args": names, "req_id": _OWN}))

    def _on_disconnected(self) -> None:
        self._connected.clear()
        self._transport = None
        for entry in self.streams.values():
            entry.status = "stale"

    def _on_text(self, payload: bytes) -> None:
        try:
            head = _peek.decode(payload)
            if head.stream is None:
                reply = _reply.decode(payload)
                if reply.error == "UNAUTHORIZED":
                    self._unauthorized = True
                    self.replies.put_nowait(reply)  # the caller's to see, whoever asked
                elif reply.req_id == _OWN:
                    self._own_reply(reply)
                elif reply.op != "pong":
                    self.replies.put_nowait(reply)
                return
            msg = _message.decode(payload)
        except msgspec.MsgspecError as exc:
            log.warning("undecodable message from %s: %s", self.url, exc)
            return
        entry = self.streams.get(msg.key)
        if entry is None:
            return  # a stream we just left
        outcome = entry.apply(msg)
        if outcome == "gap":
            self.gaps += 1
            log.info("%s: seq gap at %d; asking for a fresh snapshot", msg.key, msg.seq)
            self._resubscribe([msg.key])
        elif outcome == "ok":
            try:
                self._queue.put_nowait(msg)
            except asyncio.QueueFull:  # the reader fell behind; the state stays exact
                self.dropped += 1

    def _own_reply(self, reply: Reply) -> None:
        """A refused (re)subscribe of our own (the node is starting, or rate limits):
        ask again for every stream still waiting, after a short jittered pause."""
        if reply.op != "error" or reply.code not in (429, 503) or self._retry_scheduled:
            return
        self._retry_scheduled = True
        delay = random.uniform(0.5, 1.5)
        log.info("%s refused our subscribe (%s); asking again in %.1fs", self.url,
                 reply.message, delay)
        asyncio.get_running_loop().call_later(delay, self._retry_waiting)

    def _retry_waiting(self) -> None:
        self._retry_scheduled = False
        waiting = [name for name, entry in self.streams.items() if entry.status != "live"]
        if waiting and self._transport is not None:
            self._transport.send(picows.WSMsgType.TEXT, _encode(
                {"op": "subscribe", "args": waiting, "req_id": _OWN}))

    async def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.TimeoutError, Exception):
                self._task.cancel()

