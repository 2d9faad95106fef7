"""Sender identities: the verified From addresses a tenant sends as, with their own send caps."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_dispatcher.campaign_mail import Identity
from dripiq_dispatcher.models import (
    sender_identities,
)

_IDENTITIES = (
    "SELECT id, tenant_id, from_email, from_name, verified, provider_config_id, per_minute, per_day "
    "FROM dispatcher.sender_identities WHERE id = ANY($1::text[])"
)


async def identities(conn: AsyncConnection, *, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], Identity]:
    """Sender identities by (tenant_id, identity id); another tenant's id is not found."""
    if not keys:
        return {}
    rows = await (await bulk.driver(conn)).fetch(_IDENTITIES, sorted({i for _, i in keys}))
    found = {
        (row["tenant_id"], row["id"]): Identity(
            id=row["id"],
            from_email=row["from_email"],
            from_name=row["from_name"],
            verified=row["verified"],
            provider_config_id=row["provider_config_id"],
            per_minute=row["per_minute"],
            per_day=row["per_day"],
        )
        for row in rows
    }
    return {key: identity for key, identity in found.items() if key in keys}


async def get_identity(conn: AsyncConnection, *, tenant_id: str, identity_id: str) -> Row[Any] | None:
    return (
        await conn.execute(
            select(sender_identities).where(
                sender_identities.c.tenant_id == tenant_id, sender_identities.c.id == identity_id
            )
        )
    ).first()


async def create_identity(
    conn: AsyncConnection,
    *,
    identity_id: str,
    tenant_id: str,
    from_email: str,
    from_name: str,
    provider_config_id: str,
    caps: dict[str, int],
    forward_to: str,
    now: datetime,
) -> tuple[Row[Any], bool]:
    """(row, created): on a duplicate tenant + from_email, the existing row and False."""
    created = (
        await conn.execute(
            insert(sender_identities)
            .values(
                id=identity_id,
                tenant_id=tenant_id,
                from_email=from_email,
                from_name=from_name,
                provider_config_id=provider_config_id,
                **caps,
                forward_to=forward_to,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(constraint="sender_identities_tenant_from_key")
            .returning(*sender_identities.c)
        )
    ).first()
    if created is not None:
        return created, True
    existing = (
        await conn.execute(
            select(sender_identities).where(
                sender_identities.c.tenant_id == tenant_id,
                sender_identities.c.from_email == from_email,
            )
        )
    ).one()
    return existing, False


async def record_verification(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    identity_id: str,
    provider_config_id: str,
    verified_by: str,
    now: datetime,
) -> Row[Any] | None:
    """Marks the identity verified (verified_by non-empty) or not, as SendGrid answered for the
    account `provider_config_id`; a row whose account changed since it was asked is left alone
    (None, as for no row): the answer was about another account."""
    return (
        await conn.execute(
            update(sender_identities)
            .where(
                sender_identities.c.tenant_id == tenant_id,
                sender_identities.c.id == identity_id,
                sender_identities.c.provider_config_id == provider_config_id,
            )
            .values(
                verified=bool(verified_by),
                verified_by=verified_by,
                verified_at=now if verified_by else None,
                unverified_reason="",
                updated_at=now,
            )
            .returning(*sender_identities.c)
        )
    ).first()


async def mark_refused(
    conn: AsyncConnection, *, tenant_id: str, identity_id: str, provider_config_id: str, reason: str, now: datetime
) -> bool:
    """Marks a verified identity unverified because SendGrid refused to send as it, through the
    account `provider_config_id` (a row moved to another account since is left alone). True
    when this call changed it: the first refusal, not every one of a batch."""
    changed = await conn.execute(
        update(sender_identities)
        .where(
            sender_identities.c.tenant_id == tenant_id,
            sender_identities.c.id == identity_id,
            sender_identities.c.provider_config_id == provider_config_id,
            sender_identities.c.verified.is_(True),
        )
        .values(verified=False, verified_by="", verified_at=None, unverified_reason=reason, updated_at=now)
    )
    return bool(changed.rowcount)


async def list_identities(
    conn: AsyncConnection, *, tenant_id: str, after: tuple[datetime, str] | None, limit: int
) -> Sequence[Row[Any]]:
    """A tenant's sender identities in (created_at, id) order, after a page's last key."""
    query = select(sender_identities).where(sender_identities.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(tuple_(sender_identities.c.created_at, sender_identities.c.id) > tuple_(*after))
    order = (sender_identities.c.created_at, sender_identities.c.id)
    return (await conn.execute(query.order_by(*order).limit(limit))).all()


async def update_identity(
    conn: AsyncConnection, *, tenant_id: str, identity_id: str, values: dict[str, Any], now: datetime
) -> Row[Any] | None:
    """The updated row, or None when the tenant has no such identity. Moving the identity to
    another provider account unverifies it: it was verified for the old one only."""
    if "provider_config_id" in values:
        moved = sender_identities.c.provider_config_id != values["provider_config_id"]
        values = {
            **values,
            "verified": case((moved, False), else_=sender_identities.c.verified),
            "verified_by": case((moved, ""), else_=sender_identities.c.verified_by),
            "verified_at": case((moved, None), else_=sender_identities.c.verified_at),
        }
    return (
        await conn.execute(
            update(sender_identities)
            .where(sender_identities.c.tenant_id == tenant_id, sender_identities.c.id == identity_id)
            .values(**values, updated_at=now)
            .returning(*sender_identities.c)
        )
    ).first()


async def delete_identity(conn: AsyncConnection, *, tenant_id: str, identity_id: str) -> bool:
    """False when the tenant has no such identity. Messages keep the id they were sent with."""
    result = await conn.execute(
        delete(sender_identities).where(
            sender_identities.c.tenant_id == tenant_id, sender_identities.c.id == identity_id
        )
    )
    return bool(result.rowcount)
