"""Many rows in one statement: columns travel as arrays straight to asyncpg.

A batch of N rows becomes one prepared statement with one parameter per column, however
large N is: no thousands of literals to parse and no result-object layer per row. The hot
paths that handle thousands of facts a second (the planner's reactor, the dispatcher's send
pipeline, every outbox) write through here; everything else stays on SQLAlchemy Core.
"""

from __future__ import annotations

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
