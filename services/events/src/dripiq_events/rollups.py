"""Rollups: each step's engagement counters (events.step_stats) and the tenant's analytics
across campaigns (events.tenant_stats, by day of sending and what a message was sent as, and
events.tenant_stats_weekly, the same by the ISO week of that day), kept as events are stored.

A metric counted once per message (a unique open, the first click) is counted only the first
time its message reaches it, which outbound_messages.seen records bit by bit; the others count
every event. Counters are added on the caller's connection, in the transaction that stores the
events they count, so a redelivery counts nothing twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_events import repository
from dripiq_events.domain import AUTO_REPLY, REPLY, UNSUBSCRIBE, Cohort, NewEvent, SentMessage

# Metrics counted once per message, each with the bit of outbound_messages.seen that records the
# message already counted in it.
UNIQUE_METRICS = {
    "delivered": 1 << 0,
    "unique_human_opens": 1 << 1,
    "machine_opens": 1 << 2,
    "unique_clicks": 1 << 3,
    "replies": 1 << 4,
    "auto_replies": 1 << 5,
    "bounces": 1 << 6,
    "unsubscribes": 1 << 7,
    "spam_reports": 1 << 8,
}
SENT_METRIC = "sent"
# By event type: (metrics counted once per message, metrics counted per event).
_ROLLUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "delivered": (("delivered",), ()),
    "click": (("unique_clicks",), ("click_events",)),
    REPLY: (("replies",), ()),
    AUTO_REPLY: (("auto_replies",), ()),
    "bounce": (("bounces",), ()),
    UNSUBSCRIBE: (("unsubscribes",), ()),
    "group_unsubscribe": (("unsubscribes",), ()),
    "spamreport": (("spam_reports",), ()),
}


def rollup_metrics(event_type: str, machine_open: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(metrics an event counts once for its message, metrics it counts as an event)."""
    if event_type == "open":
        return (("machine_opens",), ()) if machine_open else (("unique_human_opens",), ("human_open_events",))
    return _ROLLUPS.get(event_type, ((), ()))


def week_of(day: date) -> date:
    """The Monday of the ISO week a day of sending falls in: the week its message counts in."""
    return day - timedelta(days=day.weekday())


class TenantIncrements:
    """What one transaction adds to the tenant's analytics, by key and metric."""

    def __init__(self) -> None:
        self.by_key: dict[repository.TenantRollupKey, Counter[str]] = {}

    def add(self, tenant_id: str, step_index: int, cohort: Cohort | None, metric: str) -> None:
        # A message kept before those analytics began has no cohort: its send was never
        # counted there, so neither is its engagement.
        if cohort is not None:
            key = repository.tenant_rollup_key(tenant_id, step_index, cohort)
            self.by_key.setdefault(key, Counter())[metric] += 1

    def by_week(self) -> dict[repository.TenantRollupKey, Counter[str]]:
        """The same increments keyed by week (the Monday in the day's place)."""
        weeks: dict[repository.TenantRollupKey, Counter[str]] = {}
        for (tenant_id, day, product, sender, strategist, step, variant, channel), counts in self.by_key.items():
            key = (tenant_id, week_of(day), product, sender, strategist, step, variant, channel)
            weeks.setdefault(key, Counter()).update(counts)
        return weeks


async def _add_to_tenant_stats(conn: AsyncConnection, tenant: TenantIncrements) -> None:
    # Both tiers in one transaction, days first then weeks, each in key order: a redelivery
    # counts in neither, and concurrent writers queue on shared rows in one order.
    await repository.add_to_tenant_stats(conn, increments=tenant.by_key)
    await repository.add_to_tenant_stats_weekly(conn, increments=tenant.by_week())


async def count_sent(conn: AsyncConnection, first_time: Sequence[SentMessage]) -> None:
    """Count messages kept for the first time as sent, each in its step and its tenant's analytics."""
    increments: Counter[repository.RollupKey] = Counter(
        (s.outbound.tenant_id, s.outbound.campaign_id, s.outbound.step_index, SENT_METRIC) for s in first_time
    )
    tenant = TenantIncrements()
    for s in first_time:
        tenant.add(s.outbound.tenant_id, s.outbound.step_index, s.outbound.cohort, SENT_METRIC)
    await repository.add_to_rollups(conn, increments=increments)
    await _add_to_tenant_stats(conn, tenant)


async def roll_up(conn: AsyncConnection, rows: Sequence[NewEvent]) -> None:
    """Count newly stored events into their steps' rollups, each once-per-message metric
    only the first time its message reaches it (tracked in outbound_messages.seen)."""
    increments: Counter[repository.RollupKey] = Counter()
    tenant = TenantIncrements()
    wanted: dict[str, int] = {}
    step_of: dict[str, tuple[str, str, int]] = {}
    for row in rows:
        if not (row.tenant_id and row.campaign_id and row.message_id and row.step_index is not None):
            continue
        step = (row.tenant_id, row.campaign_id, row.step_index)
        unique, per_event = rollup_metrics(row.event_type, row.machine_open)
        for metric in per_event:
            increments[(*step, metric)] += 1
            tenant.add(row.tenant_id, row.step_index, row.cohort, metric)
        if unique:
            bits = wanted.get(row.message_id, 0)
            for metric in unique:
                bits |= UNIQUE_METRICS[metric]
            wanted[row.message_id] = bits
            step_of[row.message_id] = step
    added = await repository.add_seen(conn, wanted=wanted)
    for message_id, new in added.items():
        for metric, bit in UNIQUE_METRICS.items():
            if new.bits & bit:
                increments[(*step_of[message_id], metric)] += 1
                # Where our copy of the message says, which the event may not have known.
                tenant.add(new.tenant_id, new.step_index, new.cohort, metric)
    await repository.add_to_rollups(conn, increments=increments)
    await _add_to_tenant_stats(conn, tenant)


# Event types with metrics counted per event (rollup_metrics): what a variant's rows count
# from the stored events, since step_stats keeps no variant.
_PER_EVENT_TYPES = ("open", "click")


async def variant_counts(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str
) -> dict[int, dict[str, Counter[str]]]:
    """A campaign's counters by step index, variant and metric, for the messages sent as an A/B
    variant: counted from our copies of them (each was counted sent once; `seen` has the
    once-per-message metrics it reached) and their stored events, so they add up to the step's
    rollups while the messages and events are kept."""
    messages = await repository.variant_messages(conn, tenant_id=tenant_id, campaign_id=campaign_id)
    steps: dict[int, dict[str, Counter[str]]] = {}
    where: dict[str, Counter[str]] = {}
    for row in messages:
        counts = steps.setdefault(row.step_index, {}).setdefault(row.variant, Counter())
        where[row.message_id] = counts
        counts[SENT_METRIC] += 1
        for metric, bit in UNIQUE_METRICS.items():
            if row.seen & bit:
                counts[metric] += 1
    events = await repository.event_counts(
        conn, tenant_id=tenant_id, campaign_id=campaign_id, message_ids=sorted(where), event_types=_PER_EVENT_TYPES
    )
    for row in events:
        for metric in rollup_metrics(row.event_type, row.machine_open)[1]:
            where[row.message_id][metric] += row.n
    return steps
