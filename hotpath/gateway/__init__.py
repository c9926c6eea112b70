"""The gateway: Redis in, thousands of WebSocket clients out."""
