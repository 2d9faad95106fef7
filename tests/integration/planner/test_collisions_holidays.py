"""Collision control and holidays on real PostgreSQL: what a reply stops besides its own
campaign (the tenant's reply_stops), the enrolment cool-down, and steps that a holiday in the
contact's calendar moves.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from google.rpc import code_pb2
from helpers import (
    BUSINESS_HOURS,
    DAY,
    HOUR,
    NEW_YORK,
    THREE_STEPS,
    at,
    campaign_creator,
    campaign_row,
    canceled_groups,
    drain_outbox,
    item,
    request,
    rule,
    schedules,
    sent,
    start,
    statuses,
    step_rows,
    strategy,
    timer_commands,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import facts_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import AlreadyExists, InvalidArgument
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.reactor import Reactor
from dripiq_planner.tenant_settings import TenantSettingsService


async def _settings(engine, clock, tenant_id: str, **fields) -> pb.TenantSettings:  # type: ignore[no-untyped-def]
    service = TenantSettingsService(engine, clock)
    settings = pb.TenantSettings(tenant_id=tenant_id, **fields)
    mask = field_mask_pb2.FieldMask(paths=list(fields))
    return await service.update(pb.UpdateTenantSettingsRequest(settings=settings, update_mask=mask))


def _contact(contact_id: str, **fields: str) -> pb.Contact:
    return pb.Contact(contact_id=contact_id, email=f"{contact_id}@example.com", first_name="Ada", **fields)


async def _three_campaigns(engine, creator, reactor, clock, tenant_id):  # type: ignore[no-untyped-def]
    """Ada has two campaigns (two products), her colleague Bob one, and Cy at another company
    one; Ada's first has sent its first step."""
    ada = _contact("ada")
    replied = await start(creator, tenant_id, contact=ada)
    ada_other = await start(creator, tenant_id, contact=ada, product=pb.Product(product_id="p-2", name="Gadget"))
    bob = await start(creator, tenant_id, contact=_contact("bob"))
    cy = await start(
        creator, tenant_id, contact=_contact("cy"), lead=pb.Lead(lead_id="lead-2", company_name="Other Co")
    )
    step = await sent(engine, reactor, clock, tenant_id, replied)
    await drain_outbox(engine, tenant_id)
    return step, {"ada_other": ada_other, "bob": bob, "cy": cy}


async def test_a_reply_stops_only_its_own_campaign_by_default(engine, creator, reactor, clock, tenant_id):
    assert (await _settings(engine, clock, tenant_id, voice="")).reply_stops == pb.REPLY_STOPS_CAMPAIGN
    step, others = await _three_campaigns(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(step.event("reply"))

    assert (await campaign_row(engine, step.campaign_id)).status == "canceled"
    for campaign_id in others.values():
        assert (await campaign_row(engine, campaign_id)).status == "active"


async def test_a_reply_stops_the_contacts_other_campaigns_when_the_tenant_says_contact(
    engine, creator, reactor, clock, tenant_id
):
    await _settings(engine, clock, tenant_id, reply_stops=pb.REPLY_STOPS_CONTACT)
    step, others = await _three_campaigns(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(step.event("reply"))

    rows = await drain_outbox(engine, tenant_id)
    other = await campaign_row(engine, others["ada_other"])
    assert other.status == "canceled"
    assert other.cancel_reason == f"reply to campaign {step.campaign_id} (reply_stops=contact)"
    assert (await statuses(engine, others["ada_other"]))[1] == ["canceled"] * 3
    # Its timers go and the dispatcher hears it stopped, in the reply's transaction.
    assert f"campaign:{others['ada_other']}" in canceled_groups(timer_commands(rows))
    stopped = [
        facts_pb2.CampaignStatusChanged.FromString(payload)
        for subject, payload in rows
        if subject.startswith("dripiq.planner.campaign.")
    ]
    assert {(f.campaign_id, f.status) for f in stopped} == {
        (step.campaign_id, "canceled"),
        (others["ada_other"], "canceled"),
    }
    for name in ("bob", "cy"):
        assert (await campaign_row(engine, others[name])).status == "active"
    timeline = await CampaignService(engine, clock).timeline(tenant_id, others["ada_other"])
    [why] = [e for e in timeline.entries if e.kind == "campaign_canceled"]
    assert step.campaign_id in why.detail

    # A redelivered reply finds everything ended and changes nothing.
    before = tuple(await campaign_row(engine, others["ada_other"]))
    await reactor.on_engagement(step.event("reply"))
    assert tuple(await campaign_row(engine, others["ada_other"])) == before
    assert await drain_outbox(engine, tenant_id) == []


async def test_a_reply_stops_every_campaign_at_the_company_when_the_tenant_says_company(
    engine, creator, reactor, clock, tenant_id
):
    await _settings(engine, clock, tenant_id, reply_stops=pb.REPLY_STOPS_COMPANY)
    step, others = await _three_campaigns(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(step.event("reply"))

    for name in ("ada_other", "bob"):
        row = await campaign_row(engine, others[name])
        assert (row.status, row.cancel_reason) == (
            "canceled",
            f"reply to campaign {step.campaign_id} (reply_stops=company)",
        )
    assert (await campaign_row(engine, others["cy"])).status == "active"


async def test_a_reply_whose_rule_does_not_end_its_campaign_stops_nothing_else(
    engine, creator, reactor, clock, tenant_id
):
    await _settings(engine, clock, tenant_id, reply_stops=pb.REPLY_STOPS_COMPANY)
    ada = _contact("ada")
    replied = await start(creator, tenant_id, rule("reply", "schedule_next_step", delaySeconds=3600), contact=ada)
    colleague = await start(creator, tenant_id, contact=_contact("bob"))
    step = await sent(engine, reactor, clock, tenant_id, replied)

    await reactor.on_engagement(step.event("reply"))

    assert (await campaign_row(engine, replied)).status == "active"
    assert (await campaign_row(engine, colleague)).status == "active"


async def test_enrolment_cooldown_keeps_a_contact_to_one_campaign_and_then_rests_it(engine, creator, clock, tenant_id):
    week = duration_pb2.Duration(seconds=7 * 86400)
    assert (await _settings(engine, clock, tenant_id, enrolment_cooldown=week)).enrolment_cooldown == week
    first = await creator.create(request(tenant_id, contact=_contact("ada")))
    other_product = pb.Product(product_id="p-2", name="Gadget")

    with pytest.raises(AlreadyExists) as running:
        await creator.create(request(tenant_id, contact=_contact("ada"), product=other_product))
    assert first.campaign_id in str(running.value) and "running" in str(running.value)

    await CampaignService(engine, clock).cancel(tenant_id, first.campaign_id, "wrong person")
    clock.advance(6 * DAY)
    with pytest.raises(AlreadyExists) as resting:
        await creator.create(request(tenant_id, contact=_contact("ada"), product=other_product))
    assert first.campaign_id in str(resting.value) and "enrolment_cooldown" in str(resting.value)

    clock.advance(DAY)
    again = await creator.create(request(tenant_id, contact=_contact("ada"), product=other_product))
    assert again.status == pb.CAMPAIGN_STATUS_ACTIVE


async def test_without_a_cooldown_a_contact_may_run_campaigns_for_several_products(creator, tenant_id):
    await creator.create(request(tenant_id, contact=_contact("ada")))
    second = await creator.create(
        request(tenant_id, contact=_contact("ada"), product=pb.Product(product_id="p-2", name="Gadget"))
    )
    assert second.status == pb.CAMPAIGN_STATUS_ACTIVE


async def test_batch_create_applies_the_cooldown_per_item(engine, creator, clock, tenant_id):
    await _settings(engine, clock, tenant_id, enrolment_cooldown=duration_pb2.Duration(seconds=3600))
    busy = await creator.create(request(tenant_id, contact=_contact("busy")))
    batch = pb.BatchCreateCampaignsRequest(
        tenant_id=tenant_id,
        requests=[
            item("fresh"),
            item("fresh", product=pb.Product(product_id="p-2", name="Gadget")),
            item("busy", product=pb.Product(product_id="p-2", name="Gadget")),
        ],
    )

    results = (await creator.batch_create(batch)).results

    assert results[0].WhichOneof("result") == "campaign"
    assert results[1].error.code == code_pb2.ALREADY_EXISTS
    assert results[0].campaign.campaign_id in results[1].error.message
    assert results[2].error.code == code_pb2.ALREADY_EXISTS
    assert busy.campaign_id in results[2].error.message


# -- holidays ------------------------------------------------------------------------------

# Tuesday 2030-12-24, 18:00 in New York: the window has closed, and tomorrow is Christmas Day.
CHRISTMAS_EVE_EVENING = datetime(2030, 12, 24, 23, 0, tzinfo=UTC)


async def test_a_first_step_due_on_a_tenant_holiday_moves_to_the_next_working_morning(engine, tenant_id):
    clock = ManualClock(CHRISTMAS_EVE_EVENING)
    creator = campaign_creator(engine, clock)
    await _settings(engine, clock, tenant_id, holiday_calendars=["us"])
    contact = _contact("ny", time_zone="America/New_York")

    created = await creator.create(request(tenant_id, contact=contact, send_window=BUSINESS_HOURS))

    assert list(created.holiday_calendars) == ["US"]
    local = at(created.steps[0].scheduled_at).astimezone(NEW_YORK)
    assert (local.date().isoformat(), local.hour) == ("2030-12-26", 9)
    note = created.steps[0].placement_note
    assert note.startswith("moved from 2030-12-25 (Christmas Day, US) to 2030-12-26 09:"), note
    [row] = [s for s in await step_rows(engine, created.campaign_id) if s.step_index == 0]
    assert row.placement_note == note
    timeline = await CampaignService(engine, clock).timeline(tenant_id, created.campaign_id)
    assert any("Christmas Day" in e.detail for e in timeline.entries if e.kind == "step_scheduled")


async def test_the_contacts_country_calendar_wins_over_the_tenants(engine, tenant_id):
    # Monday 2031-01-06 is Epiphany in Bavaria, a working day in the US; 05:00 UTC is before
    # the window opens in Berlin.
    clock = ManualClock(datetime(2031, 1, 6, 5, 0, tzinfo=UTC))
    creator = campaign_creator(engine, clock)
    await _settings(engine, clock, tenant_id, holiday_calendars=["US"])
    bavarian = _contact("by", time_zone="Europe/Berlin", country="de", subdivision="DE-BY")
    american = _contact("us", time_zone="Europe/Berlin")

    moved = await creator.create(request(tenant_id, contact=bavarian, send_window=BUSINESS_HOURS))
    kept = await creator.create(request(tenant_id, contact=american, send_window=BUSINESS_HOURS))

    assert list(moved.holiday_calendars) == ["DE-BY"]
    berlin = at(moved.steps[0].scheduled_at).astimezone(ZoneInfo("Europe/Berlin"))
    assert berlin.date().isoformat() == "2031-01-07"
    assert "(Epiphany, DE-BY)" in moved.steps[0].placement_note
    assert at(kept.steps[0].scheduled_at).date().isoformat() == "2031-01-06"
    assert kept.steps[0].placement_note == ""


async def test_a_step_a_rule_moves_onto_a_holiday_moves_on(engine, tenant_id):
    # Tuesday 2030-12-24 10:00 in New York; the open rule waits a day: Christmas Day.
    clock = ManualClock(datetime(2030, 12, 24, 15, 0, tzinfo=UTC))
    creator = campaign_creator(engine, clock)
    reactor = Reactor(engine, clock)
    contact = _contact("ny", time_zone="America/New_York", country="US")
    rules = (rule("open", "schedule_next_step", delaySeconds=86400),)
    created = await creator.create(
        request(tenant_id, contact=contact, send_window=BUSINESS_HOURS, strategy=strategy(*THREE_STEPS, rules=rules))
    )
    s = await sent(engine, reactor, clock, tenant_id, created.campaign_id)
    clock.advance(HOUR)

    await reactor.on_engagement(s.event("open"))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    local = at(timer.fire_at).astimezone(NEW_YORK)
    assert local.date().isoformat() == "2030-12-26"
    step = (await step_rows(engine, created.campaign_id))[1]
    assert "Christmas Day, US" in step.placement_note


async def test_a_send_command_carries_the_campaigns_calendars_for_the_dispatcher(engine, tenant_id):
    clock = ManualClock(datetime(2031, 1, 6, 5, 0, tzinfo=UTC))
    creator = campaign_creator(engine, clock)
    reactor = Reactor(engine, clock)
    await _settings(engine, clock, tenant_id, holiday_calendars=["us"])
    bavarian = await start(creator, tenant_id, contact=_contact("by", country="de", subdivision="DE-BY"))
    tenants = await start(creator, tenant_id, contact=_contact("us"))

    assert list((await sent(engine, reactor, clock, tenant_id, bavarian)).send.holiday_calendars) == ["DE-BY"]
    assert list((await sent(engine, reactor, clock, tenant_id, tenants)).send.holiday_calendars) == ["US"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"holiday_calendars": ["US", "XX"]}, "settings.holiday_calendars[1]"),
        ({"holiday_calendars": ["US-ZZ"]}, "settings.holiday_calendars[0]"),
        ({"holiday_calendars": ["DE-Augsburg"]}, "settings.holiday_calendars[0]"),
        ({"holiday_calendars": ["US"] * 11}, "settings.holiday_calendars"),
        ({"holiday_calendars": ["US-" + "\u0000" * 5000]}, "settings.holiday_calendars[0]"),
        ({"enrolment_cooldown": duration_pb2.Duration(seconds=-1)}, "settings.enrolment_cooldown"),
        ({"enrolment_cooldown": duration_pb2.Duration(seconds=1, nanos=5)}, "settings.enrolment_cooldown"),
        ({"reply_stops": 9}, "settings.reply_stops"),
    ],
)
async def test_bad_collision_and_holiday_settings_name_the_field(engine, clock, tenant_id, fields, field):
    with pytest.raises(InvalidArgument) as exc:
        await _settings(engine, clock, tenant_id, **fields)
    assert exc.value.field == field


@pytest.mark.parametrize(
    ("contact", "field"),
    [
        (_contact("x", country="XX"), "contact.country"),
        (_contact("x", country="US", subdivision="ZZ"), "contact.subdivision"),
        (_contact("x", subdivision="CA"), "contact.subdivision"),
        (_contact("x", country="U" * 10_000), "contact.country"),
    ],
)
async def test_a_contacts_unknown_calendar_names_the_field(creator, tenant_id, contact, field):
    with pytest.raises(InvalidArgument) as exc:
        await creator.create(request(tenant_id, contact=contact))
    assert exc.value.field == field


async def test_concurrent_creates_for_one_contact_under_a_cooldown_enrol_it_once(engine, clock, tenant_id):
    """No unique index spans products: the contact's lock makes the second create wait for the
    first's commit and see it."""
    await _settings(engine, clock, tenant_id, enrolment_cooldown=duration_pb2.Duration(seconds=3600))
    creators = [campaign_creator(engine, clock) for _ in range(4)]
    products = [pb.Product(product_id=f"p-{i}", name="Widget") for i in range(4)]

    results = await asyncio.gather(
        *(
            c.create(request(tenant_id, contact=_contact("ada"), product=p))
            for c, p in zip(creators, products, strict=True)
        ),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, pb.Campaign)]
    refused = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(created) == 1 and len(refused) == 3, results
    assert all(created[0].campaign_id in str(r) for r in refused)
