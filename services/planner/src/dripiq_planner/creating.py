"""Creating campaigns, one or a batch: planned drafts stored with their steps, their strategist
calls and the timer of their first step, in one transaction; requests without a strategy stored
as planning campaigns with their "plan campaign" work (planning_worker), in the same one.

A single create is a batch of one, so both share every check: the planning, request_id
idempotency and the one-running-campaign rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import planning_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, DomainError, InvalidArgument
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner import convert, lifecycle, repository, strategy, variants
from dripiq_planner.approval import campaign_change
from dripiq_planner.metrics import PLANNING_QUEUED
from dripiq_planner.models import outbox
from dripiq_planner.planning import Draft, Planner, Queued
from dripiq_planner.state import CampaignStatus, StepStatus
from dripiq_planner.tenants import TenantDefaults

log = structlog.get_logger(__name__)

MAX_BATCH = 1000
# Half of gRPC's default receive limit (4 MiB): what one transaction of inserts should hold.
MAX_BATCH_BYTES = 2 * 1024 * 1024


@dataclass
class CampaignCreator:
    engine: AsyncEngine
    clock: Clock
    planner: Planner
    on_commit: Callable[[], None] = field(default=lambda: None)
    # True: the strategist plans a request without a strategy before the create answers, as a
    # preview does; False (the service): it is stored as planning and the planning workers plan it.
    plan_inline: bool = False

    async def create(self, request: pb.CreateCampaignRequest) -> pb.Campaign:
        [result] = await self._create_many(request.tenant_id, [request])
        if isinstance(result, DomainError):
            raise result
        return result

    async def batch_create(self, request: pb.BatchCreateCampaignsRequest) -> pb.BatchCreateCampaignsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        if not 1 <= len(request.requests) <= MAX_BATCH:
            raise InvalidArgument("requests", f"needs 1 to {MAX_BATCH} items, got {len(request.requests)}")
        if (size := request.ByteSize()) > MAX_BATCH_BYTES:
            raise InvalidArgument("requests", f"are {size} bytes together; at most {MAX_BATCH_BYTES} (split the batch)")
        items = []
        for item in request.requests:
            if item.tenant_id not in ("", tenant):
                raise InvalidArgument("requests.tenant_id", "must be empty or the batch's tenant_id")
            copy = pb.CreateCampaignRequest()
            copy.CopyFrom(item)
            copy.tenant_id = tenant
            items.append(copy)
        return convert.batch_results_to_proto(await self._create_many(tenant, items))

    async def _create_many(
        self, tenant_id: str, requests: Sequence[pb.CreateCampaignRequest]
    ) -> list[pb.Campaign | DomainError]:
        validation.tenant_id(tenant_id)
        read = convert.campaign_requests(requests)
        planned = await (
            self.planner.drafts(tenant_id, read) if self.plan_inline else self.planner.admit(tenant_id, read)
        )
        return await self.store(tenant_id, planned)

    async def store(
        self,
        tenant_id: str,
        planned: Sequence[Draft | Queued | DomainError],
        *,
        as_draft: bool = False,
        saved_by: str | None = None,
    ) -> list[pb.Campaign | DomainError]:
        """Store planned (or queued for planning) campaigns with every check a create makes;
        `as_draft` holds planned ones for approval whatever the tenant's setting. `saved_by`
        names the principal on each new campaign's timeline ("saved_as_draft"), written in the
        same transaction; one answered from an earlier request_id keeps its first record."""
        results: list[pb.Campaign | DomainError | Draft | Queued] = list(planned)
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    stored = await self._store(conn, tenant_id, results, as_draft=as_draft, saved_by=saved_by)
                break
            except IntegrityError:
                # A concurrent create won a race for a request_id or a contact: look again.
                if attempt == 2:
                    raise
        self.on_commit()
        created = [r for r in stored if isinstance(r, pb.Campaign)]
        if created:
            log.info("campaigns.created", tenant_id=tenant_id, count=len(created))
        return stored

    async def _store(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        items: list[pb.Campaign | DomainError | Draft | Queued],
        *,
        as_draft: bool,
        saved_by: str | None = None,
    ) -> list[pb.Campaign | DomainError]:
        drafts = [d for d in items if isinstance(d, Draft | Queued)]
        existing = await repository.find_by_requests(
            conn, tenant_id=tenant_id, request_ids=[d.request.request_id for d in drafts if d.request.request_id]
        )
        running = await repository.find_running_many(
            conn,
            tenant_id=tenant_id,
            pairs=sorted({(d.request.contact_id, d.request.product_id) for d in drafts}),
        )
        now = self.clock.now()
        resting = await _resting_contacts(conn, tenant_id, drafts, now)
        out: list[Any] = []
        fresh: list[tuple[int, Draft | Queued]] = []
        # A request_id seen earlier in this batch answers with that item's campaign.
        same_request: dict[int, int] = {}
        first_for_request: dict[str, int] = {}
        for position, item in enumerate(items):
            out.append(item)
            if not isinstance(item, Draft | Queued):
                continue
            request = item.request
            if request.request_id in existing:
                row = existing[request.request_id]
                out[position] = convert.campaign_to_proto(row, await repository.get_steps(conn, campaign_id=row.id))
                continue
            if request.request_id in first_for_request:
                same_request[position] = first_for_request[request.request_id]
                continue
            pair = (request.contact_id, request.product_id)
            if pair in running:
                out[position] = AlreadyExists(
                    f"campaign {running[pair]} is already running for contact {pair[0]!r} and product {pair[1]!r}"
                )
                continue
            if resting is not None and (why := resting.why(request.contact_id)):
                out[position] = AlreadyExists(why)
                continue
            running[pair] = item.id
            if resting is not None:
                resting.blocking[request.contact_id] = (item.id, None)
            if request.request_id:
                first_for_request[request.request_id] = position
            fresh.append((position, item))
        tenant = (await repository.tenant_defaults(conn, tenant_ids=[tenant_id]))[tenant_id]
        status = lifecycle.status_when_ready(require_approval=as_draft or tenant.require_approval)
        protos = await self._insert(conn, [d for _, d in fresh if isinstance(d, Draft)], now, status)
        protos += await self._queue(conn, [q for _, q in fresh if isinstance(q, Queued)], now)
        if saved_by is not None and protos:
            changes = [
                campaign_change(tenant_id, p.campaign_id, kind="saved_as_draft", actor=saved_by, now=now)
                for p in protos
            ]
            await repository.insert_changes(conn, changes=changes)
        by_id = {proto.campaign_id: proto for proto in protos}
        for position, item in fresh:
            out[position] = by_id[item.id]
        for position, first in same_request.items():
            out[position] = out[first]
        return out

    async def _insert(
        self, conn: AsyncConnection, drafts: list[Draft], now: datetime, status: CampaignStatus
    ) -> list[pb.Campaign]:
        """Active campaigns get their first step's timer; drafts get none, and every step shows
        when it would go out if the draft started now."""
        if not drafts:
            return []
        campaigns, steps, generations, timers, protos = [], [], [], [], []
        for draft in drafts:
            campaign = campaign_row(
                draft,
                now,
                status=status,
                strategy_json=draft.strategy.to_json(),
                rules_json=[rule.model_dump(mode="json") for rule in draft.strategy.adaptive_rules],
                strategist=draft.strategist,
                strategist_reason=draft.strategist_reason,
                planned_at=now,
            )
            draft_steps, first = planned_steps(draft, now, status)
            campaigns.append(campaign)
            steps += draft_steps
            generations += draft.generation_rows(campaign_id=draft.id, now=now)
            if status == CampaignStatus.ACTIVE:
                timers.append(lifecycle.step_timer(draft, step_index=0, version=1, fire_at=first.at))
            protos.append(
                convert.campaign_to_proto(
                    SimpleNamespace(**campaign),
                    [SimpleNamespace(message_id=None, sent_at=None, **s) for s in draft_steps],
                )
            )
        await repository.insert_campaigns(conn, campaigns=campaigns, steps=steps, generations=generations)
        if timers:
            await enqueue(conn, outbox, [lifecycle.timer_commands(drafts[0].tenant_id, timers)])
        return protos

    async def _queue(self, conn: AsyncConnection, queued: list[Queued], now: datetime) -> list[pb.Campaign]:
        """Planning campaigns and their "plan campaign" work, in the caller's transaction: a
        crash after the commit loses neither."""
        if not queued:
            return []
        campaigns = [planning_row(item, now) for item in queued]
        await repository.insert_campaigns(conn, campaigns=campaigns, steps=[], generations=[])
        await enqueue(
            conn,
            outbox,
            [
                OutboxMessage(
                    Subjects.planner_plan(item.tenant_id),
                    planning_pb2.PlanCampaign(tenant_id=item.tenant_id, campaign_id=item.id),
                )
                for item in queued
            ],
        )
        PLANNING_QUEUED.inc(len(queued))
        return [convert.campaign_to_proto(SimpleNamespace(**row), []) for row in campaigns]


@dataclass
class _Resting:
    """Contacts a campaign keeps from another under the tenant's enrolment cool-down."""

    cooldown: timedelta
    # contact_id -> (campaign id, when it ended; None while it runs)
    blocking: dict[str, tuple[str, datetime | None]]

    def why(self, contact_id: str) -> str | None:
        if (found := self.blocking.get(contact_id)) is None:
            return None
        campaign_id, ended_at = found
        if ended_at is None:
            return f"campaign {campaign_id} is already running for contact {contact_id!r} (enrolment_cooldown)"
        return (
            f"campaign {campaign_id} of contact {contact_id!r} ended at {ended_at.isoformat()}; the tenant's "
            f"enrolment_cooldown keeps the contact from another until {(ended_at + self.cooldown).isoformat()}"
        )


async def _resting_contacts(
    conn: AsyncConnection, tenant_id: str, drafts: Sequence[Draft | Queued], now: datetime
) -> _Resting | None:
    """With the tenant's enrolment cool-down on, the contacts of `drafts` that a running
    campaign, or one ended less than the cool-down ago, keeps from another; None when it is off.
    The contacts stay locked until commit, so a concurrent create waits and then sees ours."""
    settings = TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant_id))
    if settings.enrolment_cooldown_seconds <= 0 or not drafts:
        return None
    cooldown = timedelta(seconds=settings.enrolment_cooldown_seconds)
    contacts = sorted({d.request.contact_id for d in drafts})
    await repository.lock_contacts(conn, tenant_id=tenant_id, contact_ids=contacts)
    return _Resting(
        cooldown,
        await repository.find_blocking(conn, tenant_id=tenant_id, contact_ids=contacts, ended_after=now - cooldown),
    )


def planning_row(item: Queued, now: datetime) -> dict[str, Any]:
    """A campaign waiting for its strategy: no steps, no strategy, no rules yet."""
    return campaign_row(item, now, status=CampaignStatus.PLANNING)


def campaign_row(
    item: Draft | Queued,
    now: datetime,
    *,
    status: CampaignStatus,
    strategy_json: dict[str, Any] | None = None,
    rules_json: list[Any] | None = None,
    strategist: str = "",
    strategist_reason: str = "",
    planned_at: datetime | None = None,
) -> dict[str, Any]:
    """A new campaign's row, planned or waiting for its strategy."""
    request = item.request
    return {
        "id": item.id,
        "tenant_id": item.tenant_id,
        "request_id": request.request_id or None,
        "lead_id": request.lead_id,
        "contact_id": request.contact_id,
        "product_id": request.product_id,
        "sender_identity_id": request.sender_identity_id,
        "facts_json": request.facts,
        "strategy_json": strategy_json or {},
        "rules_json": rules_json or [],
        "settings_json": item.settings_json,
        "strategist": strategist,
        "strategist_reason": strategist_reason,
        "planned_at": planned_at,
        "planning_until": None,
        "status": status.value,
        "current_step_index": 0,
        "cancel_reason": "",
        "attention_reason": "",
        "created_at": now,
        "updated_at": now,
    }


def planned_steps(
    draft: Draft, now: datetime, status: CampaignStatus = CampaignStatus.ACTIVE
) -> tuple[list[dict[str, Any]], lifecycle.Placement]:
    """A planned campaign's step rows and where its first step lands. An active campaign's
    first step is scheduled; a draft's steps all wait, each showing when it would go out."""
    first = lifecycle.placement(
        draft,
        lifecycle.after(now, draft.delays[0]),
        0,
        planned_from=now,
        window=draft.strategy.outreach_campaign[0].send_window,
    )
    if status == CampaignStatus.DRAFT:
        planned: list[datetime | None] = list(draft.step_times(now))
        step_statuses = [StepStatus.PENDING] * len(planned)
    else:
        planned = [first.at] + [None] * (len(draft.delays) - 1)
        step_statuses = [StepStatus.SCHEDULED] + [StepStatus.PENDING] * (len(planned) - 1)
    threads = strategy.threaded(draft.strategy.outreach_campaign)
    draft_steps = [
        {
            "campaign_id": draft.id,
            "tenant_id": draft.tenant_id,
            "step_index": i,
            "channel": step.type,
            "timing": step.timing,
            "relative_delay_seconds": draft.delays[i],
            "subject": step.subject,
            "content": step.content,
            "call_to_action": step.call_to_action,
            "variants": variants.to_json(step),
            "variant": "",
            "send_window_json": step.send_window,
            "thread": threads[i],
            "status": step_statuses[i].value,
            "scheduled_at": planned[i],
            "placement_note": first.note if i == 0 and status != CampaignStatus.DRAFT else "",
            "schedule_version": 1 if step_statuses[i] == StepStatus.SCHEDULED else 0,
            "updated_at": now,
        }
        for i, step in enumerate(draft.strategy.outreach_campaign)
    ]
    return draft_steps, first
