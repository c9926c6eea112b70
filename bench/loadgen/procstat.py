"""CPU and memory of named process groups (gateway, ingest, redis, ...) with psutil.

CPU is the difference of ``cpu_times()`` (user + system) between two samples, per pid,
so a group's figure covers exactly the measured window. A process that appears during
the window counts from zero; one that vanished is listed in ``lost``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import psutil

from bench.stack import http_json

Sample = dict[int, tuple[float, int]]  # pid -> (cpu seconds, rss bytes)


class Group:
    """Some pids, optionally with all their descendants."""

    def __init__(self, name: str, pids: list[int], recursive: bool = False) -> None:
        self.name = name
        self.pids = list(pids)
        self.recursive = recursive

    def members(self) -> list[psutil.Process]:
        out: dict[int, psutil.Process] = {}
        for pid in self.pids:
            try:
                proc = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            out[pid] = proc
            if self.recursive:
                try:
                    for kid in proc.children(recursive=True):
                        out[kid.pid] = kid
                except psutil.NoSuchProcess:
                    pass
        return list(out.values())

    def sample(self) -> Sample:
        out: Sample = {}
        for proc in self.members():
            try:
                with proc.oneshot():
                    t = proc.cpu_times()
                    out[proc.pid] = (t.user + t.system, proc.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return out


def footprint(groups: list[Group]) -> dict[str, float]:
    """``<group>_rss_mib`` and ``<group>_fds`` (open file descriptors) of every group."""
    out: dict[str, float] = {}
    for g in groups:
        rss = fds = 0
        for proc in g.members():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    fds += proc.num_fds()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        out[f"{g.name}_rss_mib"] = round(rss / 2**20, 2)
        out[f"{g.name}_fds"] = fds
    return out


class Sampler:
    """A thread that records ``footprint(groups)`` (plus ``extra()``) every ``interval``
    seconds, with the wall time ``t``, while the block it guards runs::

        with Sampler(groups, 0.1) as sampler:
            Swarm(opts, mix).run()
        peak = max(row["gateway_rss_mib"] for row in sampler.rows)
    """

    def __init__(self, groups: list[Group], interval: float,
                 extra: Callable[[], dict[str, float]] | None = None) -> None:
        self.groups = groups
        self.interval = interval
        self.extra = extra
        self.rows: list[dict[str, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 30)

    def _run(self) -> None:
        while True:
            row: dict[str, float] = {"t": round(time.time(), 3)}
            row.update(footprint(self.groups))
            if self.extra is not None:
                try:
                    row.update(self.extra())
                except Exception as exc:  # noqa: BLE001 - a failed sample is reported, not fatal
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self.rows.append(row)
            if self._stop.wait(self.interval):
                return

    def between(self, t0: float, t1: float) -> list[dict[str, float]]:
        return [r for r in self.rows if t0 <= r["t"] <= t1]


def trend(rows: list[dict[str, float]], key: str) -> dict[str, Any]:
    """Least-squares line through ``key`` over the rows' wall time ``t``: the slope per
    hour, the change it predicts over the rows' span as a percentage of the mean, and
    first/last/min/max/mean of the samples themselves."""
    pts = [(r["t"], float(r[key])) for r in rows if r.get(key) is not None]
    out: dict[str, Any] = {"samples": len(pts), "per_hour": None, "change_pct": None}
    if not pts:
        return out
    ys = [y for _, y in pts]
    mean = sum(ys) / len(ys)
    out.update(first=round(ys[0], 3), last=round(ys[-1], 3), min=round(min(ys), 3),
               max=round(max(ys), 3), mean=round(mean, 3))
    if len(pts) < 2:
        return out
    mt = sum(t for t, _ in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var <= 0:
        return out
    slope = sum((t - mt) * (y - mean) for t, y in pts) / var  # per second
    span = pts[-1][0] - pts[0][0]
    out["per_hour"] = round(slope * 3600, 4)
    out["change_pct"] = round(slope * span / mean * 100, 3) if mean else None
    return out


def sample_all(groups: list[Group]) -> dict[str, Sample]:
    return {g.name: g.sample() for g in groups}


def usage(before: Sample, after: Sample, seconds: float) -> dict[str, Any]:
    """CPU seconds and cores over the window, RSS at both ends (MiB)."""
    cpu = sum(c - before.get(pid, (0.0, 0))[0] for pid, (c, _) in after.items())
    lost = sorted(set(before) - set(after))
    return {"cpu_s": round(cpu, 4), "cores": round(cpu / seconds, 4) if seconds > 0 else None,
            "rss_mib_start": round(sum(r for _, r in before.values()) / 2**20, 2),
            "rss_mib_end": round(sum(r for _, r in after.values()) / 2**20, 2),
            "pids": sorted(after), "lost": lost}


def rss_mib(sample: Sample) -> float:
    return round(sum(r for _, r in sample.values()) / 2**20, 2)


def hotpath_groups(base_url: str) -> list[Group]:
    """Find a local ``hotpath serve`` tree from its /stats: the gateway workers by pid,
    the supervisor as their parent, the ingest (and an embedded Redis or simulator) as
    the supervisor's other children. Empty when the node is not on this machine."""
    status, body = http_json(base_url.rstrip("/") + "/stats", 3)
    if status != 200 or not body:
        return []
    gateways = [int(w["pid"]) for w in body.get("workers", []) if w.get("pid")]
    groups = [Group("gateway", gateways)]
    try:
        parent = psutil.Process(gateways[0]).parent()
    except (psutil.NoSuchProcess, IndexError):
        return []
    if parent is None:
        return groups
    ingest, redis, sim = [], [], []
    for kid in parent.children():
        try:
            cmd = " ".join(kid.cmdline())
        except psutil.NoSuchProcess:
            continue
        if kid.pid in gateways or "resource_tracker" in cmd:
            continue
        if "redis-server" in cmd:
            redis.append(kid.pid)
        elif "hotpath sim" in cmd or "hotpath.sim" in cmd:
            sim.append(kid.pid)
        else:
            ingest.append(kid.pid)
    groups.append(Group("ingest", ingest))
    if redis:
        groups.append(Group("redis", redis))
    if sim:
        groups.append(Group("sim", sim))
    return groups


def hotpath_counters(base_url: str) -> dict[str, Any] | None:
    """The node's counters we difference over the window (None when unreachable)."""
    status, body = http_json(base_url.rstrip("/") + "/stats", 3)
    if status != 200 or not body:
        return None
    totals = dict(body.get("totals") or {})
    ingest = body.get("ingest") or {}
    totals["upstream_messages"] = sum(int(c.get("messages") or 0)
                                      for c in ingest.get("connections") or [])
    totals["published"] = ingest.get("published")
    return totals
