"""``python -m bench.lagprobe``: publish lag of a hotpath ingest, seen from Redis.

PSUBSCRIBEs to every stream channel of a namespace (``{ns}:s:*``) and measures, per
stream kind, the time from the exchange timestamp in each message to its arrival here,
the message rate, and seq continuity of updates on Redis. Prints one JSON object.

With ``--sample-every N`` it SUBSCRIBEs instead to the streams (``--sample-streams``
kinds) of every Nth symbol of the ingest's instrument list, learnt from its first
status: every message costs the probe and Redis CPU on the cores being measured, and
the lag of one stream in N is the lag of all of them (the ingest treats them alike).

With ``--upstream-ws URL`` (and sampling) it also subscribes those streams' topics
directly upstream and measures exchange timestamp -> receipt there: what a client that
does nothing but read gets from the same exchange on the same cores, the reference for
the ingest's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import msgspec
import picows
import uvloop

from bench.loadgen.checker import bucket, latency_summary, merge_hist
from hotpath.bus.resp import Address, RespProtocol, command, connect
from hotpath.lag import percentiles_between
from hotpath.protocol import bybit, streams


class _Stamp(msgspec.Struct):
    timestamp: int = 0


class _UpstreamStamp(msgspec.Struct):
    topic: str = ""
    ts: int = 0


_decode_upstream = msgspec.json.Decoder(_UpstreamStamp).decode


class _Tap(picows.WSListener):  # type: ignore[misc]
    """Exchange timestamp -> receipt of every upstream push, and nothing else."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type != picows.WSMsgType.TEXT or not self.probe.measuring:
            return
        try:
            stamp = _decode_upstream(frame.get_payload_as_memoryview())
        except msgspec.DecodeError:
            return
        if stamp.topic and stamp.ts:
            ms = time.time() * 1000.0 - stamp.ts
            h = self.probe.upstream
            key = bucket(ms)
            h[key] = h.get(key, 0) + 1
            self.probe.upstream_max = max(self.probe.upstream_max, ms)


class _Status(msgspec.Struct):
    symbols: list[str] = []
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    hold_p50_ms: float = 0.0
    hold_p99_ms: float = 0.0
    publish_lag_p50_ms: float = 0.0
    publish_lag_p99_ms: float = 0.0
    lag_buckets: dict[str, dict[int, int]] = {}


_decode = msgspec.json.Decoder(_Stamp).decode
_decode_status = msgspec.json.Decoder(_Status).decode


class Probe:
    def __init__(self, prefix: bytes, status: bytes) -> None:
        self.prefix = prefix
        self.status = status
        self.taps: list[picows.WSTransport] = []
        self.symbols: list[str] = []  # from the ingest's first status
        self.on_symbols: Any = None  # called once with them
        self.hist: dict[str, dict[int, int]] = {}
        self.upstream: dict[int, int] = {}  # the tap's lag histogram
        self.upstream_max = 0.0
        self.max_ms: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.last: dict[bytes, int] = {}
        self.gaps = 0
        self.bad = 0
        self.measuring = False
        self.arrival: list[tuple[float, float]] = []  # the ingest's own (p50, p99)
        self.hold: list[tuple[float, float]] = []
        self.written: list[tuple[float, float]] = []
        # The ingest's lag histograms since its start: its last status before the
        # window, and its last one in it.
        self.buckets_before: dict[str, dict[int, int]] | None = None
        self.buckets_last: dict[str, dict[int, int]] | None = None

    def on_reply(self, reply: Any) -> None:
        if type(reply) is not list:
            return
        if len(reply) == 4 and reply[0] == b"pmessage":
            channel, payload = reply[2], reply[3]
        elif len(reply) == 3 and reply[0] == b"message":
            if reply[1] == self.status:
                self._on_status(reply[2])
                return
            channel, payload = reply[1], reply[2]
        else:
            return
        if not self.measuring:
            return
        now = time.time() * 1000.0
        if len(payload) <= 9:
            self.bad += 1
            return
        kind = payload[0]
        seq = int.from_bytes(payload[1:9], "big")
        if kind == 85:  # U: an update continues the channel's seq
            last = self.last.get(channel)
            if last is not None and seq != last + 1:
                self.gaps += 1
            self.last[channel] = seq
        elif kind == 83:  # S restarts it
            self.last[channel] = seq
        else:
            return  # R (reply snapshots) and X (status) are not upstream traffic
        try:
            ts = _decode(memoryview(payload)[9:]).timestamp
        except msgspec.DecodeError:
            self.bad += 1
            return
        stream_kind = channel[len(self.prefix):].split(b":", 1)[0].decode()
        ms = now - ts
        h = self.hist.setdefault(stream_kind, {})
        key = bucket(ms)
        h[key] = h.get(key, 0) + 1
        self.counts[stream_kind] = self.counts.get(stream_kind, 0) + 1
        if ms > self.max_ms.get(stream_kind, 0.0):
            self.max_ms[stream_kind] = ms

    def _on_status(self, payload: bytes) -> None:
        try:
            st = _decode_status(payload)
        except msgspec.DecodeError:
            return
        if not self.symbols and st.symbols:
            self.symbols = st.symbols
            if self.on_symbols is not None:
                self.on_symbols(st.symbols)
        if not self.measuring:
            if self.buckets_last is None:  # not once the window has closed
                self.buckets_before = st.lag_buckets
            return
        if st.lag_buckets:
            self.buckets_last = st.lag_buckets
        self.arrival.append((st.lag_p50_ms, st.lag_p99_ms))  # the ingest's own shares
        self.hold.append((st.hold_p50_ms, st.hold_p99_ms))
        self.written.append((st.publish_lag_p50_ms, st.publish_lag_p99_ms))

    def _ingest_share(self, key: str, sampled: list[tuple[float, float]]) -> dict[str, Any] | None:
        """One of the ingest's lag measures over the window: exact from its histograms
        when it publishes them, else its own p50/p99 of its last 10 s period."""
        if self.buckets_last and key in self.buckets_last:
            before = (self.buckets_before or {}).get(key)
            p50, p99, p999 = percentiles_between(self.buckets_last[key], before, (50, 99, 99.9))
            count = sum(self.buckets_last[key].values()) - sum((before or {}).values())
            return {"p50": p50, "p99": p99, "p999": p999, "messages": count,
                    "over": "the window"}
        if sampled:
            return {"p50": sampled[-1][0], "p99": sampled[-1][1], "over": "last 10 s period"}
        return None

    def result(self, seconds: float) -> dict[str, Any]:
        total: dict[int, int] = {}
        for h in self.hist.values():
            merge_hist(total, h)
        return {
            "seconds": seconds, "messages": sum(self.counts.values()),
            "per_second": round(sum(self.counts.values()) / seconds, 1),
            "lag_ms": latency_summary(total, max(self.max_ms.values(), default=0.0)),
            "by_kind": {k: {"per_second": round(self.counts[k] / seconds, 1),
                            "lag_ms": latency_summary(self.hist[k], self.max_ms[k])}
                        for k in sorted(self.counts)},
            "redis_seq_gaps": self.gaps, "bad": self.bad, "channels": len(self.last),
            # As the ingest measures them, on the messages of one Redis write in 16:
            # exchange timestamp -> the ingest's receive of the frame
            "ingest_arrival_lag_ms": self._ingest_share("arrival", self.arrival),
            # its upstream frame arrived -> its PUBLISH written to Redis
            "ingest_hold_ms": self._ingest_share("hold", self.hold),
            # exchange timestamp -> PUBLISH written to Redis
            "ingest_publish_lag_ms": self._ingest_share("publish", self.written),
            # exchange timestamp -> receipt by a client of the exchange that only reads
            "upstream_lag_ms": (latency_summary(self.upstream, self.upstream_max)
                                if self.upstream else None),
        }


async def _tap(url: str, names: list[str], probe: Probe) -> None:
    """Subscribe the Bybit topics of ``names`` on one upstream connection."""
    topics = [streams.parse(name).bybit_topic for name in names]
    transport, _ = await picows.ws_connect(lambda: _Tap(probe), url, enable_auto_pong=True)
    for i in range(0, len(topics), 10):
        transport.send(picows.WSMsgType.TEXT, bybit.op_request("subscribe", topics[i:i + 10]))
    probe.taps.append(transport)


async def run(redis_url: str, namespace: str, seconds: float, warmup: float,
              sample_every: int = 0, sample_streams: tuple[str, ...] = (),
              upstream_ws: str = "") -> dict[str, Any]:
    prefix = f"{namespace}:s:".encode()
    probe = Probe(prefix, f"{namespace}:status".encode())
    protocol = RespProtocol(on_reply=probe.on_reply)
    await connect(Address(redis_url), protocol)
    transport = protocol.transport
    assert transport is not None
    sampled: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    if sample_every > 1:
        def subscribe(symbols: list[str]) -> None:
            names = [f"{kind}:{symbol}" for symbol in symbols[::sample_every]
                     for kind in sample_streams]
            sampled.append(len(names))
            transport.write(command(b"SUBSCRIBE", *(prefix + n.encode() for n in names)))
            if upstream_ws:
                tasks.append(asyncio.create_task(_tap(upstream_ws, names, probe)))
        probe.on_symbols = subscribe
    else:
        transport.write(command(b"PSUBSCRIBE", prefix + b"*"))
    transport.write(command(b"SUBSCRIBE", probe.status))
    await asyncio.sleep(warmup)
    probe.measuring = True
    started, cpu = time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    probe.measuring = False
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    protocol.close()
    for tap in probe.taps:
        tap.disconnect()
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise SystemExit(f"upstream tap failed: {task.exception()}")
    result = probe.result(elapsed)
    result["streams_probed"] = sampled[0] if sampled else "all"
    result["probe_cores"] = round(cpu / elapsed, 3)  # its own CPU, on the cores measured
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lagprobe", description=__doc__)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--redis-namespace", default="hotpath")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--sample-every", type=int, default=0,
                   help="probe the streams of every Nth symbol only (0: every stream)")
    p.add_argument("--sample-streams", default="ticker,trade,orderbook:50",
                   help="stream kinds probed with --sample-every (e.g. ticker,orderbook:50)")
    p.add_argument("--upstream-ws", default="",
                   help="with --sample-every: also read the sampled topics from this "
                        "Bybit WebSocket URL and measure their lag there")
    ns = p.parse_args(argv)
    result = uvloop.run(run(ns.redis_url, ns.redis_namespace, ns.duration, ns.warmup,
                            ns.sample_every, tuple(ns.sample_streams.split(",")),
                            ns.upstream_ws))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
