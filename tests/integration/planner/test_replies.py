"""What the planner does with what a reply says: a class of reply as its own trigger, an
unsubscribe request by reply, and out-of-office replies that pause until the contact is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import (
    T0,
    at,
    by_kind,
    campaign_creator,
    campaign_row,
    decisions,
    drain_outbox,
    request,
    rule,
    sent,
    strategy,
    timer_commands,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.reactor import Reactor
from dripiq_planner.tenant_settings import TenantSettingsService

PARIS = ZoneInfo("Europe/Paris")


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
    return Reactor(engine, clock, max_auto_reply_pause_days=30)


async def first_sent(engine, creator, reactor, clock, tenant_id, *rules: pb.AdaptiveRule):  # type: ignore[no-untyped-def]
    created = await creator.create(
        request(
            tenant_id,
            strategy=strategy("Day 0", "Day 3", "Day 6", rules=rules),
            contact=pb.Contact(contact_id="c-1", email="ada@example.com", first_name="Ada", time_zone="Europe/Paris"),
        )
    )
    await drain_outbox(engine, tenant_id)
    step = await sent(engine, reactor, clock, tenant_id, created.campaign_id)
    clock.advance(timedelta(hours=1))
    return step


# -- classes of replies ------------------------------------------------------------------------


async def test_an_unsubscribe_request_by_reply_cancels_by_default(engine, creator, reactor, clock, tenant_id):
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    await reactor.on_engagement(s.event("reply", reply_class="unsubscribe_request", snippet="please remove me"))

    campaign = await campaign_row(engine, s.campaign_id)
    assert (campaign.status, campaign.cancel_reason) == ("canceled", "unsubscribe request by reply")
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert (decision.trigger, decision.action, decision.result) == (
        "reply:unsubscribe_request",
        "cancel_campaign",
        "applied",
    )


async def test_a_class_rule_applies_and_a_class_without_one_falls_back_to_the_reply_rule(
    engine, creator, reactor, clock, tenant_id
):
    s = await first_sent(
        engine, creator, reactor, clock, tenant_id, rule("reply:interested", "complete_campaign", reason="interested")
    )
    await reactor.on_engagement(s.event("reply", reply_class="interested"))
    campaign = await campaign_row(engine, s.campaign_id)
    assert (campaign.status, campaign.cancel_reason) == ("completed", "interested")

    other = await first_sent(engine, creator, reactor, clock, f"{tenant_id}-b")
    await reactor.on_engagement(other.event("reply", reply_class="question"))
    [decision] = await decisions(engine, f"{tenant_id}-b", other.campaign_id)
    assert (decision.trigger, decision.action) == ("reply", "cancel_campaign")


async def test_a_redelivered_classified_reply_applies_once(engine, creator, reactor, clock, tenant_id):
    s = await first_sent(engine, creator, reactor, clock, tenant_id, rule("reply:question", "schedule_next_step"))
    fact = s.event("reply", reply_class="question", event_id="ev-q")
    await reactor.on_engagement(fact)
    await drain_outbox(engine, tenant_id)
    await reactor.on_engagement(fact)
    assert await drain_outbox(engine, tenant_id) == []
    assert [d.trigger for d in await decisions(engine, tenant_id, s.campaign_id)] == ["reply:question"]


@pytest.mark.parametrize("trigger", ["reply:maybe", "reply:", "reply:Interested"])
async def test_an_unknown_reply_class_trigger_is_invalid_argument(creator, tenant_id, trigger):
    with pytest.raises(InvalidArgument) as raised:
        await creator.create(request(tenant_id, strategy=strategy("Day 0", rules=[rule(trigger, "cancel_campaign")])))
    assert raised.value.field == "strategy.adaptiveRules[0].trigger"


# -- out of office -------------------------------------------------------------------------------


def resume_timer(rows):  # type: ignore[no-untyped-def]
    return by_kind(timer_commands(rows)).get("resume")


async def test_an_auto_reply_pauses_until_the_return_date_in_the_contacts_time_zone(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    back = (clock.now() + timedelta(days=9)).date()
    await reactor.on_engagement(s.event("auto_reply", return_date=back.isoformat(), event_id="ooo-1"))

    assert (await campaign_row(engine, s.campaign_id)).status == "paused"
    timer = resume_timer(await drain_outbox(engine, tenant_id))
    assert at(timer.fire_at) == datetime(back.year, back.month, back.day, tzinfo=PARIS).astimezone(UTC)
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert decision.result == f"applied: paused until {back.isoformat()} (the return date in the auto-reply)"
    timeline = await campaigns.timeline(tenant_id, s.campaign_id)
    assert any(back.isoformat() in e.detail for e in timeline.entries if e.kind == "decision")

    # When the resume timer fires, the campaign goes on.
    clock.advance(at(timer.fire_at) - clock.now())
    await reactor.on_timer(
        pb_resume(tenant_id, s.campaign_id, version=(await campaign_row(engine, s.campaign_id)).pause_version)
    )
    assert (await campaign_row(engine, s.campaign_id)).status == "active"


def pb_resume(tenant_id: str, campaign_id: str, *, version: int) -> bytes:
    return timers_pb2.PlannerTimer(
        tenant_id=tenant_id, campaign_id=campaign_id, resume_due=timers_pb2.ResumeDue(pause_version=version)
    ).SerializeToString()


async def test_an_auto_reply_without_a_date_pauses_for_the_tenants_default(
    engine, tenant_settings, creator, reactor, clock, tenant_id
):
    await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, auto_reply_pause_days=3),
            update_mask=FieldMask(paths=["auto_reply_pause_days"]),
        )
    )
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    await reactor.on_engagement(s.event("auto_reply"))

    timer = resume_timer(await drain_outbox(engine, tenant_id))
    assert at(timer.fire_at) == clock.now() + timedelta(days=3)
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert decision.result == "applied: paused 3 days (no return date in the auto-reply)"


async def test_a_new_tenant_pauses_seven_days_without_a_date(engine, creator, reactor, clock, tenant_id):
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    await reactor.on_engagement(s.event("auto_reply"))
    assert at(resume_timer(await drain_outbox(engine, tenant_id)).fire_at) == clock.now() + timedelta(days=7)


async def test_a_far_return_date_is_capped(engine, creator, reactor, clock, tenant_id):
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    back = (clock.now() + timedelta(days=80)).date()
    await reactor.on_engagement(s.event("auto_reply", return_date=back.isoformat()))

    assert at(resume_timer(await drain_outbox(engine, tenant_id)).fire_at) == clock.now() + timedelta(days=30)
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert "capped at 30 days" in decision.result


async def test_an_auto_reply_saying_they_are_back_today_does_not_pause(engine, creator, reactor, clock, tenant_id):
    s = await first_sent(engine, creator, reactor, clock, tenant_id)
    today = clock.now().astimezone(PARIS).date()
    await reactor.on_engagement(s.event("auto_reply", return_date=today.isoformat()))

    assert (await campaign_row(engine, s.campaign_id)).status == "active"
    assert resume_timer(await drain_outbox(engine, tenant_id)) is None
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert decision.result.startswith("applied: not paused: back on")


@pytest.mark.parametrize("days", [-1, 91])
async def test_a_bad_default_pause_is_invalid_argument(tenant_settings, tenant_id, days):
    with pytest.raises(InvalidArgument) as raised:
        await tenant_settings.update(
            pb.UpdateTenantSettingsRequest(
                settings=pb.TenantSettings(tenant_id=tenant_id, auto_reply_pause_days=days),
                update_mask=FieldMask(paths=["auto_reply_pause_days"]),
            )
        )
    assert raised.value.field == "settings.auto_reply_pause_days"
