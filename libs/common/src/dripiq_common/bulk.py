"""Many rows in one statement: columns travel as arrays straight to asyncpg.

A batch of N rows becomes one prepared statement with one parameter per column, however
large N is: no thousands of literals to parse and no result-object layer per row. The hot
paths that handle thousands of facts a second (the planner's reactor, the dispatcher's send
pipeline, every outbox) write through here; everything else stays on SQLAlchemy Core.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, inside the same transaction.

    SQLAlchemy's asyncpg adapter opens the transaction with the first statement it runs
    itself; a statement sent straight to asyncpg before that would run in autocommit, its
    row locks gone at once. So the transaction is opened here when it is not yet."""
    db = (await conn.get_raw_connection()).driver_connection
    if db is None:
        raise RuntimeError("the connection has no driver connection under it")
    if not db.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return db


def pg_type(table: Table, column: str) -> str:
    """The column's PostgreSQL type, as an array element type for a cast."""
    return table.c[column].type.compile(dialect=postgresql.dialect())


def quoted(name: str) -> str:
    """A column name as an identifier, safe for reserved words such as `window`."""
    return '"' + name.replace('"', '""') + '"'


def unnest(types: Sequence[str], names: Sequence[str], *, first: int = 1) -> str:
    """`unnest($1::t1[], $2::t2[], ...) AS v(n1, n2, ...)`, parameters numbered from `first`."""
    arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types))
    return f"unnest({arrays}) AS v({', '.join(quoted(n) for n in names)})"


def columns_of(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    """The rows as one list per column, in `names` order."""
    return [[row[name] for row in rows] for name in names]


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    suffix: str = "",
    casts: dict[str, str] | None = None,
) -> list[Any]:
    """INSERT ... SELECT FROM unnest(...) of `rows` (dicts with the same keys); `suffix` adds
    ON CONFLICT or RETURNING. `casts` sends a column as another array type and casts each
    value in SQL (jsonb travels as text: asyncpg has no element codec for jsonb[])."""
    if not rows:
        return []
    names = list(rows[0])
    casts = casts or {}
    types = [casts.get(n, pg_type(table, n)) for n in names]
    selected = ", ".join(f"{quoted(n)}::{pg_type(table, n)}" if n in casts else quoted(n) for n in names)
    query = (
        f"INSERT INTO {table.schema}.{table.name} ({', '.join(quoted(n) for n in names)}) "
        f"SELECT {selected} FROM {unnest(types, names)} {suffix}"
    )
    db = await driver(conn)
    if "RETURNING" in suffix.upper():
        return list(await db.fetch(query, *columns_of(rows, names)))
    await db.execute(query, *columns_of(rows, names))
    return []


_ROW_TYPES: dict[str, tuple[str, ...]] = {}
# Bumped when a record insert fails: every pooled connection then forgets the row types it
# decoded before its next record insert (asyncpg keeps them per connection).
_schema_generation = 0
_reloaded_at: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


async def _row_type(db: Any, qualified: str) -> tuple[str, ...]:
    """The table's columns in its row type's order (as created, whatever the model says)."""
    if qualified not in _ROW_TYPES:
        names = await db.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            qualified,
        )
        _ROW_TYPES[qualified] = tuple(r["attname"] for r in names)
    return _ROW_TYPES[qualified]


async def insert_records(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, suffix: str = ""
) -> list[Any]:
    """Like insert_rows, but the rows travel as one array of the table's own row type.

    For wide rows this is much cheaper to encode: asyncpg checks every element of an array
    parameter for nesting, so sixteen column arrays of a thousand values cost sixteen thousand
    checks, and one array of a thousand records a thousand. Columns a row leaves out are NULL
    in the record and not inserted, so their defaults apply.

    The row type's column order is read once per process. When a statement fails it is read
    again, and every connection reloads its row types, so after a migration changes the
    table's columns the retried batch goes in."""
    if not rows:
        return []
    global _schema_generation
    qualified = f"{table.schema}.{table.name}"
    db = await driver(conn)
    if _reloaded_at.get(db, 0) < _schema_generation:
        await db.reload_schema_state()
        _reloaded_at[db] = _schema_generation
    order = await _row_type(db, qualified)
    names = list(rows[0])
    records = [tuple(map(row.get, order)) for row in rows]
    columns = ", ".join(quoted(n) for n in names)
    query = (
        f"INSERT INTO {qualified} ({columns}) SELECT {', '.join('v.' + quoted(n) for n in names)} "
        f"FROM unnest($1::{qualified}[]) AS v {suffix}"
    )
    try:
        if "RETURNING" in suffix.upper():
            return list(await db.fetch(query, records))
        await db.execute(query, records)
    except Exception:
        # The table may have changed: read its columns again, and let every connection
        # forget the row type it decoded, before the batch is tried again.
        _ROW_TYPES.clear()
        _schema_generation += 1
        raise
    return []


async def update_rows(
    conn: AsyncConnection, table: Table, rows: Iterable[tuple[Any, dict[str, Any]]], *, key: str = "id"
) -> None:
    """Set each row's given columns, by key: one UPDATE ... FROM unnest(...) per set of
    columns that change together."""
    groups: dict[tuple[str, ...], list[tuple[Any, dict[str, Any]]]] = {}
    for row_key, values in rows:
        groups.setdefault(tuple(sorted(values)), []).append((row_key, values))
    if not groups:
        return
    db = await driver(conn)
    for columns, members in groups.items():
        names = [key, *columns]
        arrays = [[k for k, _ in members], *[[values[c] for _, values in members] for c in columns]]
        assignments = ", ".join(f"{quoted(c)} = v.{quoted(c)}" for c in columns)
        await db.execute(
            f"UPDATE {table.schema}.{table.name} AS t SET {assignments} "
            f"FROM {unnest([pg_type(table, n) for n in names], names)} WHERE t.{quoted(key)} = v.{quoted(key)}",
            *arrays,
        )
