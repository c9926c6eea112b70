"""One client connection: picows callbacks in, worker calls out, frames written raw."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import picows

from hotpath.gateway.fanout import frame

if TYPE_CHECKING:
    from hotpath.gateway.worker import Worker

log = logging.getLogger("hotpath.gateway.client")

# A closing client whose unsent data (close frame included) is still queued after
# this many seconds is aborted: a reader that stopped must not pin our memory.
CLOSE_TIMEOUT = 5.0


class Client(picows.WSListener):  # type: ignore[misc]
    """A WebSocket client. Identity-hashable; lives in the worker's registry."""

    def __init__(self, worker: Worker, peer: str) -> None:
        super().__init__()
        self.worker = worker
        self.peer = peer
        self.out: list[bytes] = []
        self.transport: picows.WSTransport | None = None
        self.raw = None
        self.last_seen = time.monotonic()
        self.closing = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.worker.client_connected(self)

    def on_ws_frame(self, transport: picows.WSTransport, ws_frame: picows.WSFrame) -> None:
        self.last_seen = time.monotonic()
        msg_type = ws_frame.msg_type
        if msg_type == picows.WSMsgType.TEXT and ws_frame.fin:
            self.worker.handle_text(self, ws_frame.get_payload_as_memoryview())
        elif msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(ws_frame.get_close_code(), ws_frame.get_close_message())
            transport.disconnect()
        elif msg_type in (picows.WSMsgType.BINARY, picows.WSMsgType.CONTINUATION) or (
                msg_type == picows.WSMsgType.TEXT):
            self.worker.handle_unsupported(self, msg_type)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.worker.client_disconnected(self)

    def send(self, payload: bytes) -> None:
        """Send one message now (replies to ops; never called inside a fan-out batch)."""
        if self.raw is not None and not self.closing:
            self.raw.write(frame(payload))

    def write_frames(self, frames: list[bytes]) -> int:
        raw = self.raw
        if raw is None or self.closing:
            return 0
        if len(frames) == 1:
            raw.write(frames[0])
        else:
            raw.writelines(frames)
        return raw.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and hang up; abort if the peer does not drain in time."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.transport.send_close(picows.WSCloseCode(code), reason.encode())
        self.transport.disconnect()
        self.worker.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.disconnect(graceful=False)
