"""Replay mode: serve a JSON-lines file of recorded Bybit frames instead of a market.

Replay is **per subscription**: when a connection subscribes to a topic found in the
file, a stream starts for that (connection, topic) and sends the file's frames of that
topic from the first one (normally its snapshot), byte for byte. Timing follows the
frames' ``ts``: frame *i* is sent ``(ts_i - ts_0) / speed`` seconds after the first;
``speed`` 0 sends as fast as the connection takes them. With ``loop`` the file starts
again from its first frame when it ends. Only topics present in the file can be
subscribed to; the REST instruments list is inferred from the file's symbols.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from hotpath.sim.faults import Faults
from hotpath.sim.instruments import Instrument, make_instrument
from hotpath.sim.numfmt import parse

log = logging.getLogger("hotpath.sim.replay")

_YIELD_EVERY = 64  # frames sent between yields to the loop at full speed


class _Head(msgspec.Struct):
    topic: str = ""
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw(b"null")


_decode_head = msgspec.json.Decoder(_Head).decode


class ReplayFile:
    """Frames of a recording grouped by topic, in file order: topic -> [(ts, raw)]."""

    def __init__(self, frames: dict[str, list[tuple[int, bytes]]]) -> None:
        self.frames = frames

    @classmethod
    def load(cls, path: str | Path) -> "ReplayFile":
        frames: dict[str, list[tuple[int, bytes]]] = {}
        for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                head = _decode_head(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ValueError(f"{path}:{number}: not a Bybit frame: {exc}") from None
            if head.topic:
                frames.setdefault(head.topic, []).append((head.ts, line))
        if not frames:
            raise ValueError(f"{path}: no frames with a topic")
        return cls(frames)

    def instruments(self) -> list[Instrument]:
        """One instrument per symbol, its price grid guessed from the recorded prices."""
        out: dict[str, Instrument] = {}
        for topic, frames in self.frames.items():
            symbol = topic.rsplit(".", 1)[-1]
            if symbol not in out:
                out[symbol] = _infer(symbol, frames[0][1], len(out) + 1)
        return list(out.values())


def _infer(symbol: str, raw: bytes, symbol_id: int) -> Instrument:
    data = msgspec.json.decode(raw).get("data")
    level = None
    if isinstance(data, dict) and data.get("b"):
        level = data["b"][0]
    elif isinstance(data, list) and data and "p" in data[0]:
        level = [data[0]["p"], data[0].get("v", "1")]
    price_text, qty_text = (level or ["1.0000", "1"])[:2]
    price, price_scale = parse(price_text)
    _, qty_scale = parse(qty_text)
    inst = make_instrument(symbol, max(price, 1) / 10**price_scale, symbol_id)
    return msgspec.structs.replace(inst, price_scale=price_scale, tick=1, qty_scale=qty_scale,
                                   qty_step=1, start_price=max(price, 1))


class ReplayHub:
    """Publisher of recorded frames, one stream per (connection, topic)."""

    def __init__(self, recording: ReplayFile, speed: float, loop_file: bool) -> None:
        self.recording = recording
        self.speed = speed
        self.loop_file = loop_file
        self.faults = Faults()
        self.messages_sent = 0
        self.paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._streams: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._started = 0

    def is_known(self, name: str) -> bool:
        return name in self.recording.frames

    def sim_ms(self) -> int:
        return int(time.time() * 1000)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        log.info("replaying %d topics at speed %s%s", len(self.recording.frames), self.speed,
                 " (looping)" if self.loop_file else "")

    def stop(self) -> None:
        for task in self._streams.values():
            task.cancel()
        self._streams.clear()

    def subscribe(self, conn: Any, names: list[str]) -> None:
        for name in names:
            key = (id(conn), name)
            self._streams[key] = asyncio.get_running_loop().create_task(self._run(conn, name, key))
            self._started += 1

    def unsubscribe(self, conn: Any, names: list[str]) -> None:
        for name in names:
            task = self._streams.pop((id(conn), name), None)
            if task is not None:
                task.cancel()

    async def _run(self, conn: Any, topic: str, key: tuple[int, str]) -> None:
        frames = self.recording.frames[topic]
        try:
            while True:
                await self._play(conn, frames)
                if not self.loop_file:
                    break
            log.info("conn %s: replay of %s done (%d frames)", conn.conn_id, topic, len(frames))
        finally:
            if self._streams.get(key) is asyncio.current_task():
                del self._streams[key]

    async def _play(self, conn: Any, frames: list[tuple[int, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        start, ts0 = loop.time(), frames[0][0]
        for index, (ts, raw) in enumerate(frames):
            if self.speed > 0:
                delay = (ts - ts0) / 1000 / self.speed - (loop.time() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % _YIELD_EVERY == _YIELD_EVERY - 1:
                await conn.writable()
                await asyncio.sleep(0)
            if self.paused:
                await self._resumed.wait()
            conn.send(raw)
            self.messages_sent += 1

    def pause(self) -> None:
        self.paused = True
        self._resumed.clear()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    def stats(self) -> dict[str, Any]:
        kinds: Counter[str] = Counter(name.split(".", 1)[0] for _, name in self._streams)
        return {"mode": "replay", "streams": len(self._streams), "streams_started": self._started,
                "subscriptions": dict(kinds), "paused": self.paused}
