"""Drafts and approval on real PostgreSQL: a tenant that requires approval gets drafts that arm
no timer and send nothing; approval starts them (one, or by filter); a person's edit of a step
not sent yet is checked, re-arms the step's timer and is what goes out; the timeline says who
changed what; a preview can be saved as a draft."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import (
    DAY,
    HOUR,
    T0,
    at,
    drain_outbox,
    fire_step,
    request,
    require_approval,
    schedules,
    send_commands,
    sent,
    step_rows,
    step_timer,
    strategy,
    timer_commands,
)
from owner_servers import planner_server
from secured import caller_channel, pki

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.handlers import CampaignServicer
from dripiq_planner.planning import Planner
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.strategist.template_strategist import TemplateStrategist

REVIEWER = "user:reviewer-1"


@pytest.fixture
def editor(engine, clock, campaigns) -> StepEditor:
    return StepEditor(engine, clock, campaigns)


async def draft(creator, tenant_id: str, contact_id: str = "contact-1", **overrides) -> pb.Campaign:
    contact = pb.Contact(contact_id=contact_id, email=f"{contact_id}@example.com", first_name="Ada")
    return await creator.create(request(tenant_id, contact=contact, **overrides))


def edit(tenant_id: str, campaign_id: str, step_index: int, paths: list[str], **values) -> pb.UpdateCampaignStepRequest:
    return pb.UpdateCampaignStepRequest(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        step_index=step_index,
        step=pb.CampaignStep(**values),
        update_mask=FieldMask(paths=paths),
    )


async def test_a_tenant_that_requires_approval_gets_drafts_that_arm_and_send_nothing(
    engine, creator, campaigns, reactor, clock, tenant_settings, tenant_id
):
    assert (await tenant_settings.get(tenant_id)).require_approval is False
    await require_approval(tenant_settings, tenant_id)
    assert (await tenant_settings.get(tenant_id)).require_approval is True

    created = await draft(creator, tenant_id)

    assert created.status == pb.CAMPAIGN_STATUS_DRAFT
    # Every step shows when it would go out, none is scheduled, and nothing reached the outbox.
    assert [s.status for s in created.steps] == [pb.STEP_STATUS_PENDING] * 2
    assert [s.timing for s in created.steps] == ["Day 0", "Day 3"]
    times = [at(s.scheduled_at) for s in created.steps]
    assert times[0] >= T0 and times[1] >= times[0] + 3 * DAY
    assert await drain_outbox(engine, tenant_id) == []
    listed = await campaigns.list_campaigns(
        pb.ListCampaignsRequest(tenant_id=tenant_id, status=pb.CAMPAIGN_STATUS_DRAFT)
    )
    assert [c.campaign_id for c in listed.campaigns] == [created.campaign_id]
    # A draft holds its contact and product like a running campaign.
    with pytest.raises(AlreadyExists):
        await draft(creator, tenant_id)
    # A step-due timer that should not exist (a stale one) sends nothing for a draft.
    clock.advance(DAY)
    await reactor.on_timer(step_timer(tenant_id, created.campaign_id, 0, 0))
    await reactor.on_timer(step_timer(tenant_id, created.campaign_id, 0, 1))
    assert send_commands(await drain_outbox(engine, tenant_id)) == []
    assert [s.status for s in await step_rows(engine, created.campaign_id)] == ["pending", "pending"]


async def test_approval_starts_a_draft_as_a_create_does_and_is_idempotent(
    engine, creator, approval, reactor, clock, tenant_settings, tenant_id
):
    await require_approval(tenant_settings, tenant_id)
    created = await draft(creator, tenant_id, strategy=strategy("48h", "Day 5"))
    planned = at(created.steps[0].scheduled_at)

    # Approved before its first step's planned time: that time is kept.
    clock.advance(HOUR)
    approved = await approval.approve(tenant_id, created.campaign_id, actor=REVIEWER)

    assert approved.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert [s.status for s in approved.steps] == [pb.STEP_STATUS_SCHEDULED, pb.STEP_STATUS_PENDING]
    assert not approved.steps[1].HasField("scheduled_at")
    [armed] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert armed.kind == "step_due" and at(armed.fire_at) == planned

    # Twice is once: no second timer, no second record.
    again = await approval.approve(tenant_id, created.campaign_id, actor=REVIEWER)
    assert again.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert await drain_outbox(engine, tenant_id) == []

    send = await fire_step(engine, reactor, clock, tenant_id, created.campaign_id)
    assert send.step_index == 0 and send.subject == "Hi Ada"


async def test_a_draft_approved_after_its_planned_time_goes_out_from_now(
    engine, creator, approval, clock, tenant_settings, tenant_id
):
    await require_approval(tenant_settings, tenant_id)
    created = await draft(creator, tenant_id)
    clock.advance(10 * DAY)

    await approval.approve(tenant_id, created.campaign_id, actor=REVIEWER)

    [armed] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert at(armed.fire_at) >= clock.now()
    assert at(armed.fire_at) < clock.now() + DAY


async def test_approval_refuses_what_is_not_a_draft(engine, creator, campaigns, approval, tenant_settings, tenant_id):
    await require_approval(tenant_settings, tenant_id)
    created = await draft(creator, tenant_id)
    await campaigns.cancel(tenant_id, created.campaign_id, "changed our mind")
    with pytest.raises(FailedPrecondition, match="canceled"):
        await approval.approve(tenant_id, created.campaign_id, actor=REVIEWER)
    with pytest.raises(NotFound):
        await approval.approve("another-tenant", created.campaign_id, actor=REVIEWER)


async def test_batch_approval_by_filter_in_pages(
    engine, creator, approval, campaigns, clock, tenant_settings, tenant_id
):
    await require_approval(tenant_settings, tenant_id)
    old = [await draft(creator, tenant_id, f"old-{i}") for i in range(3)]
    clock.advance(DAY)
    other_product = await draft(creator, tenant_id, "other", product=pb.Product(product_id="product-2", name="Gadget"))
    newer = await draft(creator, tenant_id, "newer")
    await drain_outbox(engine, tenant_id)

    # Created before: only the old ones, two per call.
    cutoff = pb.BatchApproveCampaignsRequest(tenant_id=tenant_id, max_campaigns=2)
    cutoff.created_before.FromDatetime(T0 + DAY / 2)
    first = await approval.batch_approve(cutoff, actor=REVIEWER)
    assert (first.approved_count, first.more) == (2, True)
    second = await approval.batch_approve(cutoff, actor=REVIEWER)
    assert (second.approved_count, second.more) == (1, False)
    assert (await approval.batch_approve(cutoff, actor=REVIEWER)).approved_count == 0
    armed = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert sorted(t.key for t in armed) == sorted(f"{c.campaign_id}:step" for c in old)

    # By product: only that product's draft.
    by_product = await approval.batch_approve(
        pb.BatchApproveCampaignsRequest(tenant_id=tenant_id, product_id="product-2"), actor=REVIEWER
    )
    assert (by_product.approved_count, by_product.more) == (1, False)
    statuses = {c.campaign_id: (await campaigns.get(tenant_id, c.campaign_id)).status for c in [other_product, newer]}
    assert statuses == {
        other_product.campaign_id: pb.CAMPAIGN_STATUS_ACTIVE,
        newer.campaign_id: pb.CAMPAIGN_STATUS_DRAFT,
    }

    with pytest.raises(InvalidArgument) as exc:
        await approval.batch_approve(
            pb.BatchApproveCampaignsRequest(tenant_id=tenant_id, max_campaigns=-1), actor=REVIEWER
        )
    assert exc.value.field == "max_campaigns"


async def test_an_edited_step_is_sent_as_edited_and_its_timer_rearmed(
    engine, creator, editor, reactor, clock, tenant_id
):
    created = await creator.create(request(tenant_id, strategy=strategy("Day 1", "Day 3")))
    [first] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))

    updated = await editor.update(
        edit(
            tenant_id,
            created.campaign_id,
            0,
            ["subject", "content", "timing"],
            subject="A better subject, {{first_name}}",
            content="Edited body",
            timing="Day 2",
        ),
        actor=REVIEWER,
    )

    step = updated.steps[0]
    assert (step.subject, step.content, step.timing) == ("A better subject, {{first_name}}", "Edited body", "Day 2")
    assert step.relative_delay_seconds == 2 * 86400
    # "Day 3" now waits one day after "Day 2", not two.
    assert updated.steps[1].relative_delay_seconds == 86400
    assert updated.strategy.outreach_campaign[0].content == "Edited body"
    [rearmed] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert rearmed.key == first.key and at(rearmed.fire_at) >= at(first.fire_at) + DAY / 2

    send = await fire_step(engine, reactor, clock, tenant_id, created.campaign_id)
    assert (send.subject, send.body_text.split("\n\n")[0]) == ("A better subject, Ada", "Edited body")


async def test_editing_a_sent_step_or_with_a_bad_mask_or_copy_fails(engine, creator, editor, reactor, clock, tenant_id):
    created = await creator.create(request(tenant_id, strategy=strategy("Day 0", "Day 3")))
    await sent(engine, reactor, clock, tenant_id, created.campaign_id, 0)

    with pytest.raises(FailedPrecondition, match="sent"):
        await editor.update(edit(tenant_id, created.campaign_id, 0, ["content"], content="Too late"), actor=REVIEWER)
    cases = [
        (["content", "status"], {"content": "x"}, "update_mask"),
        ([], {"content": "x"}, "update_mask"),
        (["content"], {"content": "Hi [First Name]"}, "step.content"),
        (["content"], {"content": "Hi {{nickname}}"}, "step.content"),
        (["subject"], {"subject": "x" * 121}, "step.subject"),
        (["timing"], {"timing": "whenever"}, "step.timing"),
        (["channel"], {"channel": "fax"}, "step.channel"),
    ]
    for paths, values, field in cases:
        with pytest.raises(InvalidArgument) as exc:
            await editor.update(edit(tenant_id, created.campaign_id, 1, paths, **values), actor=REVIEWER)
        assert exc.value.field == field, (paths, values)
    with pytest.raises(NotFound):
        await editor.update(edit(tenant_id, created.campaign_id, 7, ["content"], content="x"), actor=REVIEWER)
    # A person may name any link: the AI allow-list holds the model's copy, not theirs.
    ok = await editor.update(
        edit(tenant_id, created.campaign_id, 1, ["content"], content="Book at https://cal.example.org/ada"),
        actor=REVIEWER,
    )
    assert ok.steps[1].content == "Book at https://cal.example.org/ada"


async def test_a_drafts_step_is_edited_before_approval_and_the_timeline_says_who(
    engine, creator, editor, approval, campaigns, tenant_settings, tenant_id
):
    await require_approval(tenant_settings, tenant_id)
    created = await draft(creator, tenant_id)

    edited = await editor.update(
        edit(tenant_id, created.campaign_id, 1, ["content", "timing"], content="Reviewed", timing="Day 4"),
        actor="user:editor-1",
    )
    assert edited.status == pb.CAMPAIGN_STATUS_DRAFT
    assert at(edited.steps[1].scheduled_at) >= at(created.steps[1].scheduled_at) + DAY / 2
    assert await drain_outbox(engine, tenant_id) == []
    await approval.approve(tenant_id, created.campaign_id, actor=REVIEWER)

    timeline = await campaigns.timeline(tenant_id, created.campaign_id)
    changes = [(e.kind, e.step_index, e.detail) for e in timeline.entries if e.kind in ("approved", "step_edited")]
    assert changes == [("step_edited", 1, "by user:editor-1: content, timing"), ("approved", 0, f"by {REVIEWER}")]


async def test_a_preview_saved_as_draft_is_stored_and_checked_like_a_create(
    engine, clock, creator, approval, tenant_id
):
    preview = StrategyPreview(engine, clock, Planner(engine, TemplateStrategist()), creator=creator)
    asked = request(tenant_id, request_id="preview-1")

    saved = await preview.preview(
        pb.PreviewStrategyRequest(request=asked, save_as_draft=True), actor="user:previewer-1"
    )

    assert saved.campaign.status == pb.CAMPAIGN_STATUS_DRAFT
    assert [s.subject for s in saved.campaign.steps] == [s.subject for s in saved.steps]
    assert [s.scheduled_at for s in saved.campaign.steps] == [s.scheduled_at for s in saved.steps]
    assert await drain_outbox(engine, tenant_id) == []
    # The same request_id answers with the same draft; another one for the contact is refused.
    again = await preview.preview(
        pb.PreviewStrategyRequest(request=asked, save_as_draft=True), actor="user:previewer-1"
    )
    assert again.campaign.campaign_id == saved.campaign.campaign_id
    with pytest.raises(AlreadyExists):
        await preview.preview(
            pb.PreviewStrategyRequest(request=request(tenant_id, request_id="preview-2"), save_as_draft=True),
            actor="user:previewer-1",
        )
    with pytest.raises(InvalidArgument):
        bad = request(tenant_id, request_id="preview-3", strategy=strategy("Day 0", "whenever"))
        await preview.preview(pb.PreviewStrategyRequest(request=bad, save_as_draft=True), actor="user:previewer-1")
    # Without the flag nothing more is stored.
    plain = await preview.preview(pb.PreviewStrategyRequest(request=request(tenant_id)), actor="user:previewer-1")
    assert not plain.HasField("campaign")
    assert (await approval.approve(tenant_id, saved.campaign.campaign_id, actor=REVIEWER)).status == (
        pb.CAMPAIGN_STATUS_ACTIVE
    )
    assert isinstance(creator, CampaignCreator)


async def test_over_grpc_approval_and_edits_need_an_admin_and_record_the_caller(
    engine, clock, creator, campaigns, strategy_preview, tenant_settings, approval, editor, tenant_id
):
    servicer = CampaignServicer(
        creator=creator,
        campaigns=campaigns,
        preview=strategy_preview,
        tenant_settings=tenant_settings,
        approval=approval,
        step_editor=editor,
        stats=TenantStats(engine, campaigns.clock, BudgetLimits(calls=10, tokens=1000), 8),
    )
    member = pki().token("user:member-1", tenants=[tenant_id], roles=[])
    admin = pki().token("user:admin-1", tenants=[tenant_id], roles=["admin"])
    async with planner_server(servicer) as served:
        async with caller_channel(served.public, token=admin) as channel:
            stub = pb_grpc.CampaignServiceStub(channel)
            await stub.UpdateTenantSettings(
                pb.UpdateTenantSettingsRequest(
                    settings=pb.TenantSettings(tenant_id=tenant_id, require_approval=True),
                    update_mask=FieldMask(paths=["require_approval"]),
                )
            )
        async with caller_channel(served.public, token=member) as channel:
            stub = pb_grpc.CampaignServiceStub(channel)
            created = (await stub.CreateCampaign(request(tenant_id))).campaign
            assert created.status == pb.CAMPAIGN_STATUS_DRAFT
            for call, message in (
                (stub.ApproveCampaign, pb.ApproveCampaignRequest(tenant_id=tenant_id, campaign_id=created.campaign_id)),
                (stub.BatchApproveCampaigns, pb.BatchApproveCampaignsRequest(tenant_id=tenant_id)),
                (stub.UpdateCampaignStep, edit(tenant_id, created.campaign_id, 0, ["content"], content="Mine")),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call(message)
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with caller_channel(served.public, token=admin) as channel:
            stub = pb_grpc.CampaignServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.UpdateCampaignStep(edit(tenant_id, created.campaign_id, 0, ["status"]))
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "update_mask" in (exc.value.details() or "")
            await stub.UpdateCampaignStep(edit(tenant_id, created.campaign_id, 0, ["content"], content="Reviewed"))
            approved = await stub.ApproveCampaign(
                pb.ApproveCampaignRequest(tenant_id=tenant_id, campaign_id=created.campaign_id)
            )
            assert approved.campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
            timeline = await stub.GetCampaignTimeline(
                pb.GetCampaignTimelineRequest(tenant_id=tenant_id, campaign_id=created.campaign_id)
            )
    details = [e.detail for e in timeline.entries if e.kind in ("approved", "step_edited")]
    assert details == ["by user:admin-1: content", "by user:admin-1"]
