"""Paths to the captured Bybit messages in tests/fixtures/bybit (see SOURCES.md there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BYBIT = Path(__file__).parent / "fixtures" / "bybit"


def raw(name: str) -> bytes:
    return (BYBIT / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))
