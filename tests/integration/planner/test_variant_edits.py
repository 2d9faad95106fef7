"""A person edits a step's A/B variants with UpdateCampaignStep's "variants" path (real
PostgreSQL): the list is replaced, checked as a person's copy and against the variant contract,
sent as edited, refused once the step is sent, and the timeline says who changed it."""

from __future__ import annotations

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import drain_outbox, fire_step, request, sent, strategy

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import FailedPrecondition, InvalidArgument
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.timeline import timeline

REVIEWER = "reviewer-1"
A = pb.StepVariant(name="A", weight=1, subject="Quick question, {{first_name}}")
B = pb.StepVariant(name="B", weight=1, subject="An idea for {{company_name}}")


@pytest.fixture
def editor(engine, clock, campaigns) -> StepEditor:  # type: ignore[no-untyped-def]
    return StepEditor(engine, clock, campaigns)


def edit_variants(
    tenant_id: str, campaign_id: str, step_index: int, *given: pb.StepVariant
) -> pb.UpdateCampaignStepRequest:
    return pb.UpdateCampaignStepRequest(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        step_index=step_index,
        step=pb.CampaignStep(variants=given),
        update_mask=FieldMask(paths=["variants"]),
    )


async def test_edited_variants_replace_the_list_and_are_sent_as_edited(
    engine, creator, editor, reactor, campaigns, clock, tenant_id
):
    created = await creator.create(request(tenant_id, strategy=strategy("Day 0", "Day 3")))
    await drain_outbox(engine, tenant_id)
    only = pb.StepVariant(name="only", weight=1, subject="Edited for {{first_name}}")
    also = pb.StepVariant(name="also", weight=1, subject="Edited for {{first_name}}")

    updated = await editor.update(edit_variants(tenant_id, created.campaign_id, 0, only, also), actor=REVIEWER)

    assert [v.name for v in updated.steps[0].variants] == ["only", "also"]
    assert [v.name for v in updated.strategy.outreach_campaign[0].variants] == ["only", "also"]
    send = await fire_step(engine, reactor, clock, tenant_id, created.campaign_id)
    assert send.variant in {"only", "also"} and send.subject == "Edited for Ada"

    story = await timeline(engine, None, await campaigns.get(tenant_id, created.campaign_id))
    assert any(e.kind == "step_edited" and e.detail == f"by {REVIEWER}: variants" for e in story.entries)


async def test_variants_can_be_removed_and_an_unchanged_list_records_nothing(
    engine, creator, editor, campaigns, tenant_id
):
    given = strategy("Day 0", "Day 3")
    given.outreach_campaign[1].variants.extend([A, B])
    created = await creator.create(request(tenant_id, strategy=given))

    await editor.update(edit_variants(tenant_id, created.campaign_id, 1, A, B), actor=REVIEWER)
    cleared = await editor.update(edit_variants(tenant_id, created.campaign_id, 1), actor=REVIEWER)

    assert list(cleared.steps[1].variants) == []
    story = await timeline(engine, None, await campaigns.get(tenant_id, created.campaign_id))
    assert [e.detail for e in story.entries if e.kind == "step_edited"] == [f"by {REVIEWER}: variants"]


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ((A,), "step.variants"),
        ((A, pb.StepVariant(name="A", weight=1, subject="Other")), "step.variants[1].name"),
        ((A, pb.StepVariant(name="B", weight=0, subject="Other")), "step.variants[1].weight"),
        ((A, pb.StepVariant(name="B", weight=1, subject="Hi [First Name]")), "step.variants[1].subject"),
        ((A, pb.StepVariant(name="B", weight=1, content="Hi {{nickname}}")), "step.variants[1].content"),
        ((A, pb.StepVariant(name="B", weight=1, call_to_action="x" * 5001)), "step.variants[1].call_to_action"),
        ((A, pb.StepVariant(name="B c", weight=1, subject="Other")), "step.variants[1].name"),
        ((A, pb.StepVariant(name="B", weight=1)), "step.variants[1]"),
    ],
)
async def test_bad_variants_are_refused_naming_the_field(engine, creator, editor, campaigns, tenant_id, given, field):
    created = await creator.create(request(tenant_id, strategy=strategy("Day 0", "Day 3")))
    with pytest.raises(InvalidArgument) as caught:
        await editor.update(edit_variants(tenant_id, created.campaign_id, 1, *given), actor=REVIEWER)
    assert caught.value.field == field
    assert list((await campaigns.get(tenant_id, created.campaign_id)).steps[1].variants) == []


async def test_a_sent_steps_variants_cannot_change(engine, creator, editor, reactor, clock, tenant_id):
    given = strategy("Day 0", "Day 3")
    given.outreach_campaign[0].variants.extend([A, B])
    created = await creator.create(request(tenant_id, strategy=given))
    await sent(engine, reactor, clock, tenant_id, created.campaign_id, 0)
    with pytest.raises(FailedPrecondition, match="sent"):
        await editor.update(edit_variants(tenant_id, created.campaign_id, 0, B, A), actor=REVIEWER)
