"""Every stream kind end to end, and recovery from each upstream fault the simulator
can inject: afterwards clients hold exactly the simulator's state again."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest

from tests.figures import Figures
from tests.helpers import Client, Node, Sim, http_get, wait_for

pytestmark = pytest.mark.integration

FAST = ["--stale-after", "3", "--ping-interval", "1", "--reconnect-max-delay", "1",
        "--snapshot-timeout", "1"]


@pytest.fixture(scope="module")
def fault_sim() -> Iterator[Sim]:
    """A simulator of this module's own: fault knobs must not leak into other tests."""
    with Sim.start(["--symbols", "12", "--seed", "11", "--clock-speed", "30"]) as s:
        yield s


@pytest.fixture
def fnode(redis_url: str, fault_sim: Sim, namespace: str, tmp_path: Any) -> Iterator[Node]:
    with Node.start(redis_url=redis_url, sim=fault_sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=FAST) as node:
        yield node


class Book:
    """A client-side order book built from snapshot + updates, as a client would."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def apply(self, msg: dict[str, Any]) -> None:
        data = msg["data"]
        if msg["type"] == "snapshot":
            self.bids, self.asks = dict(data["bids"]), dict(data["asks"])
            return
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for price, size in levels:
                if float(size) == 0:  # "0", "0.000": removed
                    side.pop(price, None)
                else:
                    side[price] = size

    def equals(self, sim_book: dict[str, Any]) -> bool:
        return self.bids == dict(sim_book["b"]) and self.asks == dict(sim_book["a"])


class Stream:
    """One client stream's checker: snapshot first, seq continuous, status noted."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.statuses: list[str] = []
        self.snapshots = 0
        self.book = Book()

    def feed(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "status":
            self.statuses.append(msg["data"]["status"])
            return
        if msg["type"] == "snapshot":
            self.snapshots += 1
        else:
            assert self.seq is not None, f"update before any snapshot: {msg}"
            assert msg["seq"] == self.seq + 1, f"seq {msg['seq']} after {self.seq}"
        self.seq = msg["seq"]
        if "orderbook" in msg["stream"]:
            self.book.apply(msg)


def _ingest_total(node: Node, field: str) -> int:
    status, stats = http_get(node.url + "/stats")
    return sum(c[field] for c in (stats.get("ingest") or {}).get("connections", []))


async def _subscribe(client: Client, names: list[str],
                     following: dict[str, Stream] | None = None) -> dict[str, Stream]:
    """Subscribe; returns the new streams' checkers. ``following``: the checkers of the
    streams already flowing to this client, which see what arrives before the reply."""
    checks = {**(following or {}), **{name: Stream() for name in names}}
    await client.send({"op": "subscribe", "args": names})
    while (msg := await client.recv(timeout=10)).get("op") != "subscribe":
        if "stream" in msg:
            checks[_key(msg)].feed(msg)
    assert msg["args"] == names, msg
    return {name: checks[name] for name in names}


def _key(msg: dict[str, Any]) -> str:
    kind, rest = msg["stream"].split(".")[2], msg["stream"].split(".")[3:]
    return ":".join([kind, *rest])


async def _pump(client: Client, checks: dict[str, Stream], until: Any, timeout: float = 20) -> None:
    import asyncio
    deadline = asyncio.get_running_loop().time() + timeout
    while not until():
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, "timed out: " + repr({k: vars(v) for k, v in checks.items()})
        msg = await client.recv(timeout=remaining)
        if "stream" in msg:
            checks[_key(msg)].feed(msg)


async def test_every_stream_kind_snapshot_first_then_continuous(fnode):
    names = ["ticker:BTCUSDT", "trade:BTCUSDT", "orderbook:50:BTCUSDT", "orderbook:1:ETHUSDT",
             "orderbook:200:SOLUSDT", "kline:1m:BTCUSDT", "liquidation:BTCUSDT"]
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, names)
        await _pump(client, checks, lambda: all(c.snapshots for c in checks.values()))
        await _pump(client, checks, lambda: all(
            c.seq is not None and c.seq >= 3 for n, c in checks.items()
            if not n.startswith("liquidation")))
    finally:
        await client.close()


async def test_order_book_equals_the_simulators(fnode, fault_sim):
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, ["orderbook:50:BTCUSDT"])
        check = checks["orderbook:50:BTCUSDT"]
        await _pump(client, checks, lambda: check.seq is not None and check.seq > 20)
        fault_sim.control("pause")
        try:
            await _pump(client, checks, lambda: check.book.equals(
                fault_sim.control("book?symbol=BTCUSDT&depth=50")), timeout=10)
        finally:
            fault_sim.control("resume")
    finally:
        await client.close()


async def _book_equals_sim(client: Client, checks: dict[str, Stream], sim: Sim,
                           symbol: str) -> None:
    """Freeze the market and wait until the client's book is the simulator's."""
    sim.control("pause")
    try:
        await _pump(client, checks, lambda: checks[f"orderbook:50:{symbol}"].book.equals(
            sim.control(f"book?symbol={symbol}&depth=50")), timeout=10)
    finally:
        sim.control("resume")


async def test_dropped_upstream_tells_clients_then_restarts_with_snapshots(fnode, fault_sim,
                                                                           figures: Figures):
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, ["ticker:BTCUSDT", "orderbook:50:BTCUSDT"])
        await _pump(client, checks, lambda: all(c.snapshots for c in checks.values()))
        fault_sim.control("fault?kind=drop")
        dropped = time.monotonic()
        await _pump(client, checks, lambda: all(
            "stale" in c.statuses and c.snapshots >= 2 for c in checks.values()))
        recovery = time.monotonic() - dropped
        wait_for(lambda: _ingest_total(fnode, "reconnects") >= 1, 5, "/stats to count it")
        await _book_equals_sim(client, checks, fault_sim, "BTCUSDT")
        figures.record("fault", "upstream connection dropped (ingest)",
                       checked="clients told stale, then a fresh snapshot of every stream, seq "
                               "continuous, the book equal to the simulator's; /stats counts "
                               "the reconnect", clients=1, recovery_s=round(recovery, 3), lost=0)
    finally:
        await client.close()


async def test_orderbook_gap_resyncs_the_topic(fnode, fault_sim, figures: Figures):
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, ["orderbook:50:ETHUSDT"])
        check = checks["orderbook:50:ETHUSDT"]
        await _pump(client, checks, lambda: check.snapshots == 1 and check.seq > 3)
        fault_sim.control("fault?kind=gap&topic=orderbook.50.ETHUSDT")
        injected = time.monotonic()
        await _pump(client, checks, lambda: check.snapshots >= 2)
        recovery = time.monotonic() - injected
        assert "resync" in check.statuses
        fault_sim.control("pause")
        try:
            await _pump(client, checks, lambda: check.book.equals(
                fault_sim.control("book?symbol=ETHUSDT&depth=50")), timeout=10)
        finally:
            fault_sim.control("resume")
        wait_for(lambda: _ingest_total(fnode, "gaps") >= 1, 5, "/stats to count the gap")
        assert _ingest_total(fnode, "resyncs") >= 1
        _, conns = http_get(fnode.url + "/stats")
        assert sum(c["messages_per_second"] for c in conns["ingest"]["connections"]) > 0
        _, metrics = http_get(fnode.url + "/metrics")
        gaps = [line for line in metrics.splitlines()
                if line.startswith("hotpath_upstream_gaps_total{")]
        assert gaps and sum(float(line.split()[-1]) for line in gaps) >= 1
        figures.record("fault", "order-book gap upstream (ingest)",
                       checked="the ingest saw u jump, told clients 'resync', resubscribed; a "
                               "fresh snapshot, then the book equal to the simulator's; /stats "
                               "and /metrics count the gap", clients=1,
                       recovery_s=round(recovery, 3), lost=0)
    finally:
        await client.close()


async def test_stalled_upstream_is_replaced(fnode, fault_sim, figures: Figures):
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, ["ticker:XRPUSDT"])
        check = checks["ticker:XRPUSDT"]
        await _pump(client, checks, lambda: check.snapshots == 1)
        fault_sim.control("fault?kind=stall&seconds=5")
        stalled = time.monotonic()
        await _pump(client, checks, lambda: check.snapshots >= 2 and "stale" in check.statuses)
        recovery = time.monotonic() - stalled
        assert "nothing received for" in fnode.log()
        figures.record("fault", "upstream connection stalled (ingest)",
                       checked="silent past --stale-after (3 s here): clients told stale, the "
                               "connection replaced, a fresh snapshot, seq continuous",
                       clients=1, recovery_s=round(recovery, 3), lost=0,
                       stale_after_s=3)
    finally:
        await client.close()


async def test_refused_then_rejected_connections_recover(fnode, fault_sim):
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, ["ticker:DOGEUSDT"])
        check = checks["ticker:DOGEUSDT"]
        await _pump(client, checks, lambda: check.snapshots == 1)
        fault_sim.control("fault?kind=refuse&seconds=2")
        fault_sim.control("fault?kind=drop")
        await _pump(client, checks, lambda: check.snapshots >= 2, timeout=30)
        assert "cannot connect" in fnode.log()
        fault_sim.control("fault?kind=reject&seconds=2")
        checks.update(await _subscribe(client, ["trade:DOGEUSDT"], checks))
        wait_for(lambda: "Bybit rejected publicTrade.DOGEUSDT" in fnode.log(), 10,
                 "the rejection to be logged")
        wait_for(lambda: not fault_sim.control("stats")["faults"].get("reject"), 10,
                 "the reject window to end")
        fault_sim.control("fault?kind=drop")  # the new connection asks for it again
        await _pump(client, checks, lambda: checks["trade:DOGEUSDT"].snapshots >= 1, timeout=30)
    finally:
        await client.close()


async def test_refused_connections_reconnect_within_the_connection_budget(
        redis_url, fault_sim, namespace, tmp_path, figures: Figures):
    """Upgrades refused for a while: the ingest keeps trying, but never more often than
    its connection budget allows (Bybit: 500 per 5 minutes; here 3 per 6 s to see it)."""
    budget, window, refused_for = 3, 6.0, 6.0
    extra = FAST + ["--connect-budget", str(budget), "--connect-window", str(window)]
    with Node.start(redis_url=redis_url, sim=fault_sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=extra) as node:
        client = await Client.connect(node.ws_url)
        samples: list[tuple[float, int]] = []

        async def sample() -> None:
            while True:
                stats = await asyncio.to_thread(fault_sim.control, "stats")
                samples.append((time.monotonic(), stats["upgrade_attempts"]))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        try:
            checks = await _subscribe(client, ["orderbook:50:LINKUSDT"])
            check = checks["orderbook:50:LINKUSDT"]
            await _pump(client, checks, lambda: check.snapshots == 1)
            fault_sim.control(f"fault?kind=refuse&seconds={refused_for}")
            fault_sim.control("fault?kind=drop")
            refused = time.monotonic()
            await _pump(client, checks, lambda: check.snapshots >= 2, timeout=40)
            recovery = time.monotonic() - refused
            await _book_equals_sim(client, checks, fault_sim, "LINKUSDT")
        finally:
            sampler.cancel()
            await client.close()
    tried = samples[-1][1] - samples[0][1]
    assert tried >= 2, samples  # it did keep trying
    # Attempts between two samples less than a window apart all fell in one window.
    worst = max(b[1] - a[1] for i, a in enumerate(samples) for b in samples[i:]
                if b[0] - a[0] < window - 0.2)
    assert worst <= budget, samples
    assert recovery >= refused_for  # not served before the upstream was back
    figures.record("fault", "upstream refuses connections (ingest)",
                   checked=f"upgrades refused for {refused_for:g} s: the ingest kept trying, "
                           f"never more than its budget ({budget} per {window:g} s here, Bybit's "
                           "500 per 5 min by default) in any window; then a fresh snapshot and "
                           "the book equal to the simulator's",
                   clients=1, recovery_s=round(recovery - refused_for, 3), lost=0,
                   attempts=tried, worst_window_attempts=worst)


async def test_a_flood_from_upstream_changes_nothing_for_clients(fnode, fault_sim,
                                                                figures: Figures):
    names = ["orderbook:50:AVAXUSDT", "ticker:AVAXUSDT"]
    client = await Client.connect(fnode.ws_url)
    try:
        checks = await _subscribe(client, names)
        await _pump(client, checks, lambda: all(c.snapshots for c in checks.values()))
        before = http_get(fnode.url + "/stats")[1]["ingest"]
        flooded = fault_sim.control("fault?kind=flood&count=5000")
        assert flooded["messages"] >= 1000, flooded
        started = time.monotonic()
        # The flood is state-neutral (Bybit re-pushing snapshots it already sent): the
        # ingest must take it all and clients must see no resync and no extra snapshot.
        wait_for(lambda: sum(c["messages"] for c in http_get(fnode.url + "/stats")[1]["ingest"]
                             ["connections"]) >= sum(c["messages"] for c in
                                                     before["connections"]) + 1000,
                 30, "the ingest to read the flood")
        absorbed = time.monotonic() - started
        await _book_equals_sim(client, checks, fault_sim, "AVAXUSDT")
        after = http_get(fnode.url + "/stats")[1]["ingest"]
        assert all(c.snapshots == 1 and not c.statuses for c in checks.values()), \
            {k: vars(v) for k, v in checks.items()}
        assert after["bad_messages"] == before["bad_messages"]
        assert sum(c["resyncs"] for c in after["connections"]) == sum(
            c["resyncs"] for c in before["connections"])
        figures.record("fault", "upstream flood (ingest)",
                       checked=f"{flooded['messages']} extra state-neutral snapshots on one "
                               "connection: absorbed, no resync, no extra snapshot to clients, "
                               "seq continuous, the book equal to the simulator's",
                       clients=1, recovery_s=round(absorbed, 3), lost=0,
                       flood=flooded["messages"])
    finally:
        await client.close()


async def test_delisted_symbol_is_told_to_clients(redis_url, fault_sim, namespace, tmp_path):
    extra = FAST + ["--instruments-refresh", "1"]
    with Node.start(redis_url=redis_url, sim=fault_sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=extra) as node:
        client = await Client.connect(node.ws_url)
        try:
            checks = await _subscribe(client, ["ticker:ADAUSDT"])
            await _pump(client, checks, lambda: checks["ticker:ADAUSDT"].snapshots == 1)
            fault_sim.control("delist?symbol=ADAUSDT")
            await _pump(client, checks, lambda: "delisted" in checks["ticker:ADAUSDT"].statuses)
            await client.send({"op": "subscribe", "args": ["ticker:ADAUSDT"]})
            reply = await client.recv_until(lambda m: m.get("op") == "subscribe")
            assert reply["rejected"][0]["reason"] == "Unknown symbol 'ADAUSDT'"
        finally:
            fault_sim.control("relist?symbol=ADAUSDT")
            await client.close()


async def test_raw_passthrough(redis_url, fault_sim, namespace, tmp_path):
    import json

    import redis.asyncio as aioredis
    prefix = f"{namespace}raw:bybit_"
    with Node.start(redis_url=redis_url, sim=fault_sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log",
                    extra=FAST + ["--raw", "--raw-prefix", prefix]):
        r = aioredis.from_url(redis_url)
        pubsub = r.pubsub()
        await pubsub.subscribe(prefix + "ticker")
        try:
            seen = None
            for _ in range(200):
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if msg is not None:
                    seen = json.loads(msg["data"])
                    break
            assert seen is not None and seen["topic"].startswith("tickers.")
            assert set(seen) >= {"topic", "type", "data", "ts", "cs"}  # Bybit's own message
        finally:
            await pubsub.aclose()
            await r.aclose()
