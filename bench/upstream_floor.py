"""The floor under S4's publish lag: a reader of the whole universe that does nothing
but decode each frame's ``ts``.

    python -m bench.upstream_floor                 # 550 symbols, 20 s, pinned as --s4-pin
    python -m bench.upstream_floor --seconds 10 --symbols 100
    python -m bench.upstream_floor --isolate       # as bench/run S4 --s4-pin --s4-isolate

It starts a simulator as S4 does (``--stamp-at-write``) on every CPU but the last, and
reads every ticker, trade and orderbook.50 topic of it on the last CPU, where S4 runs
the hotpath node, over connections of 200 topics as the ingest's. What it measures,
exchange timestamp -> receipt, is what the machine and the simulator leave to any
ingest before it does any work: the ingest's own lag is what it adds on top.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import picows
import uvloop

from bench.scenarios import (S4_TOPICS_PER_CONNECTION, _cpu_split, isolate, restore,
                             s4_topics)
from bench.stack import Stack
from hotpath.lag import LagHistogram
from hotpath.protocol import bybit

class _Stamp(msgspec.Struct):
    topic: str = ""
    ts: int = 0


class _Reader(picows.WSListener):  # type: ignore[misc]
    def __init__(self, floor: "Floor") -> None:
        self.floor = floor

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT and self.floor.measuring:
            self.floor.add(frame.get_payload_as_memoryview())


class Floor:
    def __init__(self) -> None:
        self.lag = LagHistogram()
        self.measuring = False
        self._decode = msgspec.json.Decoder(_Stamp).decode

    def add(self, payload: memoryview) -> None:
        stamp = self._decode(payload)
        if stamp.topic and stamp.ts:
            self.lag.add(time.time() * 1000.0 - stamp.ts)

    async def run(self, port: int, symbols: int, seconds: float, warmup: float) -> dict[str, Any]:
        topics = s4_topics(symbols)
        transports = []
        for first in range(0, len(topics), S4_TOPICS_PER_CONNECTION):
            transport, _ = await picows.ws_connect(lambda: _Reader(self),
                                                   f"ws://127.0.0.1:{port}/v5/public/linear")
            chunk = topics[first:first + S4_TOPICS_PER_CONNECTION]
            for i in range(0, len(chunk), 10):
                transport.send(picows.WSMsgType.TEXT, bybit.op_request("subscribe", chunk[i:i + 10]))
            transports.append(transport)
        await asyncio.sleep(warmup)
        self.measuring = True
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        self.measuring = False
        cpu = time.process_time() - cpu
        for transport in transports:
            transport.disconnect()
        p50, p99, p999 = self.lag.percentiles((50, 99, 99.9))
        frames = self.lag.total
        return {"frames": frames, "per_second": round(frames / seconds),
                "lag_ms": {"p50": p50, "p99": p99, "p999": p999},
                "us_cpu_per_frame": round(1e6 * cpu / max(1, frames), 2),
                "reader_cpus": sorted(os.sched_getaffinity(0))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.upstream_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=550)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--isolate", action="store_true",
                   help="also move every other movable task off the reader's CPU for the run")
    ns = p.parse_args(argv)
    reader_cpus, others = _cpu_split()
    affinity = os.sched_getaffinity(0)
    moved = isolate(reader_cpus)[0] if ns.isolate else []
    try:
        result = _measure(ns, reader_cpus, others, affinity)
    finally:
        restore(moved)
    lag = result["lag_ms"]
    print(f"{result['frames']:,} frames ({result['per_second']:,}/s) read on CPUs "
          f"{result['reader_cpus']}{' (isolated)' if ns.isolate else ''}: exchange ts -> "
          f"receipt p50 {lag['p50']} ms, p99 {lag['p99']} ms, p99.9 {lag['p999']} ms; the "
          f"reader's CPU {result['us_cpu_per_frame']} us per frame")
    return 0


def _measure(ns: argparse.Namespace, reader_cpus: set[int], others: set[int],
             affinity: set[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hotpath-floor-") as logs:
        if others:  # the simulator inherits this
            os.sched_setaffinity(0, others)
        with Stack(Path(logs)) as stack:
            _, port = stack.sim(["--symbols", str(ns.symbols), "--stamp-at-write"])
            os.sched_setaffinity(0, reader_cpus or affinity)
            result: dict[str, Any] = uvloop.run(
                Floor().run(port, ns.symbols, ns.seconds, ns.warmup))
    os.sched_setaffinity(0, affinity)
    return result


if __name__ == "__main__":
    sys.exit(main())
