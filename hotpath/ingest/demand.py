"""Which streams are wanted upstream, from the gateways' demand. Pure.

Every gateway worker sends the full set of streams its clients want, refreshed every
few seconds; a set not refreshed within its ttl is forgotten (the worker died). A
stream nobody wants any more stays subscribed for ``linger`` seconds, so clients
that flap do not make us churn Bybit subscriptions.
"""

from __future__ import annotations

from typing import Iterable


class DemandTable:
    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.workers: dict[str, tuple[frozenset[str], float]] = {}
        self.unwanted_since: dict[str, float] = {}

    def update(self, worker: str, streams: Iterable[str], ttl: float, now: float) -> None:
        self.workers[worker] = (frozenset(streams), now + ttl)

    def wanted(self, now: float) -> set[str]:
        expired = [w for w, (_, until) in self.workers.items() if until < now]
        for worker in expired:
            del self.workers[worker]
        wanted: set[str] = set()
        for streams, _ in self.workers.values():
            wanted |= streams
        return wanted

    def plan(self, active: set[str], always: set[str], now: float) -> tuple[set[str], set[str]]:
        """(streams to subscribe, streams to drop) given what is ``active`` upstream."""
        wanted = self.wanted(now) | always
        unwanted_since = self.unwanted_since
        if unwanted_since:  # wanted again: its linger starts afresh when next unwanted
            for name in unwanted_since.keys() & wanted:
                del unwanted_since[name]
        drop = set()
        for name in active - wanted:
            since = self.unwanted_since.setdefault(name, now)
            if now - since >= self.linger:
                drop.add(name)
        for name in drop:
            del self.unwanted_since[name]
        return wanted - active, drop
