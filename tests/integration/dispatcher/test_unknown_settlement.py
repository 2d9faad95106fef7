"""An `unknown` send is settled by the provider's own evidence, or fails after a deadline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from test_dispatch import T0, command, identity, new_dispatcher, outcomes, received, stored

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common.clock import ManualClock
from dripiq_dispatcher import domain, repository
from dripiq_dispatcher.models import messages
from dripiq_dispatcher.service import Suppressions


async def parked_unknown(engine, tenant_id):  # type: ignore[no-untyped-def]
    """A send whose provider call may have gone out: a delivery found it `sending`."""
    cmd = command(tenant_id, await identity(engine, tenant_id))
    async with engine.begin() as conn:
        await repository.insert_messages(conn, batch=[domain.new_message(cmd)], now=T0)
        await conn.execute(
            update(messages)
            .where(messages.c.message_id == cmd.message_id)
            .values(status="unknown", attempt_count=1, updated_at=T0, rfc_message_id="<m@x>")
        )
    return cmd


def event(tenant_id: str, message_id: str, event_type: str = "delivered") -> bytes:
    """One fact in an EngagementBatch, as it travels."""
    fact = events_pb2.EngagementEvent(
        tenant_id=tenant_id,
        event_id="e1",
        message_id=message_id,
        campaign_id="camp-1",
        step_index=1,
        event_type=event_type,
        email="ada@example.com",
        provider_message_id="SGID123",
    )
    fact.occurred_at.FromDatetime(T0 + timedelta(seconds=5))
    return events_pb2.EngagementBatch(events=[fact]).SerializeToString()


async def test_a_provider_event_proves_an_unknown_send_went_out(engine, fake, tenant_id):
    dispatcher = new_dispatcher(engine, sender=None)
    cmd = await parked_unknown(engine, tenant_id)

    await dispatcher.settle_unknown(event(tenant_id, cmd.message_id))
    await dispatcher.settle_unknown(event(tenant_id, cmd.message_id))  # redelivered: nothing more

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider_message_id) == ("sent", "SGID123")
    assert row.sent_at == T0 + timedelta(seconds=5)
    [fact] = await outcomes(engine, tenant_id)
    assert (fact.kind, fact.provider_message_id, fact.rfc_message_id) == (
        messages_pb2.OUTCOME_KIND_SENT,
        "SGID123",
        "<m@x>",
    )
    assert received(fake, cmd.message_id) == [], "settling never calls the provider"


async def test_an_event_from_another_tenant_settles_nothing(engine, tenant_id):
    dispatcher = new_dispatcher(engine, sender=None)
    cmd = await parked_unknown(engine, tenant_id)
    await dispatcher.settle_unknown(event("someone-else", cmd.message_id))
    assert (await stored(engine, cmd.message_id)).status == "unknown"


async def test_without_evidence_an_unknown_send_fails_after_the_deadline(engine, tenant_id):
    cmd = await parked_unknown(engine, tenant_id)
    early = new_dispatcher(engine, sender=None)
    early.clock = ManualClock(T0 + timedelta(minutes=30))
    await early.fail_overdue_unknown(deadline_seconds=3600)
    assert (await stored(engine, cmd.message_id)).status == "unknown"

    late = new_dispatcher(engine, sender=None)
    late.clock = ManualClock(T0 + timedelta(hours=2))
    while await late.fail_overdue_unknown(deadline_seconds=3600):
        pass
    row = await stored(engine, cmd.message_id)
    assert row.status == "failed" and "review before resending" in row.last_error
    [fact] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    assert fact.kind == messages_pb2.OUTCOME_KIND_FAILED


def fact_of(data: bytes) -> events_pb2.EngagementEvent:
    [fact] = events_pb2.EngagementBatch.FromString(data).events
    return fact


async def test_a_batch_of_engagement_settles_its_unknown_sends_and_suppresses_in_one_go(engine, tenant_id):
    dispatcher = new_dispatcher(engine, sender=None)
    parked = [await parked_unknown(engine, tenant_id) for _ in range(2)]
    batch = [
        fact_of(event(tenant_id, parked[0].message_id, "open")),
        fact_of(event(tenant_id, "not-ours")),
        fact_of(event("someone-else", parked[1].message_id)),
        fact_of(event(tenant_id, parked[1].message_id, "spamreport")),
    ]
    for fact in batch:
        fact.provider_message_id = f"SG-{fact.message_id}-{fact.event_type}"

    assert await dispatcher.settle_unknown_events(batch) == 2
    await Suppressions(engine, ManualClock(T0)).handle_engagements(batch)

    assert [(await stored(engine, c.message_id)).status for c in parked] == ["sent", "sent"]
    assert sorted(f.message_id for f in await outcomes(engine, tenant_id)) == sorted(c.message_id for c in parked)
    [suppressed] = await Suppressions(engine, ManualClock(T0)).check(tenant_id, ["ada@example.com"])
    assert suppressed.reason == "spamreport"
    assert await dispatcher.settle_unknown_events(batch) == 0  # redelivered: nothing more
