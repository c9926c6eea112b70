"""Spread upstream topics over connections. Pure."""

from __future__ import annotations

from typing import Sequence

# Bybit limits the total length of the args subscribed on one connection.
MAX_ARGS_CHARS = 21_000


def has_room(count: int, chars: int, topic: str, per_connection: int,
             max_chars: int = MAX_ARGS_CHARS) -> bool:
    """Whether a connection holding ``count`` topics of ``chars`` characters takes ``topic``."""
    return count < per_connection and chars + len(topic) <= max_chars


def shard(topics: Sequence[str], per_connection: int,
          max_chars: int = MAX_ARGS_CHARS) -> list[list[str]]:
    """Split ``topics`` in order into groups that each fit on one connection."""
    groups: list[list[str]] = []
    chars = 0
    for topic in topics:
        if not groups or not has_room(len(groups[-1]), chars, topic, per_connection, max_chars):
            groups.append([])
            chars = 0
        groups[-1].append(topic)
        chars += len(topic)
    return groups
