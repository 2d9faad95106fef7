"""An `unknown` send is settled by the provider's own evidence, or fails after a deadline."""

from __future__ import annotations

from datetime import timedelta

from dispatch_support import (
    T0,
    command,
    identity,
    new_dispatcher,
    new_sender,
    outcomes,
    received,
    stored,
    unconfirmed_of,
)
from sqlalchemy import delete, select, update

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_dispatcher import convert, repository
from dripiq_dispatcher.models import messages, outbox, provider_watermark
from dripiq_dispatcher.suppressions import Suppressions


async def parked_unknown(engine, tenant_id, **overrides):  # type: ignore[no-untyped-def]
    """A send whose provider call may have gone out: a delivery found it `sending`."""
    cmd = command(tenant_id, await identity(engine, tenant_id), **overrides)
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[convert.new_message(cmd)], now=T0)
        await conn.execute(
            update(messages)
            .where(messages.c.message_id == cmd.message_id)
            .values(
                status="unknown",
                attempt_count=1,
                updated_at=T0,
                rfc_message_id="<m@x>",
                unconfirmed_command=cmd.SerializeToString(),
            )
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

    await unconfirmed_of(dispatcher).settle_unknown(event(tenant_id, cmd.message_id))
    await unconfirmed_of(dispatcher).settle_unknown(event(tenant_id, cmd.message_id))  # redelivered: nothing more

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider_message_id, row.unconfirmed_command) == ("sent", "SGID123", None)
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
    await unconfirmed_of(dispatcher).settle_unknown(event("someone-else", cmd.message_id))
    assert (await stored(engine, cmd.message_id)).status == "unknown"


RESEND_AFTER = timedelta(minutes=5)
DEADLINE = timedelta(hours=2)


async def reported_until(engine, at):  # type: ignore[no-untyped-def]
    """SendGrid's delivery events have reached us up to `at` (and no further)."""
    async with engine.begin() as conn:
        await conn.execute(delete(provider_watermark))
        if at is not None:
            await repository.messages.advance_watermark(conn, newest_event_at=at)


async def resolve(engine, at):  # type: ignore[no-untyped-def]
    dispatcher = new_dispatcher(engine, sender=None)
    dispatcher.clock = ManualClock(at)
    while await unconfirmed_of(dispatcher).resolve_unknown(resend_after=RESEND_AFTER, deadline=DEADLINE):
        pass  # other tests' unknown sends too: the sweep is for the whole database


async def resent_commands(engine, tenant_id):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(select(outbox.c.payload).where(outbox.c.subject == Subjects.dispatcher_send(tenant_id)))
        ).all()
    return [messages_pb2.SendMessageCommand.FromString(p) for p in payloads]


async def test_an_unknown_send_sendgrid_reported_past_is_sent_again_as_it_was(engine, fake, tenant_id):
    cmd = await parked_unknown(
        engine,
        tenant_id,
        postal_address="1 Main St",
        thread_message_ids=["0b9b5a43-3b7e-4d55-9f6c-4a1f2f3e1a01"],
        tracking=messages_pb2.Tracking(opens=False, clicks=True),
        send_window=messages_pb2.ContactWindow(weekdays=[1, 2, 3], start_hour=8, end_hour=18, time_zone="Asia/Tokyo"),
    )
    # SendGrid's reports reach only 4 minutes past ours: too soon to say it never got it.
    await reported_until(engine, T0 + timedelta(minutes=4))
    await resolve(engine, T0 + timedelta(minutes=10))
    assert (await stored(engine, cmd.message_id)).status == "unknown"
    assert await resent_commands(engine, tenant_id) == []

    # They reach past ours by more than the margin, and none was ours: it never reached SendGrid.
    await reported_until(engine, T0 + timedelta(minutes=6))
    await resolve(engine, T0 + timedelta(minutes=10))

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.last_error.startswith("sent again: no provider event")) == ("queued", True)
    assert row.unconfirmed_command is None
    [again] = await resent_commands(engine, tenant_id)
    assert again == cmd, "the same command, byte for byte what the planner sent"
    # Through the send stream it is admitted like any command and sent once.
    dispatcher = new_dispatcher(engine, fake_sender := new_sender_for(fake))
    try:
        await dispatcher.handle_send(again.SerializeToString())
    finally:
        await fake_sender.aclose()
    assert len(received(fake, cmd.message_id)) == 1
    assert (await stored(engine, cmd.message_id)).status == "sent"


async def test_while_sendgrids_reports_lag_nothing_is_resent_and_past_the_deadline_it_fails(engine, tenant_id):
    cmd = await parked_unknown(engine, tenant_id)
    await reported_until(engine, None)
    await resolve(engine, T0 + timedelta(minutes=30))
    assert (await stored(engine, cmd.message_id)).status == "unknown"

    await reported_until(engine, T0 + timedelta(minutes=1))
    await resolve(engine, T0 + DEADLINE)
    row = await stored(engine, cmd.message_id)
    assert row.status == "failed" and "review before resending" in row.last_error
    [fact] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    # Not the message's own fault: its campaign waits for a person rather than ending.
    assert (fact.kind, fact.permanent) == (messages_pb2.OUTCOME_KIND_FAILED, False)
    assert await resent_commands(engine, tenant_id) == []


async def test_delivery_events_move_the_watermark_and_others_do_not(engine, tenant_id):
    await reported_until(engine, None)
    dispatcher = new_dispatcher(engine, sender=None)
    dispatcher.clock = ManualClock(T0 + timedelta(hours=1))
    await unconfirmed_of(dispatcher).settle_unknown(event(tenant_id, "m-1", "open"))
    async with engine.connect() as conn:
        assert await repository.messages.watermark(conn) is None
    await unconfirmed_of(dispatcher).settle_unknown(event(tenant_id, "m-1", "processed"))
    async with engine.connect() as conn:
        assert await repository.messages.watermark(conn) == T0 + timedelta(seconds=5)
    # An event dated ahead of our clock moves it no further than now; an older one not at all.
    dispatcher.clock = ManualClock(T0 + timedelta(seconds=3))
    await unconfirmed_of(dispatcher).settle_unknown(event(tenant_id, "m-1", "delivered"))
    async with engine.connect() as conn:
        assert await repository.messages.watermark(conn) == T0 + timedelta(seconds=5)


def new_sender_for(fake):  # type: ignore[no-untyped-def]
    return new_sender(fake.url, concurrency=2, timeout_seconds=5)


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

    assert await unconfirmed_of(dispatcher).settle_unknown_events(batch) == 2
    await Suppressions(engine, ManualClock(T0)).handle_engagements(batch)

    assert [(await stored(engine, c.message_id)).status for c in parked] == ["sent", "sent"]
    assert sorted(f.message_id for f in await outcomes(engine, tenant_id)) == sorted(c.message_id for c in parked)
    [suppressed] = await Suppressions(engine, ManualClock(T0)).check(tenant_id, ["ada@example.com"])
    assert suppressed.reason == "spamreport"
    assert await unconfirmed_of(dispatcher).settle_unknown_events(batch) == 0  # redelivered: nothing more


async def test_an_event_that_comes_while_the_row_is_still_sending_settles_it(engine, tenant_id):
    """A process died mid-call: its rows stay `sending` until JetStream delivers the command
    again (the ack wait), and SendGrid's `processed` can come first. It must not be lost, or the
    send would later look unconfirmed and go out twice."""
    cmd = await parked_unknown(engine, tenant_id)
    async with engine.begin() as conn:
        await conn.execute(update(messages).where(messages.c.message_id == cmd.message_id).values(status="sending"))
    dispatcher = new_dispatcher(engine, sender=None)

    fact = fact_of(event(tenant_id, cmd.message_id, "processed"))
    fact.provider_message_id = f"SG-{cmd.message_id}"
    await unconfirmed_of(dispatcher).settle_unknown_events([fact])
    # The command delivered again finds it settled and calls nobody.
    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider_message_id, row.attempt_count) == ("sent", f"SG-{cmd.message_id}", 1)


async def test_the_sweep_reads_unknown_rows_through_their_partial_index(engine):
    """Run every minute over a table of tens of millions of rows: it must be able to use the
    partial index of `unknown` rows (sequential scans off, to ask whether it can)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    query = repository.messages.unconfirmed_query(older_than=T0, limit=10)
    sql_text = query.compile(dialect=postgresql.asyncpg.dialect(), compile_kwargs={"literal_binds": True})
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = [row[0] for row in await conn.execute(text(f"EXPLAIN {sql_text}"))]

    assert any("messages_unknown_idx" in line for line in plan), plan
