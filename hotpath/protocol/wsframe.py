"""Server-to-client WebSocket framing. Pure."""

from __future__ import annotations


def text_frame(payload: bytes | memoryview) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (RFC 6455 section 5.2).

    Server frames are unmasked, so one framed ``bytes`` is valid on every connection.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload
