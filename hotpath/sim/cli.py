"""``hotpath sim``: run the Bybit V5 simulator until SIGTERM/SIGINT.

When listening it prints exactly one line to stdout, ``SIM_READY port=<port>``, so a
supervisor or a test learns the port (``--port 0`` picks a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from hotpath import compiled, logs
from hotpath.sim.hub import Hub
from hotpath.sim.instruments import Instrument, default_universe, universe_from_names
from hotpath.sim.replay import ReplayFile, ReplayHub
from hotpath.sim.server import Publisher, SimServer
from hotpath.sim.settings import BYBIT_IDLE_TIMEOUT, SimConfig
from hotpath.sim.topics import ORDERBOOK_INTERVALS_MS

log = logging.getLogger("hotpath.sim")


def _depth_intervals(text: str) -> dict[int, int]:
    out = dict(ORDERBOOK_INTERVALS_MS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        depth, _, ms = item.partition("=")
        if int(depth) not in ORDERBOOK_INTERVALS_MS or int(ms) <= 0:
            raise argparse.ArgumentTypeError(f"bad depth interval {item!r}")
        out[int(depth)] = int(ms)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotpath sim", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--host", default="127.0.0.1", help="address to listen on")
    a("--port", type=int, default=0, help="port to listen on (0: pick a free port)")
    a("--symbols", type=int, default=300, help="universe size: real majors, then generated names")
    a("--symbol-list", default="", help="explicit comma-separated symbols (overrides --symbols)")
    a("--seed", type=int, default=1, help="random-walk seed; same seed, same market")
    a("--step-ms", type=int, default=10, help="market step: how often the market moves")
    a("--clock-speed", type=float, default=1.0,
      help="simulated time runs this many times faster than wall time (timestamps, kline "
           "closes, funding); e.g. 60 closes a 1-minute kline every second")
    a("--ticker-interval-ms", type=int, default=100, help="tickers push interval (Bybit: 100)")
    a("--ticker-spread", action="store_true",
      help="spread symbols' ticker pushes evenly over the interval instead of one clock")
    a("--book-spread", action="store_true",
      help="spread symbols' order book pushes evenly over each depth's interval, in steps of "
           "--step-ms, instead of one clock")
    a("--orderbook-intervals", type=_depth_intervals, default=dict(ORDERBOOK_INTERVALS_MS),
      metavar="DEPTH=MS,...", help="orderbook push interval per depth (Bybit: 1=10,50=20,"
                                   "200=100,1000=200)")
    a("--moves-per-second", type=float, default=4.0, help="reference price moves per symbol")
    a("--trade-rate", type=float, default=5.0,
      help="taker orders per second per symbol (each prints 1-4 trades)")
    a("--book-churn", type=float, default=100.0,
      help="order-book level changes per second per symbol (sets the size of deltas)")
    a("--kline-push-ms", type=int, default=1000, help="kline push interval (Bybit: 1-60 s)")
    a("--liquidation-interval-ms", type=int, default=500, help="allLiquidation batching interval")
    a("--liquidation-rate", type=float, default=0.2, help="liquidation batches per second per symbol")
    a("--idle-timeout", type=float, default=BYBIT_IDLE_TIMEOUT,
      help="close a connection that sent nothing (no op, no ping) for this many seconds")
    a("--max-buffer", type=int, default=64 * 1024 * 1024,
      help="close a client whose unsent bytes exceed this (slow consumer)")
    a("--stamp-at-write", action="store_true",
      help="give each pushed frame's ts the millisecond its write goes to the socket, not "
           "the one its slice of frames began being built: the simulator's own build time "
           "then stays out of a lag measured downstream (bench S4)")
    a("--replay", default="", metavar="FILE", help="replay a JSON-lines file of Bybit frames "
                                                   "instead of simulating a market")
    a("--replay-speed", type=float, default=1.0,
      help="replay timing: 1.0 = the frames' original ts spacing, 0 = as fast as possible")
    a("--replay-loop", action="store_true", help="start the replay file again when it ends")
    a("--ready-file", default="", help="also write the bound port to this file")
    a("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    a("--log-format", default="text", choices=("text", "json"))
    return p


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    symbol_list = tuple(s.strip().upper() for s in ns.symbol_list.split(",") if s.strip())
    return SimConfig(
        host=ns.host, port=ns.port, symbols=ns.symbols, symbol_list=symbol_list, seed=ns.seed,
        step_ms=ns.step_ms, clock_speed=ns.clock_speed, ticker_interval_ms=ns.ticker_interval_ms,
        ticker_spread=ns.ticker_spread, book_spread=ns.book_spread,
        orderbook_intervals_ms=ns.orderbook_intervals,
        moves_per_second=ns.moves_per_second, trade_rate=ns.trade_rate, book_churn=ns.book_churn,
        kline_push_ms=ns.kline_push_ms, liquidation_interval_ms=ns.liquidation_interval_ms,
        liquidation_rate=ns.liquidation_rate, idle_timeout=ns.idle_timeout,
        max_buffer=ns.max_buffer, stamp_at_write=ns.stamp_at_write, replay=ns.replay,
        replay_speed=ns.replay_speed,
        replay_loop=ns.replay_loop, ready_file=ns.ready_file,
    )


def build(config: SimConfig) -> tuple[Publisher, list[Instrument]]:
    """The publisher (synthetic market or replay) and the universe REST serves."""
    if config.replay:
        recording = ReplayFile.load(config.replay)
        return ReplayHub(recording, config.replay_speed, config.replay_loop), recording.instruments()
    if config.symbol_list:
        universe = universe_from_names(list(config.symbol_list))
    else:
        universe = default_universe(config.symbols)
    return Hub(config, universe), universe


async def serve(config: SimConfig) -> None:
    """Run until SIGTERM or SIGINT, then close every client and return."""
    publisher, universe = build(config)
    server = SimServer(config, publisher, universe)
    port = await server.start()
    if config.ready_file:
        Path(config.ready_file).write_text(f"{port}\n")
    mode = f"replay of {config.replay}" if config.replay else f"{len(universe)} symbols, seed {config.seed}"
    log.info("Bybit V5 simulator listening on ws://%s:%d/v5/public/linear (%s); per-step "
             "code %s", config.host, port, mode,
             compiled.summary(compiled.status(compiled.SIM_MODULES)))
    print(f"SIM_READY port={port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: %d connections open", len(server.conns))
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logs.setup("sim", ns.log_level, ns.log_format)
    try:
        config = config_from_args(ns)
        uvloop.run(serve(config))
    except (OSError, ValueError) as exc:
        log.error("simulator failed to start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
