"""The ingest's cost per upstream frame, without sockets, Redis or a simulator running.

    python -m bench.ingest_replay record frames.jsonl --seconds 15   # S4's universe
    python -m bench.ingest_replay time frames.jsonl                  # us per frame
    python -m bench.ingest_replay instructions frames.jsonl          # valgrind

``record`` starts a simulator with S4's 550 symbols and keeps what a client subscribed to
every ticker, trade and orderbook.50 topic receives, one frame per line. The other two
replay the file through the ingest's frame handling (``BybitConnection.on_text`` on, as
live, the state code and the Redis command builder), with the Redis connection replaced
by a sink that counts the bytes: the first fifth warms the books up, the rest is measured.
``instructions`` runs the replay under valgrind twice (no frames, then ``--frames``) and
prints the difference per frame: a count that does not change with the machine's hour.
Numbers from these commands are in the README's Benchmarks (S4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench.scenarios import S4_TOPICS_PER_CONNECTION, s4_topics
from bench.stack import Stack
from hotpath.config import load
from hotpath.ingest.conn import BybitConnection, ConnectLimiter
from hotpath.ingest.service import Ingest, Route
from hotpath.protocol import bybit, streams



class _Topic(msgspec.Struct):
    topic: str = ""


# -- record ---------------------------------------------------------------------------------

async def _record(port: int, symbols: int, seconds: float) -> list[str]:
    base = f"127.0.0.1:{port}"
    topics = s4_topics(symbols)
    async with aiohttp.ClientSession() as session:
        frames: list[str] = []
        sockets = []
        for first in range(0, len(topics), S4_TOPICS_PER_CONNECTION):
            ws = await session.ws_connect(f"ws://{base}/v5/public/linear", max_msg_size=0)
            chunk = topics[first:first + S4_TOPICS_PER_CONNECTION]
            for i in range(0, len(chunk), 10):
                await ws.send_str(bybit.op_request("subscribe", chunk[i:i + 10]).decode())
            sockets.append(ws)
        end = time.monotonic() + seconds

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            while (left := end - time.monotonic()) > 0:
                try:
                    message = await ws.receive(timeout=left)
                except asyncio.TimeoutError:
                    break
                if message.type == aiohttp.WSMsgType.TEXT:
                    frames.append(message.data)

        await asyncio.gather(*(read(ws) for ws in sockets))
        for ws in sockets:
            await ws.close()
    return frames


def record(out: Path, seconds: float, symbols: int) -> int:
    with tempfile.TemporaryDirectory(prefix="hotpath-replay-") as logs, Stack(Path(logs)) as stack:
        _, port = stack.sim(["--symbols", str(symbols)])
        frames = asyncio.run(_record(port, symbols, seconds))
    out.write_text("".join(frame.replace("\n", "") + "\n" for frame in frames))
    return len(frames)


# -- replay ---------------------------------------------------------------------------------

class _Sink:
    """Stands in for the Redis socket: counts what the publisher writes."""

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)

    def get_write_buffer_size(self) -> int:
        return 0


class _Protocol:
    def __init__(self) -> None:
        self.transport = _Sink()


def _replayer(frames: list[bytes]) -> tuple[Any, Ingest]:
    """The ingest, holding a route for every topic in ``frames``, and its frame handler."""
    ingest = Ingest(load(None, {"HOTPATH_REDIS_URL": "redis://127.0.0.1:1"}))
    ingest.leading = True
    ingest.publisher.protocol = _Protocol()  # type: ignore[assignment]
    decode = msgspec.json.Decoder(_Topic).decode
    topics = {topic for topic in (decode(f).topic for f in frames) if topic}
    ingest.symbols = sorted({topic.rsplit(".", 1)[1] for topic in topics})
    ingest.symbol_set = frozenset(ingest.symbols)
    for topic in topics:
        stream = streams.from_bybit_topic(topic)
        assert stream is not None, topic
        route = Route(stream, ingest)
        ingest.routes[route.topic] = route
    conn = BybitConnection(0, "ws://replay", ingest, ConnectLimiter(500, 300.0, 0.1), 20, 30, 60)
    return conn.on_text, ingest


def _run(on_text: Any, ingest: Ingest, frames: list[bytes]) -> None:
    flush = ingest.publisher.flush
    for i, frame in enumerate(frames):
        on_text(memoryview(frame))
        if i % 32 == 31:  # as live: the publisher writes once per slice of frames
            flush()
    flush()


def replay(path: Path, count: int | None) -> dict[str, Any]:
    frames = [line.encode() for line in path.read_text().splitlines() if line]

    async def go() -> dict[str, Any]:
        on_text, ingest = _replayer(frames)
        warm = len(frames) // 5
        _run(on_text, ingest, frames[:warm])
        measured = frames[warm:] if count is None else frames[warm:warm + count]
        started = time.process_time()
        _run(on_text, ingest, measured)
        seconds = time.process_time() - started
        per_frame = 1e6 * seconds / max(1, len(measured))
        return {"frames": len(measured), "us_per_frame": round(per_frame, 2),
                "resyncs": ingest.resyncs, "bad_messages": dict(ingest.bad_messages),
                "published": ingest.publisher.published}

    return asyncio.run(go())


def instructions(path: Path, count: int) -> float:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")

    # -P as in this process: a compiled build first on PYTHONPATH stays first
    python = [sys.executable, *(["-P"] if sys.flags.safe_path else [])]

    def total(n: int) -> int:
        result = subprocess.run(
            [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
             *python, "-m", "bench.ingest_replay", "time", str(path), "--frames", str(n)],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
        if result.returncode != 0 or found is None:
            raise SystemExit(f"valgrind run failed:\n{result.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    return (total(count) - total(0)) / count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record a simulator's S4 traffic to FILE")
    r.add_argument("file", type=Path)
    r.add_argument("--seconds", type=float, default=15.0)
    r.add_argument("--symbols", type=int, default=550)
    t = sub.add_parser("time", help="CPU time per frame of a replay of FILE")
    t.add_argument("file", type=Path)
    t.add_argument("--frames", type=int, default=None, help="measure this many (default all)")
    i = sub.add_parser("instructions", help="instructions per frame (valgrind)")
    i.add_argument("file", type=Path)
    i.add_argument("--frames", type=int, default=20_000)
    ns = p.parse_args(argv)
    if ns.command == "record":
        print(f"{record(ns.file, ns.seconds, ns.symbols)} frames -> {ns.file}")
    elif ns.command == "time":
        print(json.dumps(replay(ns.file, ns.frames)))
    else:
        print(f"{instructions(ns.file, ns.frames):.0f} instructions per frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
