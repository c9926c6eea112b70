"""Redis pub/sub between the ingest and the gateways."""
