"""Load-side reliability in CI: slow consumers and a reconnect storm, with the load
generator of bench/ (``bench.loadgen``: real client processes, seq checks, latency)
against a real ``hotpath serve`` tree.

What is physics (latency, times) gets generous bounds on this shared 2-core machine;
what is not (no gap, every client back, every close code) is asserted exactly. Each
test records what it measured for docs/reliability.md (tests/figures.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.loadgen import procstat
from bench.loadgen.mixes import Mix
from bench.loadgen.swarm import Options, Swarm
from bench.scenarios import symbols
from tests.helpers import Node, Sim, http_get, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.load]

# -- slow consumers --------------------------------------------------------------------

NORMAL = 1_000
SLOW = 1_000
SOFT = 8 * 1024
HARD = 32 * 1024
SLOW_TIMEOUT = 2.0  # s behind the soft bound before close 1008
SLOW_FLAGS = ["--send-buffer-soft", str(SOFT), "--send-buffer-hard", str(HARD),
              "--socket-send-buffer", "4096", "--slow-consumer-timeout", str(SLOW_TIMEOUT),
              "--max-clients", "5000"]
# p99 with the slow clients may be at most twice that without them; the 20 ms floor keeps
# scheduler noise (a 3 ms vs 7 ms p99) from failing the run.
P99_FACTOR, P99_FLOOR_MS = 2.0, 20.0
# Each slow client may hold at most the hard bound of unsent bytes, plus its connection.
RSS_BOUND_MIB = SLOW * (HARD + 32 * 1024) / 2**20

# -- reconnect storm -------------------------------------------------------------------

STORM = 10_000
BYSTANDERS = 50  # held in a process of their own, never dropped: they must see nothing
STORM_SPREAD = 1.0  # s over which all 10,000 reconnect
STORM_BOUND = 60.0  # s: every client accepted (and given its snapshot) within this


def _swarm(node: Node, **kw: Any) -> Options:
    base: dict[str, Any] = dict(url=node.ws_url, hotpath_url=node.url, processes=2,
                                ramp=2000.0, warmup=2.0, ready_timeout=60.0,
                                close_timeout=10.0, stale_after=0.0)
    base.update(kw)
    return Options(**base)


def _ok(result: dict[str, Any]) -> None:
    assert result["ok"], result["problems"]
    assert not any(result["errors"].values()), result["errors"]


def _healthy_and_empty(node: Node) -> None:
    """After a run: the node is up, nothing restarted, and every connection it held
    (old and new) is gone from its books."""
    assert node.proc.poll() is None, node.log()
    assert "restarting" not in node.log(), node.log()
    assert http_get(node.url + "/health")[0] == 200
    wait_for(lambda: http_get(node.url + "/stats")[1]["clients"] == 0, 30,
             "the node's client count back to 0")


@pytest.fixture
def slow_node(redis_url: str, sim: Sim, namespace: str, tmp_path: Path) -> Iterator[Node]:
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace,
                    log_path=tmp_path / "serve.log", extra=SLOW_FLAGS) as node:
        yield node


def _normal_run(node: Node, slow: int) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """1,000 clients on 2 streams each (ticker, trade) over the 10 busiest symbols, 12 s
    window; with ``slow``, as many clients subscribe to 5 tickers at the window's start
    and never read (2 KiB receive buffer). Returns the result and the gateway workers'
    footprint sampled in the window."""
    names = symbols(20)[:10]
    opts = _swarm(node, clients=NORMAL, probe_clients=50, duration=12.0,
                  source_ips=[f"127.0.8.{i}" for i in (1, 2)], slow_clients=slow,
                  slow_streams=[f"ticker:{s}" for s in names[:5]], slow_rcvbuf=2048)
    groups = [g for g in procstat.hotpath_groups(node.url) if g.name == "gateway"]
    assert groups and len(groups[0].pids) == 2
    with procstat.Sampler(groups, 0.1) as sampler:
        result = Swarm(opts, Mix("zipf", symbols=names, per_client=2,
                                 kinds=["ticker", "trade"])).run()
    t0 = result["window"]["start"]
    window = sampler.between(t0, t0 + result["window"]["seconds"] + 1)
    assert window, sampler.rows
    return result, window


def _slow_pair(node: Node) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Run A (the normal clients alone) then B (the same plus the never-reading ones);
    everything but latency is asserted here. Returns A, B and B's peak gateway RSS."""
    alone, _ = _normal_run(node, 0)
    _ok(alone)
    mixed, footprint = _normal_run(node, SLOW)
    _ok(mixed)
    for r in (alone, mixed):
        assert r["clients"]["connected"] == NORMAL and r["deliveries"]["total"] > 0
    slow = mixed["slow"]
    assert slow["connected"] == SLOW
    assert slow["closes"] == {"1008 slow consumer": SLOW}, slow  # each read its close frame
    assert slow["lost"] == 0 and slow["open_at_end"] == 0, slow
    assert mixed["node"]["slow_closed"] == SLOW  # the slow ones, and nobody else
    start = mixed["resources"]["gateway"]["rss_mib_start"]
    peak = max(row["gateway_rss_mib"] for row in footprint)
    assert peak - start <= RSS_BOUND_MIB, (start, peak)
    return alone, mixed, peak


@pytest.mark.timeout(300)
def test_slow_consumers_neither_delay_the_others_nor_hold_memory(slow_node: Node,
                                                                  figures: Any) -> None:
    # Other test runs share this machine's two cores: a pair whose latency comparison
    # misses is measured once more (every other assertion holds for each pair).
    attempts: list[tuple[float, float]] = []
    for _ in range(2):
        alone, mixed, peak = _slow_pair(slow_node)
        p99_alone, p99_mixed = alone["latency_ms"]["p99"], mixed["latency_ms"]["p99"]
        bound = max(P99_FACTOR * p99_alone, p99_alone + P99_FLOOR_MS)
        attempts.append((p99_alone, p99_mixed))
        if p99_mixed <= bound:
            break
    assert p99_mixed <= bound, f"p99 without/with the slow clients, ms: {attempts}"
    _healthy_and_empty(slow_node)
    slow = mixed["slow"]
    start = mixed["resources"]["gateway"]["rss_mib_start"]
    figures.record(
        "load", "slow consumers",
        checked=f"{SLOW:,} clients subscribe to 5 tickers and never read, while {NORMAL:,} "
                "clients receive (2 streams each): every slow one closed 1008 'slow "
                "consumer'; the others' p99 within max(2x, +20 ms) of a run without them, "
                "no seq gap; gateway RSS growth under the bound",
        result=f"p99 {p99_alone:g} ms alone, {p99_mixed:g} ms with them (bound "
               f"{bound:.1f}); all {SLOW:,} closed 1008 within {slow['all_closed_after_s']} s "
               f"of their start; gateway RSS +{peak - start:.1f} MiB (bound "
               f"{RSS_BOUND_MIB:.1f})",
        clients=NORMAL, slow_clients=SLOW, soft_kib=SOFT // 1024, hard_kib=HARD // 1024,
        slow_timeout_s=SLOW_TIMEOUT, attempts=len(attempts),
        p99_ms_without=p99_alone, p99_ms_with=p99_mixed, p99_bound_ms=round(bound, 1),
        probe_p99_ms_without=(alone["probe_latency_ms"] or {}).get("p99"),
        probe_p99_ms_with=(mixed["probe_latency_ms"] or {}).get("p99"),
        closed_1008=slow["closes"]["1008 slow consumer"],
        all_closed_after_s=slow["all_closed_after_s"],
        gateway_rss_mib_start=start, gateway_rss_mib_peak=peak,
        rss_growth_mib=round(peak - start, 1), rss_bound_mib=round(RSS_BOUND_MIB, 1),
        gaps=mixed["errors"]["gaps"], lost=mixed["counters"]["missing_messages"])


# -- reconnect storm -------------------------------------------------------------------

@pytest.fixture(scope="module")
def quiet_sim() -> Iterator[Sim]:
    """Tickers once a second: 10,000 clients then get ~10,000 messages/s, so the storm,
    not the market, is what the node is busy with."""
    with Sim.start(["--symbols", "20", "--seed", "7", "--ticker-interval-ms", "1000"]) as s:
        yield s


@pytest.mark.timeout(300)
def test_a_reconnect_storm_of_ten_thousand_clients(redis_url: str, quiet_sim: Sim,
                                                     namespace: str, tmp_path: Path,
                                                     figures: Any) -> None:
    # The client limit is set above twice the storm: a dropped connection may still be
    # counted for a moment when its replacement arrives, and the limit is not what is
    # tested here (it has its own test).
    with Node.start(redis_url=redis_url, sim=quiet_sim, namespace=namespace,
                    log_path=tmp_path / "serve.log", extra=["--max-clients", "25000"]) as node:
        opts = _swarm(node, clients=STORM + BYSTANDERS, probe_clients=BYSTANDERS,
                      processes=4, source_ips=[f"127.0.9.{i}" for i in range(1, 5)],
                      duration=2.0, warmup=1.0, storm_spread=STORM_SPREAD,
                      storm_timeout=STORM_BOUND)
        result = Swarm(opts, Mix("zipf", symbols=symbols(20), per_client=1,
                                 kinds=["ticker"])).run()
        _ok(result)
        storm = result["storm"]
        assert result["clients"]["connected"] == STORM + BYSTANDERS
        assert storm["dropped"] == STORM, storm
        assert storm["reconnected"] == STORM and storm["failed"] == 0, storm
        assert storm["ready"] == STORM and storm["settled"], storm  # each got its snapshot
        assert storm["all_ready_s"] <= STORM_BOUND, storm
        assert result["node"]["rejected_connections"] == 0
        assert result["probe_latency_ms"]["count"] > 0  # the bystanders kept receiving
        _healthy_and_empty(node)
    figures.record(
        "load", "reconnect storm",
        checked=f"{STORM:,} clients dropped at once and reconnecting within "
                f"{STORM_SPREAD:g} s: all accepted, subscribed and given their snapshot "
                f"within {STORM_BOUND:g} s; {BYSTANDERS} bystanders never dropped and saw no "
                "seq gap; no upgrade refused, no process restarted, every connection released",
        result=f"all {STORM:,} accepted within {storm['all_accepted_s']:.1f} s and served "
               f"their snapshot within {storm['all_ready_s']:.1f} s of the drop (bound "
               f"{STORM_BOUND:g} s; accept p50 {storm['accept_s']['p50']:.1f} s); 0 failed",
        clients=STORM, bystanders=BYSTANDERS, spread_s=STORM_SPREAD, bound_s=STORM_BOUND,
        all_accepted_s=storm["all_accepted_s"], all_ready_s=storm["all_ready_s"],
        accept_p50_s=storm["accept_s"]["p50"], accept_p99_s=storm["accept_s"]["p99"],
        failed=storm["failed"], gaps=result["errors"]["gaps"],
        lost=result["counters"]["missing_messages"],
        bystander_p99_ms=result["probe_latency_ms"]["p99"])
