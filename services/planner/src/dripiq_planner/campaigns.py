"""CampaignService operations: create, read and cancel campaigns."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner import lifecycle, repository, rules, strategy, templates

log = structlog.get_logger(__name__)

_CAMPAIGN_STATUS = {
    "active": pb.CAMPAIGN_STATUS_ACTIVE,
    "paused": pb.CAMPAIGN_STATUS_PAUSED,
    "completed": pb.CAMPAIGN_STATUS_COMPLETED,
    "canceled": pb.CAMPAIGN_STATUS_CANCELED,
}
_STEP_STATUS = {
    "pending": pb.STEP_STATUS_PENDING,
    "scheduled": pb.STEP_STATUS_SCHEDULED,
    "sending": pb.STEP_STATUS_SENDING,
    "sent": pb.STEP_STATUS_SENT,
    "failed": pb.STEP_STATUS_FAILED,
    "skipped": pb.STEP_STATUS_SKIPPED,
    "canceled": pb.STEP_STATUS_CANCELED,
}


def validate_request(request: pb.CreateCampaignRequest) -> strategy.Strategy:
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
    chosen = strategy.from_proto(request.strategy) if request.HasField("strategy") else templates.template_strategy()
    rules.validate_strategy(chosen)
    return chosen


def to_proto(campaign: Row, steps: list[Row]) -> pb.Campaign:
    out = pb.Campaign(
        campaign_id=campaign.id,
        tenant_id=campaign.tenant_id,
        lead_id=campaign.lead_id,
        contact_id=campaign.contact_id,
        product_id=campaign.product_id,
        status=_CAMPAIGN_STATUS[campaign.status],
        sender_identity_id=campaign.sender_identity_id,
        strategy=strategy.to_proto(campaign.strategy_json),
        current_step_index=campaign.current_step_index,
        cancel_reason=campaign.cancel_reason,
    )
    out.created_at.FromDatetime(campaign.created_at)
    out.updated_at.FromDatetime(campaign.updated_at)
    for step in steps:
        item = out.steps.add(
            step_index=step.step_index,
            channel=step.channel,
            status=_STEP_STATUS[step.status],
            relative_delay_seconds=step.relative_delay_seconds,
            subject=step.subject,
            content=step.content,
            call_to_action=step.call_to_action,
            message_id=step.message_id or "",
        )
        if step.scheduled_at:
            item.scheduled_at.FromDatetime(step.scheduled_at)
        if step.sent_at:
            item.sent_at.FromDatetime(step.sent_at)
    return out


@dataclass
class CampaignService:
    engine: AsyncEngine
    clock: Clock
    on_commit: Callable[[], None] = field(default=lambda: None)

    async def create(self, request: pb.CreateCampaignRequest) -> pb.Campaign:
        chosen = validate_request(request)
        tenant = request.tenant_id
        if request.request_id:
            async with self.engine.connect() as conn:
                existing = await repository.find_by_request(conn, tenant_id=tenant, request_id=request.request_id)
                if existing is not None:
                    return await self._load(conn, existing)
        try:
            async with self.engine.begin() as conn:
                campaign_id = await self._insert(conn, request, chosen)
        except IntegrityError:
            # Lost a race with a concurrent create: answer as if we had arrived second.
            async with self.engine.connect() as conn:
                if request.request_id:
                    existing = await repository.find_by_request(conn, tenant_id=tenant, request_id=request.request_id)
                    if existing is not None:
                        return await self._load(conn, existing)
                await self._refuse_if_running(conn, request)
            raise
        self.on_commit()
        log.info("campaign.created", tenant_id=tenant, campaign_id=campaign_id, steps=len(chosen.outreach_campaign))
        return await self.get(tenant, campaign_id)

    async def _refuse_if_running(self, conn: AsyncConnection, request: pb.CreateCampaignRequest) -> None:
        running = await repository.find_running(
            conn,
            tenant_id=request.tenant_id,
            contact_id=request.contact.contact_id,
            product_id=request.product.product_id,
        )
        if running is not None:
            raise AlreadyExists(
                f"campaign {running.id} is already running for contact {request.contact.contact_id!r} "
                f"and product {request.product.product_id!r}"
            )

    async def _insert(self, conn: AsyncConnection, request: pb.CreateCampaignRequest, chosen: strategy.Strategy) -> str:
        await self._refuse_if_running(conn, request)
        now = self.clock.now()
        campaign_id = str(uuid.uuid4())
        delays = strategy.relative_delays(chosen, seed=f"{request.tenant_id}:{request.contact.contact_id}")
        facts = templates.facts_of(request.contact, request.lead, request.product)
        await repository.insert_campaign(
            conn,
            values={
                "id": campaign_id,
                "tenant_id": request.tenant_id,
                "request_id": request.request_id or None,
                "lead_id": request.lead.lead_id,
                "contact_id": request.contact.contact_id,
                "product_id": request.product.product_id,
                "sender_identity_id": request.sender_identity_id,
                "facts_json": facts,
                "strategy_json": chosen.to_json(),
                "rules_json": [rule.model_dump(mode="json") for rule in chosen.adaptive_rules],
                "settings_json": {"time_zone": request.contact.time_zone or "UTC"},
                "created_at": now,
                "updated_at": now,
            },
            steps=[
                {
                    "campaign_id": campaign_id,
                    "tenant_id": request.tenant_id,
                    "step_index": i,
                    "channel": step.type,
                    "timing": step.timing,
                    "relative_delay_seconds": delays[i],
                    "subject": step.subject,
                    "content": step.content,
                    "call_to_action": step.call_to_action,
                    "updated_at": now,
                }
                for i, step in enumerate(chosen.outreach_campaign)
            ],
        )
        campaign = await repository.get_campaign(conn, tenant_id=request.tenant_id, campaign_id=campaign_id)
        first = (await repository.get_steps(conn, campaign_id=campaign_id))[0]
        await lifecycle.schedule_step(
            conn, campaign=campaign, step=first, fire_at=lifecycle.after(now, delays[0]), now=now
        )
        return campaign_id

    async def _load(self, conn: AsyncConnection, campaign: Row) -> pb.Campaign:
        return to_proto(campaign, await repository.get_steps(conn, campaign_id=campaign.id))

    async def get(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            campaign = await repository.get_campaign(conn, tenant_id=tenant_id, campaign_id=campaign_id)
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            return await self._load(conn, campaign)

    async def cancel(self, tenant_id: str, campaign_id: str, reason: str) -> pb.Campaign:
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.begin() as conn:
            campaign = await repository.get_campaign(
                conn, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
            )
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            if campaign.status == "canceled":
                return await self._load(conn, campaign)
            if campaign.status not in repository.RUNNING:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")
            await lifecycle.end_campaign(
                conn, campaign=campaign, status="canceled", reason=reason or "canceled by request", now=self.clock.now()
            )
        self.on_commit()
        return await self.get(tenant_id, campaign_id)
