"""Engagement facts from the events service turned into address suppressions: lasting refusals
(unsubscribes, spam reports, hard bounces, replies asking to be taken off) suppress, and a
group resubscribe lifts only an earlier group unsubscribe. On real PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from dispatch_support import T0
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common.clock import ManualClock
from dripiq_dispatcher.models import suppressions
from dripiq_dispatcher.suppressions import Suppressions


def engagement(
    tenant_id: str, event_type: str, email: str, reason: str = "", reply_class: str = ""
) -> events_pb2.EngagementEvent:
    return events_pb2.EngagementEvent(
        tenant_id=tenant_id,
        event_id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        event_type=event_type,
        email=email,
        reason=reason,
        reply_class=reply_class,
    )


async def suppressed(engine: AsyncEngine, tenant_id: str) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(suppressions.c.address, suppressions.c.reason)
            .where(suppressions.c.tenant_id == tenant_id)
            .order_by(suppressions.c.address, suppressions.c.reason)
        )
        return [tuple(r) for r in rows]


async def test_engagement_turns_lasting_refusals_into_suppressions(engine, tenant_id):
    handler = Suppressions(engine, ManualClock(T0))

    facts = [
        engagement(tenant_id, "unsubscribe", "Una@Example.com"),
        engagement(tenant_id, "unsubscribe", "una@example.com"),  # the same fact again
        engagement(tenant_id, "group_unsubscribe", "una@example.com"),
        engagement(tenant_id, "spamreport", "spam@example.com"),
        engagement(tenant_id, "bounce", "gone@example.com", reason="bounce"),
        engagement(tenant_id, "bounce", "busy@example.com", reason="blocked"),
        engagement(tenant_id, "open", "reader@example.com"),
        engagement(tenant_id, "delivered", "reader@example.com"),
        # "Please take me off your list", in words: suppressed; an interested reply is not.
        engagement(tenant_id, "reply", "Done@Example.com", reply_class="unsubscribe_request"),
        engagement(tenant_id, "reply", "keen@example.com", reply_class="interested"),
        # Without an address it can suppress nothing; the facts batched with it still count.
        engagement(tenant_id, "unsubscribe", ""),
    ]
    # One batch as the events service publishes them, then each fact alone again.
    await handler.handle_engagement(events_pb2.EngagementBatch(events=facts).SerializeToString())
    for fact in facts:
        await handler.handle_engagement(events_pb2.EngagementBatch(events=[fact]).SerializeToString())

    assert await suppressed(engine, tenant_id) == [
        ("done@example.com", "unsubscribe_request"),
        ("gone@example.com", "bounce"),
        ("spam@example.com", "spamreport"),
        ("una@example.com", "group_unsubscribe"),
        ("una@example.com", "unsubscribe"),
    ]
    assert await suppressed(engine, f"{tenant_id}-other") == []


def at(fact: events_pb2.EngagementEvent, when: datetime) -> events_pb2.EngagementEvent:
    fact.occurred_at.FromDatetime(when)
    return fact


async def test_a_group_resubscribe_lifts_only_an_earlier_group_unsubscribe(engine, tenant_id):
    handler = Suppressions(engine, ManualClock(T0))
    hour = timedelta(hours=1)
    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_unsubscribe", "back@example.com"), T0),
            at(engagement(tenant_id, "group_unsubscribe", "later@example.com"), T0 + 2 * hour),
            at(engagement(tenant_id, "group_unsubscribe", "also@example.com"), T0),
            at(engagement(tenant_id, "unsubscribe", "also@example.com"), T0),
        ]
    )

    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_resubscribe", "Back@Example.com"), T0 + hour),
            # Resubscribed before it unsubscribed again: the later unsubscribe stands.
            at(engagement(tenant_id, "group_resubscribe", "later@example.com"), T0 + hour),
            # A group resubscribe takes back the group unsubscribe, not a plain unsubscribe.
            at(engagement(tenant_id, "group_resubscribe", "also@example.com"), T0 + hour),
            at(engagement(tenant_id, "group_resubscribe", "never@example.com"), T0 + hour),
        ]
    )

    assert await suppressed(engine, tenant_id) == [
        ("also@example.com", "unsubscribe"),
        ("later@example.com", "group_unsubscribe"),
    ]
    # An unsubscribe and a later resubscribe delivered together end resubscribed.
    await handler.handle_engagements(
        [
            at(engagement(tenant_id, "group_resubscribe", "both@example.com"), T0 + hour),
            at(engagement(tenant_id, "group_unsubscribe", "both@example.com"), T0),
        ]
    )
    assert ("both@example.com", "group_unsubscribe") not in await suppressed(engine, tenant_id)
