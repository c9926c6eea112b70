"""``bench/run``: start what each scenario needs, run it against hotpath, the baseline
and the C floor, stop everything, and write ``bench/results/<date>-<scenario>.json``
plus a Markdown report with plots.

Exit status: 0 when no scenario had an error (failed or dropped clients, seq gaps,
missing snapshots, crashed processes), 1 otherwise, 2 on bad arguments. Timing never
fails a run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import report
from bench.scenarios import SERVERS, Settings, build, run_scenario
from bench.stack import BENCH, StackError, build_compiled, compile_floor

ALL = ("S1", "S2", "S3", "S4", "S5")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("scenarios", nargs="*", default=list(ALL),
      help="S1 broadcast, S2 market, S3 churn, S4 full-universe ingest, S5 idle, or smoke "
           "(default: S1 S2 S3 S4 S5)")
    a("--clients", type=int, default=d.clients, help=f"clients held (default {d.clients:,})")
    a("--duration", type=float, default=d.duration,
      help=f"measured window per phase, s (default {d.duration:g}; S5 uses --s5-duration)")
    a("--warmup", type=float, default=d.warmup,
      help=f"s between all clients ready and the window (default {d.warmup:g})")
    a("--ramp", type=float, default=d.ramp, help=f"connects per second (default {d.ramp:g})")
    a("--processes", type=int, default=d.processes,
      help=f"load-generator processes, plus one probe process (default {d.processes})")
    a("--workers", type=int, default=d.workers,
      help=f"hotpath gateway workers and baseline processes (default {d.workers}: one per "
           "core, less the load generator's)")
    a("--servers", type=_csv, default=d.servers,
      help="servers to measure: " + ",".join(SERVERS) + " (default: all)")
    a("--s1-interval-ms", type=int, default=d.s1_interval_ms,
      help=f"S1: ticker push interval (default {d.s1_interval_ms}: 10 updates/s)")
    a("--s2-symbols", type=int, default=d.s2_symbols,
      help=f"S2/S3 symbol set (default {d.s2_symbols})")
    a("--s2-per-client", type=int, default=d.s2_per_client,
      help=f"S2: streams per client (default {d.s2_per_client})")
    a("--s2-kinds", type=_csv, default=d.s2_kinds,
      help="S2: stream kinds dealt to each client (default " + ",".join(d.s2_kinds) + ")")
    a("--s2-sim", default=" ".join(d.s2_sim),
      help="S2/S3: simulator activity flags (push intervals stay Bybit's) (default: %(default)s)")
    a("--s3-rate", type=float, default=d.s3_rate,
      help=f"S3: connect-subscribe-snapshot-disconnect cycles per second (default {d.s3_rate:g})")
    a("--s3-held", type=int, default=d.s3_held, help="S3: clients held meanwhile (default 0)")
    a("--s4-symbols", type=int, default=d.s4_symbols,
      help=f"S4: simulated USDT perpetuals (default {d.s4_symbols})")
    a("--s4-eager", type=_csv, default=d.s4_eager,
      help="S4: topics besides tickers the ingest keeps for every symbol (default "
           + ",".join(d.s4_eager) + "; e.g. trade,orderbook:50,kline:1m)")
    a("--s5-duration", type=float, default=d.s5_duration, help="S5: window, s (default 15)")
    a("--smoke-clients", type=int, default=d.smoke_clients, help="smoke: clients (default 500)")
    a("--smoke-kinds", type=_csv, default=d.smoke_kinds,
      help="smoke: stream kinds (default " + ",".join(d.smoke_kinds) + ")")
    a("--hotpath-args", default=" ".join(d.hotpath_args),
      help="extra flags for hotpath serve, e.g. '--flush-window-ms 5' (default: %(default)s)")
    a("--s4-stamp", choices=("write", "build"), default=d.s4_stamp,
      help="S4: the simulator stamps a frame's ts when it writes it, or when it began building "
           "the frame's slice of up to 32 frames (default %(default)s)")
    a("--s4-sim", default=" ".join(d.s4_sim),
      help="S4: extra simulator flags, e.g. '--ticker-spread --book-spread' (default: none: "
           "every symbol's pushes of a kind on one clock)")
    a("--s4-pin", action="store_true",
      help="S4: give the hotpath node the last CPU to itself; the simulator, Redis and the "
           "probes run on the others")
    a("--s4-isolate", action="store_true",
      help="S4, with --s4-pin: also move every other task of the machine that can leave the "
           "node's CPU (kernel housekeeping threads, agents) off it for the run, and back "
           "after; needs root for tasks that are not yours")
    a("--compiled", action="store_true",
      help="run hotpath with the ingest's per-message code compiled by mypyc "
           "(HOTPATH_COMPILE=1), built from this checkout into the log directory first "
           "(needs mypy and a C compiler)")
    a("--compiled-sim", action="store_true",
      help="run the simulator from that compiled build too (hotpath/compiled.py, "
           "SIM_MODULES): it then keeps Bybit's cadence for S4's universe in more of a slow "
           "machine's hours; without --compiled, hotpath itself still runs interpreted")
    a("--out", default=str(BENCH / "results"), help="results directory (default bench/results)")
    a("--logs", default="", help="keep process logs here (default: a temporary directory)")
    return p


def settings(ns: argparse.Namespace, log_dir: Path) -> Settings:
    bad = [s for s in ns.servers if s not in SERVERS]
    if bad:
        raise ValueError(f"unknown server(s) {bad}; choose from {SERVERS}")
    if ns.s4_isolate and not ns.s4_pin:
        raise ValueError("--s4-isolate shields the CPU that --s4-pin gives the node: add --s4-pin")
    return Settings(clients=ns.clients, duration=ns.duration, warmup=ns.warmup, ramp=ns.ramp,
                    processes=ns.processes, workers=ns.workers, servers=tuple(ns.servers),
                    s1_interval_ms=ns.s1_interval_ms, s2_symbols=ns.s2_symbols,
                    s2_per_client=ns.s2_per_client, s2_kinds=tuple(ns.s2_kinds),
                    s2_sim=tuple(shlex.split(ns.s2_sim)), s3_rate=ns.s3_rate,
                    s3_held=ns.s3_held, s4_symbols=ns.s4_symbols, s4_pin=ns.s4_pin,
                    s4_isolate=ns.s4_isolate,
                    s4_stamp=ns.s4_stamp, s4_sim=tuple(shlex.split(ns.s4_sim)),
                    s4_eager=tuple(ns.s4_eager), s5_duration=ns.s5_duration,
                    smoke_clients=ns.smoke_clients, smoke_kinds=tuple(ns.smoke_kinds),
                    hotpath_args=tuple(shlex.split(ns.hotpath_args)), log_dir=log_dir)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ns = build_parser().parse_args(argv)
    log_dir = Path(ns.logs) if ns.logs else Path(tempfile.mkdtemp(prefix="hotpath-bench-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        s = settings(ns, log_dir)
        scenarios = [build(key, s) for key in ns.scenarios]
    except ValueError as exc:
        print(f"bench/run: {exc}", file=sys.stderr)
        return 2
    try:
        if any("floor" in sc.servers for sc in scenarios):
            s = replace(s, floor_binary=compile_floor(log_dir))
        if ns.compiled or ns.compiled_sim:
            say("compiling hotpath's per-message code with mypyc")
            home = build_compiled(log_dir)
            s = replace(s, hotpath_home=home if ns.compiled else None,
                        sim_home=home if ns.compiled_sim else None)
    except StackError as exc:
        print(f"bench/run: {exc}", file=sys.stderr)
        return 1
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    command = "bench/run " + " ".join(shlex.quote(a) for a in argv)
    mach = report.machine()
    say(f"logs in {log_dir}; results in {out}/{stamp}-*")
    results: list[dict[str, Any]] = []
    for sc in scenarios:
        result = run_scenario(sc, s, say)
        result.update(machine=mach, command=command)
        path = out / f"{stamp}-{sc.key}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        results.append(result)
        say(f"{sc.key} done in {result['seconds']:.0f} s -> {path}")
        print(summary_text(result))
    md = report.write(results, out, stamp, command, mach)
    say(f"report: {md}")
    problems = [f"{r['scenario']}: {p}" for r in results for p in r["problems"]]
    failed = sum(1 for r in results for ph in r["phases"] if ph["problems"])
    passed = sum(len(r["phases"]) for r in results) - failed
    if problems:
        print("ERRORS:\n  " + "\n  ".join(problems))
    else:
        print("no errors")
    print(f"bench: {passed} passed, {failed} failed")  # one per phase (scenario x server)
    return 1 if problems else 0


def summary_text(sc: dict[str, Any]) -> str:
    rows = [report.summary(p) for p in sc["phases"]]
    lines = [f"{sc['scenario']}: {sc['title']}", *(f"  ({n})" for n in sc.get("notes", []))]
    for r in rows:
        if r.get("missing"):
            lines.append(f"  {r['server']:<9} did not run: {'; '.join(r['problems'])}")
            continue
        lat = r["latency"]
        probe = r.get("probe_latency") or {}
        line = (f"  {r['server']:<9} held {r['connected']:,}/{r['planned']:,} failed {r['failed']} "
                f"dropped {r['dropped']} errors {r['errors']}  {report._f(r['deliveries_per_s'], 0)}"
                f" deliveries/s  p50/p99/p99.9/max {report._f(lat.get('p50'), 1)}/"
                f"{report._f(lat.get('p99'), 1)}/{report._f(lat.get('p999'), 1)}/"
                f"{report._f(lat.get('max'), 1)} ms (probe p99 {report._f(probe.get('p99'), 1)})  "
                f"server {report._f(r['us_per_delivery'])} us/delivery "
                f"{report._f(r['server_cores'], 3)} cores")
        if r.get("kib_per_client") is not None:
            line += f" {report._f(r['kib_per_client'], 1)} KiB/client"
        if r.get("churn"):
            ch = r["churn"]
            line += (f"  churn {report._f(ch['completed_per_second'], 1)}/s, first message p99 "
                     f"{report._f(ch['snapshot_latency_ms'].get('p99'))} ms, "
                     f"{report._f(r.get('us_per_churn_cycle'), 0)} us/cycle")
        lines.append(line)
        if r.get("ingest_us_per_upstream") is not None:
            lines.append(f"            ingest {report._f(r['ingest_us_per_upstream'], 1)} us per "
                         f"upstream message ({report._f(r['upstream_per_s'], 0)}/s)"
                         f"{report._sim_share(r)}")
        if r.get("publish_lag"):
            lag = r["publish_lag"].get("lag_ms", {})
            arrival = r["publish_lag"].get("ingest_arrival_lag_ms") or {}
            hold = r["publish_lag"].get("ingest_hold_ms") or {}
            written = r["publish_lag"].get("ingest_publish_lag_ms") or {}
            lines.append(f"            publish lag seen on Redis p50 {report._f(lag.get('p50'))} "
                         f"ms p99 {report._f(lag.get('p99'))} ms; in the ingest: exchange ts "
                         f"to PUBLISH written p50 {report._f(written.get('p50'))} ms p99 "
                         f"{report._f(written.get('p99'))}, of which upstream arrival p50 "
                         f"{report._f(arrival.get('p50'))} p99 {report._f(arrival.get('p99'))}, "
                         f"held p50 {report._f(hold.get('p50'))} p99 {report._f(hold.get('p99'))}")
            sim = r["publish_lag"].get("sim_send_delay_ms") or {}
            if sim:
                lines.append(f"            simulator: slice build to its write p50 {report._f(sim.get('p50'))}"
                             f" ms p99 {report._f(sim.get('p99'))}")
            lines += ["           " + line[1:]
                      for line in report._merged_pushes(r["publish_lag"].get("sim_pushes"))]
            tap = r["publish_lag"].get("upstream_lag_ms") or {}
            if tap:
                lines.append(f"            a client that only reads upstream: exchange ts to "
                             f"receipt p50 {report._f(tap.get('p50'))} ms p99 "
                             f"{report._f(tap.get('p99'))}")
    rat = report.ratios(rows)
    if rat:
        lines.append("  ratios: " + ", ".join(f"{k} {v}x" for k, v in rat.items() if v))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
