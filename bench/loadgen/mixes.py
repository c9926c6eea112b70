"""Who subscribes to what: subscription mixes, Zipf draws, source addresses. Pure."""

from __future__ import annotations

import bisect
import ipaddress
import json
import random
import urllib.request
from typing import Sequence


class MixError(ValueError):
    pass


def zipf_weights(n: int, s: float) -> list[float]:
    """Cumulative Zipf weights over ranks 1..n (rank 1 the most popular)."""
    if n <= 0:
        raise MixError("the symbol set is empty")
    cumulative, total = [], 0.0
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        cumulative.append(total)
    return cumulative


def draw_distinct(cumulative: list[float], k: int, rng: random.Random) -> list[int]:
    """``k`` distinct ranks (0-based) drawn by weight, without replacement."""
    k = min(k, len(cumulative))
    chosen: list[int] = []
    taken: set[int] = set()
    total = cumulative[-1]
    for _ in range(100 * k + 100):  # bounded: rejection of repeats
        if len(chosen) == k:
            break
        i = bisect.bisect_left(cumulative, rng.random() * total)
        i = min(i, len(cumulative) - 1)
        if i not in taken:
            taken.add(i)
            chosen.append(i)
    for i in range(len(cumulative)):  # pathological weights: fill with the next ranks
        if len(chosen) == k:
            break
        if i not in taken:
            taken.add(i)
            chosen.append(i)
    return chosen


class Mix:
    """The streams of client ``i``.

    - ``hot``: every client subscribes to the same ``streams``.
    - ``zipf``: ``per_client`` distinct symbols drawn Zipf(``s``) over ``symbols`` (most
      popular first); stream kinds are dealt round-robin from ``kinds`` starting at a
      random offset, so 5 streams over (ticker, trade) are 3+2 or 2+3.
    - ``none``: connect only (idle clients).
    """

    def __init__(self, kind: str, streams: Sequence[str] = (), symbols: Sequence[str] = (),
                 per_client: int = 5, kinds: Sequence[str] = ("ticker",), s: float = 1.0,
                 seed: int = 1) -> None:
        if kind not in ("hot", "zipf", "none"):
            raise MixError(f"unknown mix {kind!r} (hot, zipf, none)")
        if kind == "hot" and not streams:
            raise MixError("the hot mix needs at least one stream")
        if kind == "zipf" and (not symbols or not kinds or per_client <= 0):
            raise MixError("the zipf mix needs symbols, kinds and streams per client")
        self.kind = kind
        self.streams = list(streams)
        self.symbols = list(symbols)
        self.per_client = per_client
        self.kinds = list(kinds)
        self.s = s
        self.seed = seed
        self._cumulative = zipf_weights(len(self.symbols), s) if kind == "zipf" else []

    def streams_for(self, i: int) -> list[str]:
        if self.kind == "hot":
            return list(self.streams)
        if self.kind == "none":
            return []
        rng = random.Random(self.seed * 1_000_003 + i)
        ranks = draw_distinct(self._cumulative, self.per_client, rng)
        offset = rng.randrange(len(self.kinds))
        return [f"{self.kinds[(offset + j) % len(self.kinds)]}:{self.symbols[r]}"
                for j, r in enumerate(ranks)]

    def describe(self) -> dict[str, object]:
        if self.kind == "hot":
            return {"mix": "hot", "streams": self.streams}
        if self.kind == "none":
            return {"mix": "none"}
        return {"mix": "zipf", "streams_per_client": self.per_client, "kinds": self.kinds,
                "symbols": len(self.symbols), "zipf_s": self.s, "seed": self.seed}


def parse_addresses(text: str) -> list[str]:
    """``127.0.0.1,127.0.1.1-4`` -> the addresses; the last octet may be a range."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        head, _, last = part.rpartition(".")
        if "-" in last:
            lo, hi = (int(x) for x in last.split("-", 1))
            if not 0 <= lo <= hi <= 255:
                raise MixError(f"bad address range {part!r}")
            out += [f"{head}.{n}" for n in range(lo, hi + 1)]
        else:
            out.append(part)
    for addr in out:
        ipaddress.ip_address(addr)
    if not out:
        raise MixError("no source address")
    return out


def symbols_by_turnover(rest_url: str, limit: int, timeout: float = 10.0) -> list[str]:
    """Top ``limit`` USDT perpetuals by 24h turnover from a Bybit-style REST endpoint
    (Bybit itself or ``hotpath sim``), so Zipf rank 1 is the busiest market."""
    url = rest_url.rstrip("/") + "/v5/market/tickers?category=linear"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = json.loads(resp.read())
    rows = body.get("result", {}).get("list", [])
    rows = [r for r in rows if str(r.get("symbol", "")).endswith("USDT")]
    rows.sort(key=lambda r: float(r.get("turnover24h") or 0), reverse=True)
    return [r["symbol"] for r in rows[:limit]]
