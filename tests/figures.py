"""Figures that reliability tests measure, for docs/reliability.md.

A test that proves something under a fault also says how it went: how many clients, how
long recovery took, how much was lost (must be 0). ``figures.record`` appends one JSON line
to ``test-output/reliability.jsonl``; ``python -m tests.figures`` (run by
``scripts/reliability``) renders the latest line per (group, name) into the document.
Recording never replaces an assertion: the test has already checked what it records.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
LOG = OUTPUT / "reliability.jsonl"


class Figures:
    def __init__(self, path: Path = LOG) -> None:
        self.path = path

    def record(self, group: str, name: str, **fields: Any) -> None:
        """``group`` is one of "fault", "input", "load"; ``name`` identifies the row."""
        self.path.parent.mkdir(exist_ok=True)
        line = {"group": group, "name": name, "at": round(time.time(), 3), **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")


def latest(path: Path = LOG) -> dict[tuple[str, str], dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return rows
    for raw in path.read_text().splitlines():
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        rows[(row["group"], row["name"])] = row
    return rows


# -- docs/reliability.md -----------------------------------------------------------------

ROOT = OUTPUT.parent
DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "results"
_SKIP = {"group", "name", "at", "checked", "clients", "lost", "recovery_s", "tried",
         "outcome", "messages", "result"}
_UNITS = {"s": "s", "ms": "ms", "mib": "MiB", "kib": "KiB", "pct": "%"}
SOAK_LABELS = {"gateway_rss_mib": ("gateway RSS (all workers)", "MiB"),
               "gateway_fds": ("gateway open fds", ""), "ingest_rss_mib": ("ingest RSS", "MiB"),
               "ingest_fds": ("ingest open fds", ""),
               "redis_used_memory_mib": ("Redis used_memory", "MiB"),
               "redis_rss_mib": ("Redis RSS", "MiB"), "redis_fds": ("Redis open fds", "")}


def latest_soak(results: Path = RESULTS) -> dict[str, Any] | None:
    """The newest ``bench/soak`` result (file names start with the date)."""
    for path in sorted(results.glob("*-soak.json"), reverse=True):
        try:
            soak = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        soak["path"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        return dict(soak)
    return None


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return _cell(value)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _figure(key: str, value: Any) -> str:
    """``p99_ms_without=17.0`` -> ``p99 without 17.0 ms``: the unit moves to the value."""
    words, unit = [], ""
    for word in key.split("_"):
        if word in _UNITS and not unit:
            unit = _UNITS[word]
        else:
            words.append(word)
    text = _num(value)
    if unit and value is not None and not isinstance(value, (bool, str)):
        text += "%" if unit == "%" else f" {unit}"
    return f"{' '.join(words)} {text}"


def _figures(row: dict[str, Any]) -> str:
    return "; ".join(_figure(k, v) for k, v in row.items() if k not in _SKIP) or "–"


def _lost(row: dict[str, Any]) -> str:
    lost = row.get("lost")
    if lost is None:
        return "–"
    return _num(lost) if lost == 0 else f"**{_num(lost)}**"


def _faults(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| fault | what was checked | clients | recovery | lost | other figures |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        rec = r.get("recovery_s")
        out.append(f"| {_cell(r['name'])} | {_cell(r.get('checked', '–'))} | "
                   f"{_num(r.get('clients'))} | {_num(rec) + ' s' if rec is not None else '–'} | "
                   f"{_lost(r)} | {_figures(r)} |")
    return out


def _loads(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| run | what was checked | clients | result | lost | all figures |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {_cell(r['name'])} | {_cell(r.get('checked', '–'))} | "
                   f"{_num(r.get('clients'))} | {_cell(r.get('result', '–'))} | {_lost(r)} | "
                   f"{_figures(r)} |")
    return out


def _inputs(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| input class | tried | outcome |", "|---|---|---|"]
    for r in rows:
        tried = r.get("tried", r.get("messages"))
        outcome = _cell(r.get("outcome") or r.get("checked") or "–")
        extra = _figures(r)
        if extra != "–":
            outcome += f" ({extra}; lost {_lost(r)})" if "lost" in r else f" ({extra})"
        out.append(f"| {_cell(r['name'])} | {_num(tried)} | {outcome} |")
    total = sum(int(r.get("tried", r.get("messages")) or 0) for r in rows)
    out.append(f"| **all classes** | **{total:,}** | |")
    return out


def _soak(soak: dict[str, Any] | None) -> list[str]:
    if soak is None:
        return ["No soak result in bench/results/ yet: `bench/soak` (30 minutes, see "
                "bench/README.md) writes one, and this section is rendered from the newest."]
    s, w, c = soak["settings"], soak["window"], soak["checks"]
    mix = s.get("mix") or {}
    out = [f"`{_cell(soak['command'])}` on {soak['started_at']} ({soak['path']}): "
           f"{s['clients']:,} clients (S2: {mix.get('streams_per_client')} streams each, "
           f"{', '.join(mix.get('kinds', []))}, Zipf over {mix.get('symbols')} symbols) plus "
           f"{s['churn_rate']:g} connect-subscribe-snapshot-disconnect cycles/s, for "
           f"{w['seconds'] / 60:g} min; {w['samples']} samples, one every "
           f"{s['sample_every_s']:g} s. Slopes are least-squares lines over the window, and "
           "over its second half, once bounded caches (trade ids, recent trades) are full.",
           "", "| metric | first | last | max | slope per hour | change over the run | "
           "slope per hour, second half |", "|---|---|---|---|---|---|---|"]
    for key, t in soak["slopes"].items():
        label, unit = SOAK_LABELS.get(key, (key, ""))
        if not t.get("samples"):
            continue
        u = f" {unit}" if unit else ""
        per_hour = "–" if t["per_hour"] is None else f"{t['per_hour']:+,.3g}{u}/h"
        late = t.get("second_half_per_hour")
        late_text = "–" if late is None else f"{late:+,.3g}{u}/h"
        change = "–" if t["change_pct"] is None else f"{t['change_pct']:+.2f}%"
        first, last, top = (f"{t[k]:,.1f}" if unit else f"{int(t[k]):,}"
                            for k in ("first", "last", "max"))
        out.append(f"| {label} | {first}{u} | {last}{u} | {top}{u} | {per_hour} | {change} | "
                   f"{late_text} |")
    churn = soak.get("churn") or {}
    out += ["", f"Unrecovered gaps: **{c['unrecovered_gaps']}** (messages missed "
                f"{c['missing_messages']}, duplicates {c['duplicates']}, missing snapshots "
                f"{c['snapshot_missing']}, failed {c['failed']}, dropped {c['dropped']}); "
                f"{_num(churn.get('completed'))} churn cycles, {_num(churn.get('failed'))} "
                f"without a snapshot. Result: "
                + ("OK." if soak["ok"] else "FAILED: " + _cell("; ".join(soak["problems"])))]
    return out


def render(rows: dict[tuple[str, str], dict[str, Any]], soak: dict[str, Any] | None) -> str:
    """docs/reliability.md from the latest row per (group, name) and a soak result."""
    groups: dict[str, list[dict[str, Any]]] = {"fault": [], "load": [], "input": []}
    for (group, _), row in rows.items():
        groups.setdefault(group, []).append(row)
    stamps = [r["at"] for r in rows.values() if r.get("at")]
    when = (f"between {time.strftime('%Y-%m-%d %H:%M', time.localtime(min(stamps)))} and "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(max(stamps)))}"
            if stamps else "(no rows yet)")
    lost = sum(int(r.get("lost") or 0) for r in rows.values())
    lines = [
        "# Reliability", "",
        "What the reliability tests did to hotpath and what they measured. Generated by "
        "`scripts/reliability`, which runs the fault, input and load tests and then "
        "`python -m tests.figures`; do not edit by hand. Each test asserts what its row "
        "says before it records the row (tests/figures.py); the figures are the latest "
        f"run of each test, measured {when} on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Data lost over all rows: **{lost}**.", "",
        "## Faults", "",
        "Recovery: how long until the clients were served correctly again, as each test "
        "measures it (see what was checked); lost: data a client never received and no "
        "fresh snapshot replaced (it must be 0).", "",
        *_faults(groups["fault"]), "",
        "## Load", "",
        "bench.loadgen clients against a real `hotpath serve --workers 2` on loopback, on "
        "the same two cores. Slow consumers: the normal clients' p99 with the never-reading "
        "clients must stay within max(2 x, +20 ms) of a run without them (the 20 ms floor "
        "keeps scheduler noise from failing a 3 ms vs 7 ms comparison; other test runs "
        "share the cores, so a pair that misses is measured once more, see attempts), and "
        "the gateway "
        "workers' RSS may grow by at most the hard send-buffer bound plus 32 KiB per slow "
        "client. Reconnect storm: the time from the drop to the last client's snapshot "
        "includes the load generator's own connect work on the same cores.", "",
        *_loads(groups["load"]), "",
        "## Inputs", "",
        "Hostile and broken input, per class: how many inputs were tried and how they "
        "ended. Every one ended in the documented error reply or close code (or was "
        "counted and dropped) and the process stayed up.", "",
        *_inputs(groups["input"]), "",
        "## Soak", "",
        *_soak(soak), "",
    ]
    other = [g for g in groups if g not in ("fault", "load", "input") and groups[g]]
    for group in other:
        lines += [f"## {group}", "", *_loads(groups[group]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.figures",
                                description="Render docs/reliability.md from the figures the "
                                            "reliability tests recorded.")
    p.add_argument("--log", type=Path, default=LOG, help=f"rows (default {LOG})")
    p.add_argument("--soak", type=Path, default=None,
                   help="a bench/soak JSON result (default: the newest in bench/results/)")
    p.add_argument("--out", type=Path, default=DOC, help=f"the document (default {DOC})")
    ns = p.parse_args(argv)
    rows = latest(ns.log)
    soak = json.loads(ns.soak.read_text()) if ns.soak else latest_soak()
    if soak is not None and "path" not in soak:
        soak["path"] = str(ns.soak)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(render(rows, soak))
    print(f"{ns.out}: {len(rows)} rows" + (f", soak {soak['path']}" if soak else ", no soak"))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
