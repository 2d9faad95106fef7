"""SendGrid Event Webhook batches on real PostgreSQL: stored once, correlated, published once."""

from __future__ import annotations

import json

import pytest
from events_helpers import T0, events_of, outbox_count, outboxed, outcome, raw_webhook
from sqlalchemy import select

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common.errors import PermanentMessageError
from dripiq_devtools.fake_sendgrid import build_event
from dripiq_events.models import outbound_messages

EVENTS = messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS


def batch(events: list) -> bytes:  # type: ignore[type-arg]
    return raw_webhook(EVENTS, body=json.dumps(events).encode() + b"\r\n")


async def test_sent_outcomes_are_kept_and_other_outcomes_ignored(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    assert not await ingest.record_outcome(outcome(sent, dispatcher_pb.OUTCOME_KIND_FAILED))
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(outbound_messages).where(outbound_messages.c.message_id == sent.message_id))
        ).one()
    assert (row.tenant_id, row.provider_message_id, row.rfc_message_id, row.contact_id) == (
        tenant_id,
        sent.x_message_id,
        sent.rfc_message_id,
        "contact-1",
    )
    with pytest.raises(PermanentMessageError):
        await ingest.record_outcome(b"\xff\xff not a proto")


async def test_batch_is_stored_once_and_a_replay_publishes_nothing(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    events = [
        build_event(sent.accepted, "delivered"),
        build_event(sent.accepted, "open", sg_machine_open=True),
        build_event(sent.accepted, "click", url="https://example.com/offer"),
        build_event(sent.accepted, "bounce", type="blocked"),
    ]
    first = await ingest.handle_webhook(batch(events))
    assert (first.received, first.stored, first.published, first.unmatched) == (4, 4, 4, 0)

    replay = await ingest.handle_webhook(batch(events))
    assert (replay.stored, replay.published) == (0, 0)
    rows = await events_of(engine, tenant_id=tenant_id)
    assert sorted(r.event_type for r in rows) == ["bounce", "click", "delivered", "open"]
    assert await outbox_count(engine, tenant_id) == 4

    (opened,) = await outboxed(engine, tenant_id, "open")
    assert opened.machine_open and opened.message_id == sent.message_id
    assert (opened.campaign_id, opened.step_index, opened.contact_id) == ("camp-1", 2, "contact-1")
    assert opened.email == "ada@example.com"
    assert opened.event_id == str(next(r.id for r in rows if r.event_type == "open"))
    (clicked,) = await outboxed(engine, tenant_id, "click")
    assert clicked.url == "https://example.com/offer"
    (bounced,) = await outboxed(engine, tenant_id, "bounce")
    assert bounced.reason == "blocked"


async def test_custom_args_match_before_the_sent_outcome_arrives(engine, ingest, send, tenant_id):
    # The dispatcher waits for exactly this to prove an uncertain send went out.
    sent = await send(tenant_id, recorded=False)
    result = await ingest.handle_webhook(batch([build_event(sent.accepted, "processed")]))
    assert result.published == 1
    (fact,) = await outboxed(engine, tenant_id, "processed")
    assert (fact.message_id, fact.campaign_id, fact.step_index, fact.contact_id) == (sent.message_id, "camp-1", 2, "")


async def test_events_without_custom_args_match_by_sg_message_id(engine, ingest, send, tenant_id):
    sent = await send(tenant_id, custom_args=False)
    event = build_event(sent.accepted, "delivered")
    assert event["sg_message_id"].startswith(sent.x_message_id + ".")
    assert "message_id" not in event
    await ingest.handle_webhook(batch([event]))
    (row,) = await events_of(engine, provider_event_id=event["sg_event_id"])
    assert (row.matched, row.tenant_id, row.message_id) == (True, tenant_id, sent.message_id)
    assert len(await outboxed(engine, tenant_id, "delivered")) == 1


async def test_unknown_and_malformed_events_are_stored_unmatched(engine, ingest, send, tenant_id):
    stranger = await send(tenant_id, custom_args=False, recorded=False)
    unknown = build_event(stranger.accepted, "open")
    no_timestamp = build_event(stranger.accepted, "open", timestamp="yesterday")
    result = await ingest.handle_webhook(batch([unknown, no_timestamp, "not an event", 42]))
    assert (result.received, result.stored, result.published) == (4, 4, 0)
    assert (result.unmatched, result.rejected) == (4, 3)

    (stored_unknown,) = await events_of(engine, provider_event_id=unknown["sg_event_id"])
    assert (stored_unknown.matched, stored_unknown.tenant_id, stored_unknown.event_type) == (False, None, "open")
    (rejected,) = await events_of(engine, provider_event_id=no_timestamp["sg_event_id"])
    assert (rejected.event_type, rejected.matched, rejected.occurred_at) == ("rejected", False, T0)
    assert rejected.raw_event["timestamp"] == "yesterday"
    # Without an sg_event_id the id is a hash of the event, so a replay still dedupes.
    assert (await ingest.handle_webhook(batch(["not an event", 42]))).stored == 0


async def test_a_foreign_tenant_in_custom_args_does_not_match(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    forged = build_event(sent.accepted, "click", tenant_id="someone-else")
    assert (await ingest.handle_webhook(batch([forged]))).published == 0
    (row,) = await events_of(engine, provider_event_id=forged["sg_event_id"])
    assert not row.matched


async def test_undecodable_or_non_array_payloads_are_permanent_errors(ingest):
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(b"\xff\xfe garbage")
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(EVENTS, body=b'{"event": "open"}'))
    with pytest.raises(PermanentMessageError):
        await ingest.handle_webhook(raw_webhook(0))


async def test_a_nul_character_in_an_event_does_not_fail_its_batch(engine, ingest, send, tenant_id):
    sent = await send(tenant_id)
    events = [
        build_event(sent.accepted, "click", url="https://example.com/\x00x", note={"k\x00": ["v\x00"]}),
        build_event(sent.accepted, "delivered"),
    ]
    result = await ingest.handle_webhook(batch(events))
    assert (result.stored, result.published) == (2, 2)
    [click] = [r for r in await events_of(engine, tenant_id=tenant_id) if r.event_type == "click"]
    assert click.url == "https://example.com/x"
