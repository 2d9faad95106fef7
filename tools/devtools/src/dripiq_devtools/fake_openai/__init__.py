"""A local stand-in for the OpenAI Chat Completions API, answering like a model that follows
the planner's strategy prompt or the events service's reply classification prompt.

Development and the tests point the real `openai` client at it with `OPENAI_BASE_URL=fake.url`.
It answers with OpenAI's bodies, headers and error objects and records every authorized request.
What it writes depends on the request's `response_format.json_schema.name`:

- "reply_classification": {"reply_class", "confidence", "reason"}, the class read from the
  user messages by its own keyword rules (`replies.reply_class_of`), within the schema's enum;
- anything else (the strategist's "outreach_strategy", or no response format): a strategy built
  deterministically from the facts in the first user message; when the schema's steps carry
  `variants` (a tenant's A/B test), each email step gets one version per name the schema's
  enum lists, with only the fields the schema lists, as strict mode would shape them.

Tests script what comes next with `queue(...)`, in the vocabulary of `behaviours`, and what
answers once the queue is empty with `default_behaviour` (e.g. "obedient": a model that
follows instructions hidden in the facts). Every completion reports `usage` as OpenAI does. The
endpoints are listed in `server`; the command line is `__main__`.
"""

from dripiq_devtools.fake_openai.behaviours import (
    INVALID,
    MALFORMED,
    OBEDIENT,
    OFF_SCHEMA,
    RATE_LIMITED,
    REFUSAL,
    SERVER_ERROR,
    TRUNCATED,
    VALID,
)
from dripiq_devtools.fake_openai.server import FakeOpenAI, RecordedRequest

__all__ = [
    "INVALID",
    "MALFORMED",
    "OBEDIENT",
    "OFF_SCHEMA",
    "RATE_LIMITED",
    "REFUSAL",
    "SERVER_ERROR",
    "TRUNCATED",
    "VALID",
    "FakeOpenAI",
    "RecordedRequest",
]
