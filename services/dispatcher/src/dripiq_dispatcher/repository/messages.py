"""Message rows: recorded once per command, locked for admission and settlement, read by the API;
and the watermark of how far SendGrid's reports have reached."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_dispatcher.domain import NewMessage, Status
from dripiq_dispatcher.models import (
    messages,
    provider_watermark,
)


async def insert_messages(conn: AsyncConnection, *, batch: Sequence[NewMessage], now: datetime) -> None:
    """Record the commands once; a redelivered one finds its row and inserts nothing."""
    rows = [
        {
            "message_id": m.message_id,
            "idempotency_key": m.message_id,
            "tenant_id": m.tenant_id,
            "campaign_id": m.campaign_id,
            "step_index": m.step_index,
            "contact_id": m.contact_id,
            "channel": m.channel,
            "status": Status.QUEUED.value,
            "to_email": m.to_email,
            "to_name": m.to_name,
            "sender_identity_id": m.sender_identity_id,
            "subject": m.subject,
            "body_text": m.body_text,
            "body_html": m.body_html,
            "track_opens": m.track_opens,
            "track_clicks": m.track_clicks,
            "product_id": m.product_id,
            "strategist": m.strategist,
            "variant": m.variant,
            "created_at": now,
            "updated_at": now,
        }
        # In id order, as the rows are then locked: two batches holding the same new ids
        # wait for each other in one order instead of deadlocking.
        for m in sorted(batch, key=lambda m: m.message_id)
    ]
    await bulk.insert_rows(conn, messages, rows, suffix="ON CONFLICT (message_id) DO NOTHING")


_LOCK_MESSAGES = (
    "SELECT message_id, tenant_id, status, attempt_count, created_at FROM dispatcher.messages "
    "WHERE message_id = ANY($1::text[]) ORDER BY message_id FOR UPDATE"
)


async def lock_messages(conn: AsyncConnection, *, message_ids: Collection[str]) -> dict[str, Any]:
    """The rows by message id, locked until the transaction ends (in id order, so batches
    never deadlock), so two deliveries of one command queue up here instead of both
    deciding to call the provider."""
    rows = await (await bulk.driver(conn)).fetch(_LOCK_MESSAGES, sorted(message_ids))
    return {row["message_id"]: row for row in rows}


async def update_messages(conn: AsyncConnection, *, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Apply (message_id, column values) changes to rows the caller holds locked."""
    await bulk.update_rows(conn, messages, changes, key="message_id")


async def lock_unknown(conn: AsyncConnection, *, message_ids: Collection[str]) -> Sequence[Row[Any]]:
    """Those of the messages whose call may have gone out (`unknown`, or still `sending`: a
    process that died mid-call leaves that until the command is delivered again, and SendGrid's
    event can come first), locked (in id order). The ids travel as one array: an engagement
    batch names thousands of messages, and nearly never one of these."""
    db = await bulk.driver(conn)
    locked = await db.fetch(
        "SELECT message_id FROM dispatcher.messages WHERE message_id = ANY($1::text[]) AND status = ANY($2::text[]) "
        "ORDER BY message_id FOR UPDATE",
        sorted(message_ids),
        [Status.UNKNOWN.value, Status.SENDING.value],
    )
    if not locked:
        return []
    return (
        await conn.execute(
            select(messages)
            .where(messages.c.message_id.in_([r["message_id"] for r in locked]))
            .order_by(messages.c.message_id)
        )
    ).all()


def unconfirmed_query(*, older_than: datetime, limit: int) -> Select[Any]:
    """`unknown` messages that have waited since before `older_than`, oldest first, locked
    (rows another sweep holds are skipped)."""
    return (
        select(messages)
        # The status as a literal, not a parameter: it is what lets PostgreSQL use the partial
        # index messages_unknown_idx whatever plan it caches.
        .where(text("dispatcher.messages.status = 'unknown'"), messages.c.updated_at < older_than)
        .order_by(messages.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def lock_unconfirmed(conn: AsyncConnection, *, older_than: datetime, limit: int) -> Sequence[Row[Any]]:
    return (await conn.execute(unconfirmed_query(older_than=older_than, limit=limit))).all()


async def advance_watermark(conn: AsyncConnection, *, newest_event_at: datetime) -> None:
    """Keep the newest delivery event time seen (never moves back). Only a newer time locks
    the row, so engagement batches of every replica do not queue up on it."""
    moved = await conn.execute(
        update(provider_watermark)
        .where(provider_watermark.c.id == 1, provider_watermark.c.newest_event_at < newest_event_at)
        .values(newest_event_at=newest_event_at)
    )
    if moved.rowcount == 0:
        await conn.execute(
            insert(provider_watermark).values(id=1, newest_event_at=newest_event_at).on_conflict_do_nothing()
        )


async def watermark(conn: AsyncConnection) -> datetime | None:
    return await conn.scalar(select(provider_watermark.c.newest_event_at).where(provider_watermark.c.id == 1))


async def get_message(conn: AsyncConnection, *, tenant_id: str, message_id: str, lock: bool = False) -> Row[Any] | None:
    query = select(messages).where(messages.c.tenant_id == tenant_id, messages.c.message_id == message_id)
    return (await conn.execute(query.with_for_update() if lock else query)).first()


async def list_messages(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    campaign_id: str,
    contact_id: str,
    status: Status | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A tenant's messages in (created_at, message_id) order, after a page's last key."""
    query = select(messages).where(messages.c.tenant_id == tenant_id)
    if campaign_id:
        query = query.where(messages.c.campaign_id == campaign_id)
    if contact_id:
        query = query.where(messages.c.contact_id == contact_id)
    if status is not None:
        query = query.where(messages.c.status == status.value)
    if after is not None:
        query = query.where(tuple_(messages.c.created_at, messages.c.message_id) > tuple_(*after))
    return (await conn.execute(query.order_by(messages.c.created_at, messages.c.message_id).limit(limit))).all()


async def set_status(
    conn: AsyncConnection,
    *,
    message_id: str,
    expected: Collection[Status],
    status: Status,
    now: datetime,
    **values: Any,
) -> bool:
    """Move the message to `status` if it is still in one of `expected`; False if it was not."""
    result = await conn.execute(
        update(messages)
        .where(messages.c.message_id == message_id, messages.c.status.in_([str(s) for s in expected]))
        .values(status=status, updated_at=now, **values)
    )
    return bool(result.rowcount)


async def message_tenant(conn: AsyncConnection, *, message_id: str) -> str | None:
    """The tenant whose message this is (message ids are unique across tenants), or None."""
    return await conn.scalar(select(messages.c.tenant_id).where(messages.c.message_id == message_id))
