"""Markdown report and plots from ``bench/run`` results.

``python -m bench.report bench/results/<date>-S1.json ...`` rebuilds the report of
saved results (``--out`` names the Markdown file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

KIB = 1024.0

TARGETS = {
    "S1": "all clients hold, every message delivered (no seq gap), p99 <= 50 ms, gateway CPU "
          "per delivered message <= 1.2x the C floor",
    "S2": "p99 <= 50 ms, no seq gap, gateway CPU per delivered message <= 1.5 us",
    "S5": "10,000 idle clients cost < 0.05 cores and < 30 KiB of gateway memory per client",
}


# The parts of S4's publish lag, as the ingest and the simulator measure them.
_LAG_PARTS = (
    ("ingest_publish_lag_ms", "exchange timestamp -> PUBLISH written to Redis, as the ingest "
                              "measures it per message"),
    ("ingest_arrival_lag_ms", "of which upstream (exchange timestamp -> the ingest's receive, "
                              "as the ingest reports it)"),
    ("sim_send_delay_ms", "the simulator's own build time (a slice of frames begun -> its "
                          "write to the socket, on the same cores; in the lag above unless "
                          "frames are stamped at their write)"),
    ("ingest_hold_ms", "of which the ingest itself (its upstream frame arrived -> its PUBLISH "
                       "written to Redis, per message)"),
    ("upstream_lag_ms", "for reference, a client of the simulator that only reads the same "
                        "sample of topics (exchange timestamp -> its receive)"),
)

def _merged_pushes(pushes: dict[str, int] | None) -> list[str]:
    """A line on the simulator's cadence: when it runs behind, a topic due twice in the
    steps it catches up on pushes once, and the upstream rate falls below full rate."""
    if not pushes or not pushes.get("due"):
        return []
    merged, due = pushes["merged"], pushes["due"]
    line = (f"- the simulator's cadence: {merged:,} of {due:,} periodic pushes merged "
            f"into a later one ({100 * merged / due:.1f}%) because it ran behind")
    if merged > due // 100:
        line += ("; **the simulator did not hold Bybit's cadence: the upstream rate was "
                 "below full rate**")
    return [line]


def _steal(steal: dict[str, Any] | None) -> list[str]:
    """A line on the hypervisor's steal time per CPU over the run (a VM's vCPU waiting
    while the host runs something else), the node's CPUs marked."""
    if not steal or not steal.get("percent"):
        return []
    node = {str(c) for c in steal.get("node_cpus", [])}
    parts = [f"CPU {cpu} {pct:.1f}%" + (" (the node's)" if cpu in node else "")
             for cpu, pct in sorted(steal["percent"].items(), key=lambda kv: int(kv[0]))]
    line = "- steal time (the hypervisor running others while a vCPU wanted to): " + \
        ", ".join(parts)
    if any(steal["percent"].get(cpu, 0.0) > 1.0 for cpu in node):
        line += "; **the node's CPU lost over 1% of its time to the host**"
    return [line]


def _sim_share(row: dict[str, Any]) -> str:
    """The ingest's CPU beside the simulator's, which made the same frames on the same
    cores: a ratio that holds while the machine's speed moves between runs."""
    sim, ingest = row.get("sim_cores"), row.get("ingest_cores")
    if not sim or not ingest or not row.get("publish_lag"):
        return ""
    return f"; the simulator {_f(sim, 3)} cores (ingest / simulator CPU {ingest / sim:.2f})"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        import psutil
        mem = psutil.virtual_memory().total
    except ImportError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("picows", "uvloop", "websockets", "redis", "msgspec", "psutil"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    redis_v = ""
    if shutil.which("redis-server"):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        redis_v = out.stdout.split(" v=")[1].split()[0] if " v=" in out.stdout else ""
    cc = shutil.which("cc") or shutil.which("gcc") or ""
    cc_v = ""
    if cc:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True)
        cc_v = out.stdout.splitlines()[0] if out.stdout else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "redis_server": redis_v, "cc": cc_v, "packages": versions}


# -- figures of one phase ----------------------------------------------------------------

def summary(phase: dict[str, Any]) -> dict[str, Any]:
    """The figures a report shows for one server in one scenario."""
    r = phase.get("result") or {}
    if not r:
        return {"server": phase["server"], "missing": True, "problems": phase["problems"]}
    server_group = {"hotpath": "gateway"}.get(phase["server"], phase["server"])
    res = r.get("resources", {})
    srv = res.get(server_group, {})
    c = r["clients"]
    connected = max(1, c["connected"])
    before = srv.get("rss_mib_before_connect")
    out: dict[str, Any] = {
        "server": phase["server"], "planned": c["planned"], "connected": c["connected"],
        "failed": c["failed"], "dropped": c["dropped"],
        "errors": sum(v for v in r["errors"].values()),
        "deliveries_per_s": r["deliveries"]["per_second"],
        "latency": r["latency_ms"], "probe_latency": r.get("probe_latency_ms"),
        "us_per_delivery": srv.get("us_per_delivery"), "server_cores": srv.get("cores"),
        "server_rss_mib": srv.get("rss_mib_end"),
        "kib_per_client": round((srv["rss_mib_end"] - before) * KIB / connected, 2)
        if before is not None and c["connected"] else None,
        "loadgen_cores": res.get("loadgen", {}).get("cores"),
        "redis_cores": res.get("redis", {}).get("cores"),
        "ingest_cores": res.get("ingest", {}).get("cores"),
        "ingest_us_per_upstream": res.get("ingest", {}).get("us_per_upstream_message"),
        "sim_cores": res.get("sim", {}).get("cores"),
        "upstream_per_s": (r.get("node") or {}).get("upstream_per_second"),
        "frames_per_write": (r.get("node") or {}).get("frames_per_write"),
        "problems": phase["problems"],
    }
    if "churn" in r:
        out["churn"] = r["churn"]
        out["us_per_churn_cycle"] = srv.get("us_per_churn_cycle")
        if not c["planned"]:  # churn only: the odd update a cycle sees is no fan-out figure
            out["us_per_delivery"] = None
    if phase.get("extra", {}).get("publish_lag"):
        out["publish_lag"] = phase["extra"]["publish_lag"]
    if phase["server"] == "floor":
        out["floor_shape"] = {k: phase["extra"].get(k) for k in ("rate", "batch")}
    return out


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {row["server"]: row for row in rows if not row.get("missing")}
    hp, base, floor = by.get("hotpath"), by.get("baseline"), by.get("floor")
    out: dict[str, Any] = {}

    def ratio(a: Any, b: Any) -> float | None:
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == a and b == b
        return round(a / b, 2) if ok and a and b else None

    if hp and floor and "churn" in hp and "churn" in floor:
        out["hotpath_cpu_per_cycle_vs_floor"] = ratio(hp.get("us_per_churn_cycle"),
                                                      floor.get("us_per_churn_cycle"))
    elif hp and floor:
        out["hotpath_cpu_vs_floor"] = ratio(hp["us_per_delivery"], floor["us_per_delivery"])
    if hp and base and "churn" in hp and "churn" in base:
        out["baseline_cpu_per_cycle_vs_hotpath"] = ratio(base.get("us_per_churn_cycle"),
                                                         hp.get("us_per_churn_cycle"))
    elif hp and base:
        out["baseline_cpu_vs_hotpath"] = ratio(base["us_per_delivery"], hp["us_per_delivery"])
        out["baseline_p99_vs_hotpath"] = ratio(base["latency"].get("p99"),
                                               hp["latency"].get("p99"))
        if hp.get("kib_per_client") and base.get("kib_per_client"):
            out["baseline_memory_vs_hotpath"] = ratio(base["kib_per_client"],
                                                      hp["kib_per_client"])
    return out


def targets(key: str, rows: list[dict[str, Any]],
            rat: dict[str, Any]) -> list[tuple[str, bool | None]]:
    """(criterion, met) for the gateway targets; None when not measured. Never fails a run."""
    hp = next((r for r in rows if r["server"] == "hotpath" and not r.get("missing")), None)
    if hp is None:
        return []
    lat, probe = hp["latency"], hp.get("probe_latency") or {}
    out: list[tuple[str, bool | None]] = []
    if key in ("S1", "S2"):
        if key == "S1":
            out.append(("all clients hold (connected = planned, none dropped)",
                        hp["connected"] == hp["planned"] and not hp["dropped"]))
        out.append(("no seq gap, duplicate or missing snapshot", hp["errors"] == 0))
        out.append((f"p99 <= 50 ms, probe clients ({_f(probe.get('p99'))} ms)",
                    _le(probe.get("p99"), 50)))
        out.append((f"p99 <= 50 ms, all clients incl. load-generator queueing "
                    f"({_f(lat.get('p99'))} ms)", _le(lat.get("p99"), 50)))
        if key == "S1":
            r = rat.get("hotpath_cpu_vs_floor")
            out.append((f"gateway CPU per delivery <= 1.2x floor ({_f(r)}x)", _le(r, 1.2)))
        else:
            out.append((f"gateway CPU per delivery <= 1.5 us ({_f(hp['us_per_delivery'])} us)",
                        _le(hp["us_per_delivery"], 1.5)))
    if key == "S5":
        out.append((f"< 0.05 cores for the idle clients ({_f(hp['server_cores'], 3)} cores, "
                    f"{hp['connected']:,} clients)", _le(hp["server_cores"], 0.05, strict=True)))
        out.append((f"< 30 KiB gateway memory per client ({_f(hp['kib_per_client'])} KiB)",
                    _le(hp["kib_per_client"], 30, strict=True)))
    return out


def _le(value: Any, limit: float, strict: bool = False) -> bool | None:
    if value is None or value != value:
        return None
    return bool(value < limit) if strict else bool(value <= limit)


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


# -- Markdown ------------------------------------------------------------------------------

def scenario_markdown(sc: dict[str, Any], png: str | None) -> str:
    rows = [summary(p) for p in sc["phases"]]
    rat = ratios(rows)
    lines = [f"## {sc['scenario']}: {sc['title']}", ""]
    lines.append(f"{sc['clients']:,} clients, {sc['duration']:g} s window; simulator "
                 f"`{' '.join(sc['sim_args'])}`; mix `{json.dumps(sc['mix'])}`"
                 + (f"; churn {sc['churn_rate']:g}/s" if sc.get("churn_rate") else "")
                 + (f"; ingest `--eager {','.join(sc['eager'])}`" if sc.get("eager") else "") + ".")
    lines += [f"Note: {n}." for n in sc.get("notes", [])]
    lines.append("")
    if rat:
        lines.append("**Ratios** (same run, same machine): " + "; ".join(
            f"{k.replace('_', ' ')} **{v}x**" for k, v in rat.items() if v is not None) + ".")
        lines.append("")
    tg = targets(sc["scenario"], rows, rat)
    if tg:
        lines.append("Targets: " + "; ".join(
            f"{name}: {'met' if ok else ('not measured' if ok is None else '**not met**')}"
            for name, ok in tg) + ".")
        lines.append("")
    lines += _phase_table(rows)
    for row in rows:
        if row.get("churn"):
            ch = row["churn"]
            sl = ch["snapshot_latency_ms"]
            first = "subscribe reply (no snapshots)" if row["server"] == "baseline" else "snapshot"
            lines.append(f"- {row['server']} churn: {_f(ch['completed_per_second'], 1)}/s completed "
                         f"of {ch['target_per_second']:g}/s; {first} after subscribe p50 "
                         f"{_f(sl.get('p50'))} ms, p99 {_f(sl.get('p99'))} ms, p99.9 "
                         f"{_f(sl.get('p999'))} ms; server CPU "
                         f"{_f(row.get('us_per_churn_cycle'), 0)} us per cycle; failed "
                         f"{ch['failed']}, skipped {ch['skipped']}")
        if row.get("publish_lag"):
            pl = row["publish_lag"]
            lag = pl.get("lag_ms", {})
            lines.append(f"- publish lag (exchange timestamp -> message on Redis): p50 "
                         f"{_f(lag.get('p50'))} ms, p99 {_f(lag.get('p99'))} ms, p99.9 "
                         f"{_f(lag.get('p999'))} ms, max {_f(lag.get('max'))} ms over "
                         f"{_f(pl.get('messages'))} messages ({_f(pl.get('per_second'), 0)}/s); "
                         f"Redis seq gaps {pl.get('redis_seq_gaps')}")
            for key, what in _LAG_PARTS:
                part = pl.get(key)
                if part:
                    lines.append(f"- {what}: p50 {_f(part.get('p50'))} ms, p99 "
                                 f"{_f(part.get('p99'))} ms")
            lines += _merged_pushes(pl.get("sim_pushes"))
            lines += _steal(pl.get("steal"))
        if row.get("ingest_us_per_upstream") is not None:
            lines.append(f"- {row['server']}: ingest {_f(row['ingest_us_per_upstream'], 1)} us CPU "
                         f"per upstream message ({_f(row['upstream_per_s'], 0)} upstream "
                         f"messages/s, {_f(row['ingest_cores'], 3)} cores); Redis "
                         f"{_f(row['redis_cores'], 3)} cores{_sim_share(row)}")
        if row.get("floor_shape") and not row.get("churn"):
            fs = row["floor_shape"]
            lines.append(f"- floor: {fs['rate']} sends per second per client, {fs['batch']} "
                         "frame(s) per send (matching hotpath's delivery rate and frames per "
                         "write in this scenario)")
    problems = sc.get("problems") or []
    lines.append("")
    lines.append("Errors: " + ("none." if not problems else "; ".join(problems)))
    if png:
        lines += ["", f"![{sc['scenario']}]({png})"]
    lines.append("")
    return "\n".join(lines)


def _churn_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("| server | cycles/s held | target/s | failed | errors | first message after "
            "subscribe p50 ms | p99 ms | p99.9 ms | server CPU us/cycle | server cores | "
            "load generator cores |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.get("missing") or not r.get("churn"):
            continue
        ch, sl = r["churn"], r["churn"]["snapshot_latency_ms"]
        out.append(f"| {r['server']} | {_f(ch['completed_per_second'], 1)} | "
                   f"{ch['target_per_second']:g} | {ch['failed']} | {r['errors']} | "
                   f"{_f(sl.get('p50'))} | {_f(sl.get('p99'))} | {_f(sl.get('p999'))} | "
                   f"{_f(r.get('us_per_churn_cycle'), 0)} | {_f(r['server_cores'], 3)} | "
                   f"{_f(r['loadgen_cores'], 2)} |")
    out += ["", "First message: the snapshot (hotpath, floor) or the subscribe reply "
            "(baseline, which has no snapshots).", ""]
    return out


def _phase_table(rows: list[dict[str, Any]]) -> list[str]:
    present = [r for r in rows if not r.get("missing")]
    if present and all(r.get("churn") and not r.get("planned") for r in present):
        return _churn_table(rows)
    head = ("| server | clients held | failed | dropped | errors | deliveries/s | p50 ms | "
            "p99 ms | p99.9 ms | max ms | probe p99 ms | server CPU us/delivery | server cores | "
            "server KiB/client | load generator cores |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.get("missing"):
            out.append(f"| {r['server']} | (did not run: {'; '.join(r['problems'])}) |")
            continue
        lat, probe = r["latency"], r.get("probe_latency") or {}
        out.append(
            f"| {r['server']} | {r['connected']:,}/{r['planned']:,} | {r['failed']} | "
            f"{r['dropped']} | {r['errors']} | {_f(r['deliveries_per_s'], 0)} | "
            f"{_f(lat.get('p50'))} | {_f(lat.get('p99'))} | {_f(lat.get('p999'))} | "
            f"{_f(lat.get('max'))} | {_f(probe.get('p99'))} | {_f(r['us_per_delivery'])} | "
            f"{_f(r['server_cores'], 3)} | {_f(r['kib_per_client'], 1)} | "
            f"{_f(r['loadgen_cores'], 2)} |")
    out.append("")
    return out


def report_markdown(results: list[dict[str, Any]], pngs: dict[str, str | None],
                    mach: dict[str, Any], command: str) -> str:
    m = mach
    workers = next((r["workers"] for r in results if "workers" in r), "?")
    lines = ["# hotpath benchmark report", "",
             f"Machine: {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, {m['memory_gib']} GiB, "
             f"Linux {m['kernel']}, Python {m['python']}, redis-server {m['redis_server']}, "
             f"{m['cc']}. Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
             "", f"Command: `{command}`", "",
             "How to read it: latency is the client's receive time minus the message's exchange "
             "timestamp (ms resolution), so it includes the simulator, the ingest, Redis and "
             "the gateway. *probe* clients are held by a separate, lightly loaded "
             "load-generator process, so their latency excludes the load generator's own "
             "queueing; the other figures cover every client. CPU is psutil user+system time "
             "over the measured window divided by the messages the clients received in it. "
             "The load generator runs on the same cores as the servers.",
             "", f"Servers: **hotpath** (`hotpath serve`, {workers} gateway worker(s)); "
             "**baseline** (`bench/baseline_server.py`: websockets + its broadcast helper + "
             f"redis-py pub/sub, {workers} process(es), uvloop); **floor** (`bench/floor.c`: one C process writing "
             "the same pre-framed frames to the same number of sockets with one send() per "
             "client per tick).", ""]
    for sc in results:
        lines.append(scenario_markdown(sc, pngs.get(sc["scenario"])))
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------

def plot(sc: dict[str, Any], path: Path) -> bool:
    """Throughput and latency percentiles over time, one line per server. False when
    there is nothing to plot or matplotlib is missing."""
    phases = [p for p in sc["phases"] if p.get("result") and p["result"].get("timeline")]
    churn = any("churn" in p["result"] for p in phases)
    if not phases or not any(row.get("deliveries") or row.get("churn")
                             for p in phases for row in p["result"]["timeline"]):
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colors = {"hotpath": "tab:blue", "baseline": "tab:orange", "floor": "tab:green"}
    for p in phases:
        r = p["result"]
        w = r["window"]
        rows = [row for row in r["timeline"] if row["t"] < w["t_to"]]  # not the stop phase
        color = colors.get(p["server"], "tab:gray")
        t = [row["t"] for row in rows]
        if churn:
            top.plot(t, [row.get("churn", 0) for row in rows], color=color, label=p["server"])
            bottom.plot(t, [row.get("churn_p99") for row in rows], color=color,
                        label=f"{p['server']} p99")
        else:
            top.plot(t, [row["deliveries"] for row in rows], color=color, label=p["server"])
            for q, style in (("p50", ":"), ("p99", "-"), ("p999", "--")):
                bottom.plot(t, [row.get(q) for row in rows], style, color=color,
                            label=f"{p['server']} {q.replace('p999', 'p99.9')}")
        top.axvspan(w["t_from"], w["t_to"], color=color, alpha=0.06)
    top.set_ylabel("connect-subscribe-snapshot cycles/s" if churn else "deliveries/s")
    bottom.set_ylabel("first message after subscribe, p99 ms" if churn else "latency ms")
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    bottom.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bottom.set_xlabel("seconds since the load generator started (shaded: measured window)")
    top.set_title(f"{sc['scenario']}: {sc['title']}")
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=7, ncol=3)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(results: list[dict[str, Any]], out_dir: Path, stamp: str, command: str,
          mach: dict[str, Any] | None = None) -> Path:
    mach = mach or machine()
    pngs: dict[str, str | None] = {}
    for sc in results:
        png = out_dir / f"{stamp}-{sc['scenario']}.png"
        pngs[sc["scenario"]] = png.name if plot(sc, png) else None
    path = out_dir / f"{stamp}-report.md"
    path.write_text(report_markdown(results, pngs, mach, command))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    p.add_argument("results", nargs="+", help="scenario JSON files written by bench/run")
    p.add_argument("--out", default="", help="Markdown file (default: beside the first JSON)")
    ns = p.parse_args(argv)
    results = [json.loads(Path(f).read_text()) for f in ns.results]
    first = Path(ns.results[0])
    stamp = first.name.rsplit("-", 1)[0]
    mach = results[0].get("machine")
    path = write(results, first.parent, stamp, results[0].get("command", ""), mach)
    if ns.out:
        Path(ns.out).write_text(path.read_text())
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
