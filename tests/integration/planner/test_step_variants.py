"""A/B variants on real PostgreSQL: a two-variant step splits its contacts by weight, the send
command carries the chosen copy and variant, and the step records it for GetCampaign and the
timeline."""

from __future__ import annotations

import pytest
from helpers import T0, campaign_creator, drain_outbox, item, request, send_commands, strategy, timer_commands

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_planner import variants
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategy import StepVariant
from dripiq_planner.timeline import timeline

CONTACTS = 120


def with_variants(*given: pb.StepVariant) -> pb.Strategy:
    out = strategy("Day 0", "Day 3")
    out.outreach_campaign[0].variants.extend(given)
    return out


A = pb.StepVariant(name="A", weight=1, subject="Quick question, {{first_name}}")
B = pb.StepVariant(name="B", weight=3, content="A new idea for {{company_name}}", call_to_action="Reply yes")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def test_a_two_variant_step_splits_contacts_by_weight_and_sends_the_chosen_copy(engine, tenant_id, clock):
    creator, campaigns, reactor = (
        campaign_creator(engine, clock),
        CampaignService(engine, clock),
        Reactor(engine, clock),
    )
    contacts = [f"contact-{i}" for i in range(CONTACTS)]
    answer = await creator.batch_create(
        pb.BatchCreateCampaignsRequest(
            tenant_id=tenant_id, requests=[item(c, strategy=with_variants(A, B)) for c in contacts]
        )
    )
    created = {r.campaign.contact_id: r.campaign for r in answer.results}
    assert len(created) == CONTACTS
    assert [v.name for v in created["contact-0"].steps[0].variants] == ["A", "B"]
    assert created["contact-0"].steps[0].variant == ""

    payloads = [c.schedule.payload for c in timer_commands(await drain_outbox(engine, tenant_id))]
    # Twice: JetStream is at-least-once, and a redelivered timer sends nothing twice.
    await reactor.on_timers(payloads)
    await reactor.on_timers(payloads)
    sends = send_commands(await drain_outbox(engine, tenant_id))
    assert len(sends) == CONTACTS

    expected = {
        c: variants.choose(
            [StepVariant(name="A", weight=1, subject="x"), StepVariant(name="B", weight=3, content="y")],
            tenant_id=tenant_id,
            contact_id=c,
            step_index=0,
        ).name
        for c in contacts
    }
    by_contact = {s.contact_id: s for s in sends}
    assert {c: s.variant for c, s in by_contact.items()} == expected
    shares = sum(1 for v in expected.values() if v == "B") / CONTACTS
    assert 0.6 < shares < 0.9
    for contact, send in by_contact.items():
        name = contact.title()
        if send.variant == "A":
            assert send.subject == f"Quick question, {name}"
            assert send.body_text == "About Widget"
        else:
            assert send.subject == f"Hi {name}"
            assert send.body_text == "A new idea for Acme\n\nReply yes"

    one = created["contact-7"]
    stored = await campaigns.get(tenant_id, one.campaign_id)
    assert stored.steps[0].variant == expected["contact-7"]
    assert stored.steps[1].variant == ""
    story = await timeline(engine, None, stored)
    assert any(
        e.kind == "step_scheduled" and f"(variant {expected['contact-7']})" in e.detail and e.step_index == 0
        for e in story.entries
    )


async def test_the_strategy_keeps_its_variants(engine, tenant_id, clock):
    campaign = await campaign_creator(engine, clock).create(request(tenant_id, strategy=with_variants(A, B)))
    stored = await CampaignService(engine, clock).get(tenant_id, campaign.campaign_id)
    assert list(stored.strategy.outreach_campaign[0].variants) == [A, B]
    assert list(stored.steps[0].variants) == [A, B]


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ((A,), "strategy.outreachCampaign[0].variants"),
        ((A, pb.StepVariant(name="A", weight=1, subject="Other")), "strategy.outreachCampaign[0].variants[1].name"),
        ((A, pb.StepVariant(name="B", weight=0, subject="Other")), "strategy.outreachCampaign[0].variants[1].weight"),
        (
            (A, pb.StepVariant(name="B", weight=1, subject="Hi [Name]")),
            "strategy.outreachCampaign[0].variants[1].subject",
        ),
    ],
)
async def test_bad_variants_are_refused_naming_the_field(engine, tenant_id, clock, given, field):
    with pytest.raises(InvalidArgument) as caught:
        await campaign_creator(engine, clock).create(request(tenant_id, strategy=with_variants(*given)))
    assert caught.value.field == field
    assert await drain_outbox(engine, tenant_id) == []
