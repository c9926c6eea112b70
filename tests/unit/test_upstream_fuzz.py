"""Mutated real Bybit messages through the ingest's parsing and state code.

Whatever arrives, the outcome is a publish list, a Resync, None, or one of the
exceptions the ingest counts as a bad message (msgspec errors, ValueError, TypeError):
never anything else, and a state that had a snapshot is never silently corrupted.
How many mutated messages of each kind were tried, and how they ended, is recorded for
docs/reliability.md (the ``figures`` fixture) once the whole search has passed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotpath.ingest.book import Resync
from hotpath.ingest.state import new_state
from hotpath.protocol import bybit, streams
from tests.figures import Figures
from tests.fixtures import raw

FIXTURES = ["linear_tickers_snapshot.json", "linear_tickers_delta.json",
            "orderbook_50_snapshot.json", "orderbook_50_delta.json", "public_trade_linear.json",
            "kline_5.json", "all_liquidation.json", "orderbook_500_delta.json"]
COUNTED = (msgspec.MsgspecError, ValueError, TypeError)
ODD_VALUES = [None, 0, -1, 1e308, "", "abc", "-0", "1e400", "NaN", [], {}, True, "9" * 400,
              [["1", "2", "3"]], [[1, 2]], "\u202e", "0.000"]


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    return st.tuples(st.sampled_from(["drop", "set", "extra", "truncate", "topic"]),
                     st.sampled_from(ODD_VALUES))


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, kind: str, value: Any, pick: int) -> bytes:
    if kind == "truncate":
        text = json.dumps(doc).encode()
        return text[: max(1, pick % len(text))]
    paths = _paths(doc)
    path = paths[pick % len(paths)]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if kind == "drop" and isinstance(parent, dict):
        del parent[last]
    elif kind == "extra" and isinstance(parent, dict):
        parent["zz_extra"] = value
    elif kind == "topic":
        doc["topic"] = str(value)
    else:
        parent[last] = value
    return json.dumps(doc).encode()


def _feed(state, payload: bytes) -> Any:
    frame = bybit.parse_frame(payload)
    if frame is None or not frame.topic:
        return "undecodable"  # the connection counts it as a bad message
    return state.apply(frame.type, frame.data)


KINDS = {"drop": "a field dropped", "set": "a field set to an odd value",
         "extra": "an unknown field added", "truncate": "truncated JSON",
         "topic": "an odd topic"}
TRIED: dict[str, Counter[str]] = {}  # mutation kind -> outcome -> inputs


def _tally(kind: str, outcome: Any) -> None:
    if isinstance(outcome, BaseException):
        label = f"counted as a bad message ({type(outcome).__name__})"
    elif isinstance(outcome, Resync):
        label = "resync (fresh snapshot)"
    elif isinstance(outcome, list):
        label = "published" if outcome else "no change"
    elif outcome == "undecodable":
        label = "undecodable (counted as a bad message)"
    else:
        label = "ignored"
    TRIED.setdefault(kind, Counter())[label] += 1


def test_mutated_messages_never_escape_as_unexpected_errors(figures: Figures):
    TRIED.clear()
    _mutated_messages_never_escape()
    for kind, label in KINDS.items():
        counts = TRIED.get(kind, Counter())
        outcome = ", ".join(f"{k}: {v}" for k, v in counts.most_common())
        figures.record("input", f"upstream messages: {label}", tried=counts.total(),
                       outcome=outcome + "; no other exception, published output encodes "
                                         "(ingest parsing and state code)")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURES), _mutations(), st.integers(0, 10_000))
def _mutated_messages_never_escape(name, mutation, pick):
    doc = json.loads(raw(name))
    stream = streams.from_bybit_topic(doc["topic"])
    state = new_state(stream)
    # give every state a valid start where one exists, so deltas are exercised too
    base = {"orderbook": "orderbook_50_snapshot.json", "ticker": "linear_tickers_snapshot.json"}
    if stream.kind in base and stream.param in ("", "50"):
        assert _feed(state, raw(base[stream.kind])) not in (None, "undecodable")
    payload = _mutate(doc, *mutation, pick)
    try:
        outcome = _feed(state, payload)
    except COUNTED as exc:
        _tally(mutation[0], exc)
        return
    assert outcome is None or outcome == "undecodable" or isinstance(outcome, (list, Resync))
    if isinstance(outcome, list):
        msgspec.json.encode(outcome)  # whatever is published must encode
    _tally(mutation[0], outcome)


def test_book_state_is_dropped_not_corrupted_by_a_bad_level():
    state = new_state(streams.Stream("orderbook", "BTCUSDT", "50"))
    _feed(state, raw("orderbook_50_snapshot.json"))
    doc = json.loads(raw("orderbook_50_delta.json"))
    doc["data"]["u"] = 18521289
    doc["data"]["b"][0][0] = "not-a-price"
    outcome = _feed(state, json.dumps(doc).encode())
    assert isinstance(outcome, Resync) and state.snapshot() is None
