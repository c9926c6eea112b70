"""The ingest's status message, published every second on the status channel."""

from __future__ import annotations

from typing import Any

import msgspec


class IngestStatus(msgspec.Struct):
    ts: int
    pid: int
    started: float
    upstream_ok: bool
    upstream_url: str
    connections: list[dict[str, Any]]
    symbols: list[str]
    bad_messages: dict[str, int]
    published: int
    redis_dropped: int
    streams: int = 0
    resyncs: int = 0
    # Lag percentiles over the messages of the timed Redis writes (one in four):
    # exchange timestamp -> the upstream frame's arrival
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    missed_kline_closes: int = 0
    # the ingest's own share: an upstream frame arrived -> its PUBLISH written to Redis
    hold_p50_ms: float = 0.0
    hold_p99_ms: float = 0.0
    redis_unexpected: int = 0  # messages on the control and status channels, ignored
    # exchange timestamp -> PUBLISH written to Redis
    publish_lag_p50_ms: float = 0.0
    publish_lag_p99_ms: float = 0.0
    # The same three since the ingest started, as {bucket: messages} (hotpath/lag.py),
    # keyed "arrival", "hold" and "publish": two samples give the exact percentiles of
    # the time between them (hotpath.lag.percentiles_between; bench S4 does so).
    lag_buckets: dict[str, dict[int, int]] = {}


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(IngestStatus)
