"""The strategist's system prompts, versioned with the text they load.

A prompt is never edited in place: a changed prompt is a new file and a new version, so every
stored generation names the exact text that produced it. The A/B version of the prompt
(strategy-v3) has slots for the tenant's test, which the generation's input records.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from dripiq_planner.strategist.ai_variants import VariantFocus, VariantRequest

PROMPT_VERSION = "strategy-v2"
# For tenants that run an A/B test on AI copy; the others keep PROMPT_VERSION, word for word.
VARIANTS_PROMPT_VERSION = "strategy-v3"
_FILES = {"strategy-v1": "strategy_v1.md", "strategy-v2": "strategy_v2.md", "strategy-v3": "strategy_v3.md"}

# What a version changes, by the tenant's focus (strategy-v3's $focus and $thread_rule).
_FOCUS = {
    VariantFocus.SUBJECT: (
        "A version changes the subject line only: its `subject` is another subject for the same "
        "email, and the email's content and call to action stay A's.",
        ", and for a follow-up that continues the previous email's thread (it keeps that email's subject)",
    ),
    VariantFocus.CONTENT: (
        "A version changes the body and the call to action: its `content` and `callToAction` are "
        "another way to write the same step, and the subject stays A's.",
        "",
    ),
    VariantFocus.BOTH: (
        "A version changes the subject, the body and the call to action: another way to write "
        "the whole email. For a follow-up that continues the previous email's thread, leave the "
        "version's `subject` empty (it keeps that email's subject).",
        "",
    ),
}


@cache
def system_prompt(version: str = PROMPT_VERSION, variants: VariantRequest | None = None) -> str:
    """The prompt text, read from the installed package so it ships inside the wheel; the A/B
    version filled in with `variants`."""
    text = resources.files(__name__).joinpath(_FILES[version]).read_text(encoding="utf-8")
    if version != VARIANTS_PROMPT_VERSION:
        return text
    if variants is None:
        raise ValueError(f"{version} needs the tenant's variants")
    focus, thread_rule = _FOCUS[variants.focus]
    others = " and ".join(f'"{name}"' for name in variants.written)
    return Template(text).substitute(count=variants.count, others=others, focus=focus, thread_rule=thread_rule)
