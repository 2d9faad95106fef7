"""Planning campaigns: a strategy from the strategist (or the request's own), checked and
expanded into step delays, for contacts the tenant has not suppressed. Nothing is stored here.

A create request without a strategy is admitted as `Queued` (checked, not planned): the planning
workers plan it later from its stored row (`Planner.plan_stored`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.errors import DomainError, FailedPrecondition, InvalidArgument
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
    # Why the template wrote the strategy rather than the model ("" when it did not).
    strategist_reason: str = ""

    def step_times(self, start: datetime) -> list[datetime]:
        """When each step would go out if the campaign started at `start` and nothing intervened."""
        times: list[datetime] = []
        due = start
        for i, delay in enumerate(self.delays):
            window = self.strategy.outreach_campaign[i].send_window
            due = lifecycle.place(self, lifecycle.after(due, delay), i, planned_from=due, window=window)
            times.append(due)
        return times

    def generation_rows(self, *, campaign_id: str | None, now: datetime) -> list[dict[str, Any]]:
        """The audit rows of its strategist calls (planner.ai_generations); no campaign for a preview."""
        return [generation_row(g, tenant_id=self.tenant_id, campaign_id=campaign_id, now=now) for g in self.generations]


def generation_row(g: Generation, *, tenant_id: str, campaign_id: str | None, now: datetime) -> dict[str, Any]:
    """The planner.ai_generations row of one strategist call."""
    return {
        "created_at": now,
        "tenant_id": tenant_id,
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


@dataclass
class Queued:
    """A request admitted without a strategy: stored as a planning campaign, planned later."""

    id: str
    tenant_id: str
    request: CampaignRequest
    settings_json: dict[str, Any]


NO_MODEL = "no_model: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set, so the built-in templates plan"


def stored_request(row: Row) -> CampaignRequest:
    """The request a planning campaign was created from, as its row keeps it."""
    facts = dict(row.facts_json)
    settings = row.settings_json
    return CampaignRequest(
        tenant_id=row.tenant_id,
        request_id=row.request_id or "",
        lead_id=row.lead_id,
        contact_id=row.contact_id,
        email=facts["email"],
        product_id=row.product_id,
        sender_identity_id=row.sender_identity_id,
        time_zone=settings["time_zone"],
        window=SendWindow.from_json(settings["send_window"]),
        strategy=None,
        facts=facts,
    )


@dataclass
class Planner:
    engine: AsyncEngine
    strategist: Strategist
    # Asked which contacts are suppressed; None: nobody is asked (every contact may be planned).
    owners: Owners | None = None
    # A tenant's daily AI budget unless its settings give one; None: no budget is kept.
    ai_budget: BudgetLimits | None = None

    @property
    def uses_model(self) -> bool:
        """Whether a plan may wait on a model (else it is CPU only, and never worth a hold)."""
        return self.strategist.uses_model

    async def admit(
        self, tenant_id: str, requests: Sequence[CampaignRequest | DomainError]
    ) -> list[Draft | Queued | DomainError]:
        """What `drafts` answers, except that a request without a strategy is checked (its
        contact not suppressed) and queued rather than planned: nothing waits for the model."""
        defaults = await self._defaults(tenant_id)
        requests, sender_domains = await self._known_senders(tenant_id, requests)
        queued: dict[int, Queued] = {}
        for position, request in enumerate(requests):
            if isinstance(request, CampaignRequest) and request.strategy is None:
                window = request.window or defaults.window
                settings_json = {"time_zone": request.time_zone or "UTC", "send_window": window.to_json()}
                queued[position] = Queued(str(uuid.uuid4()), request.tenant_id, request, settings_json)
        rest = [r for position, r in enumerate(requests) if position not in queued]
        planned = iter(await self._planned(rest, defaults, sender_domains) if rest else [])
        admitted: list[Draft | Queued | DomainError] = [
            queued[position] if position in queued else next(planned) for position in range(len(requests))
        ]
        return await self._unsuppressed(tenant_id, admitted)

    async def plan_stored(self, row: Row, *, raise_when_unavailable: bool) -> Draft:
        """The strategy of a stored planning campaign, under its own id. With
        `raise_when_unavailable`, a model that gives no answer raises ModelUnavailable."""
        [planned] = await self.plan_many([row], last_tries=set() if raise_when_unavailable else {row.id})
        if isinstance(planned, Exception):
            raise planned
        return planned

    async def plan_many(self, rows: Sequence[Row], *, last_tries: set[str]) -> list[Draft | Exception]:
        """The strategies of stored planning campaigns, side by side, in their order: each a
        draft under its own id, or what kept it from one (ModelUnavailable, unless its id is in
        `last_tries`: then the fallback plans it; a DomainError for a strategy that breaks a
        rule). The tenant's settings and sender identities are read once per tenant."""
        tenants = sorted({row.tenant_id for row in rows})
        defaults = {tenant: await self._defaults(tenant) for tenant in tenants}
        domains: dict[str, dict[str, str]] = {}
        for tenant in tenants:
            # A stored campaign was checked when it came; its identity's domain is what matters now.
            requests = [stored_request(row) for row in rows if row.tenant_id == tenant]
            domains[tenant] = (await self._known_senders(tenant, requests))[1]

        async def one(row: Row) -> Draft | Exception:
            request = stored_request(row)
            try:
                return await self._draft(
                    request,
                    defaults[row.tenant_id],
                    sender_domain=domains[row.tenant_id].get(request.sender_identity_id, ""),
                    campaign_id=row.id,
                    raise_when_unavailable=row.id not in last_tries,
                )
            except Exception as exc:
                return exc

        return list(await asyncio.gather(*(one(row) for row in rows)))

    async def drafts(
        self, tenant_id: str, requests: Sequence[CampaignRequest | DomainError]
    ) -> list[Draft | DomainError]:
        """A draft for each request, or why there is none; a request that could not be read
        stays its error. The strategist is asked for all of them at once."""
        requests, sender_domains = await self._known_senders(tenant_id, requests)
        planned = await self._planned(requests, await self._defaults(tenant_id), sender_domains)
        return await self._unsuppressed(tenant_id, planned)

    async def _planned(
        self,
        requests: Sequence[CampaignRequest | DomainError],
        defaults: TenantDefaults,
        sender_domains: dict[str, str],
    ) -> list[Draft | DomainError]:
        async def one(request: CampaignRequest | DomainError) -> Draft | DomainError:
            if isinstance(request, DomainError):
                return request
            try:
                return await self._draft(
                    request, defaults, sender_domain=sender_domains.get(request.sender_identity_id, "")
                )
            except DomainError as exc:
                return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _unsuppressed(self, tenant_id: str, items: list[Any]) -> list[Any]:
        """The items, each one for a contact the tenant has suppressed made its error."""
        if self.owners is None:
            return items
        fresh = (Draft, Queued)
        emails = sorted({d.request.email.lower() for d in items if isinstance(d, fresh)})
        if not emails:
            return items
        suppressed = await self.owners.suppressed(tenant_id, emails) or {}
        for i, item in enumerate(items):
            if isinstance(item, fresh) and (reason := suppressed.get(item.request.email.lower())):
                items[i] = FailedPrecondition(f"contact.email {item.request.email} is suppressed ({reason})")
        return items

    async def _defaults(self, tenant_id: str) -> TenantDefaults:
        async with self.engine.connect() as conn:
            return TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant_id))

    async def _known_senders(
        self, tenant_id: str, requests: Sequence[CampaignRequest | DomainError]
    ) -> tuple[list[CampaignRequest | DomainError], dict[str, str]]:
        """The requests, each naming a sender identity the dispatcher does not have made
        INVALID_ARGUMENT and one it has not verified FAILED_PRECONDITION; and the From domain
        of each identity it has (the strategist's copy may name it). Without the dispatcher's
        answer a request goes on: the dispatcher checks the identity again when it sends."""
        ids = sorted({r.sender_identity_id for r in requests if isinstance(r, CampaignRequest)})
        if self.owners is None or not ids:
            return list(requests), {}
        found = await self.owners.sender_identities(tenant_id, ids)
        checked: list[CampaignRequest | DomainError] = []
        for request in requests:
            if isinstance(request, CampaignRequest) and request.sender_identity_id in found:
                identity = found[request.sender_identity_id]
                if identity is None:
                    request = InvalidArgument(
                        "sender_identity_id",
                        f"no sender identity {request.sender_identity_id!r} in this tenant "
                        "(SenderIdentityService.CreateSenderIdentity makes one)",
                    )
                elif not identity.verified:
                    request = FailedPrecondition(
                        f"sender_identity_id {identity.sender_identity_id!r} ({identity.from_email}) is not "
                        "verified: authenticate its domain or verify the sender at SendGrid, then call "
                        "SenderIdentityService.VerifySenderIdentity"
                    )
            checked.append(request)
        domains = {i: identity.from_email.rpartition("@")[2].lower() for i, identity in found.items() if identity}
        return checked, domains

    async def _draft(
        self,
        request: CampaignRequest,
        defaults: TenantDefaults,
        *,
        sender_domain: str = "",
        campaign_id: str = "",
        raise_when_unavailable: bool = False,
    ) -> Draft:
        window = request.window or defaults.window
        facts = request.facts
        campaign_id = campaign_id or str(uuid.uuid4())
        generations: list[Generation] = []
        budget_spent: BudgetSpent | None = None
        reason = ""
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
                    raise_when_unavailable=raise_when_unavailable,
                    variants=defaults.variant_request(),
                )
            )
            chosen, strategist = planned.strategy, planned.generation.strategist
            generations = [*planned.earlier, planned.generation]
            budget_spent = planned.budget_spent
            reason = planned.reason or (NO_MODEL if planned.generation.outcome == "template" else "")
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
            strategist_reason=reason,
        )
