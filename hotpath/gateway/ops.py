"""Client operations of one worker: rate limits, auth, subscribe, unsubscribe, ping.

Every reply goes out at once with ``Client.send``; stream data follows later, when
the stream's snapshot arrives (see ``feed``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from hotpath.gateway import auth
from hotpath.protocol import client_ops, streams
from hotpath.protocol.client_ops import (Auth, AuthReply, Ping, Rejected, Subscribe,
                                         SubscriptionReply, Unsubscribe)

if TYPE_CHECKING:
    from hotpath.config import GatewayConfig
    from hotpath.gateway.feed import Feed
    from hotpath.gateway.listener import Client
    from hotpath.gateway.registry import Registry

log = logging.getLogger("hotpath.gateway")

MAX_VIOLATIONS = 100  # rate-limited messages in a row before the client is closed


class ClientOps:
    """Decodes each client message and answers it; counts what it saw."""

    def __init__(self, config: GatewayConfig, registry: Registry[Client], feed: Feed) -> None:
        self.config = config
        self.registry = registry
        self.feed = feed
        self.msgs_in = 0
        self.rate_limited = 0
        self.auth_failures = 0
        self.verifier = (auth.Verifier(config.auth, config.auth_secret, config.auth_leeway)
                         if config.auth != "none" else None)

    def handle_text(self, client: Client, payload: memoryview) -> None:
        self.msgs_in += 1
        now = client.last_seen
        if not client.messages.take(now):
            self._rate_limited(client, "messages", self.config.max_messages_per_second)
            return
        op = client_ops.decode_op(payload)
        if not client.authed and not isinstance(op, Auth):
            self.refuse(client, "authentication required: the first message must be "
                        '{"op":"auth","token":"..."}', getattr(op, "req_id", None))
            return
        if isinstance(op, (Subscribe, Unsubscribe)) and not client.ops.take(now):
            self._rate_limited(client, "subscribe/unsubscribe ops",
                               self.config.max_ops_per_second, op.req_id)
            return
        client.violations = 0
        if isinstance(op, client_ops.ErrorReply):
            client.send(client_ops.encode(op))
        elif isinstance(op, Ping):
            client.send(client_ops.encode(client_ops.Pong(int(time.time() * 1000), op.req_id)))
        elif isinstance(op, Subscribe):
            self.subscribe(client, op)
        elif isinstance(op, Unsubscribe):
            self.unsubscribe(client, op)
        elif isinstance(op, Auth):
            self.authenticate(client, op)

    def handle_unsupported(self, client: Client) -> None:
        client.send(client_ops.error("Only unfragmented text frames carrying JSON are accepted",
                                     client_ops.BAD_REQUEST, client_ops.INVALID_OPERATION))

    def _rate_limited(self, client: Client, what: str, limit: float,
                      req_id: client_ops.ReqId = None) -> None:
        self.rate_limited += 1
        client.violations += 1
        if client.violations > MAX_VIOLATIONS:
            client.close(1008, "rate limit exceeded")
            return
        client.send(client_ops.error(f"Rate limit: at most {limit:g} {what} per second",
                                     client_ops.TOO_MANY, client_ops.RATE_LIMITED, req_id))

    def authenticate(self, client: Client, op: Auth) -> None:
        """Check the token (first auth, or a fresher token later); with auth off, say yes.
        The streams named in the URL are subscribed once the client is in."""
        if self.verifier is None:
            client.send(client_ops.encode(AuthReply(True, None, op.req_id)))
            return
        outcome = self.verifier.verify(op.token, time.time())
        if isinstance(outcome, auth.Refused):
            self.refuse(client, outcome.reason, op.req_id)
            return
        first = not client.authed
        client.authed = True
        client.auth_expires = outcome.expires
        client.send(client_ops.encode(AuthReply(True, outcome.exp, op.req_id)))
        if first and client.initial:
            self.subscribe(client, Subscribe(args=list(client.initial)))

    def refuse(self, client: Client, reason: str, req_id: client_ops.ReqId = None) -> None:
        """A missing or bad token: say why, then close the connection."""
        self.auth_failures += 1
        client.send(client_ops.error(f"Unauthorized: {reason}", client_ops.UNAUTHORIZED_CODE,
                                     client_ops.UNAUTHORIZED, req_id))
        client.close(client_ops.CLOSE_UNAUTHORIZED, "unauthorized")

    def _too_many_args(self, client: Client, op: Subscribe | Unsubscribe) -> bool:
        """More args than a connection could ever hold: refuse the whole request."""
        most = 2 * self.config.max_subscriptions
        if len(op.args) <= most:
            return False
        client.send(client_ops.error(f"Too many args in one request: {len(op.args)} > {most}",
                                     client_ops.BAD_REQUEST, client_ops.INVALID_STREAM_FORMAT,
                                     op.req_id))
        return True

    def subscribe(self, client: Client, op: Subscribe) -> None:
        if self._too_many_args(client, op):
            return
        if not self.feed.symbols:
            client.send(client_ops.error("Instrument list not available yet; try again shortly",
                                         client_ops.UNAVAILABLE, client_ops.SERVICE_UNAVAILABLE,
                                         op.req_id))
            return
        limit = self.config.max_subscriptions
        current = self.registry.streams_of(client)
        accepted: list[str] = []
        rejected: list[Rejected] = []
        for arg in op.args:
            try:
                stream = streams.parse(arg, self.feed.symbols)
            except streams.StreamError as exc:
                rejected.append(Rejected(_echo(arg), str(exc)))
                continue
            if stream.name not in current and len(current) >= limit:
                rejected.append(Rejected(_echo(arg), f"{client_ops.TOO_MANY_SUBSCRIPTIONS}: at most "
                                              f"{limit} streams per connection"))
                continue
            if stream.name not in accepted:
                accepted.append(stream.name)
            if stream.name not in current:
                self.feed.join(client, stream)
        reply = SubscriptionReply("subscribe", bool(accepted), accepted, rejected or None,
                                  op.req_id)
        client.send(client_ops.encode(reply))
        if any(r.reason.startswith(client_ops.TOO_MANY_SUBSCRIPTIONS) for r in rejected):
            client.send(client_ops.error(f"Too many subscriptions: the limit is {limit}",
                                         client_ops.TOO_MANY, client_ops.TOO_MANY_SUBSCRIPTIONS,
                                         op.req_id))

    def unsubscribe(self, client: Client, op: Unsubscribe) -> None:
        if self._too_many_args(client, op):
            return
        current = self.registry.streams_of(client)
        removed: list[str] = []
        rejected: list[Rejected] = []
        now = time.monotonic()
        for arg in op.args:
            try:
                name = streams.parse(arg).name
            except streams.StreamError as exc:
                rejected.append(Rejected(_echo(arg), str(exc)))
                continue
            if name in current:
                self.registry.unsubscribe(client, name, now)
                removed.append(name)
            elif name not in removed:
                rejected.append(Rejected(_echo(arg), "Not subscribed"))
        reply = SubscriptionReply("unsubscribe", bool(removed), removed, rejected or None,
                                  op.req_id)
        client.send(client_ops.encode(reply))


ECHO_MAX = 80  # characters of a rejected arg echoed back: a reply must stay small


def _echo(arg: object) -> object:
    """What a rejection repeats of the client's arg: short strings and numbers as sent,
    anything else cut down, so no request is amplified by its reply."""
    if isinstance(arg, str):
        return arg if len(arg) <= ECHO_MAX else arg[:ECHO_MAX] + "..."
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    return f"<{type(arg).__name__}>"
