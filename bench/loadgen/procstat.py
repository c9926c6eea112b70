"""CPU and memory of named process groups (gateway, ingest, redis, ...) with psutil.

CPU is the difference of ``cpu_times()`` (user + system) between two samples, per pid,
so a group's figure covers exactly the measured window. A process that appears during
the window counts from zero; one that vanished is listed in ``lost``.
"""

from __future__ import annotations

from typing import Any

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
