"""EventsService.ListMessageEvents over a real gRPC server, and the monthly partitions."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from events_helpers import raw_webhook
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY
from sqlalchemy import insert, select, text
from waiting import eventually

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import build_event
from dripiq_events.models import message_events, outbound_messages
from dripiq_events.partitions import (
    PartitionMaintainer,
    compact_raw_events,
    drop_expired_partitions,
    ensure_partitions,
    prune_default_partition,
    prune_outbound,
    retention_cutoff,
)


async def test_list_message_events_pages_and_stays_in_its_tenant(ingest, send, stub, tenant_id):
    sent = await send(tenant_id)
    events = [build_event(sent.accepted, kind) for kind in ("processed", "delivered", "open", "click", "open")]
    body = json.dumps(events).encode()
    await ingest.handle_webhook(raw_webhook(messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS, body=body))

    seen, token, pages = [], "", 0
    for _ in range(10):  # bounded: a paging bug must fail, not hang
        page = await stub.ListMessageEvents(
            pb.ListMessageEventsRequest(
                tenant_id=tenant_id,
                message_id=sent.message_id,
                page_size=2,
                page_token=token,
            )
        )
        seen += page.events
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert sorted(e.provider_event_id for e in seen) == sorted(e["sg_event_id"] for e in events)
    assert {e.tenant_id for e in seen} == {tenant_id}
    assert all(e.provider == "sendgrid" and e.campaign_id == "camp-1" and e.step_index == 2 for e in seen)

    other = await stub.ListMessageEvents(
        pb.ListMessageEventsRequest(
            tenant_id="someone-else",
            message_id=sent.message_id,
        )
    )
    assert list(other.events) == []


async def test_a_tenants_events_are_listed_over_a_time_range(ingest, send, stub, tenant_id):
    a, b = await send(tenant_id), await send(tenant_id)
    base = 1_900_000_000  # 2030-03-17
    events = [
        build_event(a.accepted, "delivered", timestamp=base),
        build_event(b.accepted, "delivered", timestamp=base + 60),
        build_event(a.accepted, "open", timestamp=base + 120),
        build_event(b.accepted, "open", timestamp=base + 180),
        build_event(a.accepted, "click", timestamp=base + 3600),
    ]
    body = json.dumps(events).encode()
    await ingest.handle_webhook(raw_webhook(messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS, body=body))
    window = {"occurred_after": {"seconds": base + 60}, "occurred_before": {"seconds": base + 3600}}

    seen, token = [], ""
    for _ in range(10):  # bounded: a paging bug must fail, not hang
        page = await stub.ListMessageEvents(
            pb.ListMessageEventsRequest(tenant_id=tenant_id, page_size=2, page_token=token, **window)
        )
        seen += page.events
        token = page.next_page_token
        if not token:
            break
    assert sorted((e.occurred_at.seconds - base, e.event_type) for e in seen) == [
        (60, "delivered"),
        (120, "open"),
        (180, "open"),
    ]
    # The same range narrows one message's events; another tenant sees none of them.
    one = await stub.ListMessageEvents(
        pb.ListMessageEventsRequest(tenant_id=tenant_id, message_id=a.message_id, **window)
    )
    assert [e.event_type for e in one.events] == ["open"]
    other = await stub.ListMessageEvents(pb.ListMessageEventsRequest(tenant_id="someone-else", **window))
    assert list(other.events) == []


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"message_id": "m"}, "tenant_id"),
        ({"tenant_id": "t"}, "occurred_after"),
        ({"tenant_id": "t", "occurred_after": {"seconds": 10}}, "occurred_before"),
        ({"tenant_id": "t", "occurred_after": {"seconds": 10}, "occurred_before": {"seconds": 10}}, "occurred_before"),
        ({"tenant_id": "t", "message_id": "m", "campaign_id": "c"}, "campaign_id"),
        ({"tenant_id": "t", "campaign_id": "c", "occurred_after": {"seconds": 10**12}}, "occurred_after"),
        ({"tenant_id": "t", "message_id": "m", "page_size": -1}, "page_size"),
        ({"tenant_id": "t", "message_id": "m", "page_token": "not-ours"}, "page_token"),
        # ["x"]: the right shape, no event id in it (it was INTERNAL once).
        ({"tenant_id": "t", "message_id": "m", "page_token": "WyJ4Il0"}, "page_token"),
    ],
)
async def test_invalid_requests_name_the_field(stub, request_fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ListMessageEvents(pb.ListMessageEventsRequest(**request_fields))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(exc.value)
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == field


async def partitions_of(conn) -> set[str]:  # type: ignore[no-untyped-def]
    rows = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events.message_events'::regclass"
        )
    )
    return {r.relname for r in rows}


async def test_partitions_are_created_from_last_month_ahead_once(engine):
    async with engine.begin() as conn:
        created = await ensure_partitions(conn, now=datetime(2040, 1, 15, tzinfo=UTC), months_ahead=2)
        again = await ensure_partitions(conn, now=datetime(2040, 1, 15, tzinfo=UTC), months_ahead=2)
        names = await partitions_of(conn)
    expected = ["message_events_2039_12", "message_events_2040_01", "message_events_2040_02", "message_events_2040_03"]
    assert created == expected
    assert again == []
    assert set(expected) <= names and "message_events_default" in names


async def test_the_maintainer_counts_its_rounds_for_operators(engine):
    ok = REGISTRY.get_sample_value("dripiq_loop_rounds_total", {"loop": "partitions", "result": "ok"}) or 0
    maintainer = PartitionMaintainer(engine, ManualClock(datetime(2040, 1, 15, tzinfo=UTC)), 2, interval_seconds=60)
    running = asyncio.create_task(maintainer.run())
    await eventually(
        lambda: (
            (REGISTRY.get_sample_value("dripiq_loop_rounds_total", {"loop": "partitions", "result": "ok"}) or 0) > ok
        ),
        "a partition round counted",
    )
    maintainer.stop()
    await asyncio.wait_for(running, timeout=5)
    assert REGISTRY.get_sample_value("dripiq_loop_rounds_total", {"loop": "partitions", "result": "ok"}) == ok + 1
    assert REGISTRY.get_sample_value("dripiq_loop_last_ok_timestamp_seconds", {"loop": "partitions"}) > 0


async def test_a_month_whose_rows_sit_in_default_is_skipped_not_fatal(engine):
    early = {
        "provider": "test",
        "provider_event_id": "early",
        "event_type": "open",
        "occurred_at": datetime(2045, 6, 3, tzinfo=UTC),
        "matched": False,
    }
    async with engine.begin() as conn:
        await conn.execute(insert(message_events), [early])
        created = await ensure_partitions(conn, now=datetime(2045, 6, 10, tzinfo=UTC), months_ahead=1)
    assert created == ["message_events_2045_05", "message_events_2045_07"]


@pytest.mark.parametrize("rpc", ["GetCampaignStats", "GetStepFunnel"])
@pytest.mark.parametrize(
    ("request_fields", "field"), [({"campaign_id": "c"}, "tenant_id"), ({"tenant_id": "t"}, "campaign_id")]
)
async def test_stats_requests_name_the_missing_field(stub, rpc, request_fields, field):
    request = getattr(pb, f"{rpc}Request")(**request_fields)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await getattr(stub, rpc)(request)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (exc.value.details() or "")


async def test_step_funnel_over_grpc(ingest, send, stub, tenant_id):
    sent = await send(tenant_id)
    body = json.dumps([build_event(sent.accepted, "delivered")]).encode()
    await ingest.handle_webhook(raw_webhook(messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS, body=body))

    funnel = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-1"))

    assert [(s.step_index, s.counts.sent, s.counts.delivered) for s in funnel.steps] == [(2, 1, 1)]


async def test_months_past_retention_are_dropped_whole_and_raw_events_compacted(engine):
    async with engine.begin() as conn:
        await ensure_partitions(conn, now=datetime(2001, 2, 15, tzinfo=UTC), months_ahead=1)
    events = [
        {
            "provider": "test",
            "provider_event_id": f"retention-{day}",
            "event_type": "delivered",
            "occurred_at": datetime(2001, 3, day, tzinfo=UTC),
            "matched": False,
            "raw_event": {"event": "delivered", "day": day},
        }
        for day in (5, 20)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(message_events), events)

    compacted = await compact_raw_events(engine, before=datetime(2001, 3, 10, tzinfo=UTC), limit=1000)
    async with engine.connect() as conn:
        raw = dict(
            (
                await conn.execute(
                    select(message_events.c.provider_event_id, message_events.c.raw_event).where(
                        message_events.c.provider_event_id.like("retention-%")
                    )
                )
            ).all()
        )
    assert compacted >= 1  # other tests' events from before 2001 may be compacted too
    assert raw == {"retention-5": None, "retention-20": {"event": "delivered", "day": 20}}

    async with engine.begin() as conn:
        dropped = await drop_expired_partitions(conn, now=datetime(2002, 3, 10, tzinfo=UTC), retention_months=12)
        names = await partitions_of(conn)
    assert dropped == ["message_events_2001_01", "message_events_2001_02"]
    assert "message_events_2001_03" in names and "message_events_default" in names
    assert retention_cutoff(datetime(2002, 3, 10, tzinfo=UTC), 12) == datetime(2001, 3, 1, tzinfo=UTC)


async def test_old_rows_in_the_default_partition_are_pruned_too(engine):
    def row(name: str, occurred_at: datetime) -> dict:  # type: ignore[type-arg]
        return {
            "provider": "test",
            "provider_event_id": name,
            "event_type": "open",
            "occurred_at": occurred_at,
            "matched": False,
        }

    old, recent = f"default-old-{uuid.uuid4()}", f"default-recent-{uuid.uuid4()}"
    async with engine.begin() as conn:
        await conn.execute(
            insert(message_events),
            [row(old, datetime(1999, 6, 1, tzinfo=UTC)), row(recent, datetime(2050, 6, 15, tzinfo=UTC))],
        )

    while await prune_default_partition(engine, before=datetime(2000, 1, 1, tzinfo=UTC), limit=100) == 100:
        pass

    async with engine.connect() as conn:
        kept = set(
            (
                await conn.execute(
                    select(message_events.c.provider_event_id).where(
                        message_events.c.provider_event_id.in_([old, recent])
                    )
                )
            ).scalars()
        )
    assert kept == {recent}


async def test_every_rpc_is_counted_and_timed_by_method_and_code(stub, tenant_id):
    labels = {"grpc_service": "dripiq.events.v1.EventsService", "grpc_method": "GetStepFunnel"}

    def handled(code: str) -> float:
        return REGISTRY.get_sample_value("dripiq_grpc_server_handled_total", {**labels, "grpc_code": code}) or 0

    def timed() -> float:
        return REGISTRY.get_sample_value("dripiq_grpc_server_handling_seconds_count", labels) or 0

    before = handled("OK"), handled("INVALID_ARGUMENT"), timed()
    await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-1"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id=""))

    assert (handled("OK"), handled("INVALID_ARGUMENT"), timed()) == (before[0] + 1, before[1] + 1, before[2] + 2)


async def test_copies_of_messages_sent_before_retention_are_deleted_oldest_first(engine, tenant_id):
    def sent(n: int, at: datetime) -> dict:  # type: ignore[type-arg]
        return {
            "message_id": f"{tenant_id}-m{n}",
            "tenant_id": tenant_id,
            "campaign_id": "camp-1",
            "step_index": 0,
            "contact_id": f"c{n}",
            "to_email": f"lead{n}@example.com",
            "sent_at": at,
        }

    old = [sent(n, datetime(1998, 1 + n, 1, tzinfo=UTC)) for n in range(3)]
    async with engine.begin() as conn:
        await conn.execute(insert(outbound_messages), [*old, sent(9, datetime(2030, 1, 1, tzinfo=UTC))])

    before = datetime(1999, 1, 1, tzinfo=UTC)
    # Other tests keep no copies sent before 1999, so the counts are this test's own.
    assert await prune_outbound(engine, before=before, limit=2) == 2
    async with engine.connect() as conn:
        left = set(
            (
                await conn.execute(
                    select(outbound_messages.c.message_id).where(outbound_messages.c.tenant_id == tenant_id)
                )
            ).scalars()
        )
    assert left == {f"{tenant_id}-m2", f"{tenant_id}-m9"}  # the two oldest went first
    assert await prune_outbound(engine, before=before, limit=2) == 1
    assert await prune_outbound(engine, before=before, limit=2) == 0
