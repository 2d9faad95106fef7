"""Storing events once and publishing the new matched ones, in the caller's transaction.

The stored rows, their engagement facts (through the outbox) and their rollups commit together,
and the natural key makes a redelivered event store, publish and count nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import engagement, outbox
from dripiq_events import convert, repository, rollups
from dripiq_events.domain import NewEvent
from dripiq_events.models import outbox as outbox_table


@dataclass(frozen=True)
class IngestResult:
    """What one webhook delivery did; a replay shows stored == published == 0."""

    received: int = 0
    stored: int = 0
    published: int = 0
    unmatched: int = 0
    rejected: int = 0


async def store_events(conn: AsyncConnection, rows: Sequence[NewEvent], received_at: datetime) -> IngestResult:
    """Insert what is new and outbox one engagement fact per new matched row, together
    (batched by tenant and type, docs/decisions/0014)."""
    new_ids = await repository.insert_events(conn, events=rows, received_at=received_at)
    new_rows = [(row, new_ids[row.key]) for row in rows if row.key in new_ids]
    facts = [convert.engagement_event(row, event_id=row_id) for row, row_id in new_rows if row.matched]
    await outbox.enqueue(conn, outbox_table, engagement.outbox_messages(facts))
    await rollups.roll_up(conn, [row for row, _ in new_rows if row.matched])
    return IngestResult(
        received=len(rows),
        stored=len(new_rows),
        published=len(facts),
        unmatched=sum(1 for row, _ in new_rows if not row.matched),
    )
