"""CampaignService operations: plan, create (one or a batch), read, pause, resume, cancel.

A single create is a batch of one, so both share every check: validation, the strategist,
the suppression check, request_id idempotency and the one-running-campaign rule.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, DomainError, FailedPrecondition, InvalidArgument, NotFound
from dripiq_common.grpc_server import status_for
from dripiq_common.outbox import enqueue
from dripiq_planner import convert, lifecycle, repository, rules, state, strategy, templates, timeline
from dripiq_planner.models import outbox
from dripiq_planner.owners import Owners
from dripiq_planner.state import CampaignStatus, StepStatus
from dripiq_planner.strategist import Generation, PlanningFacts, Strategist
from dripiq_planner.tenant_settings import TenantSettingsMixin
from dripiq_planner.tenants import (
    TenantDefaults,
)

log = structlog.get_logger(__name__)

MAX_BATCH = 1000


@dataclass
class Draft:
    """One campaign planned and not stored yet; has what `lifecycle` needs of a campaign."""

    id: str
    tenant_id: str
    request: pb.CreateCampaignRequest
    strategy: strategy.Strategy
    strategist: str
    generations: list[Generation]
    delays: list[int]
    settings_json: dict[str, Any]
    facts: dict[str, str]


def validate_request(request: pb.CreateCampaignRequest) -> None:
    validation.tenant_id(request.tenant_id)
    if len(request.request_id) > 128:
        raise InvalidArgument("request_id", "must be at most 128 characters")
    validation.required(request.contact.contact_id, "contact.contact_id", max_length=128)
    validation.email(request.contact.email, "contact.email")
    validation.required(request.lead.lead_id, "lead.lead_id", max_length=128)
    validation.required(request.product.product_id, "product.product_id", max_length=128)
    # Checked again at send time by the dispatcher, which owns identities and their verification.
    validation.required(request.sender_identity_id, "sender_identity_id", max_length=128)
    if request.contact.time_zone:
        try:
            ZoneInfo(request.contact.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                "contact.time_zone", f"unknown IANA time zone {request.contact.time_zone!r}"
            ) from None


def _generation_row(
    generation: Generation, *, tenant_id: str, campaign_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "created_at": now,
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "correlation_id": generation.correlation_id,
        "strategist": generation.strategist,
        "model": generation.model,
        "prompt_version": generation.prompt_version,
        "input_json": generation.input_json,
        "output_json": generation.output_json,
        "outcome": generation.outcome,
        "error": generation.error,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "duration_ms": generation.duration_ms,
    }


@dataclass
class CampaignService(TenantSettingsMixin):
    engine: AsyncEngine
    clock: Clock
    strategist: Strategist
    owners: Owners | None = None
    on_commit: Callable[[], None] = field(default=lambda: None)

    # -- planning -------------------------------------------------------------------------

    async def _defaults(self, tenant_id: str) -> TenantDefaults:
        async with self.engine.connect() as conn:
            return TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant_id))

    async def _draft(self, request: pb.CreateCampaignRequest, defaults: TenantDefaults) -> Draft:
        validate_request(request)
        window = convert.window_from_proto(request.send_window, "send_window") or defaults.window
        facts = templates.facts_of(request.contact, request.lead, request.product)
        campaign_id = str(uuid.uuid4())
        generations: list[Generation] = []
        if request.HasField("strategy"):
            chosen, strategist = convert.strategy_from_proto(request.strategy), "request"
        else:
            planned = await self.strategist.plan(
                PlanningFacts(
                    tenant_id=request.tenant_id,
                    correlation_id=request.request_id or campaign_id,
                    contact={k: facts[k] for k in ("first_name", "last_name", "title") if facts[k]},
                    lead={k: facts[k] for k in ("company_name", "industry") if facts[k]},
                    product={
                        k: v
                        for k, v in (("name", facts["product_name"]), ("description", facts["product_description"]))
                        if v
                    },
                    voice=defaults.voice,
                    guidelines=defaults.guidelines,
                )
            )
            chosen, strategist = planned.strategy, planned.generation.strategist
            generations = [*planned.earlier, planned.generation]
        rules.validate_strategy(chosen)
        return Draft(
            id=campaign_id,
            tenant_id=request.tenant_id,
            request=request,
            strategy=chosen,
            strategist=strategist,
            generations=generations,
            delays=strategy.relative_delays(chosen, seed=f"{request.tenant_id}:{request.contact.contact_id}"),
            settings_json={"time_zone": request.contact.time_zone or "UTC", "send_window": window.to_json()},
            facts=facts,
        )

    async def _drafts(self, requests: Sequence[pb.CreateCampaignRequest], tenant_id: str) -> list[Draft | DomainError]:
        defaults = await self._defaults(tenant_id)

        async def one(request: pb.CreateCampaignRequest) -> Draft | DomainError:
            try:
                return await self._draft(request, defaults)
            except DomainError as exc:
                return exc

        drafts = list(await asyncio.gather(*(one(r) for r in requests)))
        if self.owners is not None:
            emails = sorted({d.request.contact.email.lower() for d in drafts if isinstance(d, Draft)})
            suppressed = await self.owners.suppressed(tenant_id, emails) or {}
            for i, draft in enumerate(drafts):
                if isinstance(draft, Draft) and (reason := suppressed.get(draft.request.contact.email.lower())):
                    drafts[i] = FailedPrecondition(
                        f"contact.email {draft.request.contact.email} is suppressed ({reason})"
                    )
        return drafts

    # -- create ---------------------------------------------------------------------------

    async def create(self, request: pb.CreateCampaignRequest) -> pb.Campaign:
        [result] = await self._create_many(request.tenant_id, [request])
        if isinstance(result, DomainError):
            raise result
        return result

    async def batch_create(self, request: pb.BatchCreateCampaignsRequest) -> pb.BatchCreateCampaignsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        if not 1 <= len(request.requests) <= MAX_BATCH:
            raise InvalidArgument("requests", f"needs 1 to {MAX_BATCH} items, got {len(request.requests)}")
        items = []
        for item in request.requests:
            if item.tenant_id not in ("", tenant):
                raise InvalidArgument("requests.tenant_id", "must be empty or the batch's tenant_id")
            copy = pb.CreateCampaignRequest()
            copy.CopyFrom(item)
            copy.tenant_id = tenant
            items.append(copy)
        results = await self._create_many(tenant, items)
        return pb.BatchCreateCampaignsResponse(
            results=[
                pb.BatchCreateCampaignResult(error=status_for(r))
                if isinstance(r, DomainError)
                else pb.BatchCreateCampaignResult(campaign=r)
                for r in results
            ]
        )

    async def _create_many(
        self, tenant_id: str, requests: Sequence[pb.CreateCampaignRequest]
    ) -> list[pb.Campaign | DomainError]:
        validation.tenant_id(tenant_id)
        results: list[pb.Campaign | DomainError | Draft] = list(await self._drafts(requests, tenant_id))
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    stored = await self._store(conn, tenant_id, results)
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
        self, conn: AsyncConnection, tenant_id: str, items: list[pb.Campaign | DomainError | Draft]
    ) -> list[pb.Campaign | DomainError]:
        drafts = [d for d in items if isinstance(d, Draft)]
        existing = await repository.find_by_requests(
            conn, tenant_id=tenant_id, request_ids=[d.request.request_id for d in drafts if d.request.request_id]
        )
        running = await repository.find_running_many(
            conn,
            tenant_id=tenant_id,
            pairs=sorted({(d.request.contact.contact_id, d.request.product.product_id) for d in drafts}),
        )
        out: list[Any] = []
        fresh: list[tuple[int, Draft]] = []
        # A request_id seen earlier in this batch answers with that item's campaign.
        same_request: dict[int, int] = {}
        first_for_request: dict[str, int] = {}
        for position, item in enumerate(items):
            out.append(item)
            if not isinstance(item, Draft):
                continue
            request = item.request
            if request.request_id in existing:
                out[position] = await self._load(conn, existing[request.request_id])
                continue
            if request.request_id in first_for_request:
                same_request[position] = first_for_request[request.request_id]
                continue
            pair = (request.contact.contact_id, request.product.product_id)
            if pair in running:
                out[position] = AlreadyExists(
                    f"campaign {running[pair]} is already running for contact {pair[0]!r} and product {pair[1]!r}"
                )
                continue
            running[pair] = item.id
            if request.request_id:
                first_for_request[request.request_id] = position
            fresh.append((position, item))
        protos = await self._insert(conn, [draft for _, draft in fresh], self.clock.now())
        for (position, _), proto in zip(fresh, protos, strict=True):
            out[position] = proto
        for position, first in same_request.items():
            out[position] = out[first]
        return out

    async def _insert(self, conn: AsyncConnection, drafts: list[Draft], now: datetime) -> list[pb.Campaign]:
        if not drafts:
            return []
        campaigns, steps, generations, timers, protos = [], [], [], [], []
        for draft in drafts:
            request = draft.request
            campaign = {
                "id": draft.id,
                "tenant_id": draft.tenant_id,
                "request_id": request.request_id or None,
                "lead_id": request.lead.lead_id,
                "contact_id": request.contact.contact_id,
                "product_id": request.product.product_id,
                "sender_identity_id": request.sender_identity_id,
                "facts_json": draft.facts,
                "strategy_json": draft.strategy.to_json(),
                "rules_json": [rule.model_dump(mode="json") for rule in draft.strategy.adaptive_rules],
                "settings_json": draft.settings_json,
                "strategist": draft.strategist,
                "status": CampaignStatus.ACTIVE.value,
                "current_step_index": 0,
                "cancel_reason": "",
                "attention_reason": "",
                "created_at": now,
                "updated_at": now,
            }
            first_at = lifecycle.place(draft, lifecycle.after(now, draft.delays[0]), 0, planned_from=now)
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
                    "thread": threads[i],
                    "status": (StepStatus.SCHEDULED if i == 0 else StepStatus.PENDING).value,
                    "scheduled_at": first_at if i == 0 else None,
                    "schedule_version": 1 if i == 0 else 0,
                    "updated_at": now,
                }
                for i, step in enumerate(draft.strategy.outreach_campaign)
            ]
            campaigns.append(campaign)
            steps += draft_steps
            generations += [
                _generation_row(g, tenant_id=draft.tenant_id, campaign_id=draft.id, now=now) for g in draft.generations
            ]
            timers.append(lifecycle.step_timer(draft, step_index=0, version=1, fire_at=first_at))
            protos.append(
                convert.campaign_to_proto(
                    SimpleNamespace(**campaign),
                    [SimpleNamespace(message_id=None, sent_at=None, **s) for s in draft_steps],
                )
            )
        await repository.insert_campaigns(conn, campaigns=campaigns, steps=steps, generations=generations)
        await enqueue(conn, outbox, [lifecycle.timer_commands(drafts[0].tenant_id, timers)])
        return protos

    # -- read -----------------------------------------------------------------------------

    async def _load(self, conn: AsyncConnection, campaign: Row) -> pb.Campaign:
        return convert.campaign_to_proto(campaign, await repository.get_steps(conn, campaign_id=campaign.id))

    async def _change(
        self, tenant_id: str, campaign_id: str, change: Callable[[state.CampaignState, state.UnitOfWork], None]
    ) -> pb.Campaign:
        """Lock one campaign, let `change` act on it, write it back with what it caused."""
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.begin() as conn:
            campaigns = await state.load(conn, [(tenant_id, campaign_id)])
            campaign = campaigns.get((tenant_id, campaign_id))
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            work = state.UnitOfWork(now=self.clock.now())
            change(campaign, work)
            await state.flush(conn, [campaign], work)
        if work.outbox:
            self.on_commit()
        return await self.get(tenant_id, campaign_id)

    async def get(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            campaign = await repository.get_campaign(conn, tenant_id=tenant_id, campaign_id=campaign_id)
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            return await self._load(conn, campaign)

    async def list_campaigns(self, request: pb.ListCampaignsRequest) -> pb.ListCampaignsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        before = paging.decode_token(request.page_token, datetime, str)
        status = convert.status_filter(request.status)
        async with self.engine.connect() as conn:
            rows = await repository.list_campaigns(
                conn,
                tenant_id=tenant,
                status=status,
                contact_id=request.contact_id,
                lead_id=request.lead_id,
                before=before,
                limit=size + 1,
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListCampaignsResponse(
            campaigns=[convert.campaign_to_proto(row, [], with_strategy=False) for row in page], next_page_token=token
        )

    # -- change ---------------------------------------------------------------------------

    async def pause(self, tenant_id: str, campaign_id: str, resume_after_seconds: int) -> pb.Campaign:
        if resume_after_seconds < 0:
            raise InvalidArgument("resume_after_seconds", "must not be negative")

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status == CampaignStatus.ACTIVE:
                lifecycle.pause(work, campaign, resume_at=lifecycle.resume_after(work.now, resume_after_seconds))
            elif campaign.status != CampaignStatus.PAUSED:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)

    async def resume(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        """A paused campaign goes on; one that needs attention retries its failed step."""

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status == CampaignStatus.PAUSED:
                lifecycle.resume(work, campaign)
            elif campaign.status == CampaignStatus.NEEDS_ATTENTION:
                lifecycle.retry_failed(work, campaign)
            elif campaign.status != CampaignStatus.ACTIVE:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)

    async def retry_step(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        """The failed step of a campaign that needs attention goes out again (a new message id)."""

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status != CampaignStatus.NEEDS_ATTENTION:
                raise FailedPrecondition(
                    f"campaign {campaign_id} is {campaign.status}: only a campaign that needs attention has a step to retry"
                )
            lifecycle.retry_failed(work, campaign)

        return await self._change(tenant_id, campaign_id, change)

    async def cancel(self, tenant_id: str, campaign_id: str, reason: str) -> pb.Campaign:
        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status in state.RUNNING:
                lifecycle.end_campaign(
                    work, campaign, status=CampaignStatus.CANCELED, reason=reason or "canceled by request"
                )
            elif campaign.status != CampaignStatus.CANCELED:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)

    async def timeline(self, tenant_id: str, campaign_id: str) -> pb.GetCampaignTimelineResponse:
        return await timeline.timeline(self.engine, self.owners, await self.get(tenant_id, campaign_id))

    # -- preview ----------------------------------------------------------------------------

    async def preview(self, request: pb.PreviewStrategyRequest) -> pb.PreviewStrategyResponse:
        [draft] = await self._drafts([request.request], request.request.tenant_id)
        if isinstance(draft, DomainError):
            raise draft
        if draft.generations:
            # Not a campaign, but still a strategist call: every call is audited.
            async with self.engine.begin() as conn:
                await repository.insert_generations(
                    conn,
                    generations=[
                        _generation_row(g, tenant_id=draft.tenant_id, campaign_id=None, now=self.clock.now())
                        for g in draft.generations
                    ],
                )
        due = self.clock.now()
        steps = []
        for i, step in enumerate(draft.strategy.outreach_campaign):
            due = lifecycle.place(draft, lifecycle.after(due, draft.delays[i]), i, planned_from=due)
            item = pb.CampaignStep(
                step_index=i,
                channel=step.type,
                status=pb.STEP_STATUS_PENDING,
                relative_delay_seconds=draft.delays[i],
                subject=step.subject,
                content=step.content,
                call_to_action=step.call_to_action,
            )
            item.scheduled_at.FromDatetime(due)
            steps.append(item)
        return pb.PreviewStrategyResponse(
            strategy=convert.strategy_to_proto(draft.strategy.to_json()), steps=steps, strategist=draft.strategist
        )
