"""Faults the issue names that the other fault tests do not cover: Redis gone for 30 s,
a SIGTERM drain under load onto a second node, and garbage on hotpath's Redis channels.

Real processes and sockets throughout. "Nothing lost" is checked, not assumed: every
client checks every message (snapshot first, then seq +1 per update, a fresh snapshot
after any jump), and after each fault every client's state rebuilt from snapshot +
updates must equal the simulator's (tickers, books) and the ingest's (a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from decimal import Decimal
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis

from hotpath.bus.channels import pack
from tests.helpers import (Node, RedisServer, Sim, Tracker, connect_all, free_port,
                           http_get_async, public_name, until)
from tests.integration.test_end_to_end import expected_client_ticker

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


@pytest.fixture(scope="module")
def rsim() -> Iterator[Sim]:
    """This module's own simulator (it is paused to compare states), with books and trades
    slow enough for a few hundred Python clients on a CI machine."""
    with Sim.start(["--symbols", "8", "--seed", "17", "--trade-rate", "2",
                    "--orderbook-intervals", "1=100,50=100,200=200,1000=400"]) as s:
        yield s


def _streams(symbol: str) -> list[str]:
    return [f"ticker:{symbol}", f"trade:{symbol}", f"orderbook:50:{symbol}"]


def _same(kind: str, held: Any, expected: Any) -> bool:
    if held is None or expected is None:
        return False
    if kind == "ticker":  # change24hPercent compared as a decimal (trailing zeros)
        return held.keys() == expected.keys() and all(
            Decimal(held[k]) == Decimal(expected[k]) if k == "change24hPercent"
            else held[k] == expected[k] for k in held)
    return bool(held == expected)


async def _state_mismatches(trackers: list[Tracker], sim: Sim, url: str,
                            timeout: float = 20) -> list[str]:
    """Pause the market; every client's state must become the simulator's (tickers and
    books) and the ingest's (a fresh client's snapshot, for every stream). Returns what
    still differs after ``timeout`` (empty: all equal)."""
    names = sorted({n for t in trackers for n in t.names})
    sim.control("pause")
    fresh = Tracker(url, names)
    try:
        await fresh.connect()
        await until(fresh.has_snapshots, timeout, "a fresh client's snapshots")
        expected: dict[str, Any] = {}

        def refresh() -> None:
            for name in names:
                kind, symbol = name.split(":")[0], name.split(":")[-1]
                if kind == "ticker":
                    expected[name] = expected_client_ticker(
                        sim.control(f"state?symbol={symbol}")["data"])
                elif kind == "orderbook":
                    book = sim.control(f"book?symbol={symbol}&depth={name.split(':')[1]}")
                    expected[name] = {"bids": dict(book["b"]), "asks": dict(book["a"])}
                else:
                    expected[name] = fresh.views[public_name(name)].state

        def differences() -> list[str]:
            out = []
            for name in names:
                kind, stream = name.split(":")[0], public_name(name)
                if not _same(kind, fresh.views[stream].state, expected[name]):
                    out.append(f"fresh client {name}")
                for i, t in enumerate(trackers):
                    if name in t.names and not _same(kind, t.views[stream].state, expected[name]):
                        out.append(f"client {i} {name}")
            return out

        deadline = time.monotonic() + timeout
        while True:
            refresh()  # in flight when paused: the pipeline drains
            diff = differences()
            if not diff or time.monotonic() > deadline:
                assert not fresh.all_violations(), fresh.all_violations()
                return diff
            await asyncio.sleep(0.2)
    finally:
        sim.control("resume")
        await fresh.close()


async def _health(node: Node) -> tuple[int, Any]:
    return await http_get_async(node.url + "/health", timeout=2)


async def _stats(node: Node) -> dict[str, Any]:
    status, body = await http_get_async(node.url + "/stats")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _lost(trackers: list[Tracker]) -> list[str]:
    return [f"client {i}: {v}" for i, t in enumerate(trackers) for v in t.all_violations()]


# -- Redis unavailable for 30 s -----------------------------------------------------------

OUTAGE = 30.0


async def test_redis_down_30s_clients_told_stale_then_resynced_with_correct_state(
        rsim, tmp_path, figures):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with RedisServer(free_port(), workdir) as redis_proc, \
            Node.start(redis_url=redis_proc.url, sim=rsim, namespace="o" + uuid.uuid4().hex[:8],
                       workers=2, log_path=tmp_path / "serve.log") as node:
        trackers = [Tracker(node.ws_url, _streams(SYMBOLS[i % 2])) for i in range(24)]
        try:
            await connect_all(trackers)
            await until(lambda: all(t.has_snapshots() and
                                    t.views[public_name(t.names[0])].updates >= 5
                                    for t in trackers), 30, "snapshots and updates everywhere")
            workers = {w["pid"] for w in (await _stats(node))["workers"]}

            redis_proc.stop()  # the process, gone: nothing answers on the port
            down_at = time.monotonic()
            await until(
                lambda: _down_names(node, {"redis", "ingest"}), 15, "/health to name Redis")
            await until(lambda: all(any(s[0] > down_at and s[1] == "stale" for s in v.statuses)
                                    for t in trackers for v in t.views.values()),
                        20, "every client to be told each of its streams is stale")
            await asyncio.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))  # the fault
            assert all(t.connected for t in trackers), "a client was dropped during the outage"

            redis_proc.start()
            back_at = time.monotonic()
            await until(lambda: all(t.resynced_after(back_at) for t in trackers), 45,
                        "a fresh snapshot of every stream for every client")
            recovery = max(t.resynced_after(back_at) or 0.0 for t in trackers) - back_at
            marks = [t.views[public_name(t.names[0])].updates for t in trackers]
            await until(lambda: all(t.views[public_name(t.names[0])].updates >= m + 5
                                    for t, m in zip(trackers, marks)), 20, "updates again")
            await until(lambda: _healthy(node), 20, "/health to answer 200 again")
            assert all(t.connected for t in trackers)
            assert {w["pid"] for w in (await _stats(node))["workers"]} == workers

            lost = _lost(trackers) + await _state_mismatches(trackers, rsim, node.ws_url)
            assert lost == [], lost
            # every stale was followed by a fresh snapshot (checked above, per stream)
            figures.record("fault", "Redis unavailable 30 s",
                           checked="clients stayed connected, were told stale, /health 503; "
                                   "afterwards a fresh snapshot per stream, seq continuous, "
                                   "state equal to the simulator's and the ingest's",
                           clients=len(trackers), recovery_s=round(recovery, 2),
                           lost=len(lost), outage_s=OUTAGE)
        finally:
            for t in trackers:
                await t.close()


async def _down_names(node: Node, names: set[str]) -> bool:
    status, body = await _health(node)
    return status == 503 and names <= set(body.get("down", []))


async def _healthy(node: Node) -> bool:
    status, _ = await _health(node)
    return status == 200


# -- SIGTERM drain under load, clients continue on a second node --------------------------

DRAIN_CLIENTS = 200
GRACE, WINDOW = 1.0, 3.0


async def test_sigterm_drain_spreads_closes_and_clients_continue_on_a_second_node(
        redis_url, rsim, namespace, tmp_path, figures):
    drain = ["--shutdown-grace", str(GRACE), "--shutdown-window", str(WINDOW)]
    with Node.start(redis_url=redis_url, sim=rsim, namespace=namespace, workers=2,
                    log_path=tmp_path / "a.log", extra=drain) as a, \
            Node.start(redis_url=redis_url, sim=rsim, namespace=namespace, workers=2,
                       log_path=tmp_path / "b.log") as b:
        trackers = [Tracker(a.ws_url, _streams(SYMBOLS[i % len(SYMBOLS)]))
                    for i in range(DRAIN_CLIENTS)]
        try:
            await connect_all(trackers)
            await until(lambda: all(t.has_snapshots() for t in trackers), 60,
                        "every client's snapshots on node A")

            async def move(t: Tracker) -> tuple[float, int | None]:
                assert t.closed is not None
                await t.closed.wait()
                closed = (t.closed_at or 0.0, t.close_code)
                await t.connect(b.ws_url)  # at once, as a client behind a balancer would
                return closed

            movers = [asyncio.create_task(move(t)) for t in trackers]
            term_at = time.monotonic()
            a.proc.send_signal(signal.SIGTERM)
            closed = await asyncio.wait_for(asyncio.gather(*movers), GRACE + WINDOW + 60)
            closes = sorted(at for at, _ in closed)  # of the connections to node A
            last_close = closes[-1]
            codes = {code for _, code in closed}
            await until(lambda: all(t.has_snapshots() for t in trackers), 60,
                        "every client's snapshots on node B")
            moved = max(t.resynced_after(term_at) or 0.0 for t in trackers) - last_close
            assert await asyncio.to_thread(a.proc.wait, 30) == 0
            a_gone = time.monotonic()
            # While node A's ingest led, node B's stood by: one publisher per stream, so
            # nothing on node B restarted (two ingests on one namespace resync all the time).
            for t in trackers:
                assert all(v.snapshots_after(0) - v.snapshots_after(a_gone) == 1
                           and all(s[0] > last_close for s in v.statuses)
                           for v in t.views.values()), t.views

            # Node A's ingest stopped last (saying its upstream is gone): node B's takes
            # over, its clients are told, and every stream restarts with a snapshot.
            await until(lambda: all(_told_then_resynced(t, last_close) for t in trackers), 60,
                        "node B's ingest to take over and resync every stream")
            takeover = max(_told_then_resynced(t, last_close) or 0.0 for t in trackers) - a_gone
            await until(lambda: _healthy(b), 20, "node B /health 200")

            assert codes == {1001}, codes
            assert closes[0] - term_at >= GRACE * 0.8, "closed before the grace was over"
            span = closes[-1] - closes[0]
            assert span >= WINDOW * 0.5, f"closes spread over {span:.2f}s only"
            busiest = max(sum(1 for c in closes if t0 <= c < t0 + WINDOW / 6) for t0 in closes)
            assert busiest <= DRAIN_CLIENTS * 0.35, f"{busiest} closes within {WINDOW / 6}s"
            assert all(t.connections == 2 and t.connected for t in trackers)
            # told: by the stopping ingest and/or by node B's gateway (once per incident)
            assert all(1 <= len(v.statuses) <= 2 and {s[1] for s in v.statuses} == {"stale"}
                       for t in trackers for v in t.views.values())

            lost = _lost(trackers) + await _state_mismatches(trackers, rsim, b.ws_url)
            assert lost == [], lost
            figures.record("fault", "SIGTERM drain onto a second node",
                           checked=f"1001 closes spread over {span:.1f}s of a {WINDOW:.0f}s "
                                   "window after the grace; every client reconnected to node B "
                                   "with snapshots, seq continuous, state equal to the "
                                   "simulator's and the ingest's after B's ingest took over",
                           clients=len(trackers), recovery_s=round(moved, 3), lost=len(lost),
                           close_span_s=round(span, 2), ingest_takeover_s=round(takeover, 2))
        finally:
            for t in trackers:
                await t.close()


def _told_then_resynced(t: Tracker, after: float) -> float | None:
    """When every stream of ``t`` had a status after ``after`` and then a snapshot."""
    times = []
    for view in t.views.values():
        told = next((s[0] for s in view.statuses if s[0] > after), None)
        if told is None:
            return None
        again = view.resynced_after(told)
        if again is None:
            return None
        times.append(again)
    return max(times)


# -- garbage on hotpath's Redis channels --------------------------------------------------

BIG = 4 * 1024 * 1024


def _stream_garbage(seq: int) -> list[bytes]:
    """Not one of them may reach a client; ``seq`` is the stream's next seq, so a message
    that got through would also be a gap (a resync every client would see)."""
    def body(type_: str, n: int) -> bytes:
        return (b'{"stream":"hotpath.futures.ticker.BTCUSDT","type":"%s","data":{"price":"1"},'
                b'"timestamp":1,"source":"hotpath","seq":%d}' % (type_.encode(), n))
    return [
        b"", b"U", pack(ord("U"), seq, b""),  # shorter than the header, or nothing after it
        pack(ord("Z"), seq, body("update", seq)),  # unknown kind
        pack(ord("U"), seq, b"not json"), pack(ord("U"), seq, b'{"stream":'),  # bad JSON
        pack(ord("U"), seq, body("update", seq) + b"trailing"),
        pack(ord("U"), seq, body("update", seq)[:-1] + b',"x":"\xff\xfe"}'),  # not UTF-8
        pack(ord("U"), seq, b'{"seq":%d}' % seq),  # JSON, not an envelope
        pack(ord("U"), seq, body("update", seq + 7)),  # seq differs from the header's
        pack(ord("U"), seq, body("snapshot", seq)),  # type differs from the kind
        pack(ord("S"), seq, body("update", seq)), pack(ord("R"), seq, b"[]"),
        pack(ord("X"), seq, b'{"data":{"status":"delisted"}}'),  # a status without envelope
        pack(ord("U"), seq, b"{" * BIG),  # huge
    ]


STATUS_GARBAGE = [b"", b"garbage", b"{}", b'{"ts":1,"pid":2}', b"[1,2,3]", b"\xff\xfe",
                  b'{"ts":"x"' + b" " * BIG + b"}"]
CONTROL_GARBAGE = [b"", b"garbage", b'{"op":"nope"}', b'{"op":5}', b"[1]",
                   b'{"op":"snapshot","streams":"ticker:BTCUSDT"}', b'{"op":"demand","ttl":"x"}',
                   b'{"op":"' + b"x" * BIG + b'"}']


async def test_unexpected_messages_on_redis_channels_are_ignored_and_counted(
        redis_url, rsim, namespace, tmp_path, figures):
    names = ["ticker:BTCUSDT", "orderbook:50:BTCUSDT"]
    with Node.start(redis_url=redis_url, sim=rsim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log") as node:
        trackers = [Tracker(node.ws_url, names) for _ in range(6)]
        r = aioredis.from_url(redis_url)
        try:
            await connect_all(trackers)
            await until(lambda: all(t.has_snapshots() for t in trackers), 30, "snapshots")
            before = await _stats(node)
            pids = {p.pid for p in node.descendants()}
            assert before["totals"]["redis_unexpected"] == 0
            assert before["ingest"]["redis_unexpected"] == 0

            gateway = ingest = 0  # deliveries of garbage, as Redis counts them
            for name in names:
                channel = f"{namespace}:s:{name}".encode()
                for payload in _stream_garbage(await _next_seq(r, channel)):
                    gateway += await r.publish(channel, payload)
            for payload in STATUS_GARBAGE:  # heard by the gateway worker and the ingest
                receivers = await r.publish(f"{namespace}:status", payload)
                assert receivers == 2
                gateway, ingest = gateway + 1, ingest + 1
            for payload in CONTROL_GARBAGE:  # heard by the ingest
                ingest += await r.publish(f"{namespace}:ctl", payload)
            assert gateway == 2 * len(_stream_garbage(0)) + len(STATUS_GARBAGE)
            assert ingest == len(STATUS_GARBAGE) + len(CONTROL_GARBAGE)
            sent_at = time.monotonic()

            async def counted() -> bool:
                stats = await _stats(node)
                return (stats["totals"]["redis_unexpected"] == gateway
                        and (stats["ingest"] or {}).get("redis_unexpected") == ingest)
            await until(counted, 15, f"{gateway} + {ingest} unexpected messages counted")
            status, metrics = await http_get_async(node.url + "/metrics")
            assert status == 200
            assert sum(int(v) for v in re.findall(
                r'^hotpath_redis_unexpected_total\{worker="\d+"\} (\d+)$', metrics,
                re.M)) == gateway

            marks = [sum(v.updates for v in t.views.values()) for t in trackers]
            await until(lambda: all(sum(v.updates for v in t.views.values()) >= m + 20
                                    for t, m in zip(trackers, marks)), 20, "updates flowing on")
            for t in trackers:  # nothing of it reached a client: no resync, no status
                assert t.connected
                assert all(len(v.snapshots) == 1 and v.statuses == [] for v in t.views.values()), \
                    {s: (len(v.snapshots), v.statuses) for s, v in t.views.items()}
            after = await _stats(node)
            assert after["totals"]["gaps"] == before["totals"]["gaps"] == 0
            assert {p.pid for p in node.descendants()} == pids, "a process was restarted"
            log = node.log()
            assert log.count("ignoring a message that is not a hotpath stream message") == 1
            assert "ignoring a control request with an unknown op" in log

            lost = _lost(trackers) + await _state_mismatches(trackers, rsim, node.ws_url)
            assert lost == [], lost
            figures.record("input", "Redis channels: short, unknown-kind, bad-JSON, non-UTF-8, "
                           "mismatched and 4 MiB payloads on stream, status and control channels",
                           tried=gateway + ingest,
                           outcome=f"ignored and counted (gateway {gateway}, ingest {ingest}); "
                                   f"{len(trackers)} clients saw none of it: no resync, seq "
                                   "continuous, state equal to the simulator's; nothing "
                                   "restarted",
                           clients=len(trackers), lost=len(lost),
                           counted_s=round(time.monotonic() - sent_at, 2))
        finally:
            await r.aclose()
            for t in trackers:
                await t.close()


async def _next_seq(r: Any, channel: bytes) -> int:
    """The seq the ingest will give the stream's next message (read off the channel)."""
    pubsub = r.pubsub()
    await pubsub.subscribe(channel)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is not None:
                return int.from_bytes(msg["data"][1:9], "big") + 1
        raise AssertionError(f"nothing published on {channel!r}")
    finally:
        await pubsub.aclose()

