"""SendGrid's `dropped`: a sent message it will not deliver fails with SendGrid's reason, and the
planner hears a failed send, permanent when the reason lasts; a lasting reason also suppresses
the address. The message was really sent to the fake SendGrid first. On real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from dispatch_support import T0, command, identity, new_dispatcher, outcomes, stored, unconfirmed_of
from sqlalchemy import select, update

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common.clock import ManualClock
from dripiq_dispatcher import convert, repository
from dripiq_dispatcher.drops import Drops
from dripiq_dispatcher.models import messages, suppressions
from dripiq_dispatcher.suppressions import Suppressions


def dropped(tenant_id: str, message_id: str, reason: str) -> events_pb2.EngagementEvent:
    """The fact the events service publishes for SendGrid's `dropped` entry, whose `reason` is
    one of SendGrid's drop reasons ("Bounced Address", "Spam Content", ...)."""
    fact = events_pb2.EngagementEvent(
        tenant_id=tenant_id,
        event_id=f"sg-{uuid.uuid4().hex}",
        message_id=message_id,
        campaign_id="camp-1",
        step_index=1,
        event_type="dropped",
        email="Ada@Example.com",
        reason=reason,
    )
    fact.occurred_at.FromDatetime(T0 + timedelta(seconds=3))
    return fact


async def handled(engine, events: list[events_pb2.EngagementEvent]) -> int:  # type: ignore[no-untyped-def]
    """As the dispatcher's engagement worker takes a batch: settle, drop, suppress."""
    clock = ManualClock(T0 + timedelta(seconds=5))
    await unconfirmed_of(new_dispatcher(engine, sender=None)).settle_unknown_events(events)
    failed = await Drops(engine, clock).handle(events)
    await Suppressions(engine, clock).handle_engagements(events)
    return failed


async def suppressed(engine, tenant_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(suppressions.c.address, suppressions.c.reason).where(suppressions.c.tenant_id == tenant_id)
        )
        return sorted((r.address, r.reason) for r in rows)


@pytest.mark.parametrize(
    ("reason", "suppression", "permanent"),
    [
        ("Bounced Address", "bounce", True),
        ("Unsubscribed Address", "unsubscribe", True),
        ("Spam Reporting Address", "spamreport", True),
        ("Invalid", "invalid", True),
        # About the message or the account, not the address: a person fixes it.
        ("Spam Content", None, False),
        ("Invalid SMTPAPI header", None, False),
        ("Recipient List over Package Quota", None, False),
    ],
)
async def test_a_dropped_message_fails_with_sendgrids_reason(
    engine, fake, sender, tenant_id, reason, suppression, permanent
):
    dispatcher = new_dispatcher(engine, sender)
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())
    assert (await stored(engine, cmd.message_id)).status == "sent"

    assert await handled(engine, [dropped(tenant_id, cmd.message_id, reason)]) == 1
    # SendGrid posts an event again when our answer was lost: nothing more happens.
    assert await handled(engine, [dropped(tenant_id, cmd.message_id, reason)]) == 0

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.last_error) == ("failed", f"dropped by SendGrid: {reason}")
    sent, failed = await outcomes(engine, tenant_id)
    assert sent.kind == messages_pb2.OUTCOME_KIND_SENT
    assert (failed.kind, failed.reason, failed.permanent) == (
        messages_pb2.OUTCOME_KIND_FAILED,
        f"dropped by SendGrid: {reason}",
        permanent,
    )
    assert (failed.message_id, failed.campaign_id, failed.to_email) == (cmd.message_id, "camp-1", "ada@example.com")
    assert await suppressed(engine, tenant_id) == ([("ada@example.com", suppression)] if suppression else [])


async def test_a_drop_of_a_send_in_doubt_first_settles_it_sent(engine, tenant_id):
    # The call may have gone out and no answer came: SendGrid's drop proves it took the request.
    cmd = command(tenant_id, await identity(engine, tenant_id))
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[convert.new_message(cmd)], now=T0)
        await conn.execute(
            update(messages)
            .where(messages.c.message_id == cmd.message_id)
            .values(status="unknown", attempt_count=1, unconfirmed_command=cmd.SerializeToString())
        )

    assert await handled(engine, [dropped(tenant_id, cmd.message_id, "Bounced Address")]) == 1

    assert (await stored(engine, cmd.message_id)).status == "failed"
    assert [o.kind for o in await outcomes(engine, tenant_id)] == [
        messages_pb2.OUTCOME_KIND_SENT,
        messages_pb2.OUTCOME_KIND_FAILED,
    ]


async def test_a_drop_naming_another_tenants_message_changes_nothing(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())

    assert await handled(engine, [dropped(f"{tenant_id}-other", cmd.message_id, "Bounced Address")]) == 0
    assert (await stored(engine, cmd.message_id)).status == "sent"
