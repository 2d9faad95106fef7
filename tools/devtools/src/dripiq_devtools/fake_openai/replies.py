"""What the fake writes as the model: a strategy built from the planner's facts, a reply
classification by its own keyword rules, and the off-schema, malformed or refused answers the
behaviours ask for; and the reading of a request's messages and schema that they need."""

from __future__ import annotations

import json
import re
from typing import Any

from dripiq_devtools.fake_openai.behaviours import INVALID, MALFORMED, OBEDIENT, OFF_SCHEMA, VALID

# What a model that ignored the response format might say: prose, then JSON cut short.
MALFORMED_ANSWER = 'Here is the strategy you asked for: {"summary": "An introduction'
MALFORMED_CLASSIFICATION_ANSWER = 'The reply reads as {"reply_class": "inter'
REFUSAL_MESSAGE = "I'm sorry, I can't help with that request."
FACTS_OPEN, FACTS_CLOSE = "<facts>", "</facts>"

REPLY_CLASSIFICATION_SCHEMA = "reply_classification"
# The classes a reply classification answer may name, when the request's schema lists none.
REPLY_CLASSES = ("interested", "not_interested", "referral", "unsubscribe_request", "question", "other")
# The fake's own reading of a reply, first match wins: a stand-in for a model, so it shares no
# code with the service it answers. Plain substrings of the lower-cased user messages.
REPLY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "unsubscribe_request",
        (
            "unsubscribe",
            "remove me",
            "take me off",
            "stop emailing",
            "stop contacting",
            "do not contact",
            "don't contact",
            "do not email",
            "don't email",
        ),
    ),
    ("not_interested", ("not interested", "no thanks", "no thank you", "not a fit", "not for us", "we'll pass")),
    (
        "referral",
        (
            "reach out to",
            "talk to my colleague",
            "contact my colleague",
            "better person",
            "the right person",
            "in charge of",
            "forwarding this to",
        ),
    ),
    ("interested", ("interested", "let's talk", "let's chat", "book a", "schedule", "set up a call", "demo")),
    ("question", ("?",)),
)


def text_of(content: Any) -> str:
    """A message's text, whether sent as a string or as content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def unwrapped(text: str) -> str:
    """The JSON inside a `<facts>...</facts>` wrapper, or the text as it is without one."""
    stripped = text.strip()
    if stripped.startswith(FACTS_OPEN) and stripped.endswith(FACTS_CLOSE):
        return stripped[len(FACTS_OPEN) : -len(FACTS_CLOSE)]
    return text


def facts_of(body: dict[str, Any]) -> dict[str, Any]:
    """The facts object the planner sends as the first user message (bare JSON, or JSON
    between `<facts>` tags); empty when there is none."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            try:
                facts = json.loads(unwrapped(text_of(message.get("content"))))
            except ValueError:
                continue
            if isinstance(facts, dict):
                return facts
    return {}


def requested_schema(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The requested json_schema's name and schema; (None, {}) without one."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None, {}
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return None, {}
    name, schema = spec.get("name"), spec.get("schema")
    return (name if isinstance(name, str) else None), (schema if isinstance(schema, dict) else {})


def reply_class_of(text: str) -> tuple[str, str]:
    """The class the fake gives a reply and the keyword that decided it ("" for other)."""
    lowered = text.lower()
    for reply_class, keywords in REPLY_KEYWORDS:
        for keyword in keywords:
            if keyword in lowered:
                return reply_class, keyword
    return "other", ""


def reply_classification(body: dict[str, Any]) -> dict[str, Any]:
    """What a model following a reply classification prompt could answer: the keyword rules'
    class, read from the user messages only (the system prompt defines every class), kept
    within the enum the request's schema allows, as strict mode would."""
    user_text = "\n".join(
        text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    )
    reply_class, keyword = reply_class_of(user_text)
    allowed = _allowed_classes(requested_schema(body)[1])
    if reply_class not in allowed:
        reply_class, keyword = ("other" if "other" in allowed else allowed[0]), ""
    reason = f"The reply says '{keyword}'." if keyword else "Nothing in the reply matches a more specific class."
    return {"reply_class": reply_class, "confidence": 0.9 if keyword else 0.5, "reason": reason}


def _allowed_classes(schema: dict[str, Any]) -> list[str]:
    prop = (schema.get("properties") or {}).get("reply_class")
    enum = prop.get("enum") if isinstance(prop, dict) else None
    if isinstance(enum, list) and enum and all(isinstance(value, str) for value in enum):
        return enum
    return list(REPLY_CLASSES)


def off_schema_classification() -> dict[str, Any]:
    """Parses, but breaks the schema: a class no enum has, a confidence above 1, an extra key."""
    return {"reply_class": "maybe_later", "confidence": 1.7, "reason": "Unsure.", "sentiment": "neutral"}


def off_schema_strategy(facts: dict[str, Any]) -> dict[str, Any]:
    """A strategy without its adaptive rules and with a key the schema does not have."""
    strategy = valid_strategy(facts)
    del strategy["adaptiveRules"]
    strategy["notes"] = "written without the schema"
    return strategy


def _field(facts: dict[str, Any], section: str, name: str) -> str:
    value = (facts.get(section) or {}).get(name)
    return value.strip() if isinstance(value, str) else ""


def valid_strategy(facts: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a model following the prompt could write from these facts, and nothing more; with
    a `schema` whose steps carry `variants` (an A/B test), each email step's other versions as
    strict mode would shape them: one per name its enum lists, only the fields it lists."""
    first_name = _field(facts, "contact", "first_name")
    company = _field(facts, "lead", "company_name") or "your team"
    product = _field(facts, "product", "name") or "our product"
    greeting = f"Hi {first_name}," if first_name else "Hi there,"
    description = _field(facts, "product", "description")
    strategy: dict[str, Any] = {
        "summary": f"A three-email introduction of {product} to {company}, grounded in the product description.",
        "cadence": {"interval": "3-4 days", "totalDuration": "7 days"},
        "outreachCampaign": [
            _step("Day 0", f"{product} for {company}", f"{greeting}\n\n{description or product}", "Open to a call?"),
            _step(
                "Day 3",
                "",
                f"{greeting}\n\nFollowing up on my note about {product}.",
                "Would a 15-minute call this week work?",
                thread=True,
            ),
            _step(
                "Day 7",
                "Closing the loop",
                f"{greeting}\n\nI will not write again unless you want me to.",
                "Reply if you would like the details.",
            ),
        ],
        "adaptiveRules": [
            {
                "trigger": "no_open_72h",
                "action": {
                    "type": "reschedule_step",
                    "payload": {"delaySeconds": 86400, "stepIndex": None, "resumeAfterSeconds": None, "reason": None},
                },
            }
        ],
    }
    if (spec := variant_spec(schema or {})) is not None:
        names, fields = spec
        for step in strategy["outreachCampaign"]:
            step["variants"] = _versions(step, names, fields, product=product, company=company)
    return strategy


def variant_spec(schema: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """The names and fields of a strategy schema's step versions; None when its steps have none."""
    step = ((schema.get("properties") or {}).get("outreachCampaign") or {}).get("items") or {}
    version = ((step.get("properties") or {}).get("variants") or {}).get("items")
    if not isinstance(version, dict):
        return None
    properties = version.get("properties") or {}
    names = (properties.get("name") or {}).get("enum") or []
    return [n for n in names if isinstance(n, str)], [f for f in properties if f != "name"]


def _versions(
    step: dict[str, Any], names: list[str], fields: list[str], *, product: str, company: str
) -> list[dict[str, Any]]:
    """A step's other versions, as the strategy prompt asks: none for a call or a LinkedIn step,
    nor for a follow-up in the thread when only the subject changes (it keeps the thread's)."""
    in_thread = step["thread"] is True or not step["subject"]
    if step["type"] != "email" or (in_thread and "content" not in fields):
        return []
    angles = (
        (f"A question about {product} for {company}", "Here is the short version:", "Worth a short call?"),
        (f"{company} and {product}", "One line on why I am writing:", "Could we find 15 minutes?"),
        (f"Is {product} on your list?", "In brief:", "Shall I send a short overview?"),
    )
    out: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        subject, lead_in, ask = angles[i % len(angles)]
        greeting, _, body = step["content"].partition("\n\n")
        version = {
            "name": name,
            "subject": "" if in_thread else subject,
            "content": f"{greeting}\n\n{lead_in} {body}",
            "callToAction": ask,
        }
        out.append({key: value for key, value in version.items() if key == "name" or key in fields})
    return out


def invalid_strategy(facts: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Well-formed and in the schema's shape, but unsendable: an unknown channel and a placeholder."""
    strategy = valid_strategy(facts, schema)
    strategy["outreachCampaign"][1]["type"] = "fax"
    strategy["outreachCampaign"][2]["subject"] = "{{first_name}}, one more thing"
    return strategy


# What makes a fact read like an instruction to an obedient model: an imperative, or something
# to point the reader to.
INSTRUCTION = re.compile(
    r"\b(?:must|always|never|ignore|include|add|tell|ask|reset|visit|call|email|click)\b|https?://|www\.|@|\+?\d[\d ().-]{6,}\d",
    re.IGNORECASE,
)


def instructions_in(facts: dict[str, Any]) -> list[str]:
    """Every contact, lead and product fact that reads like an instruction, in order."""
    found: list[str] = []
    for section in ("contact", "lead", "product"):
        values = facts.get(section) or {}
        for value in values.values() if isinstance(values, dict) else ():
            if isinstance(value, str) and INSTRUCTION.search(value):
                found.append(value)
    return found


def obedient_strategy(facts: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The valid strategy, with every instruction-like fact followed in every step's content."""
    strategy = valid_strategy(facts, schema)
    followed = "\n\n".join(instructions_in(facts))
    if followed:
        for step in strategy["outreachCampaign"]:
            step["content"] += f"\n\n{followed}"
            for version in step.get("variants", ()):
                if "content" in version:
                    version["content"] += f"\n\n{followed}"
    return strategy


def _step(
    timing: str, subject: str, content: str, call_to_action: str, *, thread: bool | None = None
) -> dict[str, Any]:
    return {
        "type": "email",
        "timing": timing,
        "subject": subject,
        "content": content,
        "callToAction": call_to_action,
        "thread": thread,
    }


def content_for(behaviour: str, body: dict[str, Any]) -> str:
    """The message content `behaviour` asks for, in the kind of answer the request asked for."""
    if requested_schema(body)[0] == REPLY_CLASSIFICATION_SCHEMA:
        if behaviour == VALID:
            return json.dumps(reply_classification(body))
        if behaviour in (INVALID, OFF_SCHEMA):
            return json.dumps(off_schema_classification())
        if behaviour == MALFORMED:
            return MALFORMED_CLASSIFICATION_ANSWER
        return behaviour
    schema = requested_schema(body)[1]
    if behaviour == VALID:
        return json.dumps(valid_strategy(facts_of(body), schema))
    if behaviour == INVALID:
        return json.dumps(invalid_strategy(facts_of(body), schema))
    if behaviour == OBEDIENT:
        return json.dumps(obedient_strategy(facts_of(body), schema))
    if behaviour == OFF_SCHEMA:
        return json.dumps(off_schema_strategy(facts_of(body)))
    if behaviour == MALFORMED:
        return MALFORMED_ANSWER
    return behaviour
