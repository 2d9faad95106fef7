"""What a person's reply means, as the rest of the suite acts on it.

A classifier answers for one reply before the reply is stored, so its (slow) AI call never
holds a database transaction. What it did with the model, if anything, comes back as an audit
row that the service stores with the reply, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dripiq_events.reply_classes import ReplyClass, classify_by_rules

RULES = "rules"
AI = "ai"


@dataclass(frozen=True)
class Classification:
    reply_class: ReplyClass
    # "ai" or "rules".
    classified_by: str
    # Values of an events.ai_generations row (no tenant, no inbound id: the service adds them).
    generations: list[dict[str, Any]] = field(default_factory=list)


class ReplyClassifier(Protocol):
    async def classify(self, *, tenant_id: str, subject: str, text: str) -> Classification: ...

    async def aclose(self) -> None: ...


class RuleClassifier:
    """The fallback when no AI model is configured: keyword rules in several languages."""

    async def classify(self, *, tenant_id: str, subject: str, text: str) -> Classification:
        return Classification(classify_by_rules(subject, text), RULES)

    async def aclose(self) -> None:
        return None
