"""The audit of AI calls every service that asks a model keeps: one row per call, so what was
asked, what came back, what it cost and how long it took can always be read again."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB


def ai_call_columns() -> list[Column]:
    """The columns of one audited call, after the table's own keys (new objects each time: a
    column belongs to one table)."""
    return [
        Column("model", Text, nullable=False, server_default=""),
        Column("prompt_version", Text, nullable=False, server_default=""),
        Column("input_json", JSONB, nullable=False),
        Column("output_json", JSONB),
        Column("outcome", Text, nullable=False),
        Column("error", Text, nullable=False, server_default=""),
        Column("prompt_tokens", Integer, nullable=False, server_default="0"),
        Column("completion_tokens", Integer, nullable=False, server_default="0"),
        Column("duration_ms", Integer, nullable=False, server_default="0"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]
