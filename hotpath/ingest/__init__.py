"""The ingest: Bybit V5 public streams in, exact state kept, client messages out to Redis."""
