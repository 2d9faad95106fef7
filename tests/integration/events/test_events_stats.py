"""Rollups: GetCampaignStats and GetStepFunnel answer from counters kept as events are stored.

Each test has its own tenant, so its campaign's counters start at zero."""

from __future__ import annotations

import asyncio
import json

from events_helpers import events_of, outbox_count, outcome, raw_webhook
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq.events.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import build_event
from dripiq_events.handlers import EventsServicer
from dripiq_events.queries import EventQuery

EVENTS = messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS
RESULTS = ("stored", "unmatched", "duplicate")


def batch(events: list) -> bytes:  # type: ignore[type-arg]
    return raw_webhook(EVENTS, body=json.dumps(events).encode() + b"\r\n")


def event(sent, kind: str, n: int, **extra):  # type: ignore[no-untyped-def]
    return build_event(sent.accepted, kind, sg_event_id=f"{sent.message_id}-{kind}-{n}", **extra)


async def step_funnel(engine: AsyncEngine, tenant_id: str, campaign_id: str) -> api_pb.GetStepFunnelResponse:
    request = api_pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id=campaign_id)
    return await EventsServicer(EventQuery(engine)).GetStepFunnel(request, None)


async def campaign_stats(engine: AsyncEngine, tenant_id: str, campaign_id: str) -> api_pb.GetCampaignStatsResponse:
    request = api_pb.GetCampaignStatsRequest(tenant_id=tenant_id, campaign_id=campaign_id)
    return await EventsServicer(EventQuery(engine)).GetCampaignStats(request, None)


async def test_counts_are_kept_per_step_unique_per_message_and_never_twice(engine, ingest, send, tenant_id):
    a, b, c = [await send(tenant_id) for _ in range(3)]
    await ingest.record_outcome(outcome(a))  # a redelivered outcome is not a second send
    events = [
        event(a, "delivered", 1),
        event(a, "open", 1),
        event(a, "open", 2),
        event(a, "open", 3, sg_machine_open=True),
        event(a, "click", 1, url="https://example.com/1"),
        event(a, "click", 2, url="https://example.com/2"),
        event(b, "delivered", 1),
        event(b, "open", 1, sg_machine_open=True),
        event(b, "bounce", 1, type="blocked"),
        event(c, "unsubscribe", 1),
        event(c, "spamreport", 1),
        event(c, "group_unsubscribe", 1),
    ]
    received = {r: REGISTRY.get_sample_value("dripiq_events_received_total", {"result": r}) or 0 for r in RESULTS}
    await ingest.handle_webhook(batch(events))
    await ingest.handle_webhook(batch(events))  # a replayed batch counts nothing
    # What an operator sees: dripiq_events_received_total by result.
    after = {r: REGISTRY.get_sample_value("dripiq_events_received_total", {"result": r}) or 0 for r in RESULTS}
    assert {r: after[r] - received[r] for r in RESULTS} == {"stored": 12, "unmatched": 0, "duplicate": 12}
    await ingest.handle_webhook(batch([event(a, "open", 4)]))  # later: one more open event, same opener

    funnel = await step_funnel(engine, tenant_id, "camp-1")

    assert [s.step_index for s in funnel.steps] == [2]
    assert funnel.steps[0].counts == api_pb.EngagementCounts(
        sent=3,
        delivered=2,
        unique_human_opens=1,
        machine_opens=2,
        human_open_events=3,
        unique_clicks=1,
        click_events=2,
        bounces=1,
        unsubscribes=1,
        spam_reports=1,
    )


async def test_campaign_stats_add_up_the_steps(engine, ingest, send, tenant_id):
    later = await send(tenant_id)
    first = await send(tenant_id, recorded=False)
    as_step_0 = dispatcher_pb.MessageOutcome.FromString(outcome(first))
    as_step_0.step_index = 0
    await ingest.record_outcome(as_step_0.SerializeToString())
    await ingest.handle_webhook(
        batch([event(first, "delivered", 1), event(later, "delivered", 1), event(later, "open", 1)])
    )

    funnel = await step_funnel(engine, tenant_id, "camp-1")
    stats = await campaign_stats(engine, tenant_id, "camp-1")

    assert [(s.step_index, s.counts.sent, s.counts.delivered, s.counts.unique_human_opens) for s in funnel.steps] == [
        (0, 1, 1, 0),
        (2, 1, 1, 1),
    ]
    assert (stats.totals.sent, stats.totals.delivered, stats.totals.unique_human_opens) == (2, 2, 1)
    assert (await campaign_stats(engine, tenant_id, "no-such-campaign")).totals == api_pb.EngagementCounts()
    assert (await campaign_stats(engine, "someone-else", "camp-1")).totals == api_pb.EngagementCounts()


async def test_concurrent_deliveries_count_each_first_time_once(engine, ingest, send, tenant_id):
    # Eight deliveries at once, each with events of every message in its own order: they lock
    # the same messages at the same moment, and every first time must be counted exactly once.
    sent = [await send(tenant_id) for _ in range(30)]
    deliveries, clicked = [], set()
    for d in range(8):
        order = sent[d:] + sent[:d] if d % 2 else list(reversed(sent))
        clicked.update(s.message_id for s in order[: 10 + d])
        deliveries.append(
            batch(
                [event(s, "delivered", d) for s in order]
                + [event(s, "open", d, sg_machine_open=d % 3 == 0) for s in order]
                + [event(s, "click", d, url="https://example.com/") for s in order[: 10 + d]]
            )
        )

    await asyncio.gather(*(ingest.handle_webhook(body) for body in deliveries))

    counts = (await step_funnel(engine, tenant_id, "camp-1")).steps[0].counts
    human_open_deliveries = sum(1 for d in range(8) if d % 3)
    assert counts == api_pb.EngagementCounts(
        sent=30,
        delivered=30,
        unique_human_opens=30,
        machine_opens=30,
        human_open_events=30 * human_open_deliveries,
        unique_clicks=len(clicked),
        click_events=sum(10 + d for d in range(8)),
    )


async def test_a_task_reported_as_replied_or_declined_is_stored_and_counted_not_republished(
    engine, ingest, send, tenant_id
):
    replied, declined, no_answer = [await send(tenant_id, recorded=False) for _ in range(3)]

    def task_done(sent, reported: str) -> bytes:  # type: ignore[no-untyped-def]
        message = dispatcher_pb.MessageOutcome.FromString(outcome(sent))
        message.channel, message.provider, message.task_outcome = "linkedin", "", reported
        return message.SerializeToString()

    batch = [task_done(replied, "replied"), task_done(declined, "declined"), task_done(no_answer, "no_answer")]
    assert await ingest.record_outcomes(batch) == 3
    assert await ingest.record_outcomes(batch) == 3  # redelivered: nothing stored or counted twice

    stored = await events_of(engine, tenant_id=tenant_id)
    assert {(e.provider, e.provider_event_id, e.event_type, e.message_id, e.reason) for e in stored} == {
        ("dripiq", f"task:{replied.message_id}", "reply", replied.message_id, "linkedin task: replied"),
        ("dripiq", f"task:{declined.message_id}", "unsubscribe", declined.message_id, "linkedin task: declined"),
    }
    assert len(stored) == 2
    # The dispatcher published these facts when the task was completed; they go out once.
    assert await outbox_count(engine, tenant_id) == 0
    counts = (await step_funnel(engine, tenant_id, "camp-1")).steps[0].counts
    assert counts == api_pb.EngagementCounts(sent=3, replies=1, unsubscribes=1)
