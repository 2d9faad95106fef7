"""Checks every strategy passes before it is stored, whoever wrote it.

A model can answer with well-formed JSON that is still unfit to send: a `{{first_name}}` it
expected someone else to fill, a subject no inbox shows whole, a step with nothing to ask.
Field paths are relative to the strategy JSON (`outreachCampaign[1].subject`) because that is
the document the model wrote and is asked to repair.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from dripiq_common.errors import InvalidArgument
from dripiq_planner import rules, templates
from dripiq_planner.strategist.links import AllowList, disallowed
from dripiq_planner.strategy import Strategy, relative_delays

MAX_SUBJECT_CHARS = 120
MAX_BODY_CHARS = 5000

# Template syntax and the fill-in-the-blank tokens writers and models leave behind.
_PLACEHOLDERS = re.compile(
    r"""
      \{\{[^{}]*\}\}                          # {{first_name}}
    | \{[A-Za-z_][\w ]{0,40}\}                # {first_name}
    | \[[A-Za-z][\w .'/-]{0,40}\](?!\()       # [First Name], but not a [markdown](link)
    | <[A-Za-z_][\w .-]{0,40}>                # <company>
    | \b[Xx]{3,}\b                            # XXX
    """,
    re.VERBOSE,
)


class GuardViolation(ValueError):
    """One problem with a strategy, at `field` (a path into the strategy JSON)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def find_placeholders(text: str) -> list[str]:
    return [match.group(0) for match in _PLACEHOLDERS.finditer(text)]


def check_written_copy(field: str, text: str, limit: int, known: Collection[str]) -> None:
    """Copy a person wrote (an edited step, a variant): within the length AI copy is held to,
    and no placeholder left but the {{fact}} ones in `known`, rendered at send time. The AI
    allow-list does not apply (docs/decisions/0046). InvalidArgument names `field`."""
    if len(text) > limit:
        raise InvalidArgument(field, f"is {len(text)} characters; at most {limit}")
    rendered = templates.filled(text, known)
    if unresolved := [t for t in find_placeholders(text) if t not in rendered]:
        raise InvalidArgument(
            field,
            f"has placeholders nothing fills: {', '.join(repr(t) for t in unresolved)} "
            f"(known: {', '.join('{{' + k + '}}' for k in sorted(known))})",
        )


def violations(strategy: Strategy, allow: AllowList | None = None) -> list[GuardViolation]:
    """Every problem found, so one repair request can name them all. Links, domains, email
    addresses and phone numbers must be on `allow` (none allowed without one)."""
    allow = allow or AllowList()
    found = [
        problem for i in range(len(strategy.outreach_campaign)) for problem in _step_violations(strategy, i, allow)
    ]
    # The contract's first refusal, unless a step's own check already named that field.
    named = {problem.field for problem in found}
    found.extend(problem for problem in _contract_violations(strategy) if problem.field not in named)
    return found


def check(strategy: Strategy, allow: AllowList | None = None) -> None:
    """Raise the first problem: for strategies that must already be right, like templates."""
    if found := violations(strategy, allow):
        raise found[0]


def _step_violations(strategy: Strategy, index: int, allow: AllowList) -> list[GuardViolation]:
    step = strategy.outreach_campaign[index]
    path = f"outreachCampaign[{index}]"
    found: list[GuardViolation] = []
    if step.type == "email" and len(step.subject) > MAX_SUBJECT_CHARS:
        found.append(
            GuardViolation(f"{path}.subject", f"is {len(step.subject)} characters; at most {MAX_SUBJECT_CHARS}")
        )
    if len(step.content) > MAX_BODY_CHARS:
        found.append(GuardViolation(f"{path}.content", f"is {len(step.content)} characters; at most {MAX_BODY_CHARS}"))
    if not step.call_to_action.strip():
        found.append(GuardViolation(f"{path}.callToAction", "is empty; every step needs a call to action"))
    copies = [(path, step.subject, step.content, step.call_to_action)] + [
        (f"{path}.variants[{v}]", variant.subject, variant.content, variant.call_to_action)
        for v, variant in enumerate(step.variants)
    ]
    for where, subject, content, call_to_action in copies[1:]:
        if step.type == "email" and len(subject) > MAX_SUBJECT_CHARS:
            found.append(
                GuardViolation(f"{where}.subject", f"is {len(subject)} characters; at most {MAX_SUBJECT_CHARS}")
            )
        for name, text in (("content", content), ("callToAction", call_to_action)):
            if len(text) > MAX_BODY_CHARS:
                found.append(GuardViolation(f"{where}.{name}", f"is {len(text)} characters; at most {MAX_BODY_CHARS}"))
    for where, subject, content, call_to_action in copies:
        found.extend(_copy_violations(where, subject, content, call_to_action, allow))
    return found


def _copy_violations(
    path: str, subject: str, content: str, call_to_action: str, allow: AllowList
) -> list[GuardViolation]:
    """Placeholders and what the allow-list does not cover, in a step's copy or one variant's."""
    found: list[GuardViolation] = []
    for name, text in (("subject", subject), ("content", content), ("callToAction", call_to_action)):
        if tokens := find_placeholders(text):
            quoted = ", ".join(repr(t) for t in tokens)
            found.append(
                GuardViolation(f"{path}.{name}", f"has unresolved placeholders {quoted}; write the final text")
            )
        for reason in disallowed(text, allow):
            found.append(GuardViolation(f"{path}.{name}", f"{reason} (not on the sender's allow-list)"))
    return found


def _contract_violations(strategy: Strategy) -> list[GuardViolation]:
    """What the planner itself would refuse when storing the campaign (it stops at the first)."""
    found: list[GuardViolation] = []
    for check_contract in (rules.validate_strategy, _check_timings):
        try:
            check_contract(strategy)
        except InvalidArgument as exc:
            found.append(GuardViolation(exc.field.removeprefix("strategy."), exc.description))
    return found


def _check_timings(strategy: Strategy) -> None:
    relative_delays(strategy, seed="guard")
