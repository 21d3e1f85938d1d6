"""Structured logs: one JSON object per line, for application and access logs alike.
API keys and request bodies are never logged, and a live stream's ``token`` (it travels in
the URL: docs/api.md "The browser half") is written ``REDACTED`` wherever a line would hold it."""

from __future__ import annotations

import logging
import re
import sys
import time

import msgspec

from perkamo.program.json_walk import JsonObject

_encoder = msgspec.json.Encoder()
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}
_TOKEN = re.compile(r"(token=)[^&\s\"'\\]+")


def redact(line: str) -> str:
    """``token=<anything>`` (a stream URL's query) as ``token=REDACTED``."""
    return _TOKEN.sub(r"\1REDACTED", line) if "token=" in line else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: JsonObject = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                plain = value is None or isinstance(value, str | int | float | bool)
                entry[key] = value if plain else str(value)  # None is null, not "None"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(_encoder.encode(entry).decode())


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
