"""Reading rows for many (tenant, key) pairs in one statement."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk


async def fetch_by_pairs(conn: AsyncConnection, query: str, keys: Collection[tuple[str, str]]) -> list[Any]:
    """The rows of a query joined to `unnest($1::text[], $2::text[])`: the keys' two halves."""
    ordered = sorted(keys)
    return list(await (await bulk.driver(conn)).fetch(query, [a for a, _ in ordered], [b for _, b in ordered]))
