"""Gateway -> ingest requests on the control channel (JSON, one object a message).

  {"op":"status"}                               publish your status now
  {"op":"snapshot","streams":[names]}           publish an R snapshot of each stream
  {"op":"demand","worker":id,"streams":[names],"ttl":seconds}
      the full set of streams this worker's clients want; sent when the set grows
      and every DEMAND_INTERVAL seconds; forgotten after ``ttl`` without a refresh.
      The ingest subscribes upstream on first demand and unsubscribes after a
      linger once no worker wants a stream any more.
"""

from __future__ import annotations

import msgspec

DEMAND_INTERVAL = 5.0
DEMAND_TTL = 15.0


class ControlRequest(msgspec.Struct):
    op: str
    streams: list[str] = []
    worker: str = ""
    ttl: float = DEMAND_TTL


decoder = msgspec.json.Decoder(ControlRequest)
encoder = msgspec.json.Encoder()


def demand(worker: str, streams: list[str], ttl: float = DEMAND_TTL) -> bytes:
    return encoder.encode(ControlRequest("demand", streams, worker, ttl))


def snapshot(streams: list[str]) -> bytes:
    return encoder.encode(ControlRequest("snapshot", streams))
