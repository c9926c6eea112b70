"""Client authentication: a shared secret or an HS256 JWT. Pure; the caller passes the clock.

``Verifier.verify(token, now)`` turns whatever a client sent into ``Granted`` or
``Refused``; it never raises for bad input. JWTs are checked the strict way (RFC 7519,
RFC 7518 §3.2): the header must say ``"alg":"HS256"`` (``none`` and every other
algorithm are refused before any signature is looked at), the signature is compared in
constant time, ``exp`` is required and ``nbf`` is honoured, both with ``leeway`` seconds
of allowance for clock skew. The HMAC key is the secret's UTF-8 bytes, as most JWT
libraries take a string key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from typing import Any, Literal, NamedTuple

import msgspec

Mode = Literal["none", "secret", "jwt"]

MAX_TOKEN = 4096  # characters; a longer token is refused unread
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class Granted(NamedTuple):
    """The token is good until ``expires`` (unix seconds, leeway included; inf: never)."""

    expires: float
    exp: int | None = None  # the token's own exp claim, told to the client


class Refused(NamedTuple):
    """The token is no good; ``reason`` is safe to show the client."""

    reason: str


class _Claims(msgspec.Struct):
    exp: float | None = None
    nbf: float | None = None


_header_decoder = msgspec.json.Decoder(dict[str, Any])
_claims_decoder = msgspec.json.Decoder(_Claims)
_encoder = msgspec.json.Encoder()


class Verifier:
    """Checks tokens for one mode and secret."""

    def __init__(self, mode: Mode, secret: str, leeway: float = 0.0) -> None:
        self.mode = mode
        self.key = secret.encode()
        self.leeway = leeway

    def verify(self, token: object, now: float) -> Granted | Refused:
        if self.mode == "none":
            return Granted(math.inf)
        if not isinstance(token, str) or not token:
            return Refused("missing token")
        if len(token) > MAX_TOKEN:
            return Refused("malformed token")
        if self.mode == "secret":
            if hmac.compare_digest(token.encode(), self.key):
                return Granted(math.inf)
            return Refused("bad token")
        return _verify_jwt(token, self.key, now, self.leeway)


def _verify_jwt(token: str, key: bytes, now: float, leeway: float) -> Granted | Refused:
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts):
        return Refused("malformed token")
    header_b64, claims_b64, signature_b64 = parts
    try:
        header = _header_decoder.decode(_b64decode(header_b64))
    except (ValueError, msgspec.MsgspecError):
        return Refused("malformed token")
    if header.get("alg") != "HS256":
        return Refused("token algorithm must be HS256")
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand
        return Refused("unsupported token header 'crit'")
    expected = hmac.new(key, f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
    try:
        signature = _b64decode(signature_b64)
    except ValueError:
        return Refused("malformed token")
    if not hmac.compare_digest(signature, expected):
        return Refused("bad token signature")
    try:
        claims = _claims_decoder.decode(_b64decode(claims_b64))
    except (ValueError, msgspec.MsgspecError):
        return Refused("malformed token claims")
    if claims.exp is None or not math.isfinite(claims.exp):
        return Refused("token has no exp")
    if claims.nbf is not None and now + leeway < claims.nbf:
        return Refused("token not yet valid")
    if now > claims.exp + leeway:
        return Refused("token expired")
    return Granted(claims.exp + leeway, int(claims.exp))


def _b64decode(text: str) -> bytes:
    """base64url without padding (RFC 7515 §2); raises ValueError. Only the canonical
    spelling is accepted: Python ignores a last character's unused bits, which would
    give each signature several accepted spellings."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if _b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(secret: str, ttl: float, now: float | None = None,
               claims: dict[str, Any] | None = None) -> str:
    """An HS256 JWT signed with ``secret``, valid for ``ttl`` seconds from ``now``
    (default: the current time); ``claims`` are added (e.g. ``{"sub": "bot-1"}``)."""
    now = time.time() if now is None else now
    header = _b64encode(b'{"alg":"HS256","typ":"JWT"}')
    body = {**(claims or {}), "iat": int(now), "exp": int(now + ttl)}
    payload = _b64encode(_encoder.encode(body))
    signing_input = f"{header}.{payload}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64encode(signature)}"
