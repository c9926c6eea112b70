"""The benchmark scenarios and their phases (hotpath, baseline, floor), each run with
the processes it needs and stopped afterwards. Used by ``bench/run`` and ``bench/smoke``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import msgspec
import redis

from bench.loadgen.mixes import Mix
from bench.loadgen.swarm import Options, Swarm
from bench.stack import Proc, Stack, StackError, http_json
from hotpath.config import UpstreamConfig
from hotpath.sim.instruments import default_universe

NAMESPACE = "bench"
# S4's lag probe listens to the streams of one symbol in this many: a probe of all 1,650
# would take about a third of a core beside the ingest it measures.
LAGPROBE_SAMPLE_EVERY = 8
SERVERS = ("hotpath", "baseline", "floor")


@dataclass
class Settings:
    """Everything a run can change from the command line."""

    clients: int = 10_000
    duration: float = 20.0
    warmup: float = 3.0
    ramp: float = 1000.0
    processes: int = 2  # load-generator processes (plus one small probe process)
    # hotpath gateway workers and baseline processes: a core each, but for the one the
    # load generator needs (it takes about a core at 100k deliveries/s). On two cores that
    # is one process, like the floor's; with one per core the servers and the load
    # generator fight for the CPU and latency measures the fight (S1 p99 159-308 ms with
    # two workers, 105 ms with one, at the same CPU per delivery).
    workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    servers: tuple[str, ...] = SERVERS
    s1_interval_ms: int = 100
    s2_symbols: int = 200
    s2_per_client: int = 5
    s2_kinds: tuple[str, ...] = ("ticker", "trade")
    s2_sim: tuple[str, ...] = ("--moves-per-second", "0.5", "--trade-rate", "1",
                               "--book-churn", "1")
    s3_rate: float = 200.0
    s3_held: int = 0
    s4_symbols: int = 550
    s4_eager: tuple[str, ...] = ("trade", "orderbook:50")
    # S4: give the hotpath node a core of its own (the "on one core"): the node
    # on the last CPU, the simulator, Redis, the probes and this runner on the others.
    s4_pin: bool = False
    # S4, with s4_pin: also move every other task of the machine that may leave the node's
    # CPU off it for the run (kernel threads bound to a CPU cannot move), as a shielded
    # CPU set would; their affinity is restored afterwards.
    s4_isolate: bool = False
    # S4: the simulator's frames carry the millisecond of their write ("write", as an
    # exchange stamping what it sends at once) or of their slice's start ("build": the
    # simulator's own build time of up to ~32 frames is then in every lag downstream).
    s4_stamp: str = "write"
    s4_sim: tuple[str, ...] = ()  # S4: extra simulator flags, e.g. ("--ticker-spread",)
    s5_duration: float = 15.0
    smoke_clients: int = 500
    smoke_kinds: tuple[str, ...] = ("ticker", "trade", "orderbook:50", "kline:1m")
    hotpath_args: tuple[str, ...] = ()
    floor_binary: Path | None = None
    hotpath_home: Path | None = None  # run hotpath from this tree (bench/run --compiled)
    sim_home: Path | None = None  # run the simulator from this tree (--compiled-sim)
    log_dir: Path = Path("/tmp")


@dataclass
class Phase:
    """One server measured in one scenario."""

    server: str
    result: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    key: str
    title: str
    sim_args: list[str]
    mix: Mix
    clients: int
    duration: float
    servers: tuple[str, ...]
    churn_rate: float = 0.0
    lagprobe: bool = False
    eager: tuple[str, ...] = ()  # ingest --eager: upstream topics kept for every symbol
    notes: list[str] = field(default_factory=list)


def symbols(n: int) -> list[str]:
    """The simulator's universe names, most popular (the real majors) first."""
    return [inst.symbol for inst in default_universe(n)]


# S4's upstream, topic by topic, for the tools that read it without the ingest
# (bench.ingest_replay, bench.upstream_floor), in connections as many topics as the
# ingest's default --upstream-topics-per-connection.
S4_TOPICS_PER_CONNECTION = UpstreamConfig().topics_per_connection


def s4_topics(n: int) -> list[str]:
    """Bybit topics of S4 for ``n`` symbols: every ticker, trade and orderbook.50."""
    kinds = ("tickers", "publicTrade", "orderbook.50")
    return [f"{kind}.{symbol}" for symbol in symbols(n) for kind in kinds]


def build(key: str, s: Settings) -> Scenario:
    if key == "S1":
        return Scenario("S1", "broadcast: every client on ticker:BTCUSDT",
                        ["--symbol-list", "BTCUSDT", "--ticker-interval-ms", str(s.s1_interval_ms)],
                        Mix("hot", streams=["ticker:BTCUSDT"]), s.clients, s.duration, s.servers)
    if key == "S2":
        names = symbols(s.s2_symbols)
        return Scenario("S2", f"market: {s.s2_per_client} streams per client "
                              f"({', '.join(s.s2_kinds)}) drawn Zipf over {len(names)} symbols",
                        ["--symbols", str(s.s2_symbols), *s.s2_sim],
                        Mix("zipf", symbols=names, per_client=s.s2_per_client, kinds=s.s2_kinds),
                        s.clients, s.duration, s.servers, eager=_eager(s.s2_kinds))
    if key == "S3":
        names = symbols(s.s2_symbols)
        return Scenario("S3", f"churn: connect, subscribe, snapshot, disconnect at {s.s3_rate:g}/s",
                        ["--symbols", str(s.s2_symbols), *s.s2_sim],
                        Mix("zipf", symbols=names, per_client=1, kinds=["ticker"]),
                        s.s3_held, s.duration, s.servers, churn_rate=s.s3_rate)
    if key == "S4":
        stamp = ["--stamp-at-write"] if s.s4_stamp == "write" else []
        sc = Scenario("S4", f"full-universe ingest: {s.s4_symbols} USDT perpetuals at Bybit's "
                            "push rates", ["--symbols", str(s.s4_symbols), *stamp, *s.s4_sim],
                      Mix("none"),
                      0, s.duration, ("hotpath",), lagprobe=True, eager=_eager(s.s4_eager))
        sc.notes.append("frames' ts: the millisecond the simulator writes them" if stamp else
                        "frames' ts: the millisecond the simulator began building their slice")
        return sc
    if key == "S5":
        return Scenario("S5", "idle: connected clients, no traffic",
                        ["--symbol-list", "BTCUSDT"], Mix("none"), s.clients, s.s5_duration,
                        s.servers)
    if key == "smoke":
        names = symbols(20)
        return Scenario("smoke", "the whole stack, errors only",
                        ["--symbols", "20"],
                        Mix("zipf", symbols=names, per_client=4, kinds=s.smoke_kinds),
                        s.smoke_clients, s.duration, ("hotpath",), churn_rate=10.0,
                        eager=_eager(s.smoke_kinds))
    raise ValueError(f"unknown scenario {key!r} (S1..S5, smoke)")


def _eager(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The same upstream topics in every phase: hotpath's ingest otherwise subscribes
    non-ticker topics only on demand, and the baseline cannot ask for them."""
    return tuple(k for k in kinds if k != "ticker")


# -- running ---------------------------------------------------------------------------

def run_scenario(sc: Scenario, s: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    started = time.time()
    log_dir = s.log_dir / sc.key
    log_dir.mkdir(parents=True, exist_ok=True)
    node_cpus, others = _cpu_split() if sc.key == "S4" and s.s4_pin else (None, None)
    affinity = os.sched_getaffinity(0)
    if others:  # before anything starts: every process this runner starts inherits it
        os.sched_setaffinity(0, others)
        sc.notes.append(f"pinned: the hotpath node on CPUs {sorted(node_cpus or ())}, "
                        f"everything else on {sorted(others)}")
        say(sc.notes[-1])
    if s.sim_home is not None:
        sc.notes.append("the simulator's per-step code compiled (--compiled-sim)")
    moved: list[tuple[int, set[int]]] = []
    if node_cpus and s.s4_isolate:
        moved, names = isolate(node_cpus)
        sc.notes.append(f"isolated: {len(moved)} other tasks moved off CPUs {sorted(node_cpus)} "
                        f"for the run ({', '.join(names)})")
        say(sc.notes[-1])
    try:
        return _run_phases(sc, s, say, log_dir, started, node_cpus)
    finally:
        restore(moved)
        os.sched_setaffinity(0, affinity)


def _cpu_split() -> tuple[set[int], set[int]]:
    """(the node's CPUs, everyone else's): the last usable CPU against the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise StackError("pinning needs at least two CPUs")
    return {cpus[-1]}, set(cpus[:-1])


def cpu_ticks(stat: Path = Path("/proc/stat")) -> dict[int, tuple[int, int]]:
    """Per CPU, from /proc/stat: (steal, all) clock ticks since boot. Steal is time the
    hypervisor ran something else while this VM's vCPU wanted to run."""
    out = {}
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(f) for f in fields[:8]]  # user .. steal; guest time is in user
            out[int(name[3:])] = (ticks[7] if len(ticks) > 7 else 0, sum(ticks))
    return out


def steal_percent(before: dict[int, tuple[int, int]],
                  after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Each CPU's steal over the span between two :func:`cpu_ticks`, in % of its time."""
    out = {}
    for cpu, (steal, total) in after.items():
        steal0, total0 = before.get(cpu, (steal, total))
        if total > total0:
            out[cpu] = round(100 * (steal - steal0) / (total - total0), 2)
    return out


def isolate(cpus: set[int], proc: Path = Path("/proc")) -> tuple[list[tuple[int, set[int]]],
                                                                  list[str]]:
    """Move every task (thread) that may run on ``cpus`` and elsewhere off ``cpus``.

    Returns the tasks moved with their former CPUs, for :func:`restore`, and their
    distinct names. Tasks bound to ``cpus`` alone (a CPU's own kernel threads), tasks
    that refuse (kernel threads marked so, or not ours without root) and tasks that end
    meanwhile are left alone.
    """
    moved: list[tuple[int, set[int]]] = []
    names: set[str] = set()
    for task in proc.glob("[0-9]*/task/[0-9]*"):
        tid = int(task.name)
        try:
            before = os.sched_getaffinity(tid)
            if not before & cpus or not before - cpus:
                continue
            os.sched_setaffinity(tid, before - cpus)
        except OSError:
            continue
        moved.append((tid, before))
        try:
            names.add((task / "comm").read_text().strip())
        except OSError:
            pass
    return moved, sorted(names)


def restore(moved: list[tuple[int, set[int]]]) -> None:
    """Give tasks moved by :func:`isolate` their CPUs back (those still running)."""
    for tid, cpus in moved:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def _run_phases(sc: Scenario, s: Settings, say: Callable[[str], None], log_dir: Path,
                started: float, node_cpus: set[int] | None) -> dict[str, Any]:
    phases: list[Phase] = []
    with Stack(log_dir, s.sim_home) as base:
        redis_proc, redis_url = base.redis()
        sim_proc, sim_port = base.sim(sc.sim_args)
        ctx = _Context(sc, s, base, redis_proc, redis_url, sim_proc, sim_port, log_dir, say,
                       node_cpus)
        for n, server in enumerate(sc.servers):
            say(f"{sc.key}: {server} ({sc.clients:,} clients, {sc.duration:g} s window)")
            phase = Phase(server)
            try:
                ctx.run(phase, n + 1, phases)
            except StackError as exc:
                phase.problems.append(f"{server}: {exc}")
            phases.append(phase)
            for p in phase.problems:
                say(f"  problem: {p}")
        dead = base.check_alive()
        crashed = [f"{name} died during the run" for name in dead]
    return {"scenario": sc.key, "title": sc.title, "started": started,
            "seconds": round(time.time() - started, 1), "sim_args": sc.sim_args,
            "mix": sc.mix.describe(), "clients": sc.clients, "duration": sc.duration,
            "churn_rate": sc.churn_rate, "eager": list(sc.eager), "notes": sc.notes,
            "workers": s.workers,
            "phases": [{"server": p.server, "problems": p.problems, "extra": p.extra,
                        "result": p.result} for p in phases],
            "problems": crashed + [q for p in phases for q in p.problems]}


@dataclass
class _Context:
    sc: Scenario
    s: Settings
    base: Stack
    redis_proc: Proc
    redis_url: str
    sim_proc: Proc
    sim_port: int
    log_dir: Path
    say: Callable[[str], None]
    node_cpus: set[int] | None = None  # the hotpath node's CPUs, when pinned

    def options(self, url: str, n: int, **kw: Any) -> Options:
        sc, s = self.sc, self.s
        total = sc.clients + int(sc.churn_rate * (sc.duration + s.warmup + 30))
        ips = max(2, math.ceil(total / 10_000))
        return Options(url=url, clients=sc.clients, processes=s.processes,
                       source_ips=[f"127.0.{n}.{i}" for i in range(1, ips + 1)],
                       ramp=s.ramp, duration=sc.duration, warmup=s.warmup,
                       churn_rate=sc.churn_rate,
                       probe_clients=min(50, sc.clients // 20),
                       stale_after=10.0 if sc.mix.kind == "hot" else 0.0,
                       label=f"{sc.key} {kw.get('server_group', '')}", **kw)

    def _eager(self) -> list[str]:
        return ["--eager", ",".join(self.sc.eager)] if self.sc.eager else []

    def run(self, phase: Phase, n: int, done: list[Phase]) -> None:
        getattr(self, f"_{phase.server}")(phase, n, done)

    def _measure(self, phase: Phase, opts: Options, procs: list[Proc],
                 mix: Mix | None = None) -> None:
        lag = self._start_lagprobe(opts) if self.sc.lagprobe else None
        sim_stats = f"http://127.0.0.1:{self.sim_port}/sim/stats"
        if lag is not None:
            http_json(sim_stats + "?reset=1")
        ticks = cpu_ticks()
        result = Swarm(opts, mix or self.sc.mix).run()
        steal = steal_percent(ticks, cpu_ticks())
        result.pop("workers", None)
        phase.result = result
        phase.problems += [f"{phase.server}: {q}" for q in result["problems"]]
        if lag is not None:
            phase.extra["publish_lag"] = self._finish_lagprobe(lag)
            # the simulator's own share: a frame's ts -> its write to the socket
            _, stats = http_json(sim_stats)
            phase.extra["publish_lag"]["sim_send_delay_ms"] = (stats or {}).get("send_delay_ms")
            # pushes the simulator merged into later ones because it ran behind: while it
            # does, the upstream rate is below Bybit's cadence
            if stats and "pushes_due" in stats:
                phase.extra["publish_lag"]["sim_pushes"] = {"due": stats["pushes_due"],
                                                            "merged": stats["pushes_merged"]}
            # on a VM, time the host gave to others while a vCPU wanted to run: on the
            # node's CPU it delays frames without showing in any process's CPU time
            phase.extra["publish_lag"]["steal"] = {
                "percent": {str(cpu): pct for cpu, pct in steal.items()},
                "node_cpus": sorted(self.node_cpus or ())}
        for proc in procs:
            if not proc.alive:
                phase.problems.append(f"{phase.server}: {proc.name} exited "
                                      f"({proc.popen.returncode})")
        for name, usage in result["resources"].items():
            if usage.get("lost"):
                phase.problems.append(f"{phase.server}: {name} process(es) {usage['lost']} "
                                      "exited during the window")

    def _hotpath(self, phase: Phase, n: int, done: list[Phase]) -> None:
        s, sc = self.s, self.sc
        with Stack(self.log_dir, self.s.hotpath_home) as st:
            max_clients = sc.clients + 2000
            proc, port = st.hotpath(self.redis_url, self.sim_port, NAMESPACE, s.workers,
                                    ["--max-clients", str(max_clients), *self._eager(),
                                     *s.hotpath_args], cpus=self.node_cpus)
            opts = self.options(f"ws://127.0.0.1:{port}/ws", n,
                                hotpath_url=f"http://127.0.0.1:{port}",
                                measure={"redis": [self.redis_proc.pid],
                                         "sim": [self.sim_proc.pid]},
                                server_group="gateway")
            self._measure(phase, opts, [proc])
            code = st.stop(proc)
        log = proc.log_path.read_text(errors="replace")
        restarts = [line for line in log.splitlines() if "restarting" in line]
        if restarts:
            phase.problems.append(f"hotpath restarted a child: {restarts[0].strip()}")
        if code != 0:
            phase.problems.append(f"hotpath serve exited with {code}")
        phase.extra["tracebacks_in_log"] = log.count("Traceback")
        phase.extra["log"] = str(proc.log_path)

    def _baseline(self, phase: Phase, n: int, done: list[Phase]) -> None:
        s = self.s
        with Stack(self.log_dir, self.s.hotpath_home) as st:
            ingest = st.start("ingest", [
                sys.executable, "-m", "hotpath", "ingest", "--redis-url", self.redis_url,
                "--redis-namespace", NAMESPACE,
                "--bybit-ws-url", f"ws://127.0.0.1:{self.sim_port}/v5/public/linear",
                "--bybit-rest-url", f"http://127.0.0.1:{self.sim_port}", *self._eager()])
            wait_publishing(self.redis_url, NAMESPACE, ingest)
            proc, port = st.baseline(self.redis_url, NAMESPACE, s.workers)
            opts = self.options(f"ws://127.0.0.1:{port}/ws", n, require_snapshot=False,
                                measure={"baseline": [proc.pid], "ingest": [ingest.pid],
                                         "redis": [self.redis_proc.pid],
                                         "sim": [self.sim_proc.pid]},
                                server_group="baseline")
            self._measure(phase, opts, [proc, ingest])
        phase.extra["log"] = str(proc.log_path)

    def _floor(self, phase: Phase, n: int, done: list[Phase]) -> None:
        """The same number of sockets, the same frames, at the rate and batching hotpath
        delivered them in this scenario (one stream, so the seq checks still apply)."""
        if self.s.floor_binary is None:
            raise StackError("the floor binary was not built")
        hp = next((p.result for p in done if p.server == "hotpath" and p.result), None)
        rate, batch, stream, data = floor_shape(hp, self.sc)
        phase.extra.update(rate=rate, batch=batch)
        budget = self.sc.clients / self.s.ramp + self.sc.duration + self.s.warmup + 120
        with Stack(self.log_dir, self.s.hotpath_home) as st:
            args = ["--rate", f"{rate:g}", "--batch", f"{batch:g}", "--max-seconds", f"{budget:.0f}",
                    "--stream", stream, "--arg", "ticker:BTCUSDT", "--data", data]
            proc, port = st.floor(self.s.floor_binary, args)
            opts = self.options(f"ws://127.0.0.1:{port}/ws", n,
                                measure={"floor": [proc.pid]}, server_group="floor")
            if self.sc.mix.kind == "none":
                self._measure(phase, opts, [proc])
            else:
                self._measure(phase, replace(opts, stale_after=10.0), [proc],
                              Mix("hot", streams=["ticker:BTCUSDT"]))
            st.stop(proc)
        phase.extra["counters"] = _last_json_line(proc)

    def _start_lagprobe(self, opts: Options) -> subprocess.Popen[bytes]:
        seconds = self.s.warmup + opts.duration + 3
        sample = ["--sample-every", str(LAGPROBE_SAMPLE_EVERY), "--sample-streams",
                  ",".join(("ticker", *self.sc.eager)),
                  "--upstream-ws", f"ws://127.0.0.1:{self.sim_port}/v5/public/linear"]
        return subprocess.Popen([sys.executable, "-m", "bench.lagprobe", "--redis-url",
                                 self.redis_url, "--redis-namespace", NAMESPACE,
                                 "--duration", f"{seconds:g}", "--warmup", "1", *sample],
                                stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)

    @staticmethod
    def _finish_lagprobe(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        try:
            out, _ = proc.communicate(timeout=60)
            return dict(json.loads(out.decode().strip().splitlines()[-1]))
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            return {"error": "lag probe failed"}


def floor_shape(hotpath: dict[str, Any] | None, sc: Scenario) -> tuple[float, float, str, str]:
    """(ticks per second, frames per send, stream, data JSON) for the floor: hotpath's
    deliveries per client and its mean frames per write (the floor alternates whole
    batches to match a fractional mean)."""
    rate, batch = 10.0, 1.0
    stream, data = "hotpath.futures.ticker.BTCUSDT", '{"price":"60000.0","markPrice":"60000.1"}'
    if hotpath:
        per_client = hotpath["deliveries"].get("per_client_per_second") or 0
        fpw = (hotpath.get("node") or {}).get("frames_per_write") or 1.0
        batch = max(1.0, min(64.0, round(fpw, 2)))
        if per_client:
            rate = max(0.5, per_client / batch)
        sample = hotpath.get("sample_update")
        if sample:
            try:
                msg = json.loads(sample)
                stream = msg["stream"]
                data = msgspec.json.encode(msg["data"]).decode()
            except (ValueError, KeyError):
                pass
    if sc.mix.kind == "none":
        rate = 0.01  # idle: a tick every 100 s, i.e. none in the window
    return round(rate, 3), batch, stream, data


def _last_json_line(proc: Proc) -> dict[str, Any] | None:
    try:
        text = proc.log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                return None
    return None


def wait_publishing(redis_url: str, namespace: str, proc: Proc, timeout: float = 60) -> None:
    """Until the ingest publishes its status (it then has instruments and connections)."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{namespace}:status")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not proc.alive:
                raise StackError(f"ingest exited: {proc.tail()}")
            msg = pubsub.get_message(timeout=0.5)
            if msg and msg["type"] == "message" and b'"upstream_ok":true' in msg["data"]:
                time.sleep(1.0)  # let the first snapshots reach Redis
                return
    finally:
        pubsub.close()
        client.close()
    raise StackError("the ingest did not report upstream_ok within "
                     f"{timeout:.0f}s: {proc.tail()}")
