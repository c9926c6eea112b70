"""``python -m bench.loadgen``: a swarm of WebSocket clients against a hotpath node (or
any server speaking its protocol), with seq checks, latency and per-process CPU.

Examples::

    # 2,000 clients on one hot stream for 20 s, pids and counters found via /stats
    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --clients 2000 \\
        --stream ticker:BTCUSDT --duration 20 --hotpath-url http://127.0.0.1:8080

    # 5 streams per client drawn Zipf over the 200 busiest symbols, tickers and trades
    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --clients 1000 --mix zipf \\
        --per-client 5 --kinds ticker,trade --symbols-url http://127.0.0.1:PORT --symbols 200

    # plus 1,000 clients that subscribe at the window's start and never read
    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --clients 1000 --duration 15 \\
        --slow-clients 1000 --hotpath-url http://127.0.0.1:8080

    # reconnect storm: 10,000 clients dropped at once, all reconnecting within 1 s
    python -m bench.loadgen --url ws://127.0.0.1:8080/ws --clients 10000 --processes 4 \\
        --source-ips 127.0.9.1-4 --storm-spread 1 --hotpath-url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.loadgen.mixes import Mix, MixError, parse_addresses, symbols_by_turnover
from bench.loadgen.swarm import Options, Swarm
from bench.loadgen.table import render


def _measure(text: str) -> tuple[str, list[int]]:
    name, _, pids = text.partition("=")
    try:
        return name, [int(p) for p in pids.split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=PID[,PID...], got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--url", required=True, help="WebSocket URL, e.g. ws://127.0.0.1:8080/ws")
    a("--clients", type=int, default=100, help="clients held for the whole run (default 100)")
    a("--processes", type=int, default=2,
      help="load-generator processes (each holds clients/processes sockets; the per-process "
           "open-files limit bounds it) (default 2)")
    a("--source-ips", default="127.0.0.1",
      help="source addresses, round-robin per client, e.g. 127.0.0.1,127.0.1.1-4 "
           "(each gives ~28,000 ephemeral ports) (default 127.0.0.1)")
    a("--ramp", type=float, default=1000.0, help="connects per second (default 1000)")
    a("--duration", type=float, default=10.0, help="measured window, seconds (default 10)")
    a("--warmup", type=float, default=2.0,
      help="seconds between every client being ready and the window (default 2)")
    a("--ready-timeout", type=float, default=30.0,
      help="seconds after the ramp to wait for all snapshots (default 30)")
    a("--probe-clients", type=int, default=None,
      help="clients held by one extra, lightly loaded process: their latency excludes the "
           "load generator's own queueing (default: clients/20, at most 50)")
    g = p.add_argument_group("subscription mix")
    g.add_argument("--mix", choices=("hot", "zipf", "none"), default="hot",
                   help="hot: every client on --stream; zipf: --per-client streams drawn "
                        "Zipf over the symbols; none: connect only (default hot)")
    g.add_argument("--stream", action="append", default=[],
                   help="hot mix: a stream every client subscribes to (repeatable; "
                        "default ticker:BTCUSDT)")
    g.add_argument("--per-client", type=int, default=5, help="zipf: streams per client")
    g.add_argument("--kinds", default="ticker",
                   help="zipf: stream kinds dealt round-robin per client, e.g. "
                        "ticker,trade,orderbook:50,kline:1m (default ticker)")
    g.add_argument("--symbol-list", default="", help="zipf: symbols, most popular first")
    g.add_argument("--symbols-url", default="",
                   help="zipf: Bybit-style REST base URL; symbols ranked by 24h turnover")
    g.add_argument("--symbols", type=int, default=200, help="zipf: symbol-set size (default 200)")
    g.add_argument("--zipf-s", type=float, default=1.0, help="zipf exponent (default 1.0)")
    g.add_argument("--seed", type=int, default=1, help="seed of the draws (default 1)")
    g.add_argument("--churn-rate", type=float, default=0.0,
                   help="also run connect-subscribe-snapshot-disconnect cycles at this rate "
                        "per second (default 0: off)")
    c = p.add_argument_group("checks")
    c.add_argument("--no-snapshot", action="store_true",
                   help="the server has no snapshot semantics: check seq from the first "
                        "message of each stream (baseline servers)")
    c.add_argument("--stale-after", type=float, default=None,
                   help="a ready client silent this long while others receive counts as "
                        "stalled (default 10 for the hot mix, off otherwise)")
    c.add_argument("--ping-interval", type=float, default=30.0,
                   help="each client sends a WebSocket ping this often, s, as a real client's "
                        "heartbeat (the server closes silent clients after its --idle-timeout) "
                        "(0: never) (default 30)")
    r = p.add_argument_group("reliability (both start at the window's start)")
    r.add_argument("--slow-clients", type=int, default=0,
                   help="also connect this many clients (one process of their own) that "
                        "subscribe and never read; they drain once the node closed them all "
                        "(seen in --hotpath-url's /stats) or at the window's end, and the "
                        "close code and reason each got are reported (default 0)")
    r.add_argument("--slow-stream", action="append", default=[],
                   help="a stream the never-reading clients subscribe to (repeatable; "
                        "default: the mix's streams)")
    r.add_argument("--slow-ramp", type=float, default=2000.0,
                   help="their connects per second (default 2000)")
    r.add_argument("--slow-rcvbuf", type=int, default=4096,
                   help="their socket receive buffer, bytes (default 4096)")
    r.add_argument("--storm-spread", type=float, default=0.0,
                   help="reconnect storm: drop every held client at once (reset) and "
                        "reconnect them all within this many seconds; the window lasts "
                        "until all are back with their snapshots (default 0: off)")
    r.add_argument("--storm-timeout", type=float, default=60.0,
                   help="bound on each storm reconnect and on the whole storm, s (default 60)")
    m = p.add_argument_group("measurement")
    m.add_argument("--hotpath-url", default="",
                   help="http://host:port of the hotpath node: /stats counters and, when local, "
                        "the pids of its gateway workers and ingest")
    m.add_argument("--measure", type=_measure, action="append", default=[],
                   metavar="NAME=PID[,PID]",
                   help="measure these processes (and their children) as group NAME; "
                        "repeatable, e.g. --measure redis=1234 --measure baseline=999")
    m.add_argument("--server-group", default="gateway",
                   help="the group whose CPU per delivery is the headline (default gateway)")
    o = p.add_argument_group("output")
    o.add_argument("--label", default="", help="a name for this run in the output")
    o.add_argument("--json", default="", help="write the JSON result to this file ('-': stdout)")
    o.add_argument("--quiet", action="store_true", help="no table")
    return p


def build_mix(ns: argparse.Namespace) -> Mix:
    if ns.mix == "zipf":
        if ns.symbol_list:
            symbols = [s.strip().upper() for s in ns.symbol_list.split(",") if s.strip()]
        elif ns.symbols_url:
            symbols = symbols_by_turnover(ns.symbols_url, ns.symbols)
        else:
            raise MixError("the zipf mix needs --symbol-list or --symbols-url")
        kinds = [k.strip() for k in ns.kinds.split(",") if k.strip()]
        return Mix("zipf", symbols=symbols[:ns.symbols], per_client=ns.per_client, kinds=kinds,
                   s=ns.zipf_s, seed=ns.seed)
    if ns.mix == "none":
        return Mix("none")
    return Mix("hot", streams=ns.stream or ["ticker:BTCUSDT"])


def options(ns: argparse.Namespace) -> Options:
    stale = ns.stale_after if ns.stale_after is not None else (10.0 if ns.mix == "hot" else 0.0)
    probes = ns.probe_clients if ns.probe_clients is not None else min(50, ns.clients // 20)
    return Options(url=ns.url, clients=ns.clients, processes=ns.processes, probe_clients=probes,
                   source_ips=parse_addresses(ns.source_ips), ramp=ns.ramp,
                   duration=ns.duration, warmup=ns.warmup, ready_timeout=ns.ready_timeout,
                   require_snapshot=not ns.no_snapshot, churn_rate=ns.churn_rate,
                   ping_interval=ns.ping_interval, stale_after=stale, label=ns.label,
                   hotpath_url=ns.hotpath_url, measure=dict(ns.measure),
                   server_group=ns.server_group, slow_clients=ns.slow_clients,
                   slow_streams=ns.slow_stream, slow_ramp=ns.slow_ramp,
                   slow_rcvbuf=ns.slow_rcvbuf,
                   storm_spread=ns.storm_spread, storm_timeout=ns.storm_timeout)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        mix = build_mix(ns)
        opts = options(ns)
    except (MixError, ValueError, OSError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    result = Swarm(opts, mix).run()
    if not ns.quiet:
        print(render(result), file=sys.stderr if ns.json == "-" else sys.stdout)
    if ns.json == "-":
        json.dump(result, sys.stdout, indent=1)
        print()
    elif ns.json:
        Path(ns.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
