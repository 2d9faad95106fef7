"""Strategists turn the facts of one request into a strategy.

The planner depends only on this interface: `OpenAIStrategist` (any OpenAI-compatible server)
when OPENAI_API_KEY or OPENAI_BASE_URL is set, else `TemplateStrategist`. Either way the
result carries a `Generation`, the audit record stored in `planner.ai_generations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dripiq_planner.ai_budget import BudgetLimits, BudgetSpent
from dripiq_planner.strategist.ai_variants import VariantRequest
from dripiq_planner.strategist.links import AllowList
from dripiq_planner.strategy import Strategy


@dataclass(frozen=True)
class PlanningFacts:
    """Everything a strategist may use, and nothing else: it must not invent facts."""

    tenant_id: str
    correlation_id: str
    contact: dict[str, str]
    lead: dict[str, str]
    product: dict[str, str]
    # The tenant's voice ("warm, brief, no jargon") and guidelines ("never promise pricing").
    voice: str = ""
    guidelines: str = ""
    # Not facts for the model: what its copy may name, and what it may spend.
    allow: AllowList = field(default_factory=AllowList)
    # The tenant's daily AI budget; None: none is kept.
    budget: BudgetLimits | None = None
    # Raise ModelUnavailable rather than fall back when the model gives no answer (API errors
    # past the client's retries, the deadline): the caller retries later (planning workers).
    raise_when_unavailable: bool = False
    # The tenant's A/B test on AI copy (tenant setting ai_variants); None: none. Not a fact
    # either: it changes what the model is asked to write, not what it may write about.
    variants: VariantRequest | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "lead": self.lead,
            "product": self.product,
            "voice": self.voice,
            "guidelines": self.guidelines,
        }


@dataclass(frozen=True)
class Generation:
    """One strategist call, as audited in planner.ai_generations."""

    strategist: str  # "openai" or "template"
    correlation_id: str
    input_json: dict[str, Any]
    output_json: dict[str, Any] | None
    # "ok", "repaired" (valid after one repair), "fallback" (AI failed, template used), "template",
    # "failed": an AI attempt that was not used, kept in Planned.earlier with its error, or
    # "retried": a request without an answer that was asked again (by the strategist at once,
    # or by the planning worker later), with its error.
    outcome: str
    model: str = ""
    prompt_version: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int = 0


@dataclass(frozen=True)
class Planned:
    strategy: Strategy
    generation: Generation
    # Extra audit records, e.g. the failed AI attempt behind a template fallback.
    earlier: tuple[Generation, ...] = field(default=())
    # Set when the tenant's AI budget stopped the model from being asked.
    budget_spent: BudgetSpent | None = None
    # Why the fallback strategist wrote it, starting with a code: "ai_budget_spent",
    # "model_error" (no answer), "invalid_answer" (answers the guards refused), "no_model".
    reason: str = ""


class ModelUnavailable(Exception):
    """The model gave no answer (PlanningFacts.raise_when_unavailable): worth asking again later.
    `generations` are the attempts made, for the audit trail (outcome "retried")."""

    def __init__(self, message: str, generations: tuple[Generation, ...] = ()) -> None:
        super().__init__(message)
        self.generations = generations


class Strategist(Protocol):
    name: str
    # Whether a plan may wait on a model's answer; False: planning is CPU only.
    uses_model: bool

    async def plan(self, facts: PlanningFacts) -> Planned: ...

    async def aclose(self) -> None:
        """Release what the strategist holds (an HTTP client); called at shutdown."""
