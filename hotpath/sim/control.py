"""``/sim/`` control endpoints: inspect what was sent, freeze the market, inject faults.

All GET, all JSON. ``/sim/state`` and ``/sim/book`` return what the simulator last
*sent* on the topic, which is what a client that merged snapshot + deltas must hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hotpath.sim.messages import encode

if TYPE_CHECKING:
    from hotpath.sim.server import ClientListener, SimServer

log = logging.getLogger("hotpath.sim.control")

Answer = tuple[int, bytes]


def _ok(**fields: Any) -> Answer:
    return 200, encode({"ok": True, **fields})


def _bad(message: str, status: int = 400) -> Answer:
    return status, encode({"ok": False, "error": message})


def _number(query: dict[str, str], key: str) -> float | None:
    try:
        value = float(query[key])
    except (KeyError, ValueError):
        return None
    return value if value >= 0 else None


class Control:
    """The control surface of one :class:`SimServer`."""

    def __init__(self, server: "SimServer") -> None:
        self.server = server
        self.publisher = server.publisher
        self.tickers_ok = hasattr(self.publisher, "current_ticker")
        self._routes: dict[str, Callable[[dict[str, str]], Answer]] = {
            "/sim/state": self._state, "/sim/book": self._book, "/sim/pause": self._pause,
            "/sim/resume": self._resume, "/sim/fault": self._fault, "/sim/stats": self._stats,
            "/sim/delist": self._delist, "/sim/relist": self._relist,
        }
        self._faults: dict[str, Callable[[dict[str, str]], Answer]] = {
            "drop": self._drop, "stall": self._stall, "gap": self._gap, "refuse": self._refuse,
            "reject": self._reject, "flood": self._flood,
        }

    def handle(self, path: str, query: dict[str, str]) -> Answer:
        route = self._routes.get(path)
        if route is None:
            return _bad(f"unknown control path {path}", 404)
        return route(query)

    def ticker_row(self, symbol: str) -> dict[str, str]:
        return self.publisher.current_ticker(symbol)  # type: ignore[attr-defined, no-any-return]

    # -- inspection -------------------------------------------------------------------

    def _state(self, query: dict[str, str]) -> Answer:
        getter = getattr(self.publisher, "ticker_state", None)
        state = getter(query.get("symbol", "")) if getter else None
        return (200, encode(state)) if state is not None else _bad("unknown symbol", 404)

    def _book(self, query: dict[str, str]) -> Answer:
        getter = getattr(self.publisher, "book_state", None)
        depth = query.get("depth", "50")
        if getter is None or not depth.isdigit():
            return _bad("no such book", 404)
        view = getter(query.get("symbol", ""), int(depth))
        if view is None:
            return _bad("no book sent on that topic (subscribe to it first)", 404)
        return 200, encode(view)

    def _stats(self, query: dict[str, str]) -> Answer:
        server, publisher = self.server, self.publisher
        conns = [{"conn_id": c.conn_id, "peer": c.peer, "topics": len(c.session.topics),
                  "sent": c.sent, "dropped": c.dropped, "stalled": c.stalled}
                 for c in server.conns.values()]
        stats: dict[str, Any] = {
            "connections": len(conns), "total_connections": server.total_connections,
            "upgrade_attempts": server.upgrade_attempts,
            "messages_sent": publisher.messages_sent,
            "faults": publisher.faults.active(time.monotonic()), "conns": conns,
        }
        stats.update(publisher.stats())  # type: ignore[attr-defined]
        if query.get("reset") == "1" and hasattr(publisher, "reset_stats"):
            publisher.reset_stats()  # a benchmark's window starts here
        return 200, encode(stats)

    def _pause(self, query: dict[str, str]) -> Answer:
        self.publisher.pause()  # type: ignore[attr-defined]
        log.info("market paused")
        return _ok(paused=True)

    def _resume(self, query: dict[str, str]) -> Answer:
        self.publisher.resume()  # type: ignore[attr-defined]
        log.info("market resumed")
        return _ok(paused=False)

    def _delist(self, query: dict[str, str]) -> Answer:
        """instruments-info reports the symbol as Closed (its streams keep running)."""
        symbol = query.get("symbol", "")
        if symbol not in {inst.symbol for inst in self.server.universe}:
            return _bad("unknown symbol", 404)
        self.server.closed.add(symbol)
        log.info("%s delisted (instruments-info says Closed)", symbol)
        return _ok(delisted=symbol)

    def _relist(self, query: dict[str, str]) -> Answer:
        self.server.closed.discard(query.get("symbol", ""))
        return _ok(relisted=query.get("symbol", ""))

    # -- faults -----------------------------------------------------------------------

    def _fault(self, query: dict[str, str]) -> Answer:
        kind = query.get("kind", "")
        handler = self._faults.get(kind)
        if handler is None:
            return _bad(f"unknown fault kind {kind!r}; one of {', '.join(self._faults)}")
        return handler(query)

    def _targets(self, query: dict[str, str]) -> list["ClientListener"] | None:
        conn_id = query.get("conn_id")
        if not conn_id:
            return list(self.server.conns.values())
        conn = self.server.conns.get(conn_id)
        return [conn] if conn is not None else None

    def _drop(self, query: dict[str, str]) -> Answer:
        targets = self._targets(query)
        if targets is None:
            return _bad("unknown conn_id", 404)
        for conn in targets:
            conn.close(abrupt=True)
        log.warning("fault drop: aborted %d connections", len(targets))
        return _ok(kind="drop", connections=len(targets))

    def _stall(self, query: dict[str, str]) -> Answer:
        seconds, targets = _number(query, "seconds"), self._targets(query)
        if seconds is None:
            return _bad("stall needs seconds=S")
        if targets is None:
            return _bad("unknown conn_id", 404)
        for conn in targets:
            conn.stalled = True
        if "conn_id" not in query:
            self.publisher.faults.stall_until = time.monotonic() + seconds
        loop = self.server._loop
        assert loop is not None
        loop.call_later(seconds, self._unstall, targets)
        log.warning("fault stall: %d connections silent for %.2fs", len(targets), seconds)
        return _ok(kind="stall", connections=len(targets), seconds=seconds)

    @staticmethod
    def _unstall(targets: list["ClientListener"]) -> None:
        for conn in targets:
            conn.stalled = False
        log.info("stall over for %d connections", len(targets))

    def _gap(self, query: dict[str, str]) -> Answer:
        topic = query.get("topic", "")
        if not topic.startswith("orderbook."):
            return _bad("gap needs topic=orderbook.{depth}.{symbol}")
        self.publisher.faults.gap(topic)
        log.warning("fault gap: next delta of %s skips one u", topic)
        return _ok(kind="gap", topic=topic)

    def _refuse(self, query: dict[str, str]) -> Answer:
        seconds = _number(query, "seconds")
        if seconds is None:
            return _bad("refuse needs seconds=S")
        self.publisher.faults.refuse(seconds, time.monotonic())
        log.warning("fault refuse: new WebSocket connections get 503 for %.2fs", seconds)
        return _ok(kind="refuse", seconds=seconds)

    def _reject(self, query: dict[str, str]) -> Answer:
        seconds = _number(query, "seconds")
        if seconds is None:
            return _bad("reject needs seconds=S")
        self.publisher.faults.reject(seconds, time.monotonic(), query.get("msg", ""))
        log.warning("fault reject: subscribes fail for %.2fs (%s)", seconds,
                    self.publisher.faults.reject_msg)
        return _ok(kind="reject", seconds=seconds, ret_msg=self.publisher.faults.reject_msg)

    def _flood(self, query: dict[str, str]) -> Answer:
        count, targets = _number(query, "count"), self._targets(query)
        if count is None:
            return _bad("flood needs count=N")
        if targets is None:
            return _bad("unknown conn_id", 404)
        flood = getattr(self.publisher, "flood", None)
        sent = sum(flood(c, c.session.topics, int(count)) for c in targets) if flood else 0
        log.warning("fault flood: %d extra messages to %d connections", sent, len(targets))
        return _ok(kind="flood", messages=sent, connections=len(targets))
