"""The simulator's one port: picows WebSocket streams, Bybit REST and ``/sim/`` control.

picows hands every HTTP request to :meth:`SimServer.route` before any upgrade. WebSocket
paths get a :class:`ClientListener`; REST and control paths get a complete HTTP answer
(picows sends it with ``Connection: close``). A listener never blocks: ``send`` writes or
drops (stall fault), and a client whose write buffer passes ``--max-buffer`` is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from picows import (WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest,
                    WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server)

from hotpath.sim import rest
from hotpath.sim.faults import Faults
from hotpath.sim.instruments import Instrument
from hotpath.sim.session import INVERSE, LINEAR, SPOT, Session
from hotpath.sim.settings import SimConfig

log = logging.getLogger("hotpath.sim.server")

WS_PATHS = {b"/v5/public/linear": LINEAR, b"/v5/public/spot": SPOT, b"/v5/public/inverse": INVERSE}
_JSON = {"Content-Type": "application/json"}
CLOSE_SLOW = WSCloseCode.POLICY_VIOLATION  # write buffer over --max-buffer


class Publisher(Protocol):
    """What the server needs from the synthetic hub or the replay hub."""

    faults: Faults
    messages_sent: int

    def is_known(self, name: str) -> bool: ...
    def subscribe(self, conn: Any, names: list[str]) -> None: ...
    def unsubscribe(self, conn: Any, names: list[str]) -> None: ...
    def sim_ms(self) -> int: ...
    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def stop(self) -> None: ...


class ClientListener(WSListener):
    """One WebSocket client: its session, its send path and its liveness."""

    def __init__(self, server: "SimServer", flavor: str) -> None:
        super().__init__()
        self.server = server
        self.conn_id = str(uuid.uuid4())
        self.session = Session(self.conn_id, flavor, server.publisher.is_known)
        self.transport: WSTransport | None = None
        self.peer = "?"
        self.last_rx = time.monotonic()
        self.connected_at = self.last_rx
        self.stalled = False
        self.congested = False
        self.sent = 0
        self.dropped = 0
        self._drained: asyncio.Event | None = None
        self._closing: Callable[[], bool] = lambda: True
        self._write: Callable[[bytes], object] = lambda data: None
        self._out: list[bytes] = []  # framed messages waiting for this tick's flush
        self._queued = 0  # their bytes
        self._stamps: list[int] = []  # where their ts digits start (--stamp-at-write)

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._closing = transport.underlying_transport.is_closing
        self._write = transport.underlying_transport.write
        peer = transport.underlying_transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server.connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.last_rx = time.monotonic()
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            self.server.handle_op(self, frame.get_payload_as_bytes())
        elif kind == WSMsgType.PING:
            # Auto-pong is off so that a WebSocket PING also counts as a heartbeat.
            if not self.stalled:
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.disconnected(self)

    def pause_writing(self) -> None:
        self.congested = True

    def resume_writing(self) -> None:
        self.congested = False
        if self._drained is not None:
            self._drained.set()

    # -- used by the hubs -----------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Write one message now (replies, snapshots, replay), or drop it (stalled)."""
        transport = self.transport
        if self.stalled or transport is None or self._closing():
            self.dropped += 1
            return
        transport.send(WSMsgType.TEXT, payload)
        self.sent += 1
        if self.congested:
            self._check_buffer()

    def queue(self, frame: bytes, stamp_at: int = -1) -> bool:
        """Add a ready WebSocket frame (see :func:`ws_frame`) to this tick's write.
        ``stamp_at``: where in ``frame`` its ``ts`` digits start, when the flush is to
        overwrite them with the time of the write (``--stamp-at-write``).

        Returns True for the first frame of the tick, so the hub knows whom to flush.
        A stalled connection loses the frame, as a stalled network would."""
        if self.stalled:
            self.dropped += 1
            return False
        out = self._out
        if stamp_at >= 0:
            self._stamps.append(self._queued + stamp_at)
        self._queued += len(frame)
        out.append(frame)
        self.sent += 1
        return len(out) == 1

    def flush(self, stamp: bytes = b"") -> None:
        """One write (one syscall) for every frame queued this tick; ``stamp`` (epoch ms
        digits) goes into every ``ts`` queued with a place for it."""
        out, stamps, self._out = self._out, self._stamps, []
        self._queued = 0
        if stamps:
            self._stamps = []
        if not out or self._closing():
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if stamps and stamp:
            buffer, width = bytearray(data), len(stamp)
            for at in stamps:
                if buffer[at:at + width].isdigit():  # same width: a ts of this era
                    buffer[at:at + width] = stamp
            data = bytes(buffer)
        # Frames go straight to the socket transport: picows writes its own frames
        # (pongs, close) through the same transport, so order on the wire is kept.
        self._write(data)
        if self.congested:
            self._check_buffer()

    def _check_buffer(self) -> None:
        transport = self.transport
        assert transport is not None
        size = transport.underlying_transport.get_write_buffer_size()
        if size > self.server.config.max_buffer:
            log.warning("conn %s too slow (%d bytes buffered): closing", self.conn_id, size)
            transport.send_close(CLOSE_SLOW, b"slow consumer")
            transport.disconnect(graceful=False)

    async def writable(self) -> None:
        """Wait until the kernel takes data again (replay at full speed uses it)."""
        if not self.congested:
            return
        self._drained = self._drained or asyncio.Event()
        self._drained.clear()
        await self._drained.wait()

    def close(self, code: WSCloseCode = WSCloseCode.GOING_AWAY, reason: str = "",
              abrupt: bool = False) -> None:
        if self.transport is None:
            return
        if abrupt:
            self.transport.disconnect(graceful=False)
            return
        self.transport.send_close(code, reason.encode())
        self.transport.disconnect()


class SimServer:
    """The listening socket, the live connections and the HTTP router."""

    def __init__(self, config: SimConfig, publisher: Publisher, universe: list[Instrument]) -> None:
        self.config = config
        self.publisher = publisher
        self.universe = universe
        self.closed: set[str] = set()  # delisted through /sim/delist
        self.conns: dict[str, ClientListener] = {}
        self.port = 0
        self.total_connections = 0
        self.upgrade_attempts = 0  # WebSocket upgrades asked for, refused ones included
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> int:
        """Listen and start the clocks; returns the bound port."""
        from hotpath.sim.control import Control  # control imports this module

        self._loop = asyncio.get_running_loop()
        self.control = Control(self)
        self._server = await ws_create_server(
            self.route, self.config.host, self.config.port, enable_auto_pong=False,
            max_frame_size=1024 * 1024, logger_name="sim")
        self.port = self._server.sockets[0].getsockname()[1]
        self.publisher.start(self._loop)
        self._schedule_sweep()
        return self.port

    async def stop(self) -> None:
        """Stop accepting, say goodbye (1001) to every client, stop the clocks."""
        self.publisher.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns.values()):
            conn.close(WSCloseCode.GOING_AWAY, "server shutting down")
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- routing --------------------------------------------------------------------

    def route(self, request: WSUpgradeRequest) -> Any:
        parts = urlsplit(request.path.decode("latin-1"))
        path = parts.path.encode()
        flavor = WS_PATHS.get(path)
        if flavor is not None:
            self.upgrade_attempts += 1
            if self.publisher.faults.refusing(time.monotonic()):
                log.info("refused a WebSocket connection (refuse fault)")
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(503, b"503 Service Unavailable"), None)
            return ClientListener(self, flavor)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        status, body = self.http(parts.path, query)
        if status == 200:
            response = WSUpgradeResponse.create_ok_response(body, _JSON)
        else:
            response = WSUpgradeResponse.create_error_response(status, body, _JSON)
        return WSUpgradeResponseWithListener(response, None)

    def http(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        now_ms = self.publisher.sim_ms()
        if path == "/v5/market/instruments-info":
            return 200, rest.instruments_info(self.universe, query, now_ms,
                                                  frozenset(self.closed))
        if path == "/v5/market/tickers":
            symbols = [inst.symbol for inst in self.universe] if self.control.tickers_ok else []
            return 200, rest.tickers(symbols, self.control.ticker_row, query, now_ms)
        if path == "/v5/market/time":
            return 200, rest.server_time(now_ms)
        if path.startswith("/sim/"):
            return self.control.handle(path, query)
        return 404, b'{"error":"not found"}'

    # -- connections ----------------------------------------------------------------

    def connected(self, conn: ClientListener) -> None:
        self.conns[conn.conn_id] = conn
        self.total_connections += 1
        log.info("conn %s connected from %s (%s), %d open", conn.conn_id, conn.peer,
                 conn.session.flavor, len(self.conns))

    def disconnected(self, conn: ClientListener) -> None:
        if self.conns.pop(conn.conn_id, None) is None:
            return
        self.publisher.unsubscribe(conn, sorted(conn.session.topics))
        lived = time.monotonic() - conn.connected_at
        log.info("conn %s disconnected after %.1fs: %d topics, %d sent, %d dropped; %d open",
                 conn.conn_id, lived, len(conn.session.topics), conn.sent, conn.dropped,
                 len(self.conns))

    def handle_op(self, conn: ClientListener, payload: bytes) -> None:
        rejection = self.publisher.faults.rejection(time.monotonic())
        outcome = conn.session.handle(payload, rejection)
        conn.send(outcome.reply)
        if outcome.error:
            log.info("conn %s %s rejected: %s", conn.conn_id, outcome.op or "request", outcome.error)
        elif outcome.subscribe:
            self.publisher.subscribe(conn, outcome.subscribe)
            log.info("conn %s subscribed %d topics (%s%s), %d total", conn.conn_id,
                     len(outcome.subscribe), outcome.subscribe[0],
                     ", ..." if len(outcome.subscribe) > 1 else "", len(conn.session.topics))
        elif outcome.unsubscribe:
            self.publisher.unsubscribe(conn, outcome.unsubscribe)
            log.info("conn %s unsubscribed %d topics, %d left", conn.conn_id,
                     len(outcome.unsubscribe), len(conn.session.topics))

    # -- idle connections -----------------------------------------------------------

    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        every = max(0.05, min(5.0, self.config.idle_timeout / 10))
        self._sweeper = self._loop.call_later(every, self._sweep)

    def _sweep(self) -> None:
        limit = time.monotonic() - self.config.idle_timeout
        for conn in list(self.conns.values()):
            if conn.last_rx < limit:
                log.info("conn %s idle for %.1fs (no ping or op): closing", conn.conn_id,
                         self.config.idle_timeout)
                conn.close(WSCloseCode.GOING_AWAY, "idle timeout")
        self._schedule_sweep()
