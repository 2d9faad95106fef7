"""Dispatcher storage. Every query is scoped by tenant; writes that a redelivery may repeat
are upserts on the natural keys, and status changes name the status they expect to leave."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Row, Select, Text, bindparam, delete, func, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_dispatcher.domain import AnsweredMessage, ForwardStatus, Identity, NewMessage, Status
from dripiq_dispatcher.models import (
    campaign_states,
    messages,
    provider_watermark,
    rate_counters,
    rate_limits,
    reply_forwarding,
    reply_forwards,
    sender_identities,
    suppressions,
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


_IDENTITIES = (
    "SELECT id, tenant_id, from_email, from_name, verified, per_minute, per_day "
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


async def verify_identity(conn: AsyncConnection, *, tenant_id: str, identity_id: str, now: datetime) -> Row[Any] | None:
    return (
        await conn.execute(
            update(sender_identities)
            .where(sender_identities.c.tenant_id == tenant_id, sender_identities.c.id == identity_id)
            .values(verified=True, updated_at=now)
            .returning(*sender_identities.c)
        )
    ).first()


_SUPPRESSION_REASONS = (
    "SELECT DISTINCT ON (s.tenant_id, s.address) s.tenant_id, s.address, s.reason "
    "FROM dispatcher.suppressions AS s JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, address) "
    "ON s.tenant_id = v.tenant_id AND s.address = v.address ORDER BY s.tenant_id, s.address, s.created_at"
)


async def suppression_reasons(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Why each suppressed (tenant_id, address) is suppressed (its oldest reason); the
    others are absent. Addresses are the normalized ones."""
    if not keys:
        return {}
    rows = await _fetch_by_pairs(conn, _SUPPRESSION_REASONS, keys)
    return {(row["tenant_id"], row["address"]): row["reason"] for row in rows}


_STOPPED_CAMPAIGNS = (
    "SELECT c.tenant_id, c.campaign_id, c.status, c.reason "
    "FROM dispatcher.campaign_states AS c JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, campaign_id) "
    "ON c.tenant_id = v.tenant_id AND c.campaign_id = v.campaign_id WHERE c.status <> 'active'"
)


async def stopped_campaigns(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(status, reason) of each (tenant_id, campaign_id) that is not running; the others are
    absent (a campaign with no row has never stopped)."""
    if not keys:
        return {}
    rows = await _fetch_by_pairs(conn, _STOPPED_CAMPAIGNS, keys)
    return {(row["tenant_id"], row["campaign_id"]): (row["status"], row["reason"]) for row in rows}


async def record_campaign_states(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> int:
    """Upsert statuses, keeping each campaign's highest version; how many rows changed."""
    if not rows:
        return 0
    statement = insert(campaign_states).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "campaign_id"],
        set_={
            "status": statement.excluded.status,
            "version": statement.excluded.version,
            "reason": statement.excluded.reason,
            "updated_at": statement.excluded.updated_at,
        },
        where=campaign_states.c.version < statement.excluded.version,
    )
    return (await conn.execute(statement)).rowcount


async def _fetch_by_pairs(conn: AsyncConnection, query: str, keys: Collection[tuple[str, str]]) -> list[Any]:
    """The rows of a query joined to `unnest($1::text[], $2::text[])`: the keys' two halves."""
    ordered = sorted(keys)
    return list(await (await bulk.driver(conn)).fetch(query, [a for a, _ in ordered], [b for _, b in ordered]))


async def add_suppression(
    conn: AsyncConnection, *, tenant_id: str, address: str, reason: str, source: str, now: datetime
) -> Row[Any]:
    """Upsert on (tenant, address, reason): the first suppression of a kind is the one kept."""
    values = {"tenant_id": tenant_id, "address": address, "reason": reason}
    created = (
        await conn.execute(
            insert(suppressions)
            .values(**values, source=source, created_at=now)
            .on_conflict_do_nothing(constraint="suppressions_tenant_address_reason_key")
            .returning(*suppressions.c)
        )
    ).first()
    if created is not None:
        return created
    return (await conn.execute(select(suppressions).where(*(suppressions.c[k] == v for k, v in values.items())))).one()


async def find_suppressions(conn: AsyncConnection, *, tenant_id: str, addresses: Sequence[str]) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(suppressions)
            .where(suppressions.c.tenant_id == tenant_id, suppressions.c.address.in_(addresses))
            .order_by(suppressions.c.address, suppressions.c.created_at)
        )
    ).all()


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
    """The updated row, or None when the tenant has no such identity."""
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


async def remove_suppressions(conn: AsyncConnection, *, tenant_id: str, address: str, reason: str | None) -> int:
    """Delete an address's suppressions, of one reason or (None) all; how many went."""
    query = delete(suppressions).where(suppressions.c.tenant_id == tenant_id, suppressions.c.address == address)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    return len((await conn.execute(query.returning(suppressions.c.id))).all())


async def lift_suppressions(
    conn: AsyncConnection, *, lifts: Sequence[tuple[str, str, str, datetime]]
) -> list[tuple[str, str]]:
    """Delete, per (tenant, address, reason, until), that suppression if it began at or before
    `until`; the (tenant, address) pairs that lost one."""
    if not lifts:
        return []
    rows = await (await bulk.driver(conn)).fetch(
        "DELETE FROM dispatcher.suppressions s USING unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) "
        "AS l(tenant_id, address, reason, until) WHERE s.tenant_id = l.tenant_id AND s.address = l.address "
        "AND s.reason = l.reason AND s.created_at <= l.until RETURNING s.tenant_id, s.address",
        *(list(column) for column in zip(*sorted(lifts), strict=True)),
    )
    return [(row["tenant_id"], row["address"]) for row in rows]


async def list_suppressions(
    conn: AsyncConnection, *, tenant_id: str, reason: str | None, after: tuple[datetime, int] | None, limit: int
) -> Sequence[Row[Any]]:
    """A tenant's suppressions in (created_at, id) order, after a page's last key."""
    query = select(suppressions).where(suppressions.c.tenant_id == tenant_id)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    if after is not None:
        query = query.where(tuple_(suppressions.c.created_at, suppressions.c.id) > tuple_(*after))
    return (await conn.execute(query.order_by(suppressions.c.created_at, suppressions.c.id).limit(limit))).all()


async def import_suppressions(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    items: Sequence[tuple[str, str]],
    source: str,
    now: datetime,
) -> int:
    """Insert (address, reason) pairs in one statement, skipping those already there; how many
    were inserted. The pairs travel as two arrays, so the statement has a handful of parameters
    however many rows it carries."""
    if not items:
        return 0
    pairs = (
        func.unnest(
            bindparam("addresses", [a for a, _ in items], type_=ARRAY(Text)),
            bindparam("reasons", [r for _, r in items], type_=ARRAY(Text)),
        )
        .table_valued("address", "reason")
        .render_derived()
    )
    rows = select(
        literal(tenant_id, Text),
        pairs.c.address,
        pairs.c.reason,
        literal(source, Text),
        literal(now, DateTime(timezone=True)),
    ).select_from(pairs)
    query = (
        insert(suppressions)
        .from_select(["tenant_id", "address", "reason", "source", "created_at"], rows)
        .on_conflict_do_nothing(constraint="suppressions_tenant_address_reason_key")
        .returning(suppressions.c.id)
    )
    return len((await conn.execute(query)).all())


async def get_rate_limit(conn: AsyncConnection, *, tenant_id: str, channel: str) -> dict[str, int]:
    """The tenant's limits on the channel by window name; 0 (none) where unset."""
    return (await rate_limits_for(conn, keys={(tenant_id, channel)}))[(tenant_id, channel)]


async def set_rate_limit(
    conn: AsyncConnection, *, tenant_id: str, channel: str, limits: dict[str, int], now: datetime
) -> None:
    values = {"per_minute": limits["minute"], "per_hour": limits["hour"], "per_day": limits["day"]}
    await conn.execute(
        insert(rate_limits)
        .values(tenant_id=tenant_id, channel=channel, updated_at=now, **values)
        .on_conflict_do_update(constraint="rate_limits_pkey", set_={**values, "updated_at": now})
    )


_RATE_LIMITS = (
    "SELECT r.tenant_id, r.channel, r.per_minute, r.per_hour, r.per_day FROM dispatcher.rate_limits AS r "
    "JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, channel) "
    "ON r.tenant_id = v.tenant_id AND r.channel = v.channel"
)


async def rate_limits_for(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Limits by (tenant_id, channel) and window name; 0 (none) where unset."""
    limits = {key: {"minute": 0, "hour": 0, "day": 0} for key in keys}
    if not keys:
        return limits
    for row in await _fetch_by_pairs(conn, _RATE_LIMITS, keys):
        limits[(row["tenant_id"], row["channel"])] = {
            "minute": row["per_minute"] or 0,
            "hour": row["per_hour"] or 0,
            "day": row["per_day"] or 0,
        }
    return limits


# (scope, window, window_start): one budget's counter.
CounterKey = tuple[str, str, datetime]

_CREATE_COUNTERS = (
    'INSERT INTO dispatcher.rate_counters (scope, "window", window_start, used) '
    "SELECT scope, w, ws, 0 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(scope, w, ws) "
    "ON CONFLICT ON CONSTRAINT rate_counters_pkey DO NOTHING"
)
_LOCK_COUNTERS = (
    'SELECT c.scope, c."window", c.window_start, c.used FROM dispatcher.rate_counters AS c '
    "JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(scope, w, ws) "
    'ON c.scope = v.scope AND c."window" = v.w AND c.window_start = v.ws '
    'ORDER BY c.scope, c."window", c.window_start FOR UPDATE OF c'
)
_SET_COUNTERS = (
    "UPDATE dispatcher.rate_counters AS c SET used = v.used "
    "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS v(scope, w, ws, used) "
    'WHERE c.scope = v.scope AND c."window" = v.w AND c.window_start = v.ws'
)


async def lock_counters(conn: AsyncConnection, *, keys: Collection[CounterKey]) -> dict[CounterKey, int]:
    """Sends used so far in each budget window, the counters locked until the transaction
    ends (in key order, so replicas admitting at once queue up instead of deadlocking)."""
    ordered = sorted(keys)
    arrays = [[k[0] for k in ordered], [k[1] for k in ordered], [k[2] for k in ordered]]
    db = await bulk.driver(conn)
    await db.execute(_CREATE_COUNTERS, *arrays)
    rows = await db.fetch(_LOCK_COUNTERS, *arrays)
    return {(row["scope"], row["window"], row["window_start"]): row["used"] for row in rows}


async def set_counters(conn: AsyncConnection, *, used: dict[CounterKey, int]) -> None:
    """Write back counters taken with `lock_counters` in the same transaction."""
    ordered = sorted(used)
    await (await bulk.driver(conn)).execute(
        _SET_COUNTERS,
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        [k[2] for k in ordered],
        [used[k] for k in ordered],
    )


async def prune_counters(conn: AsyncConnection, *, ended_before: datetime, limit: int) -> int:
    """Delete up to `limit` counters of windows that started before `ended_before`; how many."""
    stale = (
        select(rate_counters.c.scope, rate_counters.c.window, rate_counters.c.window_start)
        .where(rate_counters.c.window_start < ended_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    query = delete(rate_counters).where(
        tuple_(rate_counters.c.scope, rate_counters.c.window, rate_counters.c.window_start).in_(stale)
    )
    return int((await conn.execute(query)).rowcount)


async def add_suppressions(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert suppressions in one statement; where (tenant, address, reason) is suppressed
    already, the first one is kept. Rows go in key order, so two writers cannot deadlock."""
    ordered = sorted(rows, key=lambda r: (r["tenant_id"], r["address"], r["reason"]))
    await bulk.insert_rows(
        conn,
        suppressions,
        ordered,
        suffix="ON CONFLICT ON CONSTRAINT suppressions_tenant_address_reason_key DO NOTHING",
    )


# -- reply forwarding ------------------------------------------------------------------------


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


async def message_tenant(conn: AsyncConnection, *, message_id: str) -> str | None:
    """The tenant whose message this is (message ids are unique across tenants), or None."""
    return await conn.scalar(select(messages.c.tenant_id).where(messages.c.message_id == message_id))


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
            forward_to=row.forward_to,
        )
    return message, identity, catch_all
