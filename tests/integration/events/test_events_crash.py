"""A delivery that dies mid-transaction, after its last counters were added and before its
commit, leaves nothing behind (no row, no fact, no count), and its redelivery stores, publishes
and counts each event exactly once."""

from __future__ import annotations

import json

import pytest
from events_helpers import events_of, outbox_count, raw_webhook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq.events.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import build_event
from dripiq_events import repository
from dripiq_events.handlers import EventsServicer
from dripiq_events.models import tenant_stats, tenant_stats_weekly
from dripiq_events.queries import EventQuery

EVENTS = messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS


def delivery(sent: list) -> bytes:  # type: ignore[type-arg]
    events = []
    for s in sent:
        events += [
            build_event(s.accepted, "delivered", sg_event_id=f"{s.message_id}-d"),
            build_event(s.accepted, "open", sg_event_id=f"{s.message_id}-o1"),
            build_event(s.accepted, "open", sg_event_id=f"{s.message_id}-o2"),
            build_event(s.accepted, "click", sg_event_id=f"{s.message_id}-c", url="https://example.com/"),
        ]
    return raw_webhook(EVENTS, body=json.dumps(events).encode())


async def counts(engine: AsyncEngine, tenant_id: str) -> api_pb.EngagementCounts:
    request = api_pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-1")
    funnel = await EventsServicer(EventQuery(engine)).GetStepFunnel(request, None)
    return funnel.steps[0].counts if funnel.steps else api_pb.EngagementCounts()


async def tenant_counters(engine: AsyncEngine, tenant_id: str) -> tuple[int, int, int]:
    """(delivered, unique human opens, human open events) summed over both tiers."""
    async with engine.connect() as conn:
        totals = []
        for table in (tenant_stats, tenant_stats_weekly):
            rows = (await conn.execute(select(table).where(table.c.tenant_id == tenant_id))).mappings().all()
            totals.append(
                (
                    sum(r["delivered"] for r in rows),
                    sum(r["unique_human_opens"] for r in rows),
                    sum(r["human_open_events"] for r in rows),
                )
            )
    days, weeks = totals
    assert days == weeks
    return days


@pytest.mark.parametrize("dies", ["connection", "transaction"])
async def test_a_delivery_that_dies_after_its_counters_leaves_nothing_and_its_redelivery_counts_once(
    engine, ingest, send, tenant_id, monkeypatch, dies
):
    sent = [await send(tenant_id) for _ in range(20)]
    body = delivery(sent)
    # The last statement of a delivery's transaction: the tenant's weekly counters.
    weekly = repository.add_to_tenant_stats_weekly

    async def then_die(conn: AsyncConnection, **increments) -> None:  # type: ignore[no-untyped-def]
        await weekly(conn, **increments)
        if dies == "connection":
            # As a killed worker: its session ends with the transaction open.
            await conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        raise RuntimeError("the worker died before its commit")

    monkeypatch.setattr(repository, "add_to_tenant_stats_weekly", then_die)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a dead session
        await ingest.handle_webhook(body)

    assert await events_of(engine, tenant_id=tenant_id) == []
    assert await outbox_count(engine, tenant_id) == 0
    assert await counts(engine, tenant_id) == api_pb.EngagementCounts(sent=20)
    assert await tenant_counters(engine, tenant_id) == (0, 0, 0)

    monkeypatch.setattr(repository, "add_to_tenant_stats_weekly", weekly)
    for _ in range(2):  # the redelivery, and JetStream delivering it once more
        await ingest.handle_webhook(body)

    assert len(await events_of(engine, tenant_id=tenant_id)) == 80
    assert await outbox_count(engine, tenant_id) == 80
    assert await counts(engine, tenant_id) == api_pb.EngagementCounts(
        sent=20, delivered=20, unique_human_opens=20, human_open_events=40, unique_clicks=20, click_events=20
    )
    assert await tenant_counters(engine, tenant_id) == (20, 20, 40)
