"""Structured JSON logs, one line per event, carrying the entity ids.

Only applications configure logging: the daemon, the command line, the
chaos run and the benchmark call `configure`. The library itself only logs
through `structlog.get_logger`, so an application embedding petriflow keeps
its own configuration. Actor processes forked by a daemon inherit its
configuration, and with it the open log file.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure(log_path: str | None) -> None:
    """Send this process's structlog events as JSON lines to `log_path`
    (appending; every actor process of a daemon shares the file) or stderr."""
    stream: Any = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else sys.stderr  # noqa: SIM115
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
