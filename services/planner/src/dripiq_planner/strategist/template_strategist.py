"""The strategist without a model: a small library of email sequences, written out per contact.

Used when no OpenAI server is configured, and as the fallback when the model fails. The text is
rendered now, at plan time, so the stored strategy is exactly what will be sent. A missing fact
changes the sentence rather than leaving a gap ("Hi there," not "Hi ,"), and the copy claims
nothing beyond the product's own name and description.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from dripiq_planner.strategist import Generation, Planned, PlanningFacts
from dripiq_planner.strategist.guards import check, find_placeholders
from dripiq_planner.strategist.links import AllowList, disallowed
from dripiq_planner.strategy import Cadence, OutreachStep, Strategy, pick_in_range

STRATEGIST_NAME = "template"
# Longer values are treated as missing: a 200-character "first name" is bad data, not a name.
MAX_NAME_CHARS = 40
MAX_COMPANY_CHARS = 60
MAX_PRODUCT_CHARS = 50
MAX_TITLE_CHARS = 80
MAX_DESCRIPTION_CHARS = 600

_WHITESPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _clean(value: str | None, max_chars: int, allow: AllowList) -> str | None:
    """The value as it can appear in an email, or None when it cannot: a fact naming a link,
    address or number the sender does not own is written around, never copied."""
    text = _WHITESPACE.sub(" ", value or "").strip()
    if not text or len(text) > max_chars or find_placeholders(text) or disallowed(text, allow):
        return None
    return text


def _clean_description(value: str | None, allow: AllowList) -> str | None:
    text = _WHITESPACE.sub(" ", value or "").strip()
    if not text or find_placeholders(text) or disallowed(text, allow):
        return None
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return text[: MAX_DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


@dataclass(frozen=True)
class ContactFacts:
    """The facts a sequence may use, cleaned; None means "write around it"."""

    first_name: str | None
    title: str | None
    company: str | None
    product: str | None
    description: str | None

    @classmethod
    def of(cls, facts: PlanningFacts) -> ContactFacts:
        allow = facts.allow
        return cls(
            first_name=_clean(facts.contact.get("first_name"), MAX_NAME_CHARS, allow),
            title=_clean(facts.contact.get("title"), MAX_TITLE_CHARS, allow),
            company=_clean(facts.lead.get("company_name"), MAX_COMPANY_CHARS, allow),
            product=_clean(facts.product.get("name"), MAX_PRODUCT_CHARS, allow),
            description=_clean_description(facts.product.get("description"), allow),
        )

    @property
    def greeting(self) -> str:
        return f"Hi {self.first_name}," if self.first_name else "Hi there,"

    @property
    def team(self) -> str:
        return self.company or "your team"

    @property
    def at_team(self) -> str:
        return f"at {self.company}" if self.company else "on your team"

    @property
    def headline(self) -> str | None:
        """The description's first sentence, for a reminder that does not repeat all of it."""
        return _SENTENCE_END.split(self.description, 1)[0] if self.description else None

    def addressed(self, subject: str) -> str:
        """The subject led by the first name when it is known."""
        return f"{self.first_name}, {subject}" if self.first_name else subject[:1].upper() + subject[1:]


def _email(timing: str, subject: str, paragraphs: list[str | None], call_to_action: str) -> OutreachStep:
    content = "\n\n".join(p for p in paragraphs if p)
    return OutreachStep(type="email", timing=timing, subject=subject, content=content, call_to_action=call_to_action)


def _intro(f: ContactFacts) -> list[OutreachStep]:
    relevance = "I thought it might be relevant to you"
    relevance += f" as {f.title}" if f.title else ""
    relevance += f" at {f.company}." if f.company else "."
    return [
        _email(
            "Day 0",
            f.addressed(f"a quick idea for {f.team}"),
            [
                f.greeting,
                f"I am reaching out to introduce {f.product}."
                if f.product
                else "I am reaching out with a short introduction.",
                f.description,
                relevance,
            ],
            "Would you be open to a 15-minute call next week to see whether it fits?",
        ),
        _email(
            "Day 3",
            f"Re: a quick idea for {f.team}",
            [
                f.greeting,
                f"Following up on my note about {f.product}." if f.product else "Following up on my last note.",
                f"In short: {f.headline}" if f.headline else None,
                "If the timing is wrong, just let me know.",
            ],
            "Is this worth a short conversation?",
        ),
        _email(
            "Day 7",
            f.addressed("closing the loop"),
            [f.greeting, "I have not heard back, so I will assume now is not the right time and stop writing."],
            "If that changes, reply to this email and I will send the details.",
        ),
    ]


def _value_first(f: ContactFacts) -> list[OutreachStep]:
    offer = f.product or "what we do"
    if f.description:
        opening = f"Rather than a long pitch, here is what {f.product} does:" if f.product else "In a few words:"
    else:
        opening = f"I would like to introduce {offer} to {f.team}."
    return [
        _email(
            "Day 0",
            f"{f.product} for {f.team}" if f.product else f"An idea for {f.team}",
            [f.greeting, opening, f.description, "No need to reply if it is not relevant."],
            f"If it sounds useful for {f.team}, would a short overview help?",
        ),
        _email(
            "Day 2",
            f"How it could fit {f.team}",
            [
                f.greeting,
                f"As {f.title}, you will know best whether {offer} fits your priorities." if f.title else None,
                "I would rather ask than assume: what matters most for your team right now?",
            ],
            "Reply with one line on your priorities and I will tell you honestly whether we can help.",
        ),
        _email(
            "Day 5",
            f.addressed("a short walkthrough"),
            [f.greeting, f"I would be glad to show you how {f.product or 'it'} works in practice."],
            "Would a 15-minute walkthrough this week or next be useful?",
        ),
        _email(
            "Day 9",
            "Last note from me",
            [f.greeting, "This is my last note for now; I do not want to crowd your inbox."],
            "Reply 'later' and I will check back in a few months, or 'no' and I will stop here.",
        ),
    ]


def _check_in(f: ContactFacts) -> list[OutreachStep]:
    return [
        _email(
            "Day 0",
            f.addressed("quick question"),
            [
                f.greeting,
                f"Are you the right person {f.at_team} to talk to about {f.product or 'what we do'}?",
                f.description,
            ],
            "If not, could you point me to the right person?",
        ),
        _email(
            "Day 4",
            "Re: quick question",
            [f.greeting, "Bringing my question back to the top of your inbox."],
            f"Should I reach out to someone else {f.at_team}?",
        ),
    ]


@dataclass(frozen=True)
class Sequence:
    name: str
    description: str
    cadence: Cadence
    steps: Callable[[ContactFacts], list[OutreachStep]]

    def render(self, facts: ContactFacts) -> Strategy:
        who = facts.first_name or "the contact"
        where = f" at {facts.company}" if facts.company else ""
        what = f" about {facts.product}" if facts.product else ""
        return Strategy(
            summary=f"{self.description} for {who}{where}{what} (template {self.name}).",
            cadence=self.cadence,
            outreach_campaign=self.steps(facts),
        )


LIBRARY: tuple[Sequence, ...] = (
    Sequence(
        "intro-3-step-v1", "Three-email introduction", Cadence(interval="3-4 days", total_duration="7 days"), _intro
    ),
    Sequence(
        "value-first-4-step-v1",
        "Four-email sequence that leads with what the product does",
        Cadence(interval="2-4 days", total_duration="9 days"),
        _value_first,
    ),
    Sequence(
        "check-in-2-step-v1", "Two-email check-in", Cadence(interval="4 days", total_duration="4 days"), _check_in
    ),
)


def choose_sequence(facts: PlanningFacts) -> Sequence:
    """Spread contacts over the library, the same sequence every time for the same contact.

    The seed is every contact, lead and product fact, whichever the caller sends (ids included
    or not), so two contacts differ as long as anything about them does.
    """
    seed = json.dumps([facts.tenant_id, facts.contact, facts.lead, facts.product], sort_keys=True)
    return LIBRARY[pick_in_range(0, len(LIBRARY) - 1, seed)]


class TemplateStrategist:
    name = STRATEGIST_NAME
    uses_model = False

    async def aclose(self) -> None:
        """Holds nothing."""

    async def plan(self, facts: PlanningFacts) -> Planned:
        sequence = choose_sequence(facts)
        strategy = sequence.render(ContactFacts.of(facts))
        # Cleaning the facts keeps the copy within the guards, the allow-list included; a failure
        # here is a bug in the library.
        check(strategy, facts.allow)
        generation = Generation(
            strategist=STRATEGIST_NAME,
            correlation_id=facts.correlation_id,
            input_json={"facts": facts.as_json()},
            output_json=strategy.to_json(),
            outcome="template",
            # Which sequence wrote the text, in the field that versions the text's source.
            prompt_version=sequence.name,
        )
        return Planned(strategy=strategy, generation=generation)
