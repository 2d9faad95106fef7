"""SendGrid Event Webhook batches read into provider events, before any is tied to a message.

A malformed entry is not an error: it becomes a `rejected` event, stored as received, so one bad
entry never holds up the rest of its batch. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dripiq_common.errors import PermanentMessageError
from dripiq_events.domain import MAX_ID_LENGTH, REJECTED
from dripiq_events.storable import loads_json, nesting_fits, scrub, strings_storable

# Event types become a subject token (dripiq.events.engagement.<tenant>.<type>).
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}")
STEP_INDEX_LIMIT = 10_000


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and these are
# built once per event at thousands a second. Nothing changes them after construction.
@dataclass(slots=True)
class ProviderEvent:
    """One entry of a SendGrid Event Webhook batch, read but not yet tied to a message."""

    provider_event_id: str
    event_type: str
    occurred_at: datetime
    raw: Any
    email: str | None = None
    # Our custom_args, which SendGrid flattens to the top level of each event.
    tenant_id: str | None = None
    message_id: str | None = None
    campaign_id: str | None = None
    step_index: int | None = None
    # X-Message-Id of the send: sg_message_id up to its first '.'.
    provider_message_id: str | None = None
    machine_open: bool = False
    url: str | None = None
    reason: str | None = None


def parse_event_batch(body: bytes, *, received_at: datetime) -> list[ProviderEvent]:
    """The events of one batch, each once; a malformed entry becomes a `rejected` event."""
    try:
        items = loads_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentMessageError(f"SendGrid batch is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise PermanentMessageError("SendGrid batch is not a JSON array")
    clean = strings_storable(body)
    unique: dict[tuple[str, datetime], ProviderEvent] = {}
    for item in items:
        event = parse_event(item, received_at=received_at, clean_strings=clean)
        unique.setdefault((event.provider_event_id, event.occurred_at), event)
    return list(unique.values())


def parse_event(item: Any, *, received_at: datetime, clean_strings: bool = False) -> ProviderEvent:
    """One entry of a batch; `clean_strings` when the body is known to hold no string that
    scrub() would change, so a flat entry is kept as it is."""
    if not (clean_strings and type(item) is dict and nesting_fits(item, 0)):
        item = scrub(item)
    event_id = _text(item.get("sg_event_id")) if isinstance(item, dict) else None
    # An id too long to index is hashed: a replay still hashes the same.
    event_id = (_digest(event_id) if len(event_id) > MAX_ID_LENGTH else event_id) if event_id else _digest(item)
    if not isinstance(item, dict):
        return ProviderEvent(event_id, REJECTED, received_at, item)
    timestamp, event_type = item.get("timestamp"), item.get("event")
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int)
        or not isinstance(event_type, str)
        or not _EVENT_TYPE.fullmatch(event_type)
    ):
        return ProviderEvent(event_id, REJECTED, received_at, item)
    try:
        occurred_at = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return ProviderEvent(event_id, REJECTED, received_at, item)
    sg_message_id = _text(item.get("sg_message_id"))
    return ProviderEvent(
        provider_event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        raw=item,
        email=_text(item.get("email")),
        tenant_id=_id(item.get("tenant_id")),
        message_id=_id(item.get("message_id")),
        campaign_id=_id(item.get("campaign_id")),
        step_index=_int(item.get("step_index")),
        provider_message_id=sg_message_id.split(".", 1)[0] if sg_message_id else None,
        machine_open=item.get("sg_machine_open") is True,
        url=_text(item.get("url")),
        # For bounces SendGrid's `type` tells a hard bounce ("bounce") from a block ("blocked").
        reason=_text(item.get("type")) if event_type == "bounce" else _text(item.get("reason")),
    )


def _text(value: Any) -> str | None:
    """A string field of an entry parse_event has scrubbed already."""
    return (value or None) if isinstance(value, str) else None


def _id(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and len(text) <= MAX_ID_LENGTH else None


def _int(value: Any) -> int | None:
    """A step index: a small non-negative integer, or a string of ASCII digits that is one."""
    if isinstance(value, str):
        digits = value.strip()
        value = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 5 else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < STEP_INDEX_LIMIT:
        return value
    return None


def _digest(value: Any) -> str:
    """A stable id for an event SendGrid sent without sg_event_id: a replay hashes the same."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
