"""Which strategist the planner runs, decided once at start-up and said out loud."""

from __future__ import annotations

import structlog

from dripiq_common import chat
from dripiq_planner.ai_budget import AiBudget
from dripiq_planner.settings import PlannerSettings
from dripiq_planner.strategist import Strategist
from dripiq_planner.strategist.openai_strategist import OpenAIStrategist
from dripiq_planner.strategist.template_strategist import TemplateStrategist

log = structlog.get_logger(__name__)


def build_strategist(settings: PlannerSettings, budget: AiBudget | None = None) -> Strategist:
    """`budget` keeps each tenant's daily AI budget (the planner's database); None keeps none."""
    template = TemplateStrategist()
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    base_url = settings.openai_base_url or None
    if not api_key and not base_url:
        log.info(
            "strategist.selected",
            strategist=template.name,
            reason="neither OPENAI_API_KEY nor OPENAI_BASE_URL is set: strategies come from the built-in templates",
        )
        return template
    client = chat.client(
        api_key=api_key,
        base_url=base_url,
        timeout=settings.ai_timeout_seconds,
        # The strategist asks again itself, so every request is audited.
        max_retries=0,
    )
    log.info(
        "strategist.selected",
        strategist=OpenAIStrategist.name,
        reason=_reason(api_key, base_url),
        model=settings.ai_model,
        api_host=client.base_url.host,
        fallback=template.name,
    )
    return OpenAIStrategist(
        client=client,
        model=settings.ai_model,
        fallback=template,
        concurrency=settings.ai_concurrency,
        deadline_seconds=settings.ai_plan_deadline_seconds,
        budget=budget,
        max_completion_tokens=settings.ai_max_completion_tokens,
        retries=settings.ai_max_retries,
    )


def _reason(api_key: str, base_url: str | None) -> str:
    names = [name for name, value in (("OPENAI_API_KEY", api_key), ("OPENAI_BASE_URL", base_url)) if value]
    return f"{' and '.join(names)} set"
