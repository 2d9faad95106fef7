"""A failed statement on the real PostgreSQL: what reaches a log or a dead letter names the
statement and the error, never the values it was given."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.redaction import error_text
from dripiq_common.status_codes import refused_by_database, status_for


async def test_a_statement_error_carries_no_parameters_and_is_redacted(engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError) as failed:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:address AS integer)"), {"address": "jane.doe@acme.example"})
    error = failed.value
    # SQLAlchemy's own rendering leaves the parameters out (hide_parameters) ...
    assert "[parameters:" not in str(error) and "hidden due to hide_parameters" in str(error)
    # ... but PostgreSQL quotes the value in its message, so the redacted text is what is logged.
    assert "jane.doe" in str(error.orig)
    assert "jane.doe" not in error_text(error) and "***@acme.example" in error_text(error)
    # A data error is the caller's, never a retry and never INTERNAL.
    assert refused_by_database(error)
    assert status_for(error).code == code_pb2.INVALID_ARGUMENT


async def test_a_nul_in_text_is_a_data_error_not_an_outage(engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError) as failed:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})
    assert refused_by_database(failed.value)
