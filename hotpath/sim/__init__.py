"""Bybit V5 public market-data simulator.

A separate loopback server that speaks Bybit's public protocol over real sockets, so
hotpath can run offline and in benchmarks: WebSocket ``/v5/public/linear`` (tickers,
publicTrade, kline, orderbook, allLiquidation), REST ``/v5/market/instruments-info``,
``/v5/market/tickers`` and ``/v5/market/time``, and a ``/sim/`` control surface for
tests (state, book, pause/resume, faults, stats).

Layout, by how often the code runs:

* pure, no event loop, unit tested directly: ``numfmt`` (integers to decimal strings),
  ``instruments`` (the universe), ``book`` (levels and depth-N diffs), ``market`` (the
  seeded random walk, books, trades), ``candles``, ``ticker``, ``messages`` (Bybit
  frames as Structs), ``topics``, ``session`` (client ops), ``rest``, ``faults``;
* ``feeds``: one publisher per live topic, market state in, encoded frames out;
* ``hub``: the master clock, topic registry and fan-out (frame once, one write per
  connection per tick);
* ``server``, ``control``, ``replay``: picows I/O, HTTP routing, replay streams;
* ``cli`` and ``settings``: ``hotpath sim`` / ``python -m hotpath.sim.cli``.
"""
