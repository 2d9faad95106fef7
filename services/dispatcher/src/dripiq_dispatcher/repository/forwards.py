"""Reply forwarding: the tenant's catch-all address and one row per reply asked to be forwarded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_dispatcher.campaign_mail import Identity
from dripiq_dispatcher.forward_mail import AnsweredMessage, ForwardStatus
from dripiq_dispatcher.models import (
    messages,
    reply_forwarding,
    reply_forwards,
    sender_identities,
)


async def get_catch_all(conn: AsyncConnection, *, tenant_id: str) -> str:
    """The tenant's catch-all mailbox; empty when it has none."""
    found = await conn.scalar(select(reply_forwarding.c.catch_all).where(reply_forwarding.c.tenant_id == tenant_id))
    return found or ""


async def set_catch_all(conn: AsyncConnection, *, tenant_id: str, catch_all: str, now: datetime) -> None:
    """Upsert; an empty address is kept as the row's value (no catch-all)."""
    await conn.execute(
        insert(reply_forwarding)
        .values(tenant_id=tenant_id, catch_all=catch_all, updated_at=now)
        .on_conflict_do_update(
            index_elements=[reply_forwarding.c.tenant_id], set_={"catch_all": catch_all, "updated_at": now}
        )
    )


async def insert_forward(
    conn: AsyncConnection, *, tenant_id: str, inbound_id: str, message_id: str, now: datetime
) -> None:
    """Record the command once; a redelivered one finds its row and inserts nothing."""
    await conn.execute(
        insert(reply_forwards)
        .values(
            tenant_id=tenant_id,
            inbound_id=inbound_id,
            message_id=message_id,
            status=ForwardStatus.QUEUED.value,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(constraint="reply_forwards_pkey")
    )


async def lock_forward(conn: AsyncConnection, *, tenant_id: str, inbound_id: str) -> Row[Any]:
    """The forward's row, locked until the transaction ends, so two deliveries of one command
    queue up here instead of both deciding to call the provider."""
    return (
        await conn.execute(
            select(reply_forwards)
            .where(reply_forwards.c.tenant_id == tenant_id, reply_forwards.c.inbound_id == inbound_id)
            .with_for_update()
        )
    ).one()


async def update_forward(
    conn: AsyncConnection, *, tenant_id: str, inbound_id: str, now: datetime, **values: Any
) -> None:
    """Change a forward the caller holds locked."""
    await conn.execute(
        update(reply_forwards)
        .where(reply_forwards.c.tenant_id == tenant_id, reply_forwards.c.inbound_id == inbound_id)
        .values(**values, updated_at=now)
    )


async def get_forward(conn: AsyncConnection, *, tenant_id: str, inbound_id: str) -> Row[Any] | None:
    return (
        await conn.execute(
            select(reply_forwards).where(
                reply_forwards.c.tenant_id == tenant_id, reply_forwards.c.inbound_id == inbound_id
            )
        )
    ).first()


async def forward_parts(
    conn: AsyncConnection, *, tenant_id: str, message_id: str
) -> tuple[AnsweredMessage | None, Identity | None, str]:
    """What routes a reply to `message_id`: the message, the identity that sent it, and the
    tenant's catch-all, all of the tenant's own (another tenant's message or identity is None)."""
    row = (
        await conn.execute(
            select(
                messages.c.message_id,
                messages.c.campaign_id,
                messages.c.step_index,
                messages.c.subject,
                messages.c.to_email,
                messages.c.to_name,
                messages.c.sender_identity_id,
                sender_identities.c.id.label("identity_id"),
                sender_identities.c.from_email,
                sender_identities.c.from_name,
                sender_identities.c.verified,
                sender_identities.c.provider_config_id,
                sender_identities.c.forward_to,
            )
            .select_from(
                messages.outerjoin(
                    sender_identities,
                    (sender_identities.c.id == messages.c.sender_identity_id)
                    & (sender_identities.c.tenant_id == messages.c.tenant_id),
                )
            )
            .where(messages.c.tenant_id == tenant_id, messages.c.message_id == message_id)
        )
    ).first()
    catch_all = await get_catch_all(conn, tenant_id=tenant_id)
    if row is None:
        return None, None, catch_all
    message = AnsweredMessage(
        message_id=row.message_id,
        campaign_id=row.campaign_id,
        step_index=row.step_index,
        subject=row.subject,
        to_email=row.to_email,
        to_name=row.to_name,
        sender_identity_id=row.sender_identity_id,
    )
    identity = None
    if row.identity_id is not None:
        identity = Identity(
            id=row.identity_id,
            from_email=row.from_email,
            from_name=row.from_name,
            verified=row.verified,
            provider_config_id=row.provider_config_id,
            forward_to=row.forward_to,
        )
    return message, identity, catch_all
