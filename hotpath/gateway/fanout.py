"""The hot path: frame each message once, queue the same bytes for every subscriber,
and write each client's frames of one Redis batch with a single write.

Server-to-client frames are unmasked, so one framed ``bytes`` object is valid on every
connection. A client whose unsent bytes pass the hard bound is closed with 1008 so it
can never hold the worker's memory hostage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Collection, Protocol

log = logging.getLogger("hotpath.gateway.fanout")

SLOW_CONSUMER = 1008


class Sink(Protocol):
    """What fan-out needs of a client connection."""

    out: list[bytes]

    def write_frames(self, frames: list[bytes]) -> int: ...

    def close(self, code: int, reason: str) -> None: ...


class Fanout:
    """Per-worker write coalescing: every frame due to a client while the worker reads one
    batch from Redis (or, with a flush window, during that window) goes out in one write."""

    def __init__(self, hard_limit: int, window: float = 0.0) -> None:
        self.hard_limit = hard_limit
        self.window = window  # seconds; 0: flush at the end of each Redis read
        self.scheduled = False
        self.dirty: list[Sink] = []
        self.frames_out = 0
        self.bytes_out = 0
        self.writes = 0
        self.slow_closed = 0

    def queue(self, targets: Collection[Sink], data: bytes) -> None:
        self.frames_out += len(targets)
        self.bytes_out += len(data) * len(targets)
        dirty = self.dirty
        for client in targets:
            out = client.out
            if not out:
                dirty.append(client)
            out.append(data)

    def batch_end(self) -> None:
        """The end of one Redis read: flush now, or once the flush window has passed."""
        if self.window <= 0:
            self.flush()
        elif self.dirty and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(self.window, self.flush)

    def flush(self) -> None:
        """Write every queued frame: one write per client."""
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for client in dirty:
            frames, client.out = client.out, []
            self.writes += 1
            if client.write_frames(frames) > self.hard_limit:
                self.close_slow(client)

    def close_slow(self, client: Sink) -> None:
        self.slow_closed += 1
        client.close(SLOW_CONSUMER, "slow consumer")
