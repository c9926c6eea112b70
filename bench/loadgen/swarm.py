"""The parent of the client swarm: plan, spawn the worker processes, find the ready
moment, measure one window (deliveries, latency, CPU and memory of every process
group), stop everything, and build the result.

Two reliability runs start at the window's start: never-reading clients
(``slow_clients``, in a process of their own, told to drain once the node has closed
them all) and the reconnect storm (``storm_spread``: every held client dropped at once
and reconnected within that many seconds; the window lasts until they are all back)."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from bench.loadgen import procstat
from bench.loadgen.checker import ERRORS, Timeline, latency_summary, merge_counters
from bench.loadgen.client import Plan, worker_main
from bench.loadgen.mixes import Mix

_spawn = multiprocessing.get_context("spawn")


@dataclass
class Options:
    url: str
    clients: int = 100
    processes: int = 2
    source_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    ramp: float = 1000.0  # connects per second, all processes together
    duration: float = 10.0  # measured window, s
    warmup: float = 2.0  # s between "all ready" and the window
    ready_timeout: float = 30.0  # s after the ramp to wait for every client to be ready
    require_snapshot: bool = True
    churn_rate: float = 0.0  # connect-subscribe-snapshot-disconnect cycles per second
    probe_clients: int = 0  # clients in a process of their own: latency without our queueing
    close_timeout: float = 10.0
    connect_timeout: float = 15.0
    ping_interval: float = 30.0
    stale_after: float = 10.0  # a ready client silent this long while others receive: stalled
    label: str = ""
    hotpath_url: str = ""  # http://host:port of a hotpath node, for /stats and pids
    measure: dict[str, list[int]] = field(default_factory=dict)  # group -> pids (+ kids)
    server_group: str = "gateway"  # the group whose CPU per delivery is the figure
    slow_clients: int = 0  # clients that subscribe at the window's start and never read
    slow_streams: list[str] = field(default_factory=list)  # theirs (default: the mix's)
    slow_ramp: float = 2000.0  # their connects per second
    slow_rcvbuf: int = 4096  # their SO_RCVBUF: the kernel holds little for them
    storm_spread: float = 0.0  # > 0: the reconnect storm, reconnects over this many s
    storm_timeout: float = 60.0  # bound on each storm reconnect, and on the whole storm


class Swarm:
    def __init__(self, opts: Options, mix: Mix) -> None:
        self.opts = opts
        self.mix = mix
        self.timeline = Timeline()
        self.probe_timeline = Timeline()
        self.probe_worker = -1
        self.status: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        self.index: dict[int, int] = {}  # id(conn) -> worker number
        self.bulk: list[int] = []  # workers holding the main clients (the storm's)
        self.slow_worker = -1
        self.slow_base: int | None = None  # the node's slow_closed when the window began
        self.slow_drained_at = 0.0
        self.slow_closed_at = 0.0  # when the node had closed every slow client
        self.storm_settled_at = 0.0
        self._polled = 0.0

    # -- plan ---------------------------------------------------------------------------

    def plans(self, start_at: float, deadline: float) -> list[Plan]:
        """Clients dealt round-robin over the bulk processes; every stride-th client goes
        to the probe process, which holds so few that it reads without queueing."""
        o = self.opts
        n = max(1, o.processes if o.churn_rate > 0 else min(o.processes, o.clients))
        ips = o.source_ips
        probes = min(o.probe_clients, o.clients // 2)
        stride = o.clients // probes if probes else 0
        held: list[list[tuple[int, str, list[str]]]] = [[] for _ in range(n + 1)]
        for i in range(o.clients):
            k = n if stride and i % stride == 0 and i // stride < probes else i % n
            held[k].append((i, ips[i % len(ips)], self.mix.streams_for(i)))
        churn: list[list[tuple[int, str, list[str]]]] = [[] for _ in range(n)]
        if o.churn_rate > 0:
            for j in range(1000):  # the churn clients cycle through 1000 stream sets
                i = o.clients + j
                churn[j % n].append((i, ips[i % len(ips)], self.mix.streams_for(i)))
        plans = [Plan(url=o.url, clients=held[k], start_at=start_at, ramp=o.ramp,
                      deadline=deadline, require_snapshot=o.require_snapshot,
                      connect_timeout=o.connect_timeout, close_timeout=o.close_timeout,
                      ping_interval=o.ping_interval, stale_after=o.stale_after,
                      churn_rate=o.churn_rate / n, churn_clients=churn[k],
                      storm_timeout=o.storm_timeout) for k in range(n)]
        self.bulk = list(range(n))
        if held[n]:
            plans.append(Plan(url=o.url, clients=held[n], start_at=start_at, ramp=o.ramp,
                              deadline=deadline, require_snapshot=o.require_snapshot,
                              connect_timeout=o.connect_timeout, close_timeout=o.close_timeout,
                              ping_interval=o.ping_interval, stale_after=o.stale_after))
            self.probe_worker = n
        if o.slow_clients > 0:
            first = o.clients + 1000  # stream draws of their own
            slow = [(j, ips[j % len(ips)], list(o.slow_streams) or self.mix.streams_for(first + j))
                    for j in range(o.slow_clients)]
            self.slow_worker = len(plans)
            plans.append(Plan(url=o.url, clients=slow, start_at=start_at, ramp=o.slow_ramp,
                              deadline=deadline, connect_timeout=o.connect_timeout,
                              close_timeout=o.close_timeout, ping_interval=0.0,
                              stale_after=0.0, start_on_go=True, slow=True,
                              rcvbuf=o.slow_rcvbuf))
        return plans

    def groups(self) -> list[procstat.Group]:
        groups: list[procstat.Group] = []
        if self.opts.hotpath_url:
            groups = procstat.hotpath_groups(self.opts.hotpath_url)
        names = {g.name for g in groups}
        for name, pids in self.opts.measure.items():
            if name in names:
                groups = [g for g in groups if g.name != name]
            groups.append(procstat.Group(name, pids, recursive=True))
        groups.append(procstat.Group("loadgen", [p.pid for p in self.procs] + [os.getpid()]))
        return groups

    # -- run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        o = self.opts
        ramp_s = o.clients / o.ramp if o.ramp > 0 else 0.0
        budget = 5 + ramp_s + o.ready_timeout + o.warmup + o.duration + o.close_timeout + 30
        if o.storm_spread > 0:
            budget += o.storm_spread + o.storm_timeout
        if o.slow_clients > 0:
            budget += o.close_timeout + 15  # the drain
        t_start = time.time()
        start_at = t_start + 1.5  # time for the processes to import and start their loops
        plans = self.plans(start_at, t_start + budget)
        before_connect = procstat.sample_all(self._pre_groups())
        for plan in plans:
            parent_end, child_end = _spawn.Pipe()
            proc = _spawn.Process(target=worker_main, args=(plan, child_end), daemon=True,
                                  name="loadgen-worker")
            proc.start()
            child_end.close()
            self.procs.append(proc)
            self.index[id(parent_end)] = len(self.conns)
            self.conns.append(parent_end)
        try:
            ready_at = self._wait_ready(start_at + ramp_s + o.ready_timeout)
            self._pump(time.time() + o.warmup)
            groups = self.groups()
            t0 = math.ceil(time.time())  # windows are whole seconds of the timeline
            self._pump(t0)
            s0, c0 = procstat.sample_all(groups), self._counters()
            self._begin(t0, c0)
            t1 = t0 + max(1, round(o.duration))
            self._pump(t1, self._watch_slow)
            if o.storm_spread > 0:
                self._pump(t0 + o.storm_spread + o.storm_timeout, self._storm_settled)
                t1 = max(t1, math.ceil(time.time()))
                self._pump(t1)
            if o.slow_clients > 0:
                self._finish_slow()
            s1, c1 = procstat.sample_all(groups), self._counters()
        finally:
            self._stop()
        return self._result(t_start, start_at, ready_at, t0, t1, groups, before_connect,
                            s0, s1, c0, c1)

    def _pre_groups(self) -> list[procstat.Group]:
        """The server's processes before any client connects (for memory per client)."""
        groups = procstat.hotpath_groups(self.opts.hotpath_url) if self.opts.hotpath_url else []
        groups += [procstat.Group(n, p, recursive=True) for n, p in self.opts.measure.items()]
        return groups

    def _counters(self) -> dict[str, Any] | None:
        return procstat.hotpath_counters(self.opts.hotpath_url) if self.opts.hotpath_url else None

    def _pump(self, until: float, done: Callable[[], bool] | None = None) -> None:
        """Receive worker messages until wall time ``until`` (or until ``done()``)."""
        while True:
            left = until - time.time()
            if left <= 0:
                return
            for conn in wait(self.conns, timeout=min(left, 0.25)):
                self._receive(conn)  # type: ignore[arg-type]
            if done is not None and done():
                return

    def _send(self, worker: int, msg: Any) -> None:
        for conn in self.conns:
            if self.index[id(conn)] == worker:
                try:
                    conn.send(msg)
                except OSError:
                    pass

    # -- reliability runs ------------------------------------------------------------------

    def _begin(self, t0: float, counters: dict[str, Any] | None) -> None:
        """At the window's start: the never-reading clients connect, the storm breaks."""
        o = self.opts
        if self.slow_worker >= 0:
            self.slow_base = int(counters["slow_closed"]) if counters else None
            self._send(self.slow_worker, ("go", t0))
        if o.storm_spread > 0:
            for k in self.bulk:
                self._send(k, ("storm", t0, o.storm_spread))

    def _watch_slow(self) -> bool:
        """Tell the never-reading clients to drain once the node has closed them all (it
        aborts a closed client that does not answer within a few seconds, so they must
        read soon after). Never ends the window early."""
        if self.slow_worker < 0 or self.slow_drained_at or self.slow_base is None:
            return False
        now = time.time()
        st = self.status.get(self.slow_worker)
        if now - self._polled < 0.25 or not st:
            return False
        self._polled = now
        if st["slow_connected"] + st["failed"] < self.opts.slow_clients:
            return False  # still connecting
        counters = self._counters()
        closed = int(counters["slow_closed"]) - self.slow_base if counters else 0
        if st["slow_connected"] and closed >= st["slow_connected"]:
            self.slow_closed_at = now
            self._drain()
        return False

    def _drain(self) -> None:
        self.slow_drained_at = time.time()
        self._send(self.slow_worker, "drain")

    def _finish_slow(self) -> None:
        """Drain (if the node did not close them all in the window) and wait, bounded,
        until the never-reading clients are gone."""
        if not self.slow_drained_at:
            self._drain()
        deadline = time.time() + self.opts.close_timeout

        def gone() -> bool:
            st = self.status.get(self.slow_worker)
            return st is not None and st["open"] == 0
        self._pump(deadline, gone)

    def _storm_settled(self) -> bool:
        """Every storm worker has all its clients back, with their snapshots."""
        pending = [self.status.get(k, {}).get("storm_pending", -1) for k in self.bulk]
        if all(p == 0 for p in pending):
            self.storm_settled_at = time.time()
            return True
        return False

    def _receive(self, conn: Connection) -> None:
        k = self.index[id(conn)]
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self.conns.remove(conn)
            self.finals.setdefault(k, ({"failed": 0}, {"crashed": True}))
            return
        if msg[0] == "tick":
            self.status[k] = msg[1]
            rows = msg[2]
        elif msg[0] == "final":
            rows = msg[2]
            self.finals[k] = (msg[1], msg[3])
        else:
            return
        for row in rows:
            self.timeline.add(row)
            if k == self.probe_worker:
                self.probe_timeline.add(row)

    def _wait_ready(self, deadline: float) -> float:
        o = self.opts
        while time.time() < deadline:
            self._pump(time.time() + 0.25)
            if not any(p.is_alive() for p in self.procs):
                break
            if len(self.status) < len(self.procs):
                continue
            st = self.status.values()
            settled = sum(s["connected"] + s["failed"] for s in st)
            waiting = sum(s["open"] - s["ready"] for s in st)
            if settled >= o.clients and waiting <= 0:
                return time.time()
        return 0.0  # not everybody got ready in time: reported, the window runs anyway

    def _stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send("stop")
            except OSError:
                pass
        deadline = time.time() + self.opts.close_timeout + 15
        while len(self.finals) < len(self.procs) and time.time() < deadline and self.conns:
            for ready in wait(self.conns, timeout=0.5):
                self._receive(ready)  # type: ignore[arg-type]
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.time()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    # -- result -------------------------------------------------------------------------

    def _result(self, t_start: float, start_at: float, ready_at: float, t0: int, t1: int,
                groups: list[procstat.Group], before_connect: dict[str, procstat.Sample],
                s0: dict[str, procstat.Sample], s1: dict[str, procstat.Sample],
                c0: dict[str, Any] | None, c1: dict[str, Any] | None) -> dict[str, Any]:
        o = self.opts
        seconds = t1 - t0
        counters = merge_counters(f[0] for f in self.finals.values())
        extras = [f[1] for f in self.finals.values()]
        window = self.timeline.window(t0, t1)
        probe = self.probe_timeline.window(t0, t1)
        deliveries = window.deliveries
        resources: dict[str, Any] = {}
        for g in groups:
            u = procstat.usage(s0.get(g.name, {}), s1.get(g.name, {}), seconds)
            u["us_per_delivery"] = (round(u["cpu_s"] * 1e6 / deliveries, 3)
                                    if deliveries else None)
            if o.churn_rate > 0 and not o.clients:  # held clients' traffic would be in it
                u["us_per_churn_cycle"] = (round(u["cpu_s"] * 1e6 / window.churn, 1)
                                           if window.churn else None)
            if g.name in before_connect:
                u["rss_mib_before_connect"] = procstat.rss_mib(before_connect[g.name])
            resources[g.name] = u
        result: dict[str, Any] = {
            "tool": "bench.loadgen", "label": o.label, "url": o.url,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)),
            "options": {k: v for k, v in asdict(o).items() if k != "measure"},
            "mix": self.mix.describe(),
            "clients": {"planned": o.clients, "connected": counters["connected"],
                        "failed": counters["failed"], "dropped": counters["dropped"],
                        "ready_before_window": bool(ready_at),
                        "ramp_seconds": round((ready_at or t0) - start_at, 2),
                        "failures": counters["failures"],
                        "close_codes": counters["close_codes"]},
            "window": {"start": t0, "seconds": seconds,
                       "t_from": t0 - int(t_start), "t_to": t1 - int(t_start)},
            "deliveries": {"total": deliveries, "per_second": round(deliveries / seconds, 1),
                           "bytes_per_second": round(window.bytes / seconds, 1),
                           "per_client_per_second": round(deliveries / seconds / o.clients, 3)
                           if o.clients else None},
            "latency_ms": latency_summary(window.hist, window.max_ms),
            "probe_latency_ms": latency_summary(probe.hist, probe.max_ms) if probe.hist else None,
            "errors": {k: counters[k] for k in ERRORS},
            "counters": counters,
            "resources": resources,
            "timeline": self.timeline.rows(int(t_start)),
            "probe_timeline": self.probe_timeline.rows(int(t_start)),
            "sample_update": next((e.get("sample") for e in extras if e.get("sample")), None),
            "workers": extras,
        }
        if o.churn_rate > 0:
            result["churn"] = {
                "target_per_second": o.churn_rate,
                "completed_per_second": round(window.churn / seconds, 1),
                "snapshot_latency_ms": latency_summary(window.churn_hist, None),
                "started": counters["churn_started"], "completed": counters["churn_completed"],
                "failed": counters["churn_failed"], "skipped": counters["churn_skipped"]}
        if o.slow_clients > 0:
            result["slow"] = self._slow_result(counters, t0, c0, c1)
        if o.storm_spread > 0:
            result["storm"] = self._storm_result(counters, extras)
        if c0 and c1:
            result["node"] = _node_delta(c0, c1, seconds, deliveries)
            ing = resources.get("ingest")
            up = result["node"]["upstream_messages"]
            if ing and up:
                ing["us_per_upstream_message"] = round(ing["cpu_s"] * 1e6 / up, 3)
        result["problems"] = problems(result)
        result["ok"] = not result["problems"]
        return result


    def _slow_result(self, counters: dict[str, Any], t0: int, c0: dict[str, Any] | None,
                     c1: dict[str, Any] | None) -> dict[str, Any]:
        o = self.opts
        return {"planned": o.slow_clients, "connected": counters["slow_connected"],
                "closes": counters["slow_closes"], "lost": counters["slow_lost"],
                "open_at_end": counters["slow_open"], "frames_drained": counters["slow_frames"],
                "node_closed": (int(c1["slow_closed"]) - int(c0["slow_closed"])
                                if c0 and c1 else None),
                "all_closed_after_s": (round(self.slow_closed_at - t0, 2)
                                       if self.slow_closed_at else None),
                "streams": list(o.slow_streams) or "the mix's", "rcvbuf": o.slow_rcvbuf}

    def _storm_result(self, counters: dict[str, Any],
                      extras: list[dict[str, Any]]) -> dict[str, Any]:
        storms = [e["storm"] for e in extras if e.get("storm")]
        accept = sorted(x for st in storms for x in st["accept_s"])
        ready = sorted(x for st in storms for x in st["ready_s"])
        return {"spread_s": self.opts.storm_spread, "timeout_s": self.opts.storm_timeout,
                "dropped": counters["storm_dropped"], "reconnected": counters["storm_connected"],
                "failed": counters["storm_failed"], "ready": len(ready),
                "settled": bool(self.storm_settled_at),
                "accept_s": _spread(accept), "ready_s": _spread(ready),
                "all_accepted_s": round(accept[-1], 3) if accept else None,
                "all_ready_s": round(ready[-1], 3) if ready else None}


def _spread(values: list[float]) -> dict[str, float | None]:
    """p50/p99/max of sorted seconds."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    def q(p: float) -> float:
        return round(values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))], 3)
    return {"p50": q(0.5), "p99": q(0.99), "max": round(values[-1], 3)}


def _node_delta(c0: dict[str, Any], c1: dict[str, Any], seconds: float,
                deliveries: int) -> dict[str, Any]:
    keys = ("frames_out", "writes", "bytes_out", "redis_messages", "upstream_messages", "gaps",
            "slow_closed", "slow_paused", "rejected_connections")
    d: dict[str, Any] = {k: c1[k] - c0[k] for k in keys if k in c0 and k in c1}
    out: dict[str, Any] = dict(d)
    out["frames_per_write"] = round(d["frames_out"] / d["writes"], 2) if d.get("writes") else None
    out["upstream_per_second"] = round(d.get("upstream_messages", 0) / seconds, 1)
    out["frames_out_vs_delivered"] = (round(d["frames_out"] / deliveries, 4)
                                      if deliveries and "frames_out" in d else None)
    return out


def problems(result: dict[str, Any]) -> list[str]:
    """Errors that fail a run. Timing never does."""
    out = [f"{k}: {v}" for k, v in result["errors"].items() if v]
    c = result["clients"]
    if c["connected"] < c["planned"] and not c["failed"]:
        out.append(f"connected {c['connected']} of {c['planned']}")
    held = result["clients"]["planned"]
    if result["mix"]["mix"] != "none" and held and not result["deliveries"]["total"]:
        out.append("no message delivered in the window")
    crashed = [w for w in result["workers"] if w.get("crashed")]
    if crashed:
        out.append(f"{len(crashed)} load-generator process(es) crashed")
    storm = result.get("storm")
    if storm:
        if storm["reconnected"] < storm["dropped"]:
            out.append(f"storm: {storm['reconnected']} of {storm['dropped']} clients reconnected")
        if storm["ready"] < storm["reconnected"]:
            out.append(f"storm: {storm['reconnected'] - storm['ready']} reconnected clients "
                       "got no snapshot")
    return out
