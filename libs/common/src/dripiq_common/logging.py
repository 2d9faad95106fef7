"""One structlog set-up for every process: JSON in production, readable console locally."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(service: str, *, log_format: str = "json", level: str = "INFO") -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False) if log_format == "console" else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = (
        [*shared, structlog.processors.format_exc_info, renderer] if log_format != "console" else [*shared, renderer]
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use the standard logging module end up on the same stream.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format=f"%(asctime)s {service} %(name)s %(levelname)s %(message)s"
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
