"""Logging set-up shared by every hotpath process: plain text or one JSON object a line."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(process_name)s %(name)s: %(message)s"


class _ProcessName(logging.Filter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process_name
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, process, logger, msg (and exc when raised)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "process": getattr(record, "process_name", ""),
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def setup(process_name: str, level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger of this process (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ProcessName(process_name))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # picows logs every handshake failure at INFO; keep it for debug runs only.
    logging.getLogger("picows").setLevel(max(root.level, logging.WARNING))
