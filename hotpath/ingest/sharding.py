"""Spread upstream topics over connections. Pure."""

from __future__ import annotations

from typing import Sequence

# Bybit limits the total length of the args subscribed on one connection.
MAX_ARGS_CHARS = 21_000


def shard(topics: Sequence[str], per_connection: int,
          max_chars: int = MAX_ARGS_CHARS) -> list[list[str]]:
    """Split ``topics`` in order into groups of at most ``per_connection`` topics whose
    names add up to at most ``max_chars`` characters."""
    groups: list[list[str]] = []
    current: list[str] = []
    chars = 0
    for topic in topics:
        if current and (len(current) >= per_connection or chars + len(topic) > max_chars):
            groups.append(current)
            current, chars = [], 0
        current.append(topic)
        chars += len(topic)
    if current:
        groups.append(current)
    return groups
