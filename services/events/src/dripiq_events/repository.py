"""Storage of the `events` schema. Keyword-only functions on the caller's connection, so the
caller decides what commits together (a stored event and its outbox row do)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_events.domain import Cohort, NewEvent, Outbound, SentMessage
from dripiq_events.models import (
    TENANT_STATS_METRICS,
    ai_generations,
    inbound_emails,
    message_events,
    outbound_messages,
    step_stats,
    tenant_stats,
    tenant_stats_weekly,
)

_OUTBOUND_FACTS = (
    "campaign_id",
    "step_index",
    "contact_id",
    "to_email",
    "subject",
    "provider_message_id",
    "rfc_message_id",
    "sent_at",
)


async def upsert_outbound(conn: AsyncConnection, *, sent: Sequence[SentMessage]) -> list[SentMessage]:
    """Keep sent messages in one statement; the ones not kept before. A later outcome for the
    same message (e.g. a resend after "unknown") carries newer facts; within one call, the last
    one wins."""
    latest = {s.outbound.message_id: s for s in sent}
    rows = [
        {
            "message_id": s.outbound.message_id,
            "tenant_id": s.outbound.tenant_id,
            "campaign_id": s.outbound.campaign_id,
            "step_index": s.outbound.step_index,
            "contact_id": s.outbound.contact_id,
            "to_email": s.outbound.to_email,
            "subject": s.subject,
            "provider_message_id": s.provider_message_id,
            "rfc_message_id": s.rfc_message_id,
            "sent_at": s.sent_at,
            # Not among the facts a later outcome updates: the message stays where its send
            # was counted.
            **_cohort_columns(s.outbound.cohort),
        }
        for s in latest.values()
    ]
    updates = ", ".join(f"{c} = excluded.{c}" for c in _OUTBOUND_FACTS)
    returned = await bulk.insert_rows(
        conn,
        outbound_messages,
        sorted(rows, key=lambda r: r["message_id"]),
        suffix=(
            f"ON CONFLICT (message_id) DO UPDATE SET {updates} "
            "WHERE outbound_messages.tenant_id = excluded.tenant_id "
            # xmax is 0 on a row this statement inserted, not on one it updated.
            "RETURNING message_id, (xmax = 0) AS inserted"
        ),
    )
    inserted = {row["message_id"] for row in returned if row["inserted"]}
    return [s for s in latest.values() if s.outbound.message_id in inserted]


def _cohort_columns(cohort: Cohort | None) -> dict[str, Any]:
    if cohort is None:
        return {
            "product_id": "",
            "sender_identity_id": "",
            "strategist": "",
            "variant": "",
            "channel": "",
            "stats_day": None,
        }
    return {
        "product_id": cohort.product_id,
        "sender_identity_id": cohort.sender_identity_id,
        "strategist": cohort.strategist,
        "variant": cohort.variant,
        "channel": cohort.channel,
        "stats_day": cohort.day,
    }


def _cohort(row: Any) -> Cohort | None:
    if row["stats_day"] is None:
        return None
    return Cohort(
        day=row["stats_day"],
        product_id=row["product_id"],
        sender_identity_id=row["sender_identity_id"],
        strategist=row["strategist"],
        variant=row["variant"],
        channel=row["channel"],
    )


# Sets the wanted bits each known message lacks, and answers the bits it added, in one
# statement: in SET, `o.seen` is the value before the update, so `seen_added` records what this
# statement added and RETURNING reads it. Messages that have every wanted bit already are only
# read, not written or locked. The sorted list drives the join, so concurrent deliveries lock
# shared messages in message-id order; PostgreSQL does not promise that order for every plan,
# and were it to lock otherwise, a deadlock would fail one delivery for a redelivery, never
# count twice. A row changed by a concurrent delivery is re-read at its newest version before
# it is updated (READ COMMITTED), so a bit that delivery added is not counted twice.
# The rows are locked in message id order first: an UPDATE … FROM locks rows in whatever order
# its join reads them, so two batches sharing messages could each hold one the other waits for.
_ADD_SEEN = """
WITH w AS (SELECT * FROM unnest($1::text[], $2::integer[]) AS u(message_id, bits)),
locked AS MATERIALIZED (
    SELECT o.message_id FROM events.outbound_messages o JOIN w USING (message_id)
    WHERE o.seen | w.bits <> o.seen ORDER BY o.message_id FOR UPDATE OF o
)
UPDATE events.outbound_messages o SET seen = o.seen | w.bits, seen_added = w.bits & ~o.seen
FROM w JOIN locked USING (message_id)
WHERE o.message_id = w.message_id AND o.seen | w.bits <> o.seen
RETURNING o.message_id, o.seen_added, o.tenant_id, o.step_index, o.stats_day, o.product_id, o.sender_identity_id,
    o.strategist, o.variant, o.channel
"""


@dataclass(frozen=True)
class SeenAdded:
    """The rollup bits a message newly reached, and where its tenant's analytics count it."""

    bits: int
    tenant_id: str
    step_index: int
    cohort: Cohort | None


async def add_seen(conn: AsyncConnection, *, wanted: dict[str, int]) -> dict[str, SeenAdded]:
    """Record the rollup bits each message reached; the bits newly added, for the known
    messages that reached one they lacked (the others, and messages we never heard were sent,
    are absent). Those rows stay locked until commit, so a concurrent batch counts a first
    time only once."""
    if not wanted:
        return {}
    ids = sorted(wanted)
    rows = await (await bulk.driver(conn)).fetch(_ADD_SEEN, ids, [wanted[m] for m in ids])
    return {
        row["message_id"]: SeenAdded(row["seen_added"], row["tenant_id"], row["step_index"], _cohort(row))
        for row in rows
    }


# (tenant_id, campaign_id, step_index, metric)
RollupKey = tuple[str, str, int, str]


async def add_to_rollups(conn: AsyncConnection, *, increments: dict[RollupKey, int]) -> None:
    """Add to the step counters in one statement, in key order (concurrent writers queue up
    on the same rows instead of deadlocking)."""
    if not increments:
        return
    rows = [
        {"tenant_id": t, "campaign_id": c, "step_index": i, "metric": m, "value": increments[(t, c, i, m)]}
        for t, c, i, m in sorted(increments)
    ]
    await bulk.insert_rows(
        conn,
        step_stats,
        rows,
        suffix="ON CONFLICT ON CONSTRAINT step_stats_pkey DO UPDATE SET value = step_stats.value + excluded.value",
    )


# (tenant_id, day, product_id, sender_identity_id, strategist, step_index, variant, channel)
TenantRollupKey = tuple[str, date, str, str, str, int, str, str]


def tenant_rollup_key(tenant_id: str, step_index: int, cohort: Cohort) -> TenantRollupKey:
    return (
        tenant_id,
        cohort.day,
        cohort.product_id,
        cohort.sender_identity_id,
        cohort.strategist,
        step_index,
        cohort.variant,
        cohort.channel,
    )


_TENANT_KEY = ("tenant_id", "day", "product_id", "sender_identity_id", "strategist", "step_index", "variant", "channel")
_TENANT_WEEK_KEY = ("tenant_id", "week", *_TENANT_KEY[2:])


def _add_counters(table: Table) -> str:
    return f"ON CONFLICT ON CONSTRAINT {table.name}_pkey DO UPDATE SET " + ", ".join(
        f"{m} = {table.name}.{m} + excluded.{m}" for m in TENANT_STATS_METRICS
    )


async def _add_to(
    conn: AsyncConnection, table: Table, names: Sequence[str], increments: dict[TenantRollupKey, Counter[str]]
) -> None:
    if not increments:
        return
    rows = [
        {**dict(zip(names, key, strict=True)), **{m: increments[key][m] for m in TENANT_STATS_METRICS}}
        for key in sorted(increments)
    ]
    await bulk.insert_rows(conn, table, rows, suffix=_add_counters(table))


async def add_to_tenant_stats(conn: AsyncConnection, *, increments: dict[TenantRollupKey, Counter[str]]) -> None:
    """Add to the tenant's daily analytics counters in one statement, in key order (as step_stats)."""
    await _add_to(conn, tenant_stats, _TENANT_KEY, increments)


async def add_to_tenant_stats_weekly(conn: AsyncConnection, *, increments: dict[TenantRollupKey, Counter[str]]) -> None:
    """Add to the tenant's weekly counters (keys with the week's Monday in the day's place)."""
    await _add_to(conn, tenant_stats_weekly, _TENANT_WEEK_KEY, increments)


def _stats_rows(
    table: Table,
    period: str,
    spans: Sequence[tuple[date, date]],
    *,
    tenant_id: str,
    group_by: Sequence[str],
    filters: Mapping[str, Sequence[Any]],
) -> Select[Any]:
    """One tier's rows of the tenant in the spans (both ends included), with the grouped-by keys
    and the counters."""
    column = table.c[period]
    query = select(*(table.c[name] for name in group_by), *(table.c[m] for m in TENANT_STATS_METRICS)).where(
        table.c.tenant_id == tenant_id, or_(*(column.between(first, last) for first, last in spans))
    )
    for name, values in filters.items():
        query = query.where(table.c[name].in_(list(values)))
    return query


async def sum_tenant_stats(conn: AsyncConnection, *, query: Select[Any]) -> Sequence[Any]:
    """The groups a tenant_stats_query asks for."""
    return (await conn.execute(query)).mappings().all()


def tenant_stats_query(
    *,
    tenant_id: str,
    days: Sequence[tuple[date, date]],
    weeks: tuple[date, date] | None,
    group_by: Sequence[str],
    filters: Mapping[str, Sequence[Any]],
    after: Sequence[Any] | None,
    limit: int,
) -> Select[Any]:
    """The tenant's counters summed per group over the daily rows of `days` and the weekly rows
    of the weeks whose Mondays are in `weeks` (each span both ends included; the caller makes
    them cover each day once), in group order, the groups after `after` (the last group of the
    previous page) only; a group whose messages counted nothing is absent."""

    def rows_of(table: Table, period: str, spans: Sequence[tuple[date, date]]) -> Select[Any]:
        return _stats_rows(table, period, spans, tenant_id=tenant_id, group_by=group_by, filters=filters)

    parts = [rows_of(tenant_stats, "day", days)] if days else []
    if weeks is not None:
        parts.append(rows_of(tenant_stats_weekly, "week", [weeks]))
    rows = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("rows")
    keys = [rows.c[name] for name in group_by]
    # sum(bigint) is numeric, which the driver decodes as a Decimal per value (6,000 for a page of
    # 500 groups); a counter of messages and events never nears bigint's limit.
    sums = [cast(func.coalesce(func.sum(rows.c[m]), 0), BigInteger).label(m) for m in TENANT_STATS_METRICS]
    query = select(*keys, *sums)
    if after is not None:
        query = query.where(
            tuple_(*keys) > tuple_(*(literal(v, type_=k.type) for v, k in zip(after, keys, strict=True)))
        )
    # Without groups, the one row of sums over no rows at all is not a group.
    query = query.having(func.count() > 0)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    return query.limit(limit)


async def rollups(conn: AsyncConnection, *, tenant_id: str, campaign_id: str) -> dict[int, dict[str, int]]:
    """A campaign's counters by step index and metric."""
    rows = await conn.execute(
        select(step_stats.c.step_index, step_stats.c.metric, step_stats.c.value).where(
            step_stats.c.tenant_id == tenant_id, step_stats.c.campaign_id == campaign_id
        )
    )
    steps: dict[int, dict[str, int]] = {}
    for step_index, metric, value in rows:
        steps.setdefault(step_index, {})[metric] = value
    return steps


async def variant_messages(conn: AsyncConnection, *, tenant_id: str, campaign_id: str) -> list[Any]:
    """The campaign's sent messages that went out as an A/B variant: step, variant and the
    once-per-message metrics they reached (outbound_messages.seen)."""
    rows = await conn.execute(
        select(
            outbound_messages.c.message_id,
            outbound_messages.c.step_index,
            outbound_messages.c.variant,
            outbound_messages.c.seen,
        ).where(
            outbound_messages.c.tenant_id == tenant_id,
            outbound_messages.c.campaign_id == campaign_id,
            outbound_messages.c.variant != "",
        )
    )
    return list(rows)


async def event_counts(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str, message_ids: Sequence[str], event_types: Sequence[str]
) -> list[Any]:
    """How many events of each type (and machine or not) each of the messages has stored."""
    if not message_ids:
        return []
    count = func.count().label("n")
    rows = await conn.execute(
        select(message_events.c.message_id, message_events.c.event_type, message_events.c.machine_open, count)
        .where(
            message_events.c.tenant_id == tenant_id,
            message_events.c.campaign_id == campaign_id,
            message_events.c.message_id.in_(message_ids),
            message_events.c.event_type.in_(event_types),
        )
        .group_by(message_events.c.message_id, message_events.c.event_type, message_events.c.machine_open)
    )
    return list(rows)


_OUTBOUND_SELECT = (
    "SELECT message_id, tenant_id, campaign_id, step_index, contact_id, to_email, provider_message_id, "
    "rfc_message_id, stats_day, product_id, sender_identity_id, strategist, variant, channel "
    "FROM events.outbound_messages WHERE {column} = ANY($1::text[])"
)


async def _outbound_by(conn: AsyncConnection, column: str, ids: Iterable[str]) -> dict[str, Outbound]:
    """Known sent messages by one of their ids (one array parameter, however many ids)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await (await bulk.driver(conn)).fetch(_OUTBOUND_SELECT.format(column=column), wanted)
    return {
        row[column]: Outbound(
            message_id=row["message_id"],
            tenant_id=row["tenant_id"],
            campaign_id=row["campaign_id"],
            step_index=row["step_index"],
            contact_id=row["contact_id"],
            to_email=row["to_email"],
            cohort=_cohort(row),
        )
        for row in rows
    }


async def outbound_by_message_ids(conn: AsyncConnection, *, message_ids: Iterable[str]) -> dict[str, Outbound]:
    return await _outbound_by(conn, "message_id", message_ids)


async def outbound_by_provider_ids(
    conn: AsyncConnection, *, provider_message_ids: Iterable[str]
) -> dict[str, Outbound]:
    return await _outbound_by(conn, "provider_message_id", provider_message_ids)


async def outbound_by_rfc_ids(conn: AsyncConnection, *, rfc_message_ids: Iterable[str]) -> dict[str, Outbound]:
    return await _outbound_by(conn, "rfc_message_id", rfc_message_ids)


def _event_row(event: NewEvent, received_at: datetime) -> dict[str, Any]:
    return {
        "tenant_id": event.tenant_id,
        "provider": event.provider,
        "provider_event_id": event.provider_event_id,
        "event_type": event.event_type,
        "message_id": event.message_id,
        "campaign_id": event.campaign_id,
        "step_index": event.step_index,
        "contact_id": event.contact_id,
        "email": event.email,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "machine_open": event.machine_open,
        "url": event.url,
        "reason": event.reason,
        "matched": event.matched,
        "raw_event": event.raw_event,
    }


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits, which jsonb keeps as a numeric
        return json.dumps(value)


async def insert_events(
    conn: AsyncConnection, *, events: Sequence[NewEvent], received_at: datetime
) -> dict[tuple[str, str, datetime], int]:
    """Store the events not stored before; returns the new ones' ids by (provider, provider
    event id, occurred_at). Already stored ones (a replayed batch) are skipped by the unique key."""
    # One key order for every writer: two workers storing overlapping batches cannot deadlock.
    events = sorted(events, key=lambda e: (e.provider, e.provider_event_id, e.occurred_at))
    rows = [_event_row(e, received_at) for e in events]
    for row in rows:
        # asyncpg takes jsonb as its text; None stays SQL NULL.
        row["raw_event"] = None if row["raw_event"] is None else _json_text(row["raw_event"])
    returned = await bulk.insert_records(
        conn,
        message_events,
        rows,
        suffix="ON CONFLICT DO NOTHING RETURNING id, provider, provider_event_id, occurred_at",
    )
    return {(r["provider"], r["provider_event_id"], r["occurred_at"]): r["id"] for r in returned}


async def lock(conn: AsyncConnection, *, key: str) -> None:
    """Serialize concurrent handlers of one key until the transaction ends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def event_recorded(
    conn: AsyncConnection, *, tenant_id: str, message_id: str, provider: str, provider_event_id: str
) -> bool:
    """For events without a provider timestamp the partitioned unique key cannot dedupe
    (occurred_at differs per attempt); this looks for the event on the message instead."""
    found = await conn.scalar(
        select(message_events.c.id)
        .where(
            message_events.c.tenant_id == tenant_id,
            message_events.c.message_id == message_id,
            message_events.c.provider == provider,
            message_events.c.provider_event_id == provider_event_id,
        )
        .limit(1)
    )
    return found is not None


async def insert_inbound(conn: AsyncConnection, *, values: dict[str, Any]) -> int | None:
    """The new row's id, or None when this mail was stored before (same dedupe_key)."""
    stmt = (
        insert(inbound_emails)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[inbound_emails.c.dedupe_key])
        .returning(inbound_emails.c.id)
    )
    return await conn.scalar(stmt)


async def inbound_stored(conn: AsyncConnection, *, dedupe_key: str) -> bool:
    return await conn.scalar(select(inbound_emails.c.id).where(inbound_emails.c.dedupe_key == dedupe_key)) is not None


async def insert_generations(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(ai_generations), list(rows))


async def get_inbound(conn: AsyncConnection, *, tenant_id: str, inbound_id: int) -> Any:
    query = select(inbound_emails).where(inbound_emails.c.tenant_id == tenant_id, inbound_emails.c.id == inbound_id)
    return (await conn.execute(query)).first()


async def list_inbound(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str = "", before_id: int | None, limit: int
) -> Sequence[Any]:
    """A tenant's replies, newest first; one campaign's when campaign_id is given."""
    where = [inbound_emails.c.tenant_id == tenant_id]
    if campaign_id:
        where.append(inbound_emails.c.campaign_id == campaign_id)
    if before_id is not None:
        where.append(inbound_emails.c.id < before_id)
    query = select(inbound_emails).where(*where).order_by(inbound_emails.c.id.desc()).limit(limit)
    return (await conn.execute(query)).all()


async def delete_unmatched_inbound(conn: AsyncConnection, *, received_before: datetime, limit: int) -> int:
    """Delete the oldest unmatched inbound mail received before the cutoff, a batch at a time."""
    return await _delete_inbound(conn, ~inbound_emails.c.matched, received_before=received_before, limit=limit)


async def delete_inbound(conn: AsyncConnection, *, received_before: datetime, limit: int) -> int:
    """Delete the oldest inbound mail, matched or not, received before the cutoff, a batch at a time."""
    return await _delete_inbound(conn, true(), received_before=received_before, limit=limit)


async def _delete_inbound(
    conn: AsyncConnection, which: ColumnElement[bool], *, received_before: datetime, limit: int
) -> int:
    oldest = (
        select(inbound_emails.c.id)
        .where(which, inbound_emails.c.received_at < received_before)
        .order_by(inbound_emails.c.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await conn.execute(delete(inbound_emails).where(inbound_emails.c.id.in_(oldest)))
    return result.rowcount or 0


async def list_events(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    message_id: str = "",
    campaign_id: str = "",
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
    after_id: int,
    limit: int,
) -> Sequence[Any]:
    """A tenant's events in the order they were stored: one message's, one campaign's, or all
    of them; each narrowed to [occurred_after, occurred_before) when given."""
    where = [message_events.c.tenant_id == tenant_id, message_events.c.id > after_id]
    if message_id:
        where.append(message_events.c.message_id == message_id)
    if campaign_id:
        where.append(message_events.c.campaign_id == campaign_id)
    if occurred_after is not None:
        where.append(message_events.c.occurred_at >= occurred_after)
    if occurred_before is not None:
        where.append(message_events.c.occurred_at < occurred_before)
    return (await conn.execute(select(message_events).where(*where).order_by(message_events.c.id).limit(limit))).all()
