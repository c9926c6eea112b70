"""One client connection: picows callbacks in, worker calls out, frames written raw."""

from __future__ import annotations

import logging
import math
import socket
import time
from typing import TYPE_CHECKING, Any

import picows

from hotpath.gateway.limits import TokenBucket
from hotpath.protocol.wsframe import text_frame as frame

if TYPE_CHECKING:
    from hotpath.gateway.worker import Worker

log = logging.getLogger("hotpath.gateway.client")

# A closing client that has not answered our close frame after this many seconds is
# aborted: a reader that stopped must not pin our memory.
CLOSE_TIMEOUT = 5.0
INTERNAL_ERROR = 1011


class Client(picows.WSListener):
    """A WebSocket client. Identity-hashable; lives in the worker's registry.

    An exception while handling one of its frames closes this client alone (1011) and
    is logged once; later frames of a closing client are ignored.
    """

    __slots__ = ("worker", "forwarded_for", "initial", "ip", "out", "transport", "raw",
                 "last_seen", "behind_since", "closing", "messages", "ops", "violations",
                 "authed", "auth_expires")

    def __init__(self, worker: Worker, forwarded_for: str, initial: list[str]) -> None:
        super().__init__()
        now = time.monotonic()
        self.worker = worker
        self.forwarded_for = forwarded_for
        self.initial = initial  # streams named in the URL (?streams=...)
        self.ip = ""
        self.out: list[bytes] = []
        self.transport: picows.WSTransport | None = None
        self.raw: Any = None
        self.last_seen = now
        self.behind_since = 0.0
        self.closing = False
        g = worker.config.gateway
        self.messages = TokenBucket(g.max_messages_per_second, g.max_messages_per_second, now)
        self.ops = TokenBucket(g.max_ops_per_second, g.max_ops_per_second, now)
        self.violations = 0
        self.authed = True  # the worker says otherwise when auth is on and no token came yet
        # Unix time after which the client is closed: its token's exp (+ leeway) once in,
        # the auth timeout before; inf: never.
        self.auth_expires = math.inf

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        g = self.worker.config.gateway
        # Past the soft bound the transport calls pause_writing: latest-value streams are
        # held back.
        self.raw.set_write_buffer_limits(high=g.send_buffer_soft, low=g.send_buffer_soft // 4)
        try:
            if g.socket_send_buffer > 0:
                sock = self.raw.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, g.socket_send_buffer)
            self.worker.client_connected(self)
        except Exception:
            self._failed("a new connection")

    def on_ws_frame(self, transport: picows.WSTransport, ws_frame: picows.WSFrame) -> None:
        try:
            self._on_frame(transport, ws_frame)
        except Exception:
            self._failed("a message")

    def _failed(self, what: str) -> None:
        # Our bug, not the client's: this client goes, the worker lives on. Logged once
        # per client, because a closing client's frames are not handled any more.
        log.exception("error handling %s of client %s; closing it with %d", what,
                      self.ip or "?", INTERNAL_ERROR)
        self.worker.errors += 1
        self.close(INTERNAL_ERROR, "internal error")

    def _on_frame(self, transport: picows.WSTransport, ws_frame: picows.WSFrame) -> None:
        self.last_seen = time.monotonic()
        msg_type = ws_frame.msg_type
        if self.closing:
            if msg_type == picows.WSMsgType.CLOSE:  # the peer's answer to our close
                transport.disconnect()
            return
        if msg_type == picows.WSMsgType.TEXT and ws_frame.fin:
            self.worker.ops.handle_text(self, ws_frame.get_payload_as_memoryview())
        elif msg_type == picows.WSMsgType.PING:  # answered here: it counts as activity
            transport.send_pong(ws_frame.get_payload_as_bytes())
        elif msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(ws_frame.get_close_code(), ws_frame.get_close_message())
            transport.disconnect()
        elif msg_type in (picows.WSMsgType.BINARY, picows.WSMsgType.CONTINUATION,
                          picows.WSMsgType.TEXT):  # TEXT here: a fragment (fin unset)
            self.worker.ops.handle_unsupported(self)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.worker.client_disconnected(self)

    def pause_writing(self) -> None:
        self.worker.client_behind(self)

    def resume_writing(self) -> None:
        self.worker.client_drained(self)

    def send(self, payload: bytes) -> None:
        """Send one reply. Behind frames still queued for this client (a flush window is
        open) it queues too, so the client sees everything in the order it happened."""
        raw = self.raw
        if raw is not None and not self.closing:
            if self.out:
                self.out.append(frame(payload))
                return
            raw.write(frame(payload))
            if raw.get_write_buffer_size() > self.worker.fanout.hard_limit:
                self.worker.fanout.close_slow(self)  # asks, never reads the answers

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; hang up when the peer answers it, or abort after a timeout.

        Closing the socket at once would make the kernel answer with RST while the peer
        still has data in flight to us, and the peer would lose our close frame.
        """
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.out = []
        self.transport.send_close(picows.WSCloseCode(code), reason.encode())
        self.worker.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.disconnect(graceful=False)
