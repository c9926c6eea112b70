"""Plain HTTP answers on the WebSocket port (picows serves non-101 responses)."""

from __future__ import annotations

from typing import Any

import msgspec
from picows import WSUpgradeResponse, WSUpgradeResponseWithListener

_encoder = msgspec.json.Encoder()
_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(status: int, body: Any) -> WSUpgradeResponseWithListener:
    data = _encoder.encode(body)
    if status == 200:
        response = WSUpgradeResponse.create_ok_response(data, extra_headers=_JSON)
    else:
        response = WSUpgradeResponse.create_error_response(status, data, extra_headers=_JSON)
    return WSUpgradeResponseWithListener(response, None)


def text_response(status: int, body: str,
                  content_type: str = "text/plain; charset=utf-8") -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
    if status == 200:
        response = WSUpgradeResponse.create_ok_response(body.encode(), extra_headers=headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, body.encode(),
                                                           extra_headers=headers)
    return WSUpgradeResponseWithListener(response, None)


def split_target(target: bytes) -> tuple[str, str]:
    """(path, query) of a request target; undecodable bytes become U+FFFD."""
    path, _, query = target.decode("utf-8", "replace").partition("?")
    return path, query
