"""Rendering of {{field}} placeholders from the request's facts, at send time.

Explicit strategies may use placeholders such as {{first_name}}; the strategists write final
text (strategist/), so for them rendering finds nothing to fill. A placeholder naming no fact
is refused when the strategy is created (`unknown`), so rendering never meets one in a new
campaign."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

# The facts a campaign keeps from its request (convert.campaign_request), each a placeholder.
FIELDS = (
    "contact_id",
    "email",
    "first_name",
    "last_name",
    "title",
    "time_zone",
    "lead_id",
    "company_name",
    "industry",
    "product_id",
    "product_name",
    "product_description",
    "product_url",
)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
# Anything a writer meant as a placeholder, well-formed or not: "{{ First Name }}", "{{}}".
_ANY_PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")


def render(text: str, facts: dict[str, Any]) -> str:
    """Fill {{field}} placeholders from the request's facts; an unknown one renders empty."""
    return _PLACEHOLDER.sub(lambda m: str(facts.get(m.group(1)) or ""), text)


def filled(text: str, facts: Collection[str]) -> set[str]:
    """The placeholders of `text` that name one of `facts` (rendered at send time, even when empty)."""
    return {m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(1) in facts}


def unknown(text: str) -> list[str]:
    """The placeholders of `text` that name no fact, as written ("{{firstName}}")."""
    return [m.group(0) for m in _ANY_PLACEHOLDER.finditer(text) if m.group(1).strip() not in FIELDS]
