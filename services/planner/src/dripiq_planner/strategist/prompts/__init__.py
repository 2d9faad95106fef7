"""The strategist's system prompts, versioned with the text they load.

A prompt is never edited in place: a changed prompt is a new file and a new version, so every
stored generation names the exact text that produced it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PROMPT_VERSION = "strategy-v2"
_FILES = {"strategy-v1": "strategy_v1.md", "strategy-v2": "strategy_v2.md"}


@cache
def system_prompt(version: str = PROMPT_VERSION) -> str:
    """The prompt text, read from the installed package so it ships inside the wheel."""
    return resources.files(__name__).joinpath(_FILES[version]).read_text(encoding="utf-8")
