"""One structlog set-up for every process: JSON in production, readable console locally."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from dripiq_common.redaction import redact, redact_event


class RedactingFilter(logging.Filter):
    """What libraries log through the standard logging module, redacted like our own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(service: str, *, log_format: str = "json", level: str = "INFO") -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False) if log_format == "console" else structlog.processors.JSONRenderer()
    )
    # Redaction runs last before rendering, after tracebacks became text (they quote values too).
    processors: list[Any] = (
        [*shared, structlog.processors.format_exc_info, redact_event, renderer]
        if log_format != "console"
        else [*shared, structlog.dev.set_exc_info, structlog.processors.format_exc_info, redact_event, renderer]
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
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
