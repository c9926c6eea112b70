"""The ingest's per-message code (and the simulator's per-step code), optionally
compiled to C with mypyc.

``HOTPATH_COMPILE=1 pip install .`` (a C compiler needed) builds the modules below as
extension modules; a plain install runs them as Python. Both behave the same: the tests
run the state and simulator tests and the ingest's integration tests against both.
Compiled, the ingest spends about a quarter fewer instructions per upstream message
(README.md, Benchmarks, S4).

This file is read by the build (setup.py) before hotpath is installed: standard library
imports only.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from collections.abc import Mapping

# Typed code that every upstream message runs through: the topic state (pure), the
# frame handling that drives it and the Redis publisher. No msgspec Struct definitions
# (mypyc cannot compile those). The upstream connection (hotpath.ingest.conn) stays
# Python: compiled, it saved nothing per message (40.3k instructions against 39.9k).
MODULES = (
    "hotpath.ingest.book",
    "hotpath.ingest.ticker",
    "hotpath.ingest.events",
    "hotpath.ingest.state",
    "hotpath.bus.channels",
    "hotpath.ingest.service",
    "hotpath.bus.publisher",
)

# The simulator's per-step code: the market, the books it diffs, the frames it builds.
# Bench S4 runs the whole linear universe at Bybit's cadence on one core that Redis and
# the probes share; interpreted, the simulator fell behind in the machine's slow hours
# (compiled, a step of 550 symbols costs about a fifth less). The frame Structs
# (hotpath.sim.messages) and the socket listener stay Python.
SIM_MODULES = (
    "hotpath.sim.numfmt",
    "hotpath.sim.book",
    "hotpath.sim.ticker",
    "hotpath.sim.candles",
    "hotpath.sim.market",
    "hotpath.sim.feeds",
    "hotpath.sim.hub",
)

ENV = "HOTPATH_COMPILE"


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the build was asked to compile (HOTPATH_COMPILE=1/true/yes)."""
    return environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


def sources() -> list[str]:
    """The compiled modules' source paths (the ingest's and the simulator's), relative
    to the project root."""
    return [name.replace(".", "/") + ".py" for name in MODULES + SIM_MODULES]


def status(modules: tuple[str, ...] = MODULES) -> dict[str, str]:
    """Each module: "compiled", "interpreted", or "stale" (compiled from an older source,
    which happens when an in-place build is followed by an edit)."""
    out = {}
    for name in modules:
        path = importlib.import_module(name).__file__ or ""
        if not path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            out[name] = "interpreted"
            continue
        source = os.path.join(os.path.dirname(path), name.rsplit(".", 1)[1] + ".py")
        stale = os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(path)
        out[name] = "stale" if stale else "compiled"
    return out


def summary(states: dict[str, str] | None = None) -> str:
    """One word for the logs, "compiled" or "interpreted", or each module's state."""
    states = status() if states is None else states
    kinds = set(states.values())
    if len(kinds) == 1:
        return kinds.pop()
    return ", ".join(f"{name.rsplit('.', 1)[1]} {state}" for name, state in states.items())
