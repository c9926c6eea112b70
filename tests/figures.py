"""Figures that reliability tests measure, for docs/reliability.md.

A test that proves something under a fault also says how it went: how many clients, how
long recovery took, how much was lost (must be 0). ``figures.record`` appends one JSON line
to ``test-output/reliability.jsonl``; ``python -m tests.figures`` (run by
``scripts/reliability``) renders the latest line per (group, name) into the document.
Recording never replaces an assertion: the test has already checked what it records.
"""

from __future__ import annotations

import json
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
