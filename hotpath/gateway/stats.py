"""/stats (JSON) and /metrics (Prometheus text) from the node's shared counters. Pure."""

from __future__ import annotations

from typing import Any

from hotpath.protocol.streams import KINDS

# field -> (metric name, type, help); counters get _total in the exposition.
_METRICS: dict[str, tuple[str, str, str]] = {
    "clients": ("hotpath_clients", "gauge", "connected WebSocket clients"),
    "subscriptions": ("hotpath_subscriptions", "gauge", "client subscriptions"),
    "connections_total": ("hotpath_connections", "counter", "WebSocket connections accepted"),
    "rejected_connections": ("hotpath_rejected_connections", "counter",
                             "upgrades refused (node full, draining, per-IP limit)"),
    "msgs_in": ("hotpath_client_messages_in", "counter", "messages received from clients"),
    "frames_out": ("hotpath_frames_out", "counter", "messages delivered to clients"),
    "bytes_out": ("hotpath_bytes_out", "counter", "bytes written to clients"),
    "writes": ("hotpath_writes", "counter", "socket writes (coalesced frames)"),
    "redis_messages": ("hotpath_redis_messages", "counter", "messages read from Redis"),
    "slow_paused": ("hotpath_slow_consumer_pauses", "counter",
                    "times a client passed the soft send-buffer bound"),
    "slow_closed": ("hotpath_slow_consumer_closes", "counter", "clients closed as slow"),
    "rate_limited": ("hotpath_rate_limited", "counter", "client messages refused by a rate limit"),
    "gaps": ("hotpath_redis_gaps", "counter", "seq gaps seen on Redis (healed by a snapshot)"),
    "snapshots_requested": ("hotpath_snapshot_requests", "counter",
                            "snapshot requests sent to the ingest"),
    "client_errors": ("hotpath_client_errors", "counter",
                      "clients closed 1011 after an error in our handling of them"),
    "auth_failures": ("hotpath_auth_failures", "counter",
                      "connections refused or closed for a missing, bad or expired token"),
    "redis_unexpected": ("hotpath_redis_unexpected", "counter",
                         "messages on hotpath's Redis channels that were not ours, ignored"),
}


def node_totals(rows: list[dict[str, int]]) -> dict[str, int]:
    return {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("pid", "heartbeat_ms")}


def rates(now: dict[str, int], before: dict[str, int], seconds: float) -> dict[str, float]:
    if seconds <= 0:
        return {}
    return {f"{k}_per_s": round((now[k] - before[k]) / seconds, 1)
            for k in ("msgs_in", "frames_out", "bytes_out", "writes", "redis_messages")}


def stats_body(rows: list[dict[str, int]], per_second: dict[str, float],
               ingest: dict[str, Any] | None, node: dict[str, Any]) -> dict[str, Any]:
    totals = node_totals(rows)
    by_kind = {k: totals.pop(f"subs_{k}") for k in KINDS}
    return {"node": node, "clients": totals["clients"], "subscriptions": totals["subscriptions"],
            "subscriptions_by_type": by_kind, "totals": totals, "rates": per_second,
            "workers": rows, "ingest": ingest}


def prometheus(rows: list[dict[str, int]], ingest: dict[str, Any] | None) -> str:
    out: list[str] = []
    for field, (name, kind, help_text) in _METRICS.items():
        metric = f"{name}_total" if kind == "counter" else name
        out.append(f"# HELP {metric} {help_text}")
        out.append(f"# TYPE {metric} {kind}")
        for worker, row in enumerate(rows):
            out.append(f'{metric}{{worker="{worker}"}} {row[field]}')
    out.append("# HELP hotpath_stream_subscriptions client subscriptions by stream type")
    out.append("# TYPE hotpath_stream_subscriptions gauge")
    for kind in KINDS:
        out.append(f'hotpath_stream_subscriptions{{type="{kind}"}} '
                   f'{sum(r[f"subs_{kind}"] for r in rows)}')
    out.extend(_ingest_metrics(ingest))
    return "\n".join(out) + "\n"


def _number(value: Any) -> str:
    if value is None:
        return "NaN"
    return str(int(value)) if isinstance(value, (bool, int)) else f"{value:g}"


def _ingest_metrics(ingest: dict[str, Any] | None) -> list[str]:
    out = ["# HELP hotpath_ingest_up 1 when the ingest reported within the last 3 s",
           "# TYPE hotpath_ingest_up gauge",
           f"hotpath_ingest_up {1 if ingest and ingest.get('fresh') else 0}"]
    if not ingest:
        return out
    out += ["# HELP hotpath_upstream_up 1 when every upstream connection is healthy",
            "# TYPE hotpath_upstream_up gauge",
            f"hotpath_upstream_up {1 if ingest.get('upstream_ok') else 0}"]
    conns = ingest.get("connections") or []
    for field, help_text, kind in (
            ("connected", "upstream connection is open", "gauge"),
            ("topics", "topics placed on the connection", "gauge"),
            ("subscribed", "topics subscribed", "gauge"),
            ("messages_per_second", "upstream messages per second (last second)", "gauge"),
            ("last_message_age", "seconds since the connection's last message", "gauge"),
            ("messages", "upstream messages received", "counter"),
            ("reconnects", "upstream reconnects", "counter"),
            ("gaps", "order-book sequence gaps (each resubscribed)", "counter"),
            ("resyncs", "topics resubscribed for a fresh snapshot", "counter")):
        metric = f"hotpath_upstream_{field}" + ("_total" if kind == "counter" else "")
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        out += [f'{metric}{{conn="{c["index"]}"}} {_number(c.get(field))}' for c in conns]
    return out
