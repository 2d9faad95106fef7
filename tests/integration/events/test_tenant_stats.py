"""The tenant's analytics across campaigns: sent outcomes carry their dimensions, events count
per UTC day of sending and dimension in the transactions that count each step, and
GetTenantStats sums those rollups (real PostgreSQL, the real gRPC server).

Each test has its own tenant, so its rollups start empty."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime

import grpc
import pytest
from events_helpers import CONTACT_EMAIL, accepted_message, raw_webhook
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import AcceptedMessage, build_event, new_message_id
from dripiq_events.models import tenant_stats

EVENTS = messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS
MONDAY, TUESDAY, WEDNESDAY = date(2030, 1, 7), date(2030, 1, 8), date(2030, 1, 9)
D = pb.StatsDimension


async def send(  # type: ignore[no-untyped-def]
    ingest,
    tenant_id: str,
    *,
    day: date,
    step: int = 0,
    campaign: str = "camp-1",
    product: str = "product-1",
    sender: str = "sender-1",
    strategist: str = "openai",
    channel: str = "email",
    task_outcome: str = "",
) -> AcceptedMessage:
    """Record a SENT outcome, as the dispatcher publishes it, at noon UTC on `day`."""
    message_id, x_message_id = str(uuid.uuid4()), new_message_id()
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=tenant_id,
        message_id=message_id,
        campaign_id=campaign,
        step_index=step,
        contact_id="contact-1",
        channel=channel,
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider_message_id=x_message_id,
        to_email=CONTACT_EMAIL,
        subject="Hello",
        product_id=product,
        sender_identity_id=sender,
        strategist=strategist,
        task_outcome=task_outcome,
    )
    outcome.occurred_at.FromDatetime(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    assert await ingest.record_outcome(outcome.SerializeToString())
    return accepted_message(tenant_id, message_id, x_message_id)


async def post(ingest, events: list) -> None:  # type: ignore[no-untyped-def,type-arg]
    await ingest.handle_webhook(raw_webhook(EVENTS, body=json.dumps(events).encode() + b"\r\n"))


def ev(message: AcceptedMessage, kind: str, n: int = 1, **extra):  # type: ignore[no-untyped-def]
    return build_event(message, kind, sg_event_id=f"{message.x_message_id}-{kind}-{n}", **extra)


def request(
    tenant_id: str, *group_by: int, start: date = MONDAY, end: date = WEDNESDAY, **fields
) -> pb.GetTenantStatsRequest:  # type: ignore[no-untyped-def]
    return pb.GetTenantStatsRequest(
        tenant_id=tenant_id, start_day=start.isoformat(), end_day=end.isoformat(), group_by=group_by, **fields
    )


def by(response: pb.GetTenantStatsResponse, key: str, *metrics: str) -> dict:  # type: ignore[type-arg]
    return {getattr(r, key): tuple(getattr(r.counts, m) for m in metrics) for r in response.rows}


async def test_events_count_per_day_and_dimension_once(engine, ingest, stub, tenant_id):
    a = await send(ingest, tenant_id, day=MONDAY, step=0, sender="sender-1", strategist="openai")
    b = await send(ingest, tenant_id, day=MONDAY, step=1, sender="sender-2", strategist="template")
    c = await send(ingest, tenant_id, day=TUESDAY, step=1, sender="sender-2", strategist="template")
    events = [
        ev(a, "delivered"),
        ev(a, "open", 1),
        ev(a, "open", 2),
        ev(a, "open", 3, sg_machine_open=True),
        ev(a, "click", 1, url="https://example.com/1"),
        ev(a, "click", 2, url="https://example.com/2"),
        ev(b, "delivered"),
        ev(b, "bounce", type="blocked"),
        ev(c, "delivered"),
        ev(c, "open", 1, sg_machine_open=True),
        ev(c, "unsubscribe"),
    ]
    await post(ingest, events)
    await post(ingest, events)  # a replayed batch counts nothing

    async with engine.connect() as conn:
        rows = (await conn.execute(select(tenant_stats).where(tenant_stats.c.tenant_id == tenant_id))).mappings().all()
    assert sorted((r["day"], r["step_index"], r["sender_identity_id"], r["strategist"], r["sent"]) for r in rows) == [
        (MONDAY, 0, "sender-1", "openai", 1),
        (MONDAY, 1, "sender-2", "template", 1),
        (TUESDAY, 1, "sender-2", "template", 1),
    ]
    assert {(r["product_id"], r["variant"], r["channel"]) for r in rows} == {("product-1", "", "email")}

    metrics = ("sent", "delivered", "unique_human_opens", "machine_opens", "human_open_events")
    by_step = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_STEP_INDEX))
    assert by(by_step, "step_index", *metrics, "unique_clicks", "click_events") == {
        0: (1, 1, 1, 1, 2, 1, 2),
        1: (2, 2, 0, 1, 0, 0, 0),
    }
    by_sender = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_SENDER_IDENTITY))
    assert by(by_sender, "sender_identity_id", "sent", "bounces", "unsubscribes") == {
        "sender-1": (1, 0, 0),
        "sender-2": (2, 1, 1),
    }
    by_strategist = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_STRATEGIST))
    assert by(by_strategist, "strategist", "sent", "unique_human_opens") == {"openai": (1, 1), "template": (2, 0)}
    by_day = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_DAY))
    assert by(by_day, "day", "sent", "delivered") == {"2030-01-07": (2, 2), "2030-01-08": (1, 1)}
    # Only the grouped-by fields are set.
    assert {(r.step_index, r.sender_identity_id, r.strategist) for r in by_day.rows} == {(0, "", "")}

    [template] = [r for r in by_strategist.rows if r.strategist == "template"]
    assert template.rates == pb.EngagementRates(delivery_rate=1.0, bounce_rate=0.5, unsubscribe_rate=0.5)
    [total] = (await stub.GetTenantStats(request(tenant_id))).rows
    assert (total.counts.sent, total.counts.delivered, total.rates.human_open_rate) == (3, 3, pytest.approx(1 / 3))


async def test_a_message_counts_on_its_day_of_sending_and_ranges_and_filters_narrow(ingest, stub, tenant_id):
    monday = await send(ingest, tenant_id, day=MONDAY, step=0, product="product-1")
    await send(ingest, tenant_id, day=TUESDAY, step=1, product="product-2")
    await send(ingest, tenant_id, day=WEDNESDAY, step=2, product="product-1", channel="linkedin", sender="")
    # Opened on Wednesday, counted with Monday's sends: rates stay shares of one cohort.
    await post(ingest, [ev(monday, "open", timestamp=int(datetime(2030, 1, 9, 9, tzinfo=UTC).timestamp()))])

    tuesday_on = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_DAY, start=TUESDAY))
    assert by(tuesday_on, "day", "sent", "unique_human_opens") == {"2030-01-08": (1, 0), "2030-01-09": (1, 0)}
    monday_only = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_DAY, end=MONDAY))
    assert by(monday_only, "day", "sent", "unique_human_opens") == {"2030-01-07": (1, 1)}

    product_1 = pb.TenantStatsFilter(product_ids=["product-1"])
    filtered = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_STEP_INDEX, filter=product_1))
    assert by(filtered, "step_index", "sent") == {0: (1,), 2: (1,)}
    email_steps = pb.TenantStatsFilter(channels=["email"], step_indexes=[1, 2])
    narrowed = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_PRODUCT, filter=email_steps))
    assert by(narrowed, "product_id", "sent") == {"product-2": (1,)}
    nothing = await stub.GetTenantStats(request(tenant_id, filter=pb.TenantStatsFilter(strategists=["nobody"])))
    assert list(nothing.rows) == []
    other_tenant = await stub.GetTenantStats(request(f"{tenant_id}-other"))
    assert list(other_tenant.rows) == []


async def test_pages_follow_the_groups_in_order(ingest, stub, tenant_id):
    for step in range(5):
        await send(ingest, tenant_id, day=MONDAY, step=step, sender=f"sender-{step % 2}")
    group = (D.STATS_DIMENSION_SENDER_IDENTITY, D.STATS_DIMENSION_STEP_INDEX)
    seen, token, pages = [], "", 0
    while pages < 10:
        page = await stub.GetTenantStats(request(tenant_id, *group, page_size=2, page_token=token))
        seen += [(r.sender_identity_id, r.step_index) for r in page.rows]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [("sender-0", 0), ("sender-0", 2), ("sender-0", 4), ("sender-1", 1), ("sender-1", 3)]

    first = await stub.GetTenantStats(request(tenant_id, *group, page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_DAY, page_token=first.next_page_token))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tenant_rollups_agree_with_each_campaigns_stats(ingest, stub, tenant_id):
    sent = []
    for n, campaign in enumerate(("camp-a", "camp-b", "camp-c")):
        for step in range(3):
            sent.append(await send(ingest, tenant_id, day=MONDAY, step=step, campaign=campaign))
            events = [ev(sent[-1], "delivered"), ev(sent[-1], "open", 1), ev(sent[-1], "open", 2)]
            if (n + step) % 2:
                events += [
                    ev(sent[-1], "click", url="https://example.com"),
                    ev(sent[-1], "open", 3, sg_machine_open=True),
                ]
            if step == 2:
                events.append(ev(sent[-1], "bounce", type="bounce"))
            await post(ingest, events)

    per_step: Counter[tuple[int, str]] = Counter()
    for campaign in ("camp-a", "camp-b", "camp-c"):
        funnel = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id=campaign))
        for step in funnel.steps:
            for field, value in step.counts.ListFields():
                per_step[(step.step_index, field.name)] += value
    tenant = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_STEP_INDEX))
    across: Counter[tuple[int, str]] = Counter()
    for row in tenant.rows:
        for field, value in row.counts.ListFields():
            across[(row.step_index, field.name)] += value
    assert across == per_step
    assert across[(2, "bounces")] == 3 and across[(0, "click_events")] == 1


async def test_tasks_count_under_their_channel_with_their_reply(ingest, stub, tenant_id):
    await send(ingest, tenant_id, day=MONDAY, channel="call", sender="", task_outcome="replied")
    await send(ingest, tenant_id, day=MONDAY, channel="linkedin", sender="", task_outcome="declined")
    await send(ingest, tenant_id, day=MONDAY, channel="email")

    by_channel = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_CHANNEL))

    assert by(by_channel, "channel", "sent", "replies", "unsubscribes") == {
        "call": (1, 1, 0),
        "email": (1, 0, 0),
        "linkedin": (1, 0, 1),
    }


async def test_a_message_with_unbounded_dimensions_counts_in_its_campaign_only(ingest, stub, tenant_id):
    """Hostile input: a value longer than an id is no key for the rollups. The message is still
    kept, its events still tied to it and counted in its campaign."""
    message = await send(ingest, tenant_id, day=MONDAY, product="p" * 256)
    await post(ingest, [ev(message, "delivered")])

    assert list((await stub.GetTenantStats(request(tenant_id))).rows) == []
    funnel = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-1"))
    assert [(s.counts.sent, s.counts.delivered) for s in funnel.steps] == [(1, 1)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"start_day": "2030-01-01", "end_day": "2030-01-02"}, "tenant_id"),
        ({"tenant_id": "t", "end_day": "2030-01-02"}, "start_day"),
        ({"tenant_id": "t", "start_day": "2030-01-01"}, "end_day"),
        ({"tenant_id": "t", "start_day": "2030-1-1", "end_day": "2030-01-02"}, "start_day"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-02-30"}, "end_day"),
        ({"tenant_id": "t", "start_day": "2030-01-02", "end_day": "2030-01-01"}, "end_day"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2031-01-02"}, "end_day"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "group_by": [0]}, "group_by"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "group_by": [99]}, "group_by"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "group_by": [1, 1]}, "group_by"),
        (
            {
                "tenant_id": "t",
                "start_day": "2030-01-01",
                "end_day": "2030-01-02",
                "filter": {"product_ids": ["x"] * 101},
            },
            "filter.product_id",
        ),
        (
            {"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "filter": {"variants": ["v" * 256]}},
            "filter.variant",
        ),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "page_size": -1}, "page_size"),
        ({"tenant_id": "t", "start_day": "2030-01-01", "end_day": "2030-01-02", "page_token": "WyJ4Il0"}, "page_token"),
    ],
)
async def test_bad_requests_name_the_field(stub, fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetTenantStats(pb.GetTenantStatsRequest(**fields))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    rpc_status.from_call(exc.value).details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == field
