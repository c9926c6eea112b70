"""Client operations (a tagged union) and the server's replies. Pure; no I/O.

``decode_op`` turns one inbound text frame into an Op or an ErrorReply; it never
raises for bad input.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

# Error codes and names of the public contract.
BAD_REQUEST = 400
UNAUTHORIZED_CODE = 401
TOO_MANY = 429
UNAVAILABLE = 503
INVALID_OPERATION = "INVALID_OPERATION"
INVALID_STREAM_FORMAT = "INVALID_STREAM_FORMAT"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
RATE_LIMITED = "RATE_LIMITED"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
UNAUTHORIZED = "UNAUTHORIZED"
# WebSocket close code of a client that did not authenticate, sent a bad token or whose
# token expired (4000-4999: private use, RFC 6455 §7.4.2); the reason says which.
CLOSE_UNAUTHORIZED = 4001

ReqId = Union[str, int, None]


class Op(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, frozen=True):
    pass


class Subscribe(Op, tag="subscribe"):
    args: list[Any]
    req_id: ReqId = None


class Unsubscribe(Op, tag="unsubscribe"):
    args: list[Any]
    req_id: ReqId = None


class Ping(Op, tag="ping"):
    req_id: ReqId = None


class Auth(Op, tag="auth"):
    token: str
    req_id: ReqId = None


AnyOp = Union[Subscribe, Unsubscribe, Ping, Auth]


class Rejected(msgspec.Struct, frozen=True):
    arg: Any
    reason: str


class SubscriptionReply(msgspec.Struct, omit_defaults=True):
    op: str
    success: bool
    args: list[str]
    rejected: list[Rejected] | None
    req_id: ReqId = None


class Pong(msgspec.Struct, omit_defaults=True, tag_field="op", tag="pong"):
    timestamp: int
    req_id: ReqId = None


class AuthReply(msgspec.Struct, omit_defaults=True, tag_field="op", tag="auth"):
    success: bool
    expires: int | None = None  # the token's exp (unix seconds); None: no expiry
    req_id: ReqId = None


class ErrorReply(msgspec.Struct, omit_defaults=True, tag_field="op", tag="error"):
    message: str
    code: int
    error: str
    req_id: ReqId = None


_decoder = msgspec.json.Decoder(AnyOp)
_peek_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
KNOWN_OPS = ("subscribe", "unsubscribe", "ping", "auth")


def decode_op(payload: bytes | memoryview) -> AnyOp | ErrorReply:
    """Decode one client frame. Bad input becomes a 400 ErrorReply, never an exception."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        return _explain_invalid(payload, str(exc))
    except msgspec.DecodeError:
        return ErrorReply("Invalid JSON", BAD_REQUEST, INVALID_OPERATION)


def _explain_invalid(payload: bytes | memoryview, detail: str) -> ErrorReply:
    try:
        obj = _peek_decoder.decode(payload)
    except msgspec.MsgspecError:
        return ErrorReply("Invalid operation: expected a JSON object with an 'op' field",
                          BAD_REQUEST, INVALID_OPERATION)
    op = obj.get("op")
    req_id = obj.get("req_id")
    req_id = req_id if isinstance(req_id, (str, int)) and not isinstance(req_id, bool) else None
    if op not in KNOWN_OPS:
        shown = op if isinstance(op, str) and len(op) <= 32 else "?"
        message = f"Invalid operation '{shown}'; expected one of {', '.join(KNOWN_OPS)}"
        return ErrorReply(message, BAD_REQUEST, INVALID_OPERATION, req_id)
    return ErrorReply(f"Invalid {op} request: {detail}", BAD_REQUEST,
                      INVALID_STREAM_FORMAT, req_id)


def encode(reply: msgspec.Struct) -> bytes:
    return _encoder.encode(reply)


def error(message: str, code: int, name: str, req_id: ReqId = None) -> bytes:
    return _encoder.encode(ErrorReply(message, code, name, req_id))
