"""The vocabulary tests script the fake with (`FakeOpenAI.queue(...)`, POST /_fake/behaviours):
how each of the next requests is answered.

    "valid"         a strategy that passes the planner's schema and guards; a classification
    "malformed"     text that is not JSON
    "invalid"       a strategy in the schema's shape that fails the guards (unknown channel,
                    placeholder); for a classification, the same as "off_schema"
    "off_schema"    JSON outside the requested schema (strict mode never sends it; a server that
                    does not enforce schemas might)
    "refusal"       a refusal (`message.refusal` set, no content), as strict mode reports one
    "truncated"     the answer cut off at the token limit (finish_reason "length")
    "rate_limited"  429 with retry-after headers and OpenAI's rate-limit error
    "server_error"  500 with OpenAI's server error
    "obedient"      a valid strategy written by a model that follows instructions it finds in
                    the facts, as real models can: every contact, lead or product fact that
                    reads like one (an imperative, a link, an address, a number) is copied
                    into every step's content
    anything else   sent verbatim as the message content
"""

from __future__ import annotations

VALID = "valid"
MALFORMED = "malformed"
INVALID = "invalid"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
OFF_SCHEMA = "off_schema"
REFUSAL = "refusal"
TRUNCATED = "truncated"
OBEDIENT = "obedient"
