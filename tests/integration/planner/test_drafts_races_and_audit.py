"""Drafts under concurrency and who did what, on real PostgreSQL.

Concurrent calls are made to meet: a third transaction holds the drafts' rows, every call is
started and waits on that lock, then it lets go. Each campaign must be approved once, arm its
first step once and carry one approval record; an approval racing a cancel ends canceled with
nothing left armed. The timeline names the principal for a saved preview, an approval (one or
by filter) and an edit.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import (
    canceled_groups,
    drain_outbox,
    request,
    require_approval,
    schedules,
    send_commands,
    step_timer,
    timer_commands,
)
from owner_servers import planner_server
from secured import caller_channel, pki
from sqlalchemy import text
from waiting import eventually

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.errors import FailedPrecondition
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.handlers import CampaignServicer
from dripiq_planner.planning import Planner
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.strategist.template_strategist import TemplateStrategist


async def _drafts(creator, tenant_id: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        contact = pb.Contact(contact_id=f"c-{i}", email=f"c-{i}@example.com", first_name="Ada")
        out.append((await creator.create(request(tenant_id, contact=contact))).campaign_id)
    return out


async def _changes(engine, tenant_id: str) -> list[tuple[str, str, str]]:
    """(campaign_id, kind, actor) of the tenant's recorded changes, in order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT campaign_id, kind, actor FROM planner.campaign_changes WHERE tenant_id = :t ORDER BY id"),
            {"t": tenant_id},
        )
        return [tuple(r) for r in rows]


async def _lock_waiters(engine, holder_pid: int) -> int:
    """Backends waiting, directly or behind another waiter, on the holder's locks."""
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> :holder"
                    ),
                    {"holder": holder_pid},
                )
            ).scalar_one()
        )


class Held:
    """A transaction holding the campaigns' rows while calls are started against them."""

    def __init__(self, engine, campaign_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.campaign_ids = engine, campaign_ids
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Held:
        self.conn = await self.engine.connect()
        await self.conn.execute(text("BEGIN"))
        await self.conn.execute(
            text("SELECT id FROM planner.contact_campaigns WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
            {"ids": self.campaign_ids},
        )
        self.pid = (await self.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return self

    async def start(self, call) -> None:  # type: ignore[no-untyped-def]
        """Start a call and wait until it waits on a lock, so calls queue in the order started."""
        self.tasks.append(asyncio.create_task(call))
        count = len(self.tasks)

        async def queued() -> bool:
            return await _lock_waiters(self.engine, self.pid) >= count

        await eventually(queued, f"call {count} waiting on the held rows")

    async def release(self) -> list[object]:
        await self.conn.execute(text("COMMIT"))
        await self.conn.close()
        return await asyncio.gather(*self.tasks, return_exceptions=True)

    async def __aexit__(self, *exc: object) -> None:
        if not self.conn.closed:
            await self.conn.execute(text("ROLLBACK"))
            await self.conn.close()
        for task in self.tasks:
            task.cancel()


async def test_two_approvals_and_a_batch_approval_at_once_approve_each_draft_once(
    engine, creator, approval, campaigns, tenant_settings, tenant_id
):
    await require_approval(tenant_settings, tenant_id)
    first, second, third = await _drafts(creator, tenant_id, 3)

    async with Held(engine, [first, second, third]) as held:
        await held.start(approval.approve(tenant_id, first, actor="user:one"))
        await held.start(approval.approve(tenant_id, first, actor="user:two"))
        await held.start(
            approval.batch_approve(pb.BatchApproveCampaignsRequest(tenant_id=tenant_id), actor="user:bulk")
        )
        await held.start(approval.approve(tenant_id, second, actor="user:three"))
        one, two, bulk, three = await held.release()

    assert one.status == two.status == three.status == pb.CAMPAIGN_STATUS_ACTIVE
    for campaign_id in (first, second, third):
        assert (await campaigns.get(tenant_id, campaign_id)).status == pb.CAMPAIGN_STATUS_ACTIVE
    armed = Counter(t.key for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))))
    assert armed == Counter(f"{c}:step" for c in (first, second, third))
    recorded = [(c, actor) for c, kind, actor in await _changes(engine, tenant_id) if kind == "approved"]
    assert Counter(c for c, _ in recorded) == Counter([first, second, third])
    # Which call got a row first is the database's choice; each approval names the call that gave it.
    by = dict(recorded)
    assert by[first] in ("user:one", "user:two", "user:bulk")
    assert by[second] in ("user:three", "user:bulk")
    assert by[third] == "user:bulk"
    assert bulk.approved_count == list(by.values()).count("user:bulk") and not bulk.more


@pytest.mark.parametrize("first_call", ["approve", "cancel"])
async def test_an_approval_racing_a_cancel_ends_canceled_with_nothing_armed(
    engine, creator, approval, campaigns, reactor, clock, tenant_settings, tenant_id, first_call
):
    await require_approval(tenant_settings, tenant_id)
    [campaign_id] = await _drafts(creator, tenant_id, 1)
    calls = {
        "approve": approval.approve(tenant_id, campaign_id, actor="user:reviewer"),
        "cancel": campaigns.cancel(tenant_id, campaign_id, "wrong list"),
    }
    order = [first_call, *(c for c in calls if c != first_call)]

    async with Held(engine, [campaign_id]) as held:
        for name in order:
            await held.start(calls[name])
        outcome = dict(zip(order, await held.release(), strict=True))

    assert outcome["cancel"].status == pb.CAMPAIGN_STATUS_CANCELED
    assert (await campaigns.get(tenant_id, campaign_id)).status == pb.CAMPAIGN_STATUS_CANCELED
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    approved = [kind for _, kind, _ in await _changes(engine, tenant_id) if kind == "approved"]
    if isinstance(outcome["approve"], FailedPrecondition):
        # Canceled first: the approval is refused, nothing was armed or recorded.
        assert "canceled" in str(outcome["approve"])
        assert (schedules(commands), approved) == ([], [])
    else:
        # Approved first: its timer was armed, and the cancel took it back in its transaction.
        # Its answer is the campaign as it is once the approval committed: the cancel, queued
        # behind it, may already have ended it.
        assert outcome["approve"].status in (pb.CAMPAIGN_STATUS_ACTIVE, pb.CAMPAIGN_STATUS_CANCELED)
        assert [t.key for t in schedules(commands)] == [f"{campaign_id}:step"]
        assert f"campaign:{campaign_id}" in canceled_groups(commands)
        assert approved == ["approved"]
    # Either way a step timer that fires anyway sends nothing.
    for version in (0, 1, 2):
        await reactor.on_timer(step_timer(tenant_id, campaign_id, 0, version))
    assert send_commands(await drain_outbox(engine, tenant_id)) == []


async def test_the_timeline_names_who_saved_approved_and_edited_a_draft(
    engine, clock, creator, campaigns, approval, tenant_settings, tenant_id
):
    preview = StrategyPreview(engine, clock, Planner(engine, TemplateStrategist()), creator=creator)
    asked = request(tenant_id, request_id="saved-1")

    saved = await preview.preview(pb.PreviewStrategyRequest(request=asked, save_as_draft=True), actor="user:writer")
    # The same request answered again is the same draft, saved once.
    again = await preview.preview(pb.PreviewStrategyRequest(request=asked, save_as_draft=True), actor="user:other")
    assert again.campaign.campaign_id == saved.campaign.campaign_id
    # A preview not saved records nothing anywhere.
    await preview.preview(pb.PreviewStrategyRequest(request=request(tenant_id, request_id="x")), actor="user:x")
    campaign_id = saved.campaign.campaign_id
    await StepEditor(engine, clock, campaigns).update(
        pb.UpdateCampaignStepRequest(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            step_index=1,
            step=pb.CampaignStep(subject="Checked"),
            update_mask=FieldMask(paths=["subject"]),
        ),
        actor="user:editor",
    )
    await approval.batch_approve(pb.BatchApproveCampaignsRequest(tenant_id=tenant_id), actor="user:bulk")

    assert await _changes(engine, tenant_id) == [
        (campaign_id, "saved_as_draft", "user:writer"),
        (campaign_id, "step_edited", "user:editor"),
        (campaign_id, "approved", "user:bulk"),
    ]
    timeline = await campaigns.timeline(tenant_id, campaign_id)
    entries = [(e.kind, e.detail) for e in timeline.entries if e.kind in ("saved_as_draft", "approved", "step_edited")]
    assert entries == [
        ("saved_as_draft", "by user:writer"),
        ("step_edited", "by user:editor: subject"),
        ("approved", "by user:bulk"),
    ]


async def test_a_preview_saved_over_grpc_records_the_callers_subject(
    engine, clock, creator, campaigns, tenant_settings, approval, tenant_id
):
    preview = StrategyPreview(engine, clock, Planner(engine, TemplateStrategist()), creator=creator)
    servicer = CampaignServicer(
        creator=creator,
        campaigns=campaigns,
        preview=preview,
        tenant_settings=tenant_settings,
        approval=approval,
        step_editor=StepEditor(engine, clock, campaigns),
        stats=TenantStats(engine, clock, BudgetLimits(calls=10, tokens=1000), 8),
    )
    member = pki().token("user:member-7", tenants=[tenant_id], roles=[])
    async with planner_server(servicer) as served:
        async with caller_channel(served.public, token=member) as channel:
            stub = pb_grpc.CampaignServiceStub(channel)
            saved = await stub.PreviewStrategy(
                pb.PreviewStrategyRequest(request=request(tenant_id), save_as_draft=True)
            )
            timeline = await stub.GetCampaignTimeline(
                pb.GetCampaignTimelineRequest(tenant_id=tenant_id, campaign_id=saved.campaign.campaign_id)
            )
            # A member may save a draft, but approving it is an administrator's sign-off.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ApproveCampaign(
                    pb.ApproveCampaignRequest(tenant_id=tenant_id, campaign_id=saved.campaign.campaign_id)
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert saved.campaign.status == pb.CAMPAIGN_STATUS_DRAFT
    assert [(e.kind, e.detail) for e in timeline.entries if e.kind == "saved_as_draft"] == [
        ("saved_as_draft", "by user:member-7")
    ]
