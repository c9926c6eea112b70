"""Node-wide counters in shared memory: every gateway worker of a node writes its own
row, and any worker can answer /stats, /metrics and the node's client limit for all.

The supervisor creates the array before spawning the workers; a gateway run alone
makes a one-row array of its own. Rows are written by one process each and read by
all; a read may mix two moments of another row, which is fine for figures.
"""

from __future__ import annotations

import multiprocessing
import zlib
from typing import Any

from hotpath.protocol.streams import KINDS

FIELDS: tuple[str, ...] = (
    "pid", "heartbeat_ms", "clients", "connections_total", "rejected_connections",
    "subscriptions", *(f"subs_{k}" for k in KINDS),
    "msgs_in", "frames_out", "bytes_out", "writes", "redis_messages",
    "slow_paused", "slow_closed", "rate_limited", "gaps", "snapshots_requested",
    "client_errors", "auth_failures", "redis_unexpected",
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}
WIDTH = len(FIELDS)
# Connections per client IP, per worker, in hash buckets: two addresses sharing a bucket
# share a count (rare with 65,536 buckets, and it can only make the limit stricter).
IP_BUCKETS = 1 << 16


class NodeStats:
    """A (workers x FIELDS) table of int64 in shared memory."""

    def __init__(self, workers: int, array: Any = None, ips: Any = None) -> None:
        self.workers = workers
        self.array = array if array is not None else multiprocessing.RawArray("q", workers * WIDTH)
        self.ips = ips if ips is not None else multiprocessing.RawArray("i", workers * IP_BUCKETS)

    def __reduce__(self) -> tuple[Any, ...]:
        return (NodeStats, (self.workers, self.array, self.ips))

    def ip_add(self, worker: int, ip: str, delta: int) -> int:
        """Count a connection from ``ip`` in (or out); returns the node-wide count."""
        bucket = zlib.crc32(ip.encode()) & (IP_BUCKETS - 1)
        self.ips[worker * IP_BUCKETS + bucket] += delta
        return sum(self.ips[w * IP_BUCKETS + bucket] for w in range(self.workers))

    def set(self, worker: int, field: str, value: int) -> None:
        self.array[worker * WIDTH + _INDEX[field]] = value

    def get(self, worker: int, field: str) -> int:
        return int(self.array[worker * WIDTH + _INDEX[field]])

    def total(self, field: str) -> int:
        i = _INDEX[field]
        return sum(int(self.array[w * WIDTH + i]) for w in range(self.workers))

    def row(self, worker: int) -> dict[str, int]:
        base = worker * WIDTH
        return {name: int(self.array[base + i]) for i, name in enumerate(FIELDS)}

    def rows(self) -> list[dict[str, int]]:
        return [self.row(w) for w in range(self.workers)]
