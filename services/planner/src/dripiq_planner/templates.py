"""A deterministic strategy for when no strategy is given and no AI is configured.

The AI strategist replaces this when OPENAI_API_KEY or OPENAI_BASE_URL is set; until then
every contact gets this sequence, personalized from its fields.
"""

from __future__ import annotations

import re
from typing import Any

from dripiq_planner.strategy import OutreachStep, Strategy

TEMPLATE_NAME = "intro-3-step-v1"

_INTRO = Strategy(
    summary="Three-touch introduction of {{product_name}} to {{first_name}} at {{company_name}}.",
    outreach_campaign=[
        OutreachStep(
            type="email",
            timing="Day 0",
            subject="{{first_name}}, a quick idea for {{company_name}}",
            content="Hi {{first_name}},\n\n{{product_description}}\n\nWould it help {{company_name}}?",
            call_to_action="Reply with a good time for a 15-minute call.",
        ),
        OutreachStep(
            type="email",
            timing="Day 3",
            subject="Re: a quick idea for {{company_name}}",
            content="Hi {{first_name}},\n\nFollowing up on {{product_name}}: teams like yours use it to save time.",
            call_to_action="Is this worth a short conversation?",
        ),
        OutreachStep(
            type="email",
            timing="Day 7",
            subject="Closing the loop, {{first_name}}",
            content="Hi {{first_name}},\n\nI will not write again about {{product_name}} unless you want me to.",
            call_to_action="Reply 'yes' and I will send details.",
        ),
    ],
)


def template_strategy() -> Strategy:
    return _INTRO.model_copy(deep=True)


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def render(text: str, facts: dict[str, Any]) -> str:
    """Fill {{field}} placeholders from the request's facts; an unknown one renders empty."""
    return _PLACEHOLDER.sub(lambda m: str(facts.get(m.group(1)) or ""), text)


def facts_of(contact: Any, lead: Any, product: Any) -> dict[str, str]:
    return {
        "contact_id": contact.contact_id,
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "title": contact.title,
        "time_zone": contact.time_zone,
        "lead_id": lead.lead_id,
        "company_name": lead.company_name,
        "industry": lead.industry,
        "product_id": product.product_id,
        "product_name": product.name,
        "product_description": product.description,
    }
