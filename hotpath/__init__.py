"""hotpath: one Bybit V5 feed, fanned out through Redis to thousands of WebSocket clients."""

__version__ = "0.1.0"
