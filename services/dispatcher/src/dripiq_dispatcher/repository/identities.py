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
from dripiq_dispatcher.models import identity_holds, messages, sender_identities

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
                last_checked_at=now,
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
    """False when the tenant has no such identity. Messages keep the id they were sent with;
    those held for it stay failed, their campaigns waiting for a person."""
    result = await conn.execute(
        delete(sender_identities).where(
            sender_identities.c.tenant_id == tenant_id, sender_identities.c.id == identity_id
        )
    )
    await conn.execute(
        delete(identity_holds).where(
            identity_holds.c.tenant_id == tenant_id, identity_holds.c.sender_identity_id == identity_id
        )
    )
    return bool(result.rowcount)


async def hold_messages(conn: AsyncConnection, *, holds: Sequence[tuple[str, str, str]], now: datetime) -> None:
    """Keeps (tenant_id, identity id, message_id) of messages that failed because the identity
    was not verified; a message held twice (a redelivery) is one hold."""
    if not holds:
        return
    rows = [
        {"message_id": m, "tenant_id": t, "sender_identity_id": i, "created_at": now}
        for t, i, m in sorted(set(holds), key=lambda h: h[2])
    ]
    await conn.execute(insert(identity_holds).values(rows).on_conflict_do_nothing(index_elements=["message_id"]))


async def take_released(conn: AsyncConnection, *, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` held messages whose identity is verified again, oldest hold first, as
    their message rows; their holds are deleted in the caller's transaction. Holds another
    replica is releasing are skipped, so no message is released twice by two replicas."""
    due = (
        select(identity_holds.c.message_id)
        .join(
            sender_identities,
            (sender_identities.c.tenant_id == identity_holds.c.tenant_id)
            & (sender_identities.c.id == identity_holds.c.sender_identity_id),
        )
        .where(sender_identities.c.verified.is_(True))
        .order_by(identity_holds.c.created_at, identity_holds.c.message_id)
        .limit(limit)
        .with_for_update(of=identity_holds, skip_locked=True)
    )
    taken = list((await conn.execute(due)).scalars())
    if not taken:
        return []
    await conn.execute(delete(identity_holds).where(identity_holds.c.message_id.in_(taken)))
    return (
        await conn.execute(select(messages).where(messages.c.message_id.in_(taken)).order_by(messages.c.message_id))
    ).all()


async def claim_for_recheck(conn: AsyncConnection, *, checked_before: datetime, now: datetime, limit: int) -> list[Any]:
    """Up to `limit` identities to ask SendGrid about again (verified ones, and lapsed ones that
    may be valid again), asked longest ago first, stamped as checked `now` so another replica
    passes them by; each with `previous_check`, to put back when SendGrid gives no answer."""
    db = await bulk.driver(conn)
    return list(
        await db.fetch(
            "WITH due AS ("
            " SELECT id, last_checked_at AS previous_check FROM dispatcher.sender_identities"
            " WHERE (verified OR unverified_reason <> '') AND (last_checked_at IS NULL OR last_checked_at < $1)"
            " ORDER BY last_checked_at NULLS FIRST, id LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " UPDATE dispatcher.sender_identities AS s SET last_checked_at = $2 FROM due WHERE s.id = due.id"
            " RETURNING s.id, s.tenant_id, s.from_email, s.provider_config_id, s.verified, due.previous_check",
            checked_before,
            now,
            limit,
        )
    )


async def unclaim(conn: AsyncConnection, *, identity_id: str, claimed_at: datetime, previous: datetime | None) -> None:
    """Puts back when an identity was last checked, unless something checked it since."""
    await conn.execute(
        update(sender_identities)
        .where(sender_identities.c.id == identity_id, sender_identities.c.last_checked_at == claimed_at)
        .values(last_checked_at=previous)
    )
