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


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(IngestStatus)
