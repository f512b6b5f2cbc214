"""How the long-running commands log: readable lines (`text`) or one JSON object a line (`json`).

`configure(fmt)` sets the root logger up once for `publisher run`, `serve`, `worker` and `inbound
serve`; uvicorn's loggers propagate to it when the format is `json` (see `web.make_server`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# uvicorn's access lines: (client, method, path, HTTP version, status); the path already has its
# tokens hidden by `web.HideTokens`, a filter on that logger.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO-8601), level, logger, message, and an exception's text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(fmt: str = "text", *, verbose: bool = False) -> None:
    """Log to stderr in `fmt` ("text" or "json"), replacing any earlier set-up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    # APScheduler logs every job start at INFO; our own lines say what each job did.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
