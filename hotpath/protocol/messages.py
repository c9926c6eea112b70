"""The client message envelope, encoded once per message. Pure; no I/O.

    {"stream": "hotpath.futures.ticker.BTCUSDT", "type": "snapshot" | "update",
     "data": {...}, "timestamp": <exchange ts, ms>, "source": "hotpath", "seq": <n>}
"""

from __future__ import annotations

from typing import Any

import msgspec

SNAPSHOT = "snapshot"
UPDATE = "update"


class ClientMessage(msgspec.Struct):
    stream: str
    type: str
    data: Any
    timestamp: int
    source: str
    seq: int


_encoder = msgspec.json.Encoder()
client_message_decoder = msgspec.json.Decoder(ClientMessage)


def encode(stream: str, type_: str, data: Any, timestamp: int, source: str, seq: int) -> bytes:
    return _encoder.encode(ClientMessage(stream, type_, data, timestamp, source, seq))
