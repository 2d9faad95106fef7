"""Planning campaigns: a strategy from the strategist (or the request's own), checked and
expanded into step delays, for contacts the tenant has not suppressed. Nothing is stored here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.errors import DomainError, FailedPrecondition
from dripiq_common.windows import SendWindow
from dripiq_planner import lifecycle, repository, rules
from dripiq_planner.ai_budget import BudgetLimits, BudgetSpent
from dripiq_planner.owners import Owners
from dripiq_planner.strategist import Generation, PlanningFacts, Strategist
from dripiq_planner.strategy import Strategy, relative_delays
from dripiq_planner.tenants import TenantDefaults


@dataclass(frozen=True)
class CampaignRequest:
    """A create request, read and checked (convert.campaign_request)."""

    tenant_id: str
    request_id: str
    lead_id: str
    contact_id: str
    email: str
    product_id: str
    sender_identity_id: str
    time_zone: str  # empty: UTC
    window: SendWindow | None  # None: the tenant's default
    strategy: Strategy | None  # None: the strategist writes one
    # What templates may render ({{first_name}}) and strategists may use, by name.
    facts: dict[str, str]
    # The contact's own holiday calendar ("US-CA"); empty: the tenant's calendars apply.
    holiday_calendar: str = ""


@dataclass
class Draft:
    """One campaign planned and not stored yet; has what `lifecycle` needs of a campaign."""

    id: str
    tenant_id: str
    request: CampaignRequest
    strategy: Strategy
    strategist: str
    generations: list[Generation]
    delays: list[int]
    settings_json: dict[str, Any]
    # Set when the tenant's AI budget kept the model from being asked.
    budget_spent: BudgetSpent | None = None

    def step_times(self, start: datetime) -> list[datetime]:
        """When each step would go out if the campaign started at `start` and nothing intervened."""
        times: list[datetime] = []
        due = start
        for i, delay in enumerate(self.delays):
            due = lifecycle.place(self, lifecycle.after(due, delay), i, planned_from=due)
            times.append(due)
        return times

    def generation_rows(self, *, campaign_id: str | None, now: datetime) -> list[dict[str, Any]]:
        """The audit rows of its strategist calls (planner.ai_generations); no campaign for a preview."""
        return [
            {
                "created_at": now,
                "tenant_id": self.tenant_id,
                "campaign_id": campaign_id,
                "correlation_id": g.correlation_id,
                "strategist": g.strategist,
                "model": g.model,
                "prompt_version": g.prompt_version,
                "input_json": g.input_json,
                "output_json": g.output_json,
                "outcome": g.outcome,
                "error": g.error,
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "duration_ms": g.duration_ms,
            }
            for g in self.generations
        ]


@dataclass
class Planner:
    engine: AsyncEngine
    strategist: Strategist
    # Asked which contacts are suppressed; None: nobody is asked (every contact may be planned).
    owners: Owners | None = None
    # A tenant's daily AI budget unless its settings give one; None: no budget is kept.
    ai_budget: BudgetLimits | None = None
    # Requests of one call the strategist may plan with the model; the rest get its fallback.
    ai_per_batch: int = 100

    async def drafts(
        self, tenant_id: str, requests: Sequence[CampaignRequest | DomainError]
    ) -> list[Draft | DomainError]:
        """A draft for each request, or why there is none; a request that could not be read
        stays its error. The strategist is asked for all of them at once."""
        defaults = await self._defaults(tenant_id)
        planned = [r for r in requests if isinstance(r, CampaignRequest) and r.strategy is None]
        sender_domains = await self._sender_domains(tenant_id, planned)
        over_cap = {id(r) for r in planned[self.ai_per_batch :]}

        async def one(request: CampaignRequest | DomainError) -> Draft | DomainError:
            if isinstance(request, DomainError):
                return request
            without_model = (
                f"ai_batch_cap: only {self.ai_per_batch} campaigns of one request are planned by the model"
                if id(request) in over_cap
                else ""
            )
            try:
                return await self._draft(
                    request,
                    defaults,
                    sender_domain=sender_domains.get(request.sender_identity_id, ""),
                    without_model=without_model,
                )
            except DomainError as exc:
                return exc

        drafts = list(await asyncio.gather(*(one(r) for r in requests)))
        if self.owners is not None:
            emails = sorted({d.request.email.lower() for d in drafts if isinstance(d, Draft)})
            suppressed = await self.owners.suppressed(tenant_id, emails) or {}
            for i, draft in enumerate(drafts):
                if isinstance(draft, Draft) and (reason := suppressed.get(draft.request.email.lower())):
                    drafts[i] = FailedPrecondition(f"contact.email {draft.request.email} is suppressed ({reason})")
        return drafts

    async def _defaults(self, tenant_id: str) -> TenantDefaults:
        async with self.engine.connect() as conn:
            return TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant_id))

    async def _sender_domains(self, tenant_id: str, requests: Sequence[CampaignRequest]) -> dict[str, str]:
        """The domain of each sender identity the strategist writes for: its copy may name it."""
        if self.owners is None or not requests:
            return {}
        return await self.owners.sender_domains(tenant_id, sorted({r.sender_identity_id for r in requests}))

    async def _draft(
        self, request: CampaignRequest, defaults: TenantDefaults, *, sender_domain: str = "", without_model: str = ""
    ) -> Draft:
        window = request.window or defaults.window
        facts = request.facts
        campaign_id = str(uuid.uuid4())
        generations: list[Generation] = []
        budget_spent: BudgetSpent | None = None
        if request.strategy is not None:
            chosen, strategist = request.strategy, "request"
        else:
            planned = await self.strategist.plan(
                PlanningFacts(
                    tenant_id=request.tenant_id,
                    correlation_id=request.request_id or campaign_id,
                    contact={k: facts[k] for k in ("first_name", "last_name", "title") if facts[k]},
                    lead={k: facts[k] for k in ("company_name", "industry") if facts[k]},
                    product={
                        k: v
                        for k, v in (
                            ("name", facts["product_name"]),
                            ("description", facts["product_description"]),
                            ("url", facts["product_url"]),
                        )
                        if v
                    },
                    voice=defaults.voice,
                    guidelines=defaults.guidelines,
                    allow=defaults.allow_list().with_domains(
                        urlsplit(facts["product_url"]).hostname or "", sender_domain
                    ),
                    budget=defaults.ai_budget(self.ai_budget) if self.ai_budget else None,
                    without_model=without_model,
                )
            )
            chosen, strategist = planned.strategy, planned.generation.strategist
            generations = [*planned.earlier, planned.generation]
            budget_spent = planned.budget_spent
        rules.validate_strategy(chosen)
        return Draft(
            id=campaign_id,
            tenant_id=request.tenant_id,
            request=request,
            strategy=chosen,
            strategist=strategist,
            generations=generations,
            delays=relative_delays(chosen, seed=f"{request.tenant_id}:{request.contact_id}"),
            settings_json={
                "time_zone": request.time_zone or "UTC",
                "send_window": window.to_json(),
                "holidays": [request.holiday_calendar]
                if request.holiday_calendar
                else list(defaults.holiday_calendars),
            },
            budget_spent=budget_spent,
        )
