"""Redis channel names and the payload header. Channel names are built only here,
and only from validated stream names, so nothing a client sends reaches Redis unchecked.

A stream message on Redis is ``kind (1 byte) + seq (8 bytes, big endian) + client JSON``:
  U  update: forward to every client already live on the stream
  S  snapshot that restarts the stream (first state, resync): forward to all
  R  snapshot in reply to a request: forward only to clients waiting for one
  X  stream status (``"type":"status"``, e.g. upstream down, delisted): forward to
     every client of the stream; carries the stream's current seq and does not
     advance it
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import msgspec

from hotpath.protocol.streams import Stream

UPDATE = ord("U")
SNAPSHOT = ord("S")
REPLY = ord("R")
STATUS = ord("X")
HEADER_SIZE = 9
_HEADER = struct.Struct(">BQ")
_json = msgspec.json.Encoder()


class Channels(NamedTuple):
    """Every channel and key name of one hotpath namespace."""

    namespace: str

    def stream(self, stream: Stream) -> bytes:
        return f"{self.namespace}:s:{stream.name}".encode()

    @property
    def stream_prefix(self) -> bytes:
        return f"{self.namespace}:s:".encode()

    @property
    def control(self) -> bytes:
        """Gateways -> ingest requests (snapshots, status)."""
        return f"{self.namespace}:ctl".encode()

    @property
    def status(self) -> bytes:
        """Ingest -> gateways: liveness, upstream state, instrument list (every second)."""
        return f"{self.namespace}:status".encode()


def pack(kind: int, seq: int, body: bytes) -> bytes:
    return _HEADER.pack(kind, seq) + body


class StreamCommands:
    """The PUBLISH commands of one stream. Everything constant in them (the RESP prefix
    with the channel, the client envelope's stream, type and source) is encoded once;
    a message costs one encode of its ``data`` and one bytes format. Same bytes as
    ``publish_command(channel, pack(kind, seq, messages.encode(public, type, data,
    timestamp, source, seq)))``."""

    __slots__ = ("prefix", "heads", "tail")

    def __init__(self, channel: bytes, public: str, source: str) -> None:
        self.prefix = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n" % (len(channel), channel)
        stream = _json.encode(public)
        self.heads = {kind: b'{"stream":%b,"type":"%b","data":' % (stream, name)
                      for kind, name in ((UPDATE, b"update"), (SNAPSHOT, b"snapshot"),
                                         (REPLY, b"snapshot"))}
        self.tail = b',"timestamp":%%d,"source":%b,"seq":%%d}' % _json.encode(source)

    def build(self, kind: int, data: bytes, timestamp: int, seq: int) -> bytes:
        """The command publishing one message; ``data`` is its JSON-encoded ``data``."""
        head = self.heads[kind]
        tail = self.tail % (timestamp, seq)
        return b"%b$%d\r\n%b%b%b%b\r\n" % (
            self.prefix, HEADER_SIZE + len(head) + len(data) + len(tail),
            _HEADER.pack(kind, seq), head, data, tail)


def unpack_header(payload: bytes) -> tuple[int, int]:
    """(kind, seq) of a stream message; raises ValueError when it is not one."""
    if len(payload) <= HEADER_SIZE or payload[0] not in (UPDATE, SNAPSHOT, REPLY, STATUS):
        raise ValueError("not a hotpath stream message")
    return payload[0], int.from_bytes(payload[1:HEADER_SIZE], "big")
