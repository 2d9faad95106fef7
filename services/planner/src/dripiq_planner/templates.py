"""Rendering of {{field}} placeholders from the request's facts, at send time.

Explicit strategies may use placeholders such as {{first_name}}; the strategists write final
text (strategist/), so for them rendering finds nothing to fill."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def render(text: str, facts: dict[str, Any]) -> str:
    """Fill {{field}} placeholders from the request's facts; an unknown one renders empty."""
    return _PLACEHOLDER.sub(lambda m: str(facts.get(m.group(1)) or ""), text)


def filled(text: str, facts: dict[str, Any]) -> set[str]:
    """The placeholders of `text` that name a fact (rendered at send time, even when empty)."""
    return {m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(1) in facts}
