"""What every send carries of its tenant (postal address, tracking switches), what the planner
does when SendGrid cannot report opens, and threaded follow-ups, on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import (
    T0,
    by_kind,
    campaign_creator,
    decisions,
    drain_outbox,
    fire_step,
    outcome,
    request,
    sent,
    step_rows,
    timer_commands,
)
from sqlalchemy import update as sql_update

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import campaign_steps
from dripiq_planner.reactor import Reactor
from dripiq_planner.tenant_settings import TenantSettingsService

ADDRESS = "Acme Inc.\n1 Main Street\nSpringfield, IL 62701, USA"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def campaigns(engine, clock) -> CampaignService:  # type: ignore[no-untyped-def]
    return CampaignService(engine, clock)


@pytest.fixture
def creator(engine, clock) -> CampaignCreator:  # type: ignore[no-untyped-def]
    return campaign_creator(engine, clock)


@pytest.fixture
def tenant_settings(engine, clock) -> TenantSettingsService:  # type: ignore[no-untyped-def]
    return TenantSettingsService(engine, clock)


@pytest.fixture
def reactor(engine, clock) -> Reactor:  # type: ignore[no-untyped-def]
    return Reactor(engine, clock)


async def update(
    tenant_settings: TenantSettingsService, tenant_id: str, *paths: str, **fields: object
) -> pb.TenantSettings:
    return await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, **fields),  # type: ignore[arg-type]
            update_mask=FieldMask(paths=list(paths)),
        )
    )


def email(timing: str, subject: str, content: str, **extra: object) -> pb.OutreachStep:
    return pb.OutreachStep(type="email", timing=timing, subject=subject, content=content, **extra)  # type: ignore[arg-type]


async def create(creator: CampaignCreator, tenant_id: str, *steps: pb.OutreachStep) -> str:
    created = await creator.create(request(tenant_id, strategy=pb.Strategy(outreach_campaign=list(steps))))
    await drain_outbox(creator.engine, tenant_id)
    return created.campaign_id


# -- tenant settings --------------------------------------------------------------------------


async def test_a_new_tenant_tracks_opens_and_clicks_and_has_no_postal_address(tenant_settings, tenant_id):
    settings = await tenant_settings.get(tenant_id)
    assert (settings.postal_address, settings.open_tracking, settings.click_tracking) == ("", True, True)
    assert settings.HasField("open_tracking") and settings.HasField("click_tracking")


async def test_postal_address_and_tracking_are_updated_by_mask(tenant_settings, tenant_id):
    updated = await update(
        tenant_settings, tenant_id, "postal_address", "open_tracking", postal_address=ADDRESS, open_tracking=False
    )
    assert (updated.postal_address, updated.open_tracking, updated.click_tracking) == (ADDRESS, False, True)
    # A path left out of the mask is left alone; an unset switch in the mask means on.
    again = await update(tenant_settings, tenant_id, "open_tracking", "voice", voice="brief")
    assert (again.postal_address, again.open_tracking, again.voice) == (ADDRESS, True, "brief")


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"postal_address": "x" * 501}, "at most 500"), ({"postal_address": "Main St"}, "whole postal address")],
)
async def test_a_bad_postal_address_is_invalid_argument_naming_it(tenant_settings, tenant_id, fields, message):
    with pytest.raises(InvalidArgument) as raised:
        await update(tenant_settings, tenant_id, "postal_address", **fields)
    assert raised.value.field == "settings.postal_address" and message in str(raised.value)
    assert (await tenant_settings.get(tenant_id)).postal_address == "", "nothing was stored"


async def test_every_send_carries_the_tenants_settings_as_they_are_when_it_goes_out(
    engine, tenant_settings, creator, reactor, clock, tenant_id
):
    campaign_id = await create(
        creator, tenant_id, email("Day 0", "Hello {{first_name}}", "Hi"), email("Day 3", "Later", "Again")
    )
    first = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
    assert first.postal_address == "" and first.tracking == dispatcher_pb.Tracking(opens=True, clicks=True)
    await reactor.on_outcome(outcome(first, occurred_at=clock.now()))
    # The tenant turns tracking off and sets its address while the campaign runs.
    await update(
        tenant_settings, tenant_id, "postal_address", "open_tracking", "click_tracking", postal_address=ADDRESS,
        open_tracking=False, click_tracking=False,
    )  # fmt: skip
    second = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
    assert second.postal_address == ADDRESS
    assert second.tracking == dispatcher_pb.Tracking(opens=False, clicks=False)


# -- opens that cannot arrive -------------------------------------------------------------------


async def test_no_open_timeout_is_not_armed_when_opens_cannot_be_tracked_and_the_timeline_says_why(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    campaign_id = await create(creator, tenant_id, email("Day 0", "Hello", "Hi"), email("Day 3", "Later", "Again"))
    send = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
    fact = dispatcher_pb.MessageOutcome.FromString(outcome(send, occurred_at=clock.now()))
    fact.opens_untracked_reason = "open tracking is off for this tenant"
    await reactor.on_outcome(fact.SerializeToString())

    timers = by_kind(timer_commands(await drain_outbox(engine, tenant_id)))
    assert set(timers) == {"step_due"}, "the next step is scheduled, no no_open_48h"
    [decision] = await decisions(engine, tenant_id, campaign_id)
    assert (decision.trigger, decision.action, decision.result) == (
        "no_open_48h",
        "none",
        "not armed: open tracking is off for this tenant",
    )
    timeline = await campaigns.timeline(tenant_id, campaign_id)
    assert any(
        e.kind == "decision" and e.detail == "no_open_48h -> none: not armed: open tracking is off for this tenant"
        for e in timeline.entries
    )
    # A redelivered outcome changes nothing.
    await reactor.on_outcome(fact.SerializeToString())
    assert len(await decisions(engine, tenant_id, campaign_id)) == 1


async def test_with_opens_tracked_the_no_open_timeout_is_armed(engine, creator, reactor, clock, tenant_id):
    campaign_id = await create(creator, tenant_id, email("Day 0", "Hello", "Hi"), email("Day 3", "Later", "Again"))
    step = await sent(engine, reactor, clock, tenant_id, campaign_id)
    assert "no_open_48h" in by_kind(step.commands)
    assert await decisions(engine, tenant_id, campaign_id) == []


# -- threads -------------------------------------------------------------------------------------


async def test_a_follow_up_without_a_subject_continues_the_thread(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    campaign_id = await create(
        creator,
        tenant_id,
        email("Day 0", "Widget for {{company_name}}", "Hi {{first_name}}"),
        email("Day 3", "", "Following up"),
        email("Day 5", "", "One more", thread=True),
        email("Day 7", "A new topic", "Something else"),
    )
    assert [s.thread for s in await step_rows(engine, campaign_id)] == [False, True, True, False]
    first = await sent(engine, reactor, clock, tenant_id, campaign_id, 0)
    second = await sent(engine, reactor, clock, tenant_id, campaign_id, 1)
    third = await sent(engine, reactor, clock, tenant_id, campaign_id, 2)
    fourth = await sent(engine, reactor, clock, tenant_id, campaign_id, 3)

    assert first.send.subject == "Widget for Acme" and list(first.send.thread_message_ids) == []
    assert second.send.subject == "Re: Widget for Acme"
    assert list(second.send.thread_message_ids) == [first.message_id]
    assert third.send.subject == "Re: Widget for Acme"
    assert list(third.send.thread_message_ids) == [first.message_id, second.message_id]
    assert fourth.send.subject == "A new topic" and list(fourth.send.thread_message_ids) == []
    campaign = await campaigns.get(tenant_id, campaign_id)
    assert [s.thread for s in campaign.steps] == [False, True, True, False]
    assert campaign.strategy.outreach_campaign[2].HasField("thread")


async def test_a_thread_whose_earlier_emails_were_skipped_starts_with_the_first_subject(
    engine, creator, reactor, clock, tenant_id
):
    campaign_id = await create(creator, tenant_id, email("Day 0", "Widget", "Hi"), email("Day 3", "", "Following up"))
    async with engine.begin() as conn:
        # As a skip_to_step rule would leave it: step 0 skipped, step 1 armed.
        await conn.execute(
            sql_update(campaign_steps)
            .where(campaign_steps.c.campaign_id == campaign_id, campaign_steps.c.step_index == 0)
            .values(status="skipped")
        )
        await conn.execute(
            sql_update(campaign_steps)
            .where(campaign_steps.c.campaign_id == campaign_id, campaign_steps.c.step_index == 1)
            .values(status="scheduled", schedule_version=1, scheduled_at=clock.now() + timedelta(minutes=1))
        )
    send = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
    assert (send.subject, list(send.thread_message_ids)) == ("Widget", [])


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ((email("Day 0", "", "Hi"),), "strategy.outreachCampaign[0].subject"),
        (
            (email("Day 0", "Hello", "Hi"), email("Day 3", "", "Again", thread=False)),
            "strategy.outreachCampaign[1].subject",
        ),
        ((email("Day 0", "Hello", "Hi", thread=True),), "strategy.outreachCampaign[0].thread"),
        (
            (email("Day 0", "Hello", "Hi"), pb.OutreachStep(type="call", timing="Day 2", content="Call", thread=True)),
            "strategy.outreachCampaign[1].thread",
        ),
    ],
)
async def test_a_thread_that_cannot_be_is_invalid_argument_naming_the_field(creator, tenant_id, steps, field):
    with pytest.raises(InvalidArgument) as raised:
        await creator.create(request(tenant_id, strategy=pb.Strategy(outreach_campaign=list(steps))))
    assert raised.value.field == field
