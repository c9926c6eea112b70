"""One client's op protocol on the public stream, sans-I/O.

``Session.handle(payload)`` takes the bytes of a TEXT frame and returns an
:class:`Outcome`: the reply to send and the topics to start or stop. The server does
the I/O and the fan-out. Replies follow Bybit's public linear stream:

* subscribe / unsubscribe: ``{"success","ret_msg","conn_id","req_id","op"}``; a request
  with one bad arg (unknown topic, already subscribed, not subscribed) is rejected as a
  whole and names that arg in ``ret_msg``;
* ``{"op":"ping"}``: ``ret_msg`` "pong";
* linear/inverse limit the total length of a connection's args to 21,000 characters;
  spot also limits one request to 10 args (``"args size >10"``, a captured reply) and
  says ``"subscribe"`` in a successful ack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hotpath.sim.messages import UNSET, ack

ARGS_CHARS_LIMIT = 21_000  # Bybit V5 docs, "Connect" page: public channel args limits
SPOT_ARGS_PER_REQUEST = 10

LINEAR = "linear"
SPOT = "spot"
INVERSE = "inverse"


class ClientOp(msgspec.Struct):
    """A client request; fields are loose on purpose so bad input becomes a reply."""

    op: Any = None
    args: Any = None
    req_id: Any = UNSET


_decode_op = msgspec.json.Decoder(ClientOp).decode


class Outcome(msgspec.Struct):
    """What the server must do after one client frame."""

    reply: bytes
    op: str = ""
    subscribe: list[str] = []
    unsubscribe: list[str] = []
    error: str = ""  # the ret_msg of a rejected request, for the log


class Session:
    """Subscriptions and op handling of one public connection."""

    def __init__(self, conn_id: str, flavor: str, is_known: Callable[[str], bool]) -> None:
        self.conn_id = conn_id
        self.flavor = flavor
        self.is_known = is_known
        self.topics: set[str] = set()
        self._chars = 0

    def handle(self, payload: bytes | str, reject: str = "") -> Outcome:
        """Process one TEXT frame. ``reject`` (a fault) fails every subscribe with it."""
        try:
            request = _decode_op(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._fail("", UNSET, "error:request not a valid json object")
        req_id: str | msgspec.UnsetType = UNSET if request.req_id is UNSET else str(request.req_id)
        op = request.op if isinstance(request.op, str) else ""
        if op == "ping":
            return Outcome(self._reply(op, req_id, True, "pong"), op)
        if op not in ("subscribe", "unsubscribe"):
            return self._fail(op, req_id, f"error:unsupported op: {op}")
        args = request.args
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return self._fail(op, req_id, "error:args must be a list of strings")
        if op == "subscribe":
            return self._subscribe(args, req_id, reject)
        return self._unsubscribe(args, req_id)

    def _subscribe(self, args: list[str], req_id: str | msgspec.UnsetType, reject: str) -> Outcome:
        if reject:
            return self._fail("subscribe", req_id, reject)
        if self.flavor == SPOT and len(args) > SPOT_ARGS_PER_REQUEST:
            return self._fail("subscribe", req_id, f"args size >{SPOT_ARGS_PER_REQUEST}")
        seen: set[str] = set()
        for topic in args:
            if not self.is_known(topic):
                return self._fail("subscribe", req_id, f"error:handler not found,topic:{topic}")
            if topic in self.topics or topic in seen:
                return self._fail("subscribe", req_id, f"error:already subscribed,topic:{topic}")
            seen.add(topic)
        chars = self._chars + sum(len(t) for t in args)
        if chars > ARGS_CHARS_LIMIT:
            return self._fail("subscribe", req_id,
                              f"error:args length {chars} exceeds {ARGS_CHARS_LIMIT} characters")
        self.topics.update(args)
        self._chars = chars
        ret_msg = "subscribe" if self.flavor == SPOT else ""
        return Outcome(self._reply("subscribe", req_id, True, ret_msg), "subscribe", subscribe=args)

    def _unsubscribe(self, args: list[str], req_id: str | msgspec.UnsetType) -> Outcome:
        for topic in args:
            if topic not in self.topics:
                return self._fail("unsubscribe", req_id, f"error:not subscribed,topic:{topic}")
        unique = list(dict.fromkeys(args))
        self.topics.difference_update(unique)
        self._chars -= sum(len(t) for t in unique)
        ret_msg = "unsubscribe" if self.flavor == SPOT else ""
        return Outcome(self._reply("unsubscribe", req_id, True, ret_msg), "unsubscribe",
                       unsubscribe=unique)

    def _fail(self, op: str, req_id: str | msgspec.UnsetType, ret_msg: str) -> Outcome:
        return Outcome(self._reply(op, req_id, False, ret_msg), op, error=ret_msg)

    def _reply(self, op: str, req_id: str | msgspec.UnsetType, success: bool, ret_msg: str) -> bytes:
        # Linear/inverse always echo req_id ("" when absent); spot only when it was sent.
        if req_id is UNSET and self.flavor != SPOT:
            req_id = ""
        return ack(self.conn_id, op, success, ret_msg, req_id)
