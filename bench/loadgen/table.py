"""The human-readable form of a load-generator result."""

from __future__ import annotations

from typing import Any


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(r: dict[str, Any]) -> str:
    c, d, lat, w = r["clients"], r["deliveries"], r["latency_ms"], r["window"]
    mix = r["mix"]
    mix_text = mix["mix"] + (f" {','.join(mix['streams'])}" if mix.get("streams") else "")
    if mix["mix"] == "zipf":
        mix_text += (f" {mix['streams_per_client']} of {mix['symbols']} symbols "
                     f"({','.join(mix['kinds'])}, s={mix['zipf_s']})")
    lines = [
        f"loadgen {r['label'] or ''}  {r['url']}  mix {mix_text}  window {w['seconds']} s",
        f"  clients     planned {_n(c['planned'])}  connected {_n(c['connected'])}  "
        f"failed {_n(c['failed'])}  dropped {_n(c['dropped'])}  "
        f"(ready after {c['ramp_seconds']} s{'' if c['ready_before_window'] else ', NOT all ready'})",
        f"  deliveries  {_n(d['per_second'])}/s  ({_n(d['per_client_per_second'], 3)} per client/s, "
        f"{_n(d['bytes_per_second'] / 1e6, 2)} MB/s, {_n(d['total'])} in the window)",
        f"  latency ms  p50 {_n(lat.get('p50'), 2)}  p90 {_n(lat.get('p90'), 2)}  "
        f"p99 {_n(lat.get('p99'), 2)}  p99.9 {_n(lat.get('p999'), 2)}  max {_n(lat.get('max'), 2)}"
        f"  (n={_n(lat.get('count'))}, exchange timestamp -> received)",
    ]
    pl = r.get("probe_latency_ms")
    if pl:
        lines.append(f"  probe ms    p50 {_n(pl.get('p50'), 2)}  p90 {_n(pl.get('p90'), 2)}  "
                     f"p99 {_n(pl.get('p99'), 2)}  p99.9 {_n(pl.get('p999'), 2)}  "
                     f"max {_n(pl.get('max'), 2)}  (n={_n(pl.get('count'))}, "
                     f"{r['options']['probe_clients']} clients in a lightly loaded process)")
    if "churn" in r:
        ch = r["churn"]
        sl = ch["snapshot_latency_ms"]
        lines.append(f"  churn       {_n(ch['completed_per_second'])}/s completed of "
                     f"{_n(ch['target_per_second'])}/s target; snapshot latency p50 "
                     f"{_n(sl.get('p50'), 2)} p99 {_n(sl.get('p99'), 2)} ms; failed "
                     f"{_n(ch['failed'])}, skipped {_n(ch['skipped'])}")
    slow = r.get("slow")
    if slow:
        closes = ", ".join(f"{k!r}: {v}" for k, v in slow["closes"].items()) or "none"
        lines.append(f"  slow        {_n(slow['connected'])} of {_n(slow['planned'])} "
                     f"never-reading clients; closed by the server with {closes}; without a "
                     f"close frame {_n(slow['lost'])}; still open {_n(slow['open_at_end'])}; "
                     f"all closed {_n(slow['all_closed_after_s'], 2)} s into the window")
    storm = r.get("storm")
    if storm:
        acc, rdy = storm["accept_s"], storm["ready_s"]
        lines.append(f"  storm       {_n(storm['reconnected'])} of {_n(storm['dropped'])} "
                     f"reconnected, attempts spread over {_n(storm['spread_s'], 1)} s (failed "
                     f"{_n(storm['failed'])}); accepted p50 {_n(acc['p50'], 2)} p99 "
                     f"{_n(acc['p99'], 2)} all {_n(storm['all_accepted_s'], 2)} s; "
                     f"snapshots p50 {_n(rdy['p50'], 2)} p99 {_n(rdy['p99'], 2)} "
                     f"all {_n(storm['all_ready_s'], 2)} s")
    errors = {k: v for k, v in r["errors"].items() if v}
    lines.append("  errors      " + (", ".join(f"{k} {v}" for k, v in errors.items())
                                     if errors else "none"))
    if c["failures"]:
        lines.append("  failures    " + ", ".join(f"{k}: {v}" for k, v in c["failures"].items()))
    if c["close_codes"]:
        lines.append("  closed by server with " +
                     ", ".join(f"{k}: {v}" for k, v in c["close_codes"].items()))
    lines.append(f"  {'process':<10} {'cores':>7} {'us/delivery':>12} {'RSS MiB: before connect':>24}"
                 f" {'start':>8} {'end':>8}")
    for name, u in r["resources"].items():
        lines.append(f"  {name:<10} {_n(u['cores'], 3):>7} {_n(u['us_per_delivery'], 2):>12} "
                     f"{_n(u.get('rss_mib_before_connect')):>24} {_n(u['rss_mib_start']):>8} "
                     f"{_n(u['rss_mib_end']):>8}")
    ing = r["resources"].get("ingest", {})
    node = r.get("node")
    if node:
        lines.append(f"  node        upstream {_n(node['upstream_per_second'])}/s, ingest "
                     f"{_n(ing.get('us_per_upstream_message'), 1)} us per upstream message; "
                     f"frames_out/delivered {_n(node['frames_out_vs_delivered'], 4)}, frames per "
                     f"write {_n(node['frames_per_write'], 2)}, Redis gaps {_n(node.get('gaps'))}")
    lines.append("  RESULT      " + ("OK" if r["ok"] else "FAILED: " + "; ".join(r["problems"])))
    return "\n".join(lines)
